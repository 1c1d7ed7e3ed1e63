package persist

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/overlay"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func call(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "Usage: squashportage persist"},
		{[]string{"--bogus"}, 2, "--bogus"},
		{[]string{"--processors", "0"}, 2, "--processors"},
		{[]string{"--state-dir", dir}, 0, "no managed mounts"},
		{[]string{"--state-dir", dir, "--json"}, 0, "[]"},
		{[]string{"--state-dir", dir, "/not/managed"}, 3, "/not/managed: not managed"},
		{[]string{"--state-dir", dir, "relative/not/managed"}, 3, "/relative/not/managed: not managed"},
		{[]string{"--state-dir", dir, "--if-managed", dir}, 3, ""},
	} {
		code, out, errOut := call(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.out) || tc.out == "" && out+errOut != "" {
			t.Errorf("%v: exit %d, %q %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.out)
		}
	}
}

// mounted mounts an image of n ebuilds made by mksquashfs; it returns
// the image, the target and the state dir.
func mounted(t *testing.T, n int) (img, target, state string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "cat/pkg"), 0o755)
	for i := 1; i <= n; i++ {
		os.WriteFile(filepath.Join(src, "cat/pkg", fmt.Sprintf("pkg-%d.ebuild", i)), []byte("EAPI=8\n"), 0o644)
	}
	img = filepath.Join(dir, "gentoo.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	target, state = filepath.Join(dir, "target"), filepath.Join(dir, "state")
	os.Mkdir(target, 0o755)
	spec, err := overlay.ParseSpec(img + ":" + target + ":layers=0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := overlay.Mount(spec, overlay.MountOptions{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		overlay.Umount(target, overlay.UmountOptions{StateDir: state, Lazy: true, Discard: true})
	})
	return img, target, state
}

// TestPersistCommand persists a real mount through the command line.
func TestPersistCommand(t *testing.T) {
	img, target, state := mounted(t, 1)
	if err := os.WriteFile(filepath.Join(target, "cat/pkg/pkg-2.ebuild"), []byte("EAPI=8\n# new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// /usr/portage -> /var/db/repos/gentoo
	dir := filepath.Dir(target)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := call("--state-dir", state, "--json", link)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	// The names and units of status --json.
	var res []map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("json %q: %+v %v", out, res, err)
	}
	for _, k := range []string{"target", "image", "written", "remounted", "pending_bytes", "image_size", "old_image_size", "duration_seconds", "stats"} {
		if _, ok := res[0][k]; !ok {
			t.Errorf("--json lacks %q: %s", k, out)
		}
	}
	if res[0]["written"] != true || res[0]["remounted"] != true || res[0]["target"] != target || res[0]["pending_bytes"] != float64(13) {
		t.Errorf("--json: %s", out)
	}
	if st, _ := res[0]["stats"].(map[string]any); st == nil || st["reused_files"] != float64(1) || st["from_upper"] == nil {
		t.Errorf("--json stats: %s", out)
	}
	if _, err := os.Stat(img + ".old"); err != nil {
		t.Errorf("no previous generation: %v", err)
	}
	// `persist target` in the target's parent directory.
	if err := os.WriteFile(filepath.Join(target, "cat/pkg/pkg-3.ebuild"), []byte("EAPI=8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, out, errOut = call("--state-dir", state, filepath.Base(target))
	if code != 0 || !strings.Contains(out, target+": wrote "+img) {
		t.Errorf("relative target: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = call("--state-dir", state)
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Errorf("second persist: exit %d, %q", code, out)
	}
}

// openPty returns both ends of a pseudo-terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestPersistTerminal: on a terminal, persist tells its phases and draws
// a progress bar without -v.
func TestPersistTerminal(t *testing.T) {
	img, target, state := mounted(t, 50)
	os.WriteFile(filepath.Join(target, "cat/pkg/new.ebuild"), []byte("EAPI=8\n"), 0o644)

	master, slave := openPty(t)
	var stdout bytes.Buffer
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(master) // EIO once the slave is closed
		got <- string(b)
	}()
	code := Main([]string{"--state-dir", state, target}, &stdout, slave)
	slave.Close()
	out := <-got
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, w := range []string{"folding", "read-only until", "synced and verified", "new overlay in place", "100%"} {
		if !strings.Contains(out, w) {
			t.Errorf("terminal output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(stdout.String(), "wrote "+img) {
		t.Errorf("stdout: %q", stdout.String())
	}
}
