package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testimage"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
)

// portageImage writes a small Portage-like tree and its image (made by our
// writer) and returns both.
func portageImage(t *testing.T, scale float64) (src, image string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := testtree.GeneratePortage(src, testtree.PortageOptions{Scale: scale, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	image = filepath.Join(t.TempDir(), "gentoo.sqfs")
	testimage.Write(t, src, image, squash.WriterOptions{})
	return src, image
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// syncChanges edits the tree through the overlay the way emerge --sync does.
func syncChanges(t *testing.T, target string) {
	t.Helper()
	if _, err := testtree.MutatePortage(target, 0.05, 11); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(target, "NEWS"), "persist me\n")
}

// imageEquals mounts image and tells whether it shows exactly the tree at dir.
func imageEquals(t *testing.T, image, dir string) bool {
	t.Helper()
	mnt := t.TempDir()
	m := privileged.MountSquashfs(t, image, mnt)
	defer m.Unmount()
	return len(testtree.CompareWith(dir, mnt, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 1})) == 0
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func TestPersistNothingChanged(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target)
	res, err := Persist(st, PersistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || res.Skipped != "no changes" {
		t.Fatalf("persist with no change: %+v", res)
	}
	if _, err := os.Stat(img + ".old"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("persist with no change made %s.old: %v", img, err)
	}
}

func TestPersistTwice(t *testing.T) {
	e := newEnv(t)
	src, img := portageImage(t, 0.01)
	st := e.mount(img + ":" + e.target + ":layers=0")
	syncChanges(t, e.target)
	view1 := filepath.Join(t.TempDir(), "view1")
	copyTo(t, e.target, view1)

	res, err := Persist(st, PersistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || !res.Remounted || res.Stats.ReusedFiles == 0 {
		t.Fatalf("first persist: %+v", res)
	}
	if !imageEquals(t, img, view1) {
		t.Fatal("the new image does not show the overlay's view")
	}
	if !imageEquals(t, img+".old", src) {
		t.Fatal("IMAGE.old is not the previous image")
	}
	if ents, _ := os.ReadDir(st.UpperPath()); len(ents) != 0 {
		t.Fatalf("upper not emptied by the remount: %d entries", len(ents))
	}
	if readFile(t, filepath.Join(e.target, "NEWS")) != "persist me\n" {
		t.Fatal("change not visible after the remount")
	}

	st, err = Load(e.stateDir, e.target)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.target, "NEWS"), "second\n")
	if err := os.RemoveAll(filepath.Join(e.target, "eclass")); err != nil {
		t.Fatal(err)
	}
	view2 := filepath.Join(t.TempDir(), "view2")
	copyTo(t, e.target, view2)
	if _, err := Persist(st, PersistOptions{}); err != nil {
		t.Fatal(err)
	}
	if !imageEquals(t, img, view2) || !imageEquals(t, img+".old", view1) {
		t.Fatal("second persist: IMAGE or IMAGE.old wrong")
	}
	st, _ = Load(e.stateDir, e.target)
	if res, err := Persist(st, PersistOptions{}); err != nil || res.Written {
		t.Fatalf("third persist without changes: %+v %v", res, err)
	}

	// After an unmount and a new mount (a reboot), status still knows the
	// last persist.
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	st = e.mount(img + ":" + e.target)
	rep, err := Status(st)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastPersist.IsZero() || !strings.HasPrefix(rep.LastPersistResult, "ok:") {
		t.Errorf("status after a remount: last persist %v %q", rep.LastPersist, rep.LastPersistResult)
	}
}

func TestPersistKeepGenerations(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target + ":keep=3,layers=0")
	for i := range 3 {
		writeFile(t, filepath.Join(e.target, "gen"), fmt.Sprint(i))
		if _, err := Persist(st, PersistOptions{}); err != nil {
			t.Fatal(err)
		}
		st, _ = Load(e.stateDir, e.target)
	}
	for _, name := range []string{img, img + ".old", img + ".old.2"} {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("keep=3: %v", err)
		}
	}
	if _, err := os.Stat(img + ".old.3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keep=3 kept a fourth generation: %v", err)
	}
	if _, err := os.Stat(img + ".dropped"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keep=3 left the dropped generation's second name: %v", err)
	}
}

