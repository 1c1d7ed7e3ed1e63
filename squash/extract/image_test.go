package extract

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
)

// mksquashfs builds an image of dir with squashfs-tools, the reference
// writer, and opens it.
func mksquashfs(t *testing.T, dir string, args ...string) *squash.ReadCloser {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	cmd := exec.Command("mksquashfs", append([]string{dir, img, "-no-progress", "-quiet", "-processors", "1"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	r, err := squash.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestExtractMksquashfsImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for devices and ownership")
	}
	src := filepath.Join(t.TempDir(), "src")
	mustMkdir(t, src)
	testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	// mksquashfs 4.5.1 stores these two hard-linked symlinks as separate
	// inodes, so the image cannot give them back as one.
	if err := os.Remove(filepath.Join(src, "hardlinks/symlink-b")); err != nil {
		t.Fatal(err)
	}
	r := mksquashfs(t, src)
	dest := filepath.Join(t.TempDir(), "dest")
	if err := Extract(r.Reader, dest, Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	testtree.AssertEqual(t, src, dest, testtree.CompareOptions{})
	checkSparse(t, dest)
}

// The end-to-end hostile case: the destination already holds sub -> outside
// and the image has sub/file.
func TestExtractImageOverSymlink(t *testing.T) {
	src := t.TempDir()
	mustMkdir(t, filepath.Join(src, "sub"))
	mustWrite(t, filepath.Join(src, "sub/file"), "payload")
	r := mksquashfs(t, src)
	for _, force := range []bool{false, true} {
		out := outsideDir(t)
		dest := t.TempDir()
		if err := os.Symlink(out, filepath.Join(dest, "sub")); err != nil {
			t.Fatal(err)
		}
		err := Extract(r.Reader, dest, Options{Force: force})
		if !force {
			if err == nil {
				t.Error("extract over a symlinked directory succeeded without force")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dest, "sub/file")); err != nil || string(b) != "payload" {
			t.Errorf("sub/file = %q, %v", b, err)
		}
	}
}

func TestExtractImageSubset(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(src, p), 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(src, p, "f"), p)
	}
	r := mksquashfs(t, src)
	dest := t.TempDir()
	if err := Extract(r.Reader, dest, Options{Selection: Selection{Paths: []string{"a/b"}}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.Walk(dest, func(p string, _ os.FileInfo, err error) error {
		got = append(got, strings.TrimPrefix(p, dest))
		return err
	})
	want := ",/a,/a/b,/a/b/c,/a/b/c/f"
	if strings.Join(got, ",") != want {
		t.Errorf("extracted %q, want %q", strings.Join(got, ","), want)
	}
}

// TestPlanContents: each regular file's contents come once (not again for
// a further hard link), in Walk's order, the same with and without
// fragment blocks decoded ahead, and equal to the source's; a failing fn
// ends it with its error.
func TestPlanContents(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	mustMkdir(t, src)
	testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	r := mksquashfs(t, src)
	p, err := NewPlan(r.Reader, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string // first names of regular files, in order
	seen := map[uint32]bool{}
	p.Walk(func(rel string, ino *squash.Inode) error {
		if squash.BasicType(ino.Type) == squash.TypeFile && !seen[ino.Number] {
			seen[ino.Number] = true
			want = append(want, rel)
		}
		return nil
	})
	for _, workers := range []int{1, 4} {
		i := 0
		err := p.Contents(workers, func(ino *squash.Inode, data io.Reader) error {
			got, err := io.ReadAll(data)
			if err != nil {
				return err
			}
			if i >= len(want) {
				t.Fatalf("workers %d: more files than Walk's %d", workers, len(want))
			}
			if src, err := os.ReadFile(filepath.Join(src, want[i])); err != nil || !bytes.Equal(got, src) {
				t.Errorf("workers %d: %s: %d bytes, the source's %d (%v)", workers, want[i], len(got), len(src), err)
			}
			i++
			return nil
		})
		if err != nil || i != len(want) {
			t.Errorf("workers %d: %d of %d files, %v", workers, i, len(want), err)
		}
	}
	stop := errors.New("enough")
	n := 0
	if err := p.Contents(4, func(*squash.Inode, io.Reader) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	}); err != stop || n != 3 {
		t.Errorf("a failing fn: %v after %d files", err, n)
	}
}
