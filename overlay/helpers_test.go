package overlay

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
)

func TestMain(m *testing.M) { privileged.Main(m) }

// imageRootTime is the mtime given to test images' root directory.
var imageRootTime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	imageRootUID  = 250
	imageRootGID  = 251
	imageRootMode = 0o750
)

// makeImage builds a squashfs image with mksquashfs from files (path →
// content; a trailing "/" makes a directory). Its root has imageRoot*.
func makeImage(t *testing.T, files map[string]string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(src, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(src, imageRootUID, imageRootGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, imageRootMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, imageRootTime, imageRootTime); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "image.sqfs")
	out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput()
	if err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

var testFiles = map[string]string{
	"a.txt":      "alpha\n",
	"del.txt":    "to be deleted\n",
	"sub/b.txt":  "beta\n",
	"sub/c.txt":  "gamma\n",
	"empty/":     "",
	"cat/pkg/x":  "ebuild\n",
	"cat/pkg/y/": "",
}

// env is one test's scratch space: a state dir, a target, and checks that
// the test leaves no mounts or loop devices behind.
type env struct {
	t        *testing.T
	dir      string
	stateDir string
	target   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, stateDir: filepath.Join(dir, "state"), target: filepath.Join(dir, "target")}
	if err := os.Mkdir(e.target, 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered after TempDir's cleanup, so it runs before the removal
	// (which must never descend into a live mount).
	t.Cleanup(func() { e.cleanup() })
	return e
}

func (e *env) opts() MountOptions { return MountOptions{StateDir: e.stateDir} }

// cleanup unmounts whatever a failed test left and fails it if anything
// was left, then waits for the loop devices of its images to detach.
func (e *env) cleanup() {
	t := e.t
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for i := len(ms) - 1; i >= 0; i-- {
		if within(ms[i].MountPoint, e.dir) {
			left = append(left, ms[i].MountPoint)
			_ = unmountDetach(ms[i].MountPoint)
		}
	}
	if len(left) > 0 {
		t.Errorf("test left mounts: %s", strings.Join(left, ", "))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		loops := loopsBackedBy(filepath.Dir(e.dir))
		if len(loops) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("loop devices still attached: %s", strings.Join(loops, ", "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loopsBackedBy lists loop devices whose backing file lies under dir.
func loopsBackedBy(dir string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && within(strings.TrimSpace(string(b)), dir) {
			out = append(out, f)
		}
	}
	return out
}

func (e *env) mount(spec string) *State {
	e.t.Helper()
	sp, err := ParseSpec(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := Mount(sp, e.opts())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if _, err := Load(e.stateDir, st.Target); err == nil {
			if err := Umount(st.Target, UmountOptions{StateDir: e.stateDir, Lazy: true, Discard: true}); err != nil {
				e.t.Errorf("cleanup: %v", err)
			}
		}
	})
	return st
}

// mountEntry returns the topmost mount at dir or fails the test.
func mountEntry(t *testing.T, dir string) MountEntry {
	t.Helper()
	m, ok, err := mountAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("nothing mounted at %s", dir)
	}
	return m
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func unmountDetach(dir string) error { return unix.Unmount(dir, unix.MNT_DETACH) }