// failingOutput fails every write after limit bytes with err.
type failingOutput struct {
	f       *os.File
	limit   int64
	err     error
	written int64
}

func (o *failingOutput) WriteAt(p []byte, off int64) (int, error) {
	if o.written+int64(len(p)) > o.limit {
		return 0, o.err
	}
	o.written += int64(len(p))
	return o.f.WriteAt(p, off)
}

func (o *failingOutput) Truncate(n int64) error { return o.f.Truncate(n) }

func TestPersistWriteFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		limit int64
	}{
		{"EIO early", syscall.EIO, 0},
		{"EIO late", syscall.EIO, 200 << 10},
		{"ENOSPC", syscall.ENOSPC, 100 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, img := portageImage(t, 0.01)
			orig := filepath.Join(t.TempDir(), "orig.sqfs")
			copyTo(t, img, orig)
			st := e.mount(img + ":" + e.target + ":layers=0")
			syncChanges(t, e.target)
			view := filepath.Join(t.TempDir(), "view")
			copyTo(t, e.target, view)
			_, err := Persist(st, PersistOptions{Output: func(f *os.File) squash.Output {
				return &failingOutput{f: f, limit: tc.limit, err: tc.err}
			}})
			if !errors.Is(err, tc.err) {
				t.Fatalf("persist error %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), "untouched") {
				t.Errorf("error does not say the image is untouched: %v", err)
			}
			checkUntouched(t, img, orig, e.target, view)
		})
	}
}

// checkUntouched asserts that a failed persist left IMAGE byte for byte as
// it was, no temporary file, and the overlay still showing every change.
func checkUntouched(t *testing.T, img, orig, target, view string) {
	t.Helper()
	if !sameBytes(t, img, orig) {
		t.Error("IMAGE changed by a failed persist")
	}
	if _, err := os.Stat(img + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary image left behind: %v", err)
	}
	if d := testtree.CompareWith(view, target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
		t.Errorf("the overlay lost changes: %v", d)
	}
	// A failed persist leaves the target writable again.
	p := filepath.Join(target, ".after-failed-persist")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Errorf("target after a failed persist: %v", err)
	} else {
		os.Remove(p)
	}
}

// TestPersistDiskFull writes the image on a tmpfs too small for a second
// generation: the kernel's own ENOSPC.
func TestPersistDiskFull(t *testing.T) {
	e := newEnv(t)
	_, img0 := portageImage(t, 0.01)
	fi, err := os.Stat(img0)
	if err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(e.dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	size := fi.Size() + fi.Size()/2
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(small, unix.MNT_DETACH)
	img := filepath.Join(small, "gentoo.sqfs")
	copyTo(t, img0, img)
	st := e.mount(img + ":" + e.target + ":layers=0")
	syncChanges(t, e.target)
	view := filepath.Join(t.TempDir(), "view")
	copyTo(t, e.target, view)
	_, err = Persist(st, PersistOptions{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("persist on a full disk: %v, want ENOSPC", err)
	}
	checkUntouched(t, img, img0, e.target, view)
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir, Discard: true}); err != nil {
		t.Fatal(err)
	}
}

