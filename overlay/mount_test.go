package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
)

func TestMountOverlay(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target)

	if got := readFile(t, filepath.Join(e.target, "sub/b.txt")); got != "beta\n" {
		t.Errorf("sub/b.txt = %q", got)
	}
	var s unix.Stat_t
	if err := unix.Stat(e.target, &s); err != nil {
		t.Fatal(err)
	}
	if s.Uid != imageRootUID || s.Gid != imageRootGID || s.Mode&0o7777 != imageRootMode || s.Mtim.Sec != imageRootTime.Unix() {
		t.Errorf("target root: uid %d gid %d mode %o mtime %d; want the image root's %d %d %o %d",
			s.Uid, s.Gid, s.Mode&0o7777, s.Mtim.Sec, imageRootUID, imageRootGID, imageRootMode, imageRootTime.Unix())
	}

	writeFile(t, filepath.Join(e.target, "new.txt"), "new\n")
	if got := readFile(t, filepath.Join(st.UpperPath(), "new.txt")); got != "new\n" {
		t.Errorf("upper/new.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(st.LowerPath(), "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new.txt in lower: %v", err)
	}

	for _, c := range []struct {
		dir    string
		fstype string
		opts   []string
	}{
		{e.target, "overlay", []string{"nodev", "nosuid", "noexec"}},
		{st.Lower, "squashfs", []string{"ro", "nodev", "nosuid", "noexec"}},
		{st.RW, "tmpfs", []string{"nodev", "nosuid"}},
	} {
		m := mountEntry(t, c.dir)
		if m.FSType != c.fstype {
			t.Errorf("%s: fstype %s, want %s", c.dir, m.FSType, c.fstype)
		}
		for _, o := range c.opts {
			if !hasOption(m.Options, o) {
				t.Errorf("%s: options %s lack %s", c.dir, m.Options, o)
			}
		}
	}
	if m := mountEntry(t, st.RW); !strings.Contains(m.SuperOpts, "size=") {
		t.Errorf("tmpfs options %s: no size", m.SuperOpts)
	}

	// The record.
	loaded, err := Load(e.stateDir, e.target)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Image != img || loaded.Loop != st.Loop || loaded.UpperKind != KindTmpfs || loaded.Spec != st.Spec || loaded.MountedAt.IsZero() {
		t.Errorf("state %+v", loaded)
	}
	if got, _ := loopdev.BackingFile(st.Loop); got != img {
		t.Errorf("%s backing file %q, want %q", st.Loop, got, img)
	}
	list, err := List(e.stateDir)
	if err != nil || len(list) != 1 || list[0].Target != e.target {
		t.Errorf("List = %v, %v", list, err)
	}

	// A second mount of the same target is refused.
	sp, _ := ParseSpec(img + ":" + e.target)
	if _, err := Mount(sp, e.opts()); err == nil || !strings.Contains(err.Error(), "already managed") {
		t.Errorf("second mount: %v", err)
	}
	// The same image at a second target is refused, naming the first.
	other := filepath.Join(e.dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	sp2, _ := ParseSpec(img + ":" + other)
	if _, err := Mount(sp2, e.opts()); err == nil || !strings.Contains(err.Error(), "already mounted at "+e.target) {
		t.Errorf("mount of the image at a second target: %v", err)
	}
	if _, ok, _ := mountAt(other); ok {
		t.Error("second target mounted")
	}

	// Changes in RAM are not dropped silently.
	err = Umount(e.target, UmountOptions{StateDir: e.stateDir})
	if !errors.Is(err, ErrPending) || !strings.Contains(err.Error(), "--discard") || !strings.Contains(err.Error(), "persist") {
		t.Fatalf("Umount with pending changes: %v", err)
	}
	if _, ok, _ := mountAt(e.target); !ok {
		t.Fatal("target unmounted by a refused Umount")
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir, Discard: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := mountAt(e.target); ok {
		t.Error("target still mounted after Umount")
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, st.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir of the mount left: %v", err)
	}
	if _, err := Load(e.stateDir, e.target); !errors.Is(err, ErrNotManaged) {
		t.Errorf("Load after Umount: %v", err)
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); !errors.Is(err, ErrNotManaged) {
		t.Errorf("second Umount: %v", err)
	}
}

func TestMountExec(t *testing.T) {
	tests := []struct {
		spec   string
		noexec bool
	}{
		{"", true},
		{":exec", false},
		{":ro", true},
		{":ro,exec", false},
	}
	img := makeImage(t, testFiles)
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			e := newEnv(t)
			st := e.mount(img + ":" + e.target + tt.spec)
			for _, d := range []string{e.target, st.Lower} {
				if got := hasOption(mountEntry(t, d).Options, "noexec"); got != tt.noexec {
					t.Errorf("%s noexec = %v, want %v", d, got, tt.noexec)
				}
			}
		})
	}
}

