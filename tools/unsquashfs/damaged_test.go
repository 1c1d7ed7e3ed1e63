package unsquashfs

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash"
)

// TestIgnoreErrors: with -ignore-errors, a file with a damaged block
// keeps what could be read, every other file is extracted whole, and the
// exit status is 2 (0 with -no-exit-code); without it the damage ends the
// run with status 1, as with unsquashfs.
func TestIgnoreErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		raw := make([]byte, 300_000)
		rand.Read(raw)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), []byte(base64.StdEncoding.EncodeToString(raw)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "img")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	// Damage the second block of f05.
	r, err := squash.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := r.Lstat("f05")
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*squash.Inode)
	at := int64(ino.BlocksStart) + int64(squash.BlockSize(ino.BlockSizes[0])) + 100
	r.Close()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		b[at+int64(i)] ^= 0x55
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		opts []string
		rc   int
	}{
		{nil, 1},
		{[]string{"-st"}, 1},
		{[]string{"-ig"}, 2},
		{[]string{"-ignore-errors", "-p", "1"}, 2},
		{[]string{"-ig", "-no-exit-code"}, 0},
	} {
		t.Run(strings.Join(tc.opts, " "), func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "x")
			var out, errb bytes.Buffer
			args := append(append([]string{"-q", "-d", dest}, tc.opts...), img)
			if rc := Main(args, &out, &errb); rc != tc.rc {
				t.Fatalf("Main(%q) = %d, want %d: %s", args, rc, tc.rc, &errb)
			}
			if !strings.Contains(errb.String(), `"f05"`) {
				t.Errorf("the damaged file is not named: %s", &errb)
			}
			if tc.rc == 1 {
				return
			}
			for i := range 12 {
				name := fmt.Sprintf("f%02d", i)
				want, err := os.ReadFile(filepath.Join(src, name))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(dest, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if name == "f05" {
					if len(got) != int(squash.DefaultBlockSize) || !bytes.HasPrefix(want, got) {
						t.Errorf("f05: %d bytes kept, want its first block", len(got))
					}
				} else if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the source", name)
				}
			}
		})
	}
}