func TestPersistCorruptImage(t *testing.T) {
	e := newEnv(t)
	_, img := portageImage(t, 0.01)
	st := e.mount(img + ":" + e.target)
	syncChanges(t, e.target)
	view := filepath.Join(t.TempDir(), "view")
	copyTo(t, e.target, view)
	// Damage the tables at the end of the image, as a failing disk would;
	// the page cache must not hide it.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	junk := bytes.Repeat([]byte{0xA5}, 64<<10)
	if _, err := f.WriteAt(junk, fi.Size()-int64(len(junk))-4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	corrupt := filepath.Join(t.TempDir(), "corrupt.sqfs")
	copyTo(t, img, corrupt)
	exec.Command("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches").Run()
	_, err = Persist(st, PersistOptions{})
	if err == nil {
		t.Fatal("persist of a corrupt image succeeded")
	}
	t.Logf("persist of a corrupt image: %v", err)
	if _, err := os.Stat(img + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary image left behind: %v", err)
	}
	if !sameBytes(t, img, corrupt) {
		t.Error("IMAGE changed by a failed persist")
	}
	if d := testtree.CompareWith(filepath.Join(st.UpperPath(), "NEWS"), filepath.Join(view, "NEWS"), testtree.CompareOptions{}); len(d) > 0 {
		t.Errorf("upper lost changes: %v", d)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds squashportage once for tests that run it as a process.
func binary(t *testing.T) string {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sp-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "squashportage")
		out, err := exec.Command("go", "build", "-o", binPath, "../init").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// killedPersist runs `squashportage persist` on e's target and kills it
// with SIGKILL after delay; finished says it had completed by then.
func killedPersist(t *testing.T, bin string, e *env, delay time.Duration) (finished bool, out string) {
	t.Helper()
	cmd := exec.Command(bin, "persist", "--state-dir", e.stateDir, e.target)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	cmd.Process.Kill()
	return cmd.Wait() == nil, b.String()
}

// TestPersistKilled kills `squashportage persist` with SIGKILL at many
// moments: IMAGE must always mount and show the old or the new view, and
// whatever IMAGE lacks must still be in the overlay.
func TestPersistKilled(t *testing.T) {
	bin := binary(t)
	src, img0 := portageImage(t, 0.03)
	var sawOld, sawNew int
	finished := false
	for _, delay := range []time.Duration{0, 5, 20, 50, 100, 200, 350, 500, 800, 1200, 2000, 4000} {
		if finished {
			break
		}
		delay *= time.Millisecond
		done := t.Run(fmt.Sprint(delay), func(t *testing.T) {
			e := newEnv(t)
			img := filepath.Join(e.dir, "gentoo.sqfs")
			copyTo(t, img0, img)
			st := e.mount(img + ":" + e.target + ":layers=0")
			syncChanges(t, e.target)
			view := filepath.Join(t.TempDir(), "view")
			copyTo(t, e.target, view)

			// finished: the persist completed before the kill.
			var out string
			finished, out = killedPersist(t, bin, e, delay)

			switch {
			case imageEquals(t, img, view):
				sawNew++
			case imageEquals(t, img, src):
				sawOld++
				// IMAGE is old: the changes must still be in the overlay.
				if d := testtree.CompareWith(view, e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
					t.Fatalf("killed at %v: IMAGE is old and the overlay lost changes: %v", delay, d)
				}
			default:
				t.Fatalf("killed at %v: IMAGE is neither the old nor the new view\n%s", delay, out)
			}
			// A later persist finishes the job and cleans up after the dead
			// one, unless the kill came during the remount, after IMAGE
			// was replaced: then the mount is gone and persist says so.
			st, err := Load(e.stateDir, e.target)
			if err == nil {
				if _, err := Persist(st, PersistOptions{}); err != nil {
					if !strings.Contains(err.Error(), "is gone") {
						t.Fatalf("persist after a kill: %v", err)
					}
					Umount(e.target, UmountOptions{StateDir: e.stateDir, Lazy: true})
				}
			}
			if !imageEquals(t, img, view) {
				t.Fatal("after the kill and a new persist, IMAGE is not the new view")
			}
			if _, err := os.Stat(img + ".new"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary image left behind after a full persist: %v", err)
			}
		})
		if !done {
			break
		}
	}
	t.Logf("IMAGE was old after %d kills, new after %d", sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Errorf("the kills did not cover both outcomes (old %d, new %d)", sawOld, sawNew)
	}
}

// TestPersistHeldDiskUpper: a process inside the target does not stop
// persist from swapping in the new stack (the holder keeps the old one,
// read-only), and the disk upper starts afresh over the new image: a file
// created before the persist and deleted after it stays deleted, across
// an unmount and a mount too.
func TestPersistHeldDiskUpper(t *testing.T) {
	for _, onTop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stacked=%v", onTop), func(t *testing.T) {
			e := newEnv(t)
			img := makeImage(t, testFiles)
			upperDir := filepath.Join(e.dir, "changes")
			spec := img + ":" + e.target + ":upper=" + upperDir
			st := e.mount(spec)
			writeFile(t, filepath.Join(e.target, "new1"), "x")

			holder := exec.Command("sleep", "60")
			holder.Dir = e.target
			if err := holder.Start(); err != nil {
				t.Fatal(err)
			}
			res, err := Persist(st, PersistOptions{stackOnTop: onTop})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Written || !res.Remounted || res.Stacked != onTop {
				t.Fatalf("persist of a held target: %+v", res)
			}
			// The holder sees the old stack, frozen.
			err = os.WriteFile(fmt.Sprintf("/proc/%d/cwd/held", holder.Process.Pid), []byte("x"), 0o644)
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("write through the replaced stack: %v, want EROFS", err)
			}
			holder.Process.Kill()
			holder.Wait()
			if ok, _ := isEmptyDir(st.UpperPath()); !ok {
				t.Error("disk upper not empty after persist")
			}
			if err := os.Remove(filepath.Join(e.target, "new1")); err != nil {
				t.Fatal(err)
			}
			if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
				t.Fatal(err)
			}
			if ok, _ := isEmptyDir(e.target); !ok {
				t.Fatal("files beneath the mount point after umount")
			}
			st = e.mount(spec)
			if _, err := os.Lstat(filepath.Join(e.target, "new1")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a deleted file came back after the remount: %v", err)
			}
			if _, err := Persist(st, PersistOptions{}); err != nil {
				t.Fatal(err)
			}
			mnt := t.TempDir()
			privileged.MountSquashfs(t, img, mnt)
			if _, err := os.Lstat(filepath.Join(mnt, "new1")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the new image holds a deleted file: %v", err)
			}
			if readFile(t, filepath.Join(mnt, "a.txt")) != "alpha\n" {
				t.Fatal("the new image lost a.txt")
			}
		})
	}
}