func TestMountReadOnly(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target + ":ro")
	if st.UpperKind != KindNone || st.Lower != e.target {
		t.Errorf("state %+v", st)
	}
	m := mountEntry(t, e.target)
	if m.FSType != "squashfs" || !hasOption(m.Options, "ro") {
		t.Errorf("target mount %+v", m)
	}
	if got := readFile(t, filepath.Join(e.target, "a.txt")); got != "alpha\n" {
		t.Errorf("a.txt = %q", got)
	}
	err := os.WriteFile(filepath.Join(e.target, "x"), nil, 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to ro target: %v, want EROFS", err)
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.stateDir)); len(ents) != 1 { // the lock file
		t.Errorf("state dir after umount: %v", ents)
	}
}

func TestMountErrors(t *testing.T) {
	img := makeImage(t, testFiles)
	tests := []struct {
		name  string
		setup func(e *env) (spec string, force bool)
		want  string
	}{
		{"missing image", func(e *env) (string, bool) {
			return e.dir + "/nope.sqfs:" + e.target, false
		}, "nope.sqfs: no such file"},
		{"not an image", func(e *env) (string, bool) {
			p := e.dir + "/junk.sqfs"
			writeFile(e.t, p, strings.Repeat("junk", 100))
			return p + ":" + e.target, false
		}, "junk.sqfs: not a squashfs image"},
		{"image is a directory", func(e *env) (string, bool) {
			return e.dir + ":" + e.target + "/x", false
		}, "not a regular file"},
		{"missing target", func(e *env) (string, bool) {
			return img + ":" + e.dir + "/nowhere", false
		}, "nowhere: no such directory"},
		{"target is a file", func(e *env) (string, bool) {
			writeFile(e.t, e.dir+"/file", "x")
			return img + ":" + e.dir + "/file", false
		}, "file: not a directory"},
		{"target not empty", func(e *env) (string, bool) {
			for _, n := range []string{"b", "a", "c", "d", "e", "f", "g"} {
				writeFile(e.t, filepath.Join(e.target, n), "x")
			}
			return img + ":" + e.target, false
		}, "is not empty (a, b, c, d, e, ...): the mount would hide its contents; move them away or use --force"},
		{"upper and work on different filesystems", func(e *env) (string, bool) {
			up := e.dir + "/up"
			for _, d := range []string{up, up + "/upper", up + "/work"} {
				if err := os.Mkdir(d, 0o755); err != nil {
					e.t.Fatal(err)
				}
			}
			if err := unix.Mount("tmpfs", up+"/work", "tmpfs", 0, "size=1m"); err != nil {
				e.t.Fatal(err)
			}
			e.t.Cleanup(func() { _ = unmountDetach(up + "/work") })
			return img + ":" + e.target + ":upper=" + up, false
		}, "different filesystems"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			spec, force := tt.setup(e)
			sp, err := ParseSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := Mounts()
			_, err = Mount(sp, MountOptions{StateDir: e.stateDir, Force: force})
			if err == nil {
				t.Fatal("Mount succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			after, _ := Mounts()
			if len(after) != len(before) {
				t.Errorf("mount count %d before, %d after the failed Mount", len(before), len(after))
			}
			if list, _ := List(e.stateDir); len(list) != 0 {
				t.Errorf("records left: %v", list)
			}
			if ents, _ := os.ReadDir(e.stateDir); len(ents) > 1 {
				t.Errorf("state dir holds more than the lock: %v", ents)
			}
		})
	}
}

func TestMountForce(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	writeFile(t, filepath.Join(e.target, "hidden"), "x")
	sp, _ := ParseSpec(img + ":" + e.target)
	st, err := Mount(sp, MountOptions{StateDir: e.stateDir, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.target, "hidden")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hidden file visible through the mount: %v", err)
	}
	if err := Umount(st.Target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(e.target, "hidden")); got != "x" {
		t.Errorf("hidden file after umount: %q", got)
	}
}

// startHolder runs sleep with its cwd in dir, and kills it at the end.
func startHolder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestUmountBusy(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	e.mount(img + ":" + e.target)
	cmd := startHolder(t, filepath.Join(e.target, "sub"))

	err := Umount(e.target, UmountOptions{StateDir: e.stateDir})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Umount of busy target: %v, want ErrBusy", err)
	}
	want := fmt.Sprintf("pid %d (sleep): cwd", cmd.Process.Pid)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--lazy") {
		t.Errorf("error %q\nwant it to contain %q and --lazy", err, want)
	}
	if mountEntry(t, e.target).FSType != "overlay" {
		t.Error("refused Umount changed the mount")
	}
	if _, err := Load(e.stateDir, e.target); err != nil {
		t.Errorf("refused Umount dropped the record: %v", err)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
}

