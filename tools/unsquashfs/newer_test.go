package unsquashfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNewerOptions: unsquashfs 4.6 and 4.7's -all-time, -xattrs-include,
// -xattrs-exclude and -full-precision (Debian has 4.5.1; the listing's
// form is what 4.7.5 prints, compared by hand).
func TestNewerOptions(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(src, "d", "f")
	if err := os.WriteFile(f, []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, x := range []string{"user.keep", "user.drop", "trusted.t"} {
		if err := unix.Setxattr(f, x, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress", "-all-time", "1000000007").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}

	out, _ := runOK(t, "-lls", "-full", "-UTC", img)
	if !strings.Contains(out, " 2001-09-09 01:46:47 squashfs-root/d/f\n") {
		t.Errorf("-full: no seconds in\n%s", out)
	}
	out, _ = runOK(t, "-lls", "-UTC", img)
	if !strings.Contains(out, " 2001-09-09 01:46 squashfs-root/d/f\n") {
		t.Errorf("without -full: \n%s", out)
	}

	dest := filepath.Join(t.TempDir(), "x")
	runOK(t, "-q", "-d", dest, "-all-time", "5000", "-xattrs-exclude", "^user.d", "-xattrs-include", "^user", img)
	for _, p := range []string{dest, filepath.Join(dest, "d"), filepath.Join(dest, "d/f")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Mtim.Sec != 5000 {
			t.Errorf("%s: time %d (%v), want 5000", p, st.Mtim.Sec, err)
		}
	}
	if got := xattrNames(t, filepath.Join(dest, "d/f")); strings.Join(got, " ") != "user.keep" {
		t.Errorf("xattrs %q, want user.keep alone", got)
	}
	var stdout, errb strings.Builder
	if rc := Main([]string{"-xattrs-exclude", "(", img}, &stdout, &errb); rc != 1 || !strings.Contains(errb.String(), "-xattrs-exclude") {
		t.Errorf("bad regex: %d %s", rc, errb.String())
	}
}