// TestPersistConcurrentWriters runs persists while two writers keep
// creating, rewriting and closing files in the target: every file whose
// close returned is in the target afterwards and in the image after the
// next persist, nothing lands beneath the mount point, and writers see
// nothing worse than EROFS while a persist holds the target.
func TestPersistConcurrentWriters(t *testing.T) {
	for _, v := range []struct {
		name, opts string
		onTop      bool
	}{
		{"image", ":layers=0", false},
		{"image-stacked", ":layers=0", true},
		{"layers", ":compact=1000%", false},
	} {
		onTop := v.onTop
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t)
			img := makeImage(t, testFiles)
			spec := img + ":" + e.target + v.opts
			st := e.mount(spec)

			var (
				mu      sync.Mutex
				closed  []string
				last    string
				erofs   int
				stop    = make(chan struct{})
				wg      sync.WaitGroup
				badErrs []error
			)
			// retry runs op until it succeeds, waiting out EROFS.
			retry := func(op func() error) bool {
				for {
					err := op()
					if err == nil {
						return true
					}
					if !errors.Is(err, syscall.EROFS) {
						mu.Lock()
						badErrs = append(badErrs, err)
						mu.Unlock()
						return false
					}
					mu.Lock()
					erofs++
					mu.Unlock()
					select {
					case <-stop:
						return false
					default:
						time.Sleep(time.Millisecond)
					}
				}
			}
			// writer runs step(0), step(1), ... until stop or a failed step.
			writer := func(step func(i int) bool) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if !step(i) {
							return
						}
						time.Sleep(200 * time.Microsecond)
					}
				}()
			}
			writer(func(i int) bool { // creates files, a new directory every 20
				dir := filepath.Join(e.target, "w", fmt.Sprintf("d%03d", i/20))
				name := filepath.Join(dir, fmt.Sprintf("f%05d", i))
				if !retry(func() error { return os.MkdirAll(dir, 0o755) }) ||
					!retry(func() error { return os.WriteFile(name, []byte(name), 0o644) }) {
					return false
				}
				mu.Lock()
				closed = append(closed, name)
				mu.Unlock()
				return true
			})
			writer(func(i int) bool { // rewrites a file of the image
				v := fmt.Sprintf("version %d\n", i)
				if !retry(func() error { return os.WriteFile(filepath.Join(e.target, "a.txt"), []byte(v), 0o644) }) {
					return false
				}
				mu.Lock()
				last = v
				mu.Unlock()
				return true
			})
			written := 0
			for range 6 {
				time.Sleep(30 * time.Millisecond)
				res, err := Persist(st, PersistOptions{stackOnTop: onTop, WriterWait: 10 * time.Second})
				if err != nil {
					close(stop)
					wg.Wait()
					t.Fatal(err)
				}
				if res.Written {
					written++
				}
			}
			close(stop)
			wg.Wait()
			if len(badErrs) > 0 {
				t.Fatalf("writers saw errors other than EROFS: %v", badErrs[:min(5, len(badErrs))])
			}
			if written < 3 || len(closed) < 50 {
				t.Fatalf("too little concurrency to prove anything: %d persists wrote, %d files closed", written, len(closed))
			}
			t.Logf("%d persists, %d files closed, %d EROFS retries", written, len(closed), erofs)
			check := func(root, what string) {
				t.Helper()
				missing := 0
				for _, p := range closed {
					rel, _ := filepath.Rel(e.target, p)
					b, err := os.ReadFile(filepath.Join(root, rel))
					if err != nil || string(b) != p {
						missing++
						if missing <= 3 {
							t.Errorf("%s: %s lost: %v", what, rel, err)
						}
					}
				}
				if missing > 0 {
					t.Errorf("%s: %d of %d closed files lost", what, missing, len(closed))
				}
				if got := readFile(t, filepath.Join(root, "a.txt")); got != last {
					t.Errorf("%s: a.txt = %q, want the last write %q", what, got, last)
				}
			}
			check(e.target, "target")
			res, err := Persist(st, PersistOptions{stackOnTop: onTop})
			if err != nil {
				t.Fatal(err)
			}
			if res.Layer != "" {
				// What is on disk is the stack: mount it afresh.
				if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
					t.Fatal(err)
				}
				st = e.mount(spec)
				check(e.target, "stack after a fresh mount")
			} else {
				mnt := t.TempDir()
				privileged.MountSquashfs(t, img, mnt)
				check(mnt, "image")
			}
			// Nothing pending: umount needs no --discard, and the bare
			// mount point holds nothing written while it was covered.
			if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
				t.Fatal(err)
			}
			if ok, _ := isEmptyDir(e.target); !ok {
				t.Fatal("files written beneath the mount point")
			}
		})
	}
}