func TestUmountLazy(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target)
	cmd := startHolder(t, filepath.Join(e.target, "sub"))
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := mountAt(e.target); ok {
		t.Error("target still mounted after lazy Umount")
	}
	// The holder keeps the detached tree, and with it the loop device.
	if got, _ := loopdev.BackingFile(st.Loop); got != img {
		t.Errorf("%s detached while still in use", st.Loop)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// env's cleanup checks that the loop device goes away now.
}

func TestMountUpperDir(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	up := filepath.Join(e.dir, "persistent")
	spec := img + ":" + e.target + ":upper=" + up
	st := e.mount(spec)
	if st.UpperKind != KindDir || st.UpperPath() != up+"/upper" {
		t.Errorf("state %+v", st)
	}
	writeFile(t, filepath.Join(e.target, "kept"), "k")
	if err := os.Chmod(e.target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, up+"/upper/kept"); got != "k" {
		t.Errorf("upper/kept = %q", got)
	}

	// Mounted again, the changes are back and the root keeps its changed
	// mode rather than the image's.
	e.mount(spec)
	if got := readFile(t, filepath.Join(e.target, "kept")); got != "k" {
		t.Errorf("kept = %q", got)
	}
	if fi, err := os.Stat(e.target); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("target root mode: %v, %v", fi.Mode(), err)
	}
}

func TestTmpfsFull(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target + ":size=1m")
	err := os.WriteFile(filepath.Join(e.target, "big"), make([]byte, 2<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 2 MB into a 1 MB upper: %v, want ENOSPC", err)
	}
	rep, err := Status(st)
	if err != nil {
		t.Fatal(err)
	}
	if rep.UpperLimit != 1<<20 || rep.UpperUsed < rep.UpperLimit-64<<10 {
		t.Errorf("upper usage %d of %d, want (nearly) all of 1 MiB", rep.UpperUsed, rep.UpperLimit)
	}
}

