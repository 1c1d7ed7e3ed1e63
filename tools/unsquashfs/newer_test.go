package unsquashfs

import (
	"io/fs"
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
	if out, _ := runOK(t, "-percentage", "-d", filepath.Join(t.TempDir(), "p"), img); !strings.Contains(out, "\n100\n") {
		t.Errorf("-percentage printed %q", out)
	}
	var stdout, errb strings.Builder
	if rc := Main([]string{"-xattrs-exclude", "(", img}, &stdout, &errb); rc != 1 || !strings.Contains(errb.String(), "-xattrs-exclude") {
		t.Errorf("bad regex: %d %s", rc, errb.String())
	}
}

// TestFollowSymlinks: -follow-symlinks extracts what 4.7.5's does for
// names through symlinks (compared by hand); a name that cannot be
// resolved is a warning, or with -missing-symlinks an error.
func TestFollowSymlinks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"usr/lib/modules/6.1", "etc"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"usr/lib/modules/6.1/mod": "m", "usr/lib/other": "x", "etc/conf": "c"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"lib": "usr/lib", "etc/mods": "../lib/modules", "etc/abs": "/usr/lib/other",
		"etc/dangling": "nowhere", "loopa": "loopb", "loopb": "loopa"} {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		names []string
		want  string
		warn  string
	}{
		{[]string{"lib/modules"}, "lib usr usr/lib usr/lib/modules usr/lib/modules/6.1 usr/lib/modules/6.1/mod", ""},
		{[]string{"etc/mods"}, "etc etc/mods lib usr usr/lib usr/lib/modules usr/lib/modules/6.1 usr/lib/modules/6.1/mod", ""},
		{[]string{"lib"}, "lib usr usr/lib usr/lib/modules usr/lib/modules/6.1 usr/lib/modules/6.1/mod usr/lib/other", ""},
		{[]string{"etc"}, "etc etc/abs etc/conf etc/dangling etc/mods", ""},
		{[]string{"etc/mods/../other"}, "etc etc/mods lib usr usr/lib usr/lib/other", ""},
		{[]string{"etc/mods", "lib/modules/6.1"}, "etc etc/mods lib usr usr/lib usr/lib/modules usr/lib/modules/6.1 usr/lib/modules/6.1/mod", ""},
		{[]string{"etc/abs"}, "etc etc/abs", "absolute path"},
		{[]string{"etc/dangling"}, "etc etc/dangling", "no etc/nowhere"},
		{[]string{"loopa"}, "loopa loopb", "too many levels"},
	} {
		dest := filepath.Join(t.TempDir(), "x")
		_, stderr := runOK(t, append([]string{"-q", "-follow", "-d", dest, img}, tc.names...)...)
		var got []string
		filepath.WalkDir(dest, func(p string, _ fs.DirEntry, err error) error {
			if p != dest {
				got = append(got, strings.TrimPrefix(p, dest+"/"))
			}
			return err
		})
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("-follow %q: extracted %s, want %s", tc.names, g, tc.want)
		}
		if tc.warn == "" && stderr != "" || !strings.Contains(stderr, tc.warn) {
			t.Errorf("-follow %q: stderr %q, want a warning with %q", tc.names, stderr, tc.warn)
		}
	}
	var stdout, stderr strings.Builder
	if rc := Main([]string{"-q", "-missing", "-d", filepath.Join(t.TempDir(), "x"), img, "etc/dangling"}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), "cannot be resolved") {
		t.Errorf("-missing-symlinks with a dangling link: %d %s", rc, &stderr)
	}
}