// TestPersistFullUpper: a tmpfs upper that ran full is flagged by Status
// and makes persist refuse, naming the upper, until --force.
func TestPersistFullUpper(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target + ":size=1m")
	rep, err := Status(st)
	if err != nil || rep.UpperFull {
		t.Fatalf("fresh upper: full=%v, %v", rep.UpperFull, err)
	}
	// Fill it the way a sync would: until a write fails for room.
	big := bytes.Repeat([]byte("x"), 64<<10)
	var werr error
	for i := 0; werr == nil && i < 100; i++ {
		werr = os.WriteFile(filepath.Join(e.target, fmt.Sprintf("fill%02d", i)), big, 0o644)
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("filling a 1m upper: %v, want ENOSPC", werr)
	}
	rep, err = Status(st)
	if err != nil || !rep.UpperFull {
		t.Fatalf("full upper: full=%v (%d of %d bytes), %v", rep.UpperFull, rep.UpperUsed, rep.UpperLimit, err)
	}
	orig := filepath.Join(t.TempDir(), "orig")
	copyTo(t, img, orig)
	_, err = Persist(st, PersistOptions{})
	if err == nil || !strings.Contains(err.Error(), "ran full") || !strings.Contains(err.Error(), st.UpperPath()) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("persist of a full upper: %v", err)
	}
	if !sameBytes(t, img, orig) {
		t.Fatal("IMAGE changed by a refused persist")
	}
	res, err := Persist(st, PersistOptions{Force: true})
	if err != nil || !res.Written {
		t.Fatalf("persist --force of a full upper: %+v, %v", res, err)
	}
	if rep, err := Status(st); err != nil || rep.UpperFull {
		t.Errorf("after persist: full=%v, %v", rep.UpperFull, err)
	}
}