func TestStatusCounts(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	st := e.mount(img + ":" + e.target)
	tgt := func(p string) string { return filepath.Join(e.target, p) }

	writeFile(t, tgt("a.txt"), "changed alpha\n")          // changed, 14 bytes
	writeFile(t, tgt("new.txt"), "new\n")                  // new, 4 bytes
	if err := os.Mkdir(tgt("newdir"), 0o755); err != nil { // new
		t.Fatal(err)
	}
	writeFile(t, tgt("newdir/f"), "ff")               // new, 2 bytes
	if err := os.Remove(tgt("del.txt")); err != nil { // deleted
		t.Fatal(err)
	}
	if err := os.RemoveAll(tgt("sub")); err != nil { // deleted (whiteout of a dir)
		t.Fatal(err)
	}
	if err := os.RemoveAll(tgt("cat/pkg")); err != nil {
		t.Fatal(err)
	}
	// Made again: opaque, hides x and y.
	if err := os.Mkdir(tgt("cat/pkg"), 0o755); err != nil { // changed + 2 deleted
		t.Fatal(err)
	}
	writeFile(t, tgt("cat/pkg/x"), "new ebuild\n") // changed: x is in the lower, 11 bytes

	rep, err := Status(st)
	if err != nil {
		t.Fatal(err)
	}
	want := Changes{Changed: 3, New: 3, Deleted: 3, Bytes: 14 + 4 + 2 + 11}
	got := Changes{Changed: rep.Changed, New: rep.New, Deleted: rep.Deleted, Bytes: rep.PendingBytes}
	if got != want {
		t.Errorf("changes %+v, want %+v", got, want)
	}
	if rep.Compressor != "gzip" || rep.BlockSize != 128<<10 || rep.ImageSize == 0 || !rep.Mounted || rep.UpperKind != KindTmpfs {
		t.Errorf("report %+v", rep)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir, "/x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(dir, "/x")
	want := fmt.Sprintf("persist of /x already running (pid %d)", os.Getpid())
	if !errors.Is(err, ErrLocked) || err == nil || err.Error() != want {
		t.Errorf("second Lock: %v, want %q", err, want)
	}
	// Other targets are independent.
	unlockY, err := LockWith(dir, "/y", LockOptions{Op: "umount"})
	if err != nil {
		t.Fatal(err)
	}
	unlockY()

	start := time.Now()
	_, err = LockWith(dir, "/x", LockOptions{Op: "umount", Wait: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || time.Since(start) < 200*time.Millisecond || !strings.Contains(err.Error(), "still running after 200ms") {
		t.Errorf("waiting Lock: %v after %v", err, time.Since(start))
	}

	done := make(chan error)
	go func() {
		u, err := LockWith(dir, "/x", LockOptions{Op: "umount", Wait: 5 * time.Second})
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	unlock()
	if err := <-done; err != nil {
		t.Errorf("Lock after release: %v", err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	// flock(1) from util-linux holds the lock in another process.
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatal("flock(1) not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, ID("/x")+".lock")
	cmd := exec.Command("flock", path, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		unlock, err := Lock(dir, "/x")
		if errors.Is(err, ErrLocked) {
			break
		}
		if err == nil {
			unlock() // flock(1) has not taken it yet
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lock while flock(1) holds it: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRelativeStateDir: a state directory given relative to the working
// directory still lets persist swap the mount and umount clean it up (the
// kernel reports mount points absolute).
func TestRelativeStateDir(t *testing.T) {
	e := newEnv(t)
	t.Chdir(e.dir)
	img := makeImage(t, testFiles)
	sp, err := ParseSpec(img + ":" + e.target)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Mount(sp, MountOptions{StateDir: "state"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.target, "new"), "n")
	res, err := Persist(st, PersistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || !res.Remounted {
		t.Fatalf("persist: %+v", res)
	}
	if err := Umount(e.target, UmountOptions{StateDir: "state"}); err != nil {
		t.Fatal(err)
	}
}

// TestToRAM: toram serves the image and its layers from copies in RAM,
// persist still writes to the medium, and a machine short of memory is
// refused with a message that says what to do.
func TestToRAM(t *testing.T) {
	e := newEnv(t)
	img := makeImage(t, testFiles)
	spec := img + ":" + e.target + ":toram,layers=4,compact=1000%"
	st := e.mount(spec)
	if back, _ := loopdev.BackingFile(st.Loop); st.RAM == "" || !within(back, st.RAM) {
		t.Fatalf("toram: the loop device serves %s, not a copy in %q", back, st.RAM)
	}
	if m := mountEntry(t, st.RAM); m.FSType != "tmpfs" {
		t.Fatalf("toram: %s is a %s", st.RAM, m.FSType)
	}
	writeFile(t, filepath.Join(e.target, "new"), "n")
	res, err := Persist(st, PersistOptions{})
	if err != nil || res.Layer == "" {
		t.Fatalf("persist with toram: %+v, %v", res, err)
	}
	if _, err := os.Stat(res.Layer); err != nil || within(res.Layer, e.stateDir) {
		t.Fatalf("the layer is not on the medium: %s, %v", res.Layer, err)
	}
	if len(st.Layers) != 1 {
		t.Fatalf("%d layers mounted", len(st.Layers))
	}
	if got := readFile(t, filepath.Join(e.target, "new")); got != "n" {
		t.Errorf("new = %q", got)
	}
	if err := Umount(e.target, UmountOptions{StateDir: e.stateDir}); err != nil {
		t.Fatal(err)
	}
	sp, _ := ParseSpec(spec)
	opts := e.opts()
	opts.memFree = func() int64 { return 1 << 20 }
	_, err = Mount(sp, opts)
	if err == nil || !strings.Contains(err.Error(), "toram") || !strings.Contains(err.Error(), "drop toram") {
		t.Fatalf("toram with 1 MiB free: %v", err)
	}
	if _, ok, _ := mountAt(e.target); ok {
		t.Fatal("a refused toram mount left the target mounted")
	}
}
