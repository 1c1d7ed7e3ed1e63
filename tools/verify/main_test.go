package verify

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func smallImage(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("squash"), 50000), 0o644)
	os.Symlink("f", filepath.Join(src, "l"))
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

func TestMain_(t *testing.T) {
	img := smallImage(t)
	notImg := filepath.Join(t.TempDir(), "text")
	os.WriteFile(notImg, bytes.Repeat([]byte("not an image\n"), 20), 0o644)
	data, _ := os.ReadFile(img)
	truncated := filepath.Join(t.TempDir(), "trunc.sqfs")
	// mksquashfs pads to 4 KiB; cut inside the bytes the superblock counts.
	os.WriteFile(truncated, data[:300], 0o644)

	for _, tc := range []struct {
		args   []string
		rc     int
		stdout string
		stderr string
	}{
		{[]string{img}, 0, ": OK: ", ""},
		{[]string{"-q", img}, 0, "", ""},
		{[]string{notImg}, 1, "", "not a squashfs image"},
		{[]string{truncated}, 1, "", "verify: "},
		{[]string{"/nonexistent"}, 1, "", "no such file"},
		{[]string{}, 1, "", "no image given"},
		{[]string{"-x", img}, 1, "", "unknown option -x"},
		{[]string{img, img}, 1, "", "exactly one image"},
	} {
		var out, errb bytes.Buffer
		rc := Main(tc.args, &out, &errb)
		if rc != tc.rc || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) ||
			(tc.stdout == "" && out.Len() != 0) {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, rc, out.String(), errb.String(), tc.rc, tc.stdout, tc.stderr)
		}
	}
}