// TestPersistLayers: with layers=3, three persists each write a small
// delta layer (IMAGE untouched, the view the same, also after a fresh
// mount of the stack), and the fourth folds the stack into a new IMAGE.
func TestPersistLayers(t *testing.T) {
	e := newEnv(t)
	_, img := portageImage(t, 0.01)
	orig := filepath.Join(t.TempDir(), "orig")
	copyTo(t, img, orig)
	spec := img + ":" + e.target + ":layers=3"
	st := e.mount(spec)
	imgSize := fileSize(t, img)
	for round := 1; round <= 4; round++ {
		syncChanges(t, e.target)
		writeFile(t, filepath.Join(e.target, fmt.Sprintf("round-%d", round)), "x")
		if round == 2 {
			// Delete what the first layer added: a whiteout in a layer
			// over a layer.
			if err := os.Remove(filepath.Join(e.target, "round-1")); err != nil {
				t.Fatal(err)
			}
		}
		view := filepath.Join(t.TempDir(), "view")
		copyTo(t, e.target, view)
		res, err := Persist(st, PersistOptions{})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: layer %q, %d layers, image %d bytes, %d bytes written", round, res.Layer, res.Layers, res.ImageSize, res.BytesWritten)
		if round <= 3 {
			if res.Layer == "" || res.Layers != round || !sameBytes(t, img, orig) {
				t.Fatalf("round %d: want layer %d over an untouched IMAGE: %+v", round, round, res)
			}
			if res.BytesWritten > imgSize/4 {
				t.Errorf("round %d: %d bytes written for a layer, image %d", round, res.BytesWritten, imgSize)
			}
		} else {
			if res.Layer != "" || sameBytes(t, img, orig) {
				t.Fatalf("round 4: want a fold into a new IMAGE: %+v", res)
			}
			if left, _ := filepath.Glob(img + ".layer-*"); len(left) != 0 {
				t.Errorf("layers left after the fold: %v", left)
			}
		}
		if ok, _ := isEmptyDir(st.UpperPath()); !ok {
			t.Errorf("round %d: upper not empty after persist", round)
		}
		if d := testtree.CompareWith(view, e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
			t.Fatalf("round %d: the stack does not show the view persisted: %v", round, d)
		}
		// A fresh mount of the stack (as at the next boot) shows it too.
		if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
			t.Fatal(err)
		}
		st = e.mount(spec)
		if round <= 3 && len(st.Layers) != round {
			t.Fatalf("round %d: mounted %d layers", round, len(st.Layers))
		}
		if d := testtree.CompareWith(view, e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
			t.Fatalf("round %d: after a remount the stack differs: %v", round, d)
		}
	}
	mnt := t.TempDir()
	privileged.MountSquashfs(t, img, mnt)
	if _, err := os.Lstat(filepath.Join(mnt, "round-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fold kept a file a layer deleted: %v", err)
	}
	for _, r := range []string{"round-2", "round-3", "round-4"} {
		if _, err := os.Lstat(filepath.Join(mnt, r)); err != nil {
			t.Errorf("the fold lost %s: %v", r, err)
		}
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestPersistLayerKilled kills a layer-writing persist at many moments:
// a fresh mount of the stack (as after a power cut) always shows the old
// or the new view, and what it lacks is still in the live overlay.
func TestPersistLayerKilled(t *testing.T) {
	bin := binary(t)
	_, img0 := portageImage(t, 0.02)
	var sawOld, sawNew int
	finished := false
	for _, delay := range []time.Duration{0, 20, 50, 120, 300, 3000} {
		if finished {
			break
		}
		delay *= time.Millisecond
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			e := newEnv(t)
			img := filepath.Join(e.dir, "gentoo.sqfs")
			copyTo(t, img0, img)
			spec := img + ":" + e.target + ":layers=8"
			st := e.mount(spec)
			// One layer already there: the new one goes on top of it.
			writeFile(t, filepath.Join(e.target, "first"), "1")
			if _, err := Persist(st, PersistOptions{}); err != nil {
				t.Fatal(err)
			}
			oldView := filepath.Join(t.TempDir(), "old")
			copyTo(t, e.target, oldView)
			syncChanges(t, e.target)
			newView := filepath.Join(t.TempDir(), "new")
			copyTo(t, e.target, newView)

			var out string
			finished, out = killedPersist(t, bin, e, delay)

			// The live overlay (repaired by the next lock holder) still
			// shows the new view.
			if err := Umount(e.target, UmountOptions{StateDir: e.stateDir, Discard: true}); err != nil {
				t.Fatal(err)
			}
			// Which is what survives a power cut: the stack on disk.
			st = e.mount(spec)
			switch {
			case len(testtree.CompareWith(newView, e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 1})) == 0:
				sawNew++
			case len(testtree.CompareWith(oldView, e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 1})) == 0:
				sawOld++
			default:
				t.Fatalf("killed at %v: the stack shows neither the old nor the new view\n%s", delay, out)
			}
			if left, _ := filepath.Glob(img + ".layer-*.new"); len(left) > 0 {
				// Harmless (no record names it), but a persist removes it.
				writeFile(t, filepath.Join(e.target, "again"), "x")
				if _, err := Persist(st, PersistOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Logf("the stack was old after %d kills, new after %d", sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Errorf("the kills did not cover both outcomes (old %d, new %d)", sawOld, sawNew)
	}
}

// TestCompactAndRollback: compact folds the layers into a new image; a
// rollback drops the newest layer, or goes back to IMAGE.old; each is
// checked by mounting what is left.
func TestCompactAndRollback(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	spec := img + ":" + e.target + ":layers=8,compact=1000%"
	st := e.mount(spec)
	views := []string{filepath.Join(t.TempDir(), "v0")}
	copyTo(t, e.target, views[0])
	for i := 1; i <= 2; i++ {
		writeFile(t, filepath.Join(e.target, fmt.Sprintf("l%d", i)), "x")
		if res, err := Persist(st, PersistOptions{}); err != nil || res.Layer == "" {
			t.Fatalf("layer %d: %+v, %v", i, res, err)
		}
		views = append(views, filepath.Join(t.TempDir(), fmt.Sprintf("v%d", i)))
		copyTo(t, e.target, views[i])
	}
	// Rolling back a mounted image is refused.
	if _, err := Rollback(img, e.stateDir); err == nil || !strings.Contains(err.Error(), "umount") {
		t.Fatalf("rollback of a mounted image: %v", err)
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	msg, err := Rollback(img, e.stateDir)
	if err != nil || !strings.Contains(msg, "1 layers left") {
		t.Fatalf("rollback of a layer: %q, %v", msg, err)
	}
	st = e.mount(spec)
	if d := testtree.CompareWith(views[1], e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
		t.Fatalf("after dropping layer 2 the stack differs from view 1: %v", d)
	}
	// Compact, with nothing pending: one layer folded into a new IMAGE.
	before := filepath.Join(t.TempDir(), "before")
	copyTo(t, img, before)
	res, err := Persist(st, PersistOptions{Compact: true})
	if err != nil || res.Layer != "" || !res.Written || sameBytes(t, img, before) {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	if left, _ := filepath.Glob(img + ".layer-????"); len(left) != 0 {
		t.Errorf("layers left after compact: %v", left)
	}
	if len(st.Layers) != 0 {
		t.Errorf("still %d layers mounted after compact", len(st.Layers))
	}
	if d := testtree.CompareWith(views[1], e.target, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 5}); len(d) > 0 {
		t.Fatalf("after compact the view differs: %v", d)
	}
	if !imageEquals(t, img, views[1]) {
		t.Fatal("the compacted image is not the view")
	}
	// Rollback past the compaction: IMAGE.old, the image without layers.
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	if msg, err := Rollback(img, e.stateDir); err != nil || !strings.Contains(msg, "previous generation") {
		t.Fatalf("rollback to IMAGE.old: %q, %v", msg, err)
	}
	if !sameBytes(t, img, before) || sameBytes(t, img+".rolled-back", before) {
		t.Fatal("after the rollback IMAGE is not the generation before the compaction")
	}
	if !imageEquals(t, img, views[0]) {
		t.Fatal("after the rollback IMAGE does not show the first view")
	}
}

// TestUpperChanged: a fresh upper is no change, over the image or over a
// stack of layers (whose root the upper root copies); a new file is, and
// so is a changed root.
func TestUpperChanged(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target + ":compact=1000%")
	check := func(want bool, what string) {
		t.Helper()
		if got, err := upperChanged(st); err != nil || got != want {
			t.Fatalf("%s: changed %v, %v; want %v", what, got, err, want)
		}
	}
	check(false, "fresh overlay")
	writeFile(t, filepath.Join(e.target, "b"), "b")
	check(true, "a new file")
	if res, err := Persist(st, PersistOptions{}); err != nil || res.Layer == "" {
		t.Fatalf("persist: %+v, %v", res, err)
	}
	check(false, "fresh upper over a layer")
	if err := os.Chmod(e.target, 0o711); err != nil {
		t.Fatal(err)
	}
	check(true, "the root's mode changed")
}
