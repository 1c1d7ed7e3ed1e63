package sourcetree

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/squashportage/squashportage/squash"
)

// writeImage writes tree into a new image file and returns its bytes.
func writeImage(t *testing.T, tree *Tree, name string) []byte {
	t.Helper()
	f, err := os.Create(name)
	must(t, err)
	defer f.Close()
	w, err := squash.NewWriter(f, squash.WriterOptions{})
	must(t, err)
	if err := tree.Write(w, nil); err != nil {
		w.Close()
		t.Fatal(err)
	}
	must(t, w.Close())
	b, err := os.ReadFile(name)
	must(t, err)
	return b
}

// appendTo scans sources, appends them to the image in data and writes
// the result to out.
func appendTo(data []byte, sources []string, out string) error {
	r, err := squash.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	tree, err := Scan(sources, Options{})
	if err != nil {
		return err
	}
	if err := tree.AppendTo(r, bytes.NewReader(data), "", nil); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := squash.NewWriter(f, squash.WriterOptions{Codec: r.Codec()})
	if err != nil {
		return err
	}
	werr := tree.Write(w, nil)
	if err := w.Close(); werr == nil {
		werr = err
	}
	return werr
}

// TestAppendKeepsHardLinks: names of one file in the image stay one
// inode, and their data is the image's.
func TestAppendKeepsHardLinks(t *testing.T) {
	dir := t.TempDir()
	src, more := filepath.Join(dir, "src"), filepath.Join(dir, "more")
	mkTree(t, src, "a", "d/b", "d/e/")
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "d/e/a2")))
	mkTree(t, more, "z", "d/b")
	base := writeImage(t, scan(t, []string{src}, Options{}), filepath.Join(dir, "base"))
	out := filepath.Join(dir, "out")
	must(t, appendTo(base, []string{more}, out))
	r, err := squash.OpenFile(out)
	must(t, err)
	defer r.Close()
	a, err := r.Lstat("a")
	must(t, err)
	a2, err := r.Lstat("d/e/a2")
	must(t, err)
	ia, ia2 := a.Sys().(*squash.Inode), a2.Sys().(*squash.Inode)
	if ia.Number != ia2.Number || ia.Nlink != 2 {
		t.Errorf("a and d/e/a2: inodes %d and %d, %d links; want one inode with 2", ia.Number, ia2.Number, ia.Nlink)
	}
	for name, want := range map[string]string{"a": "a", "d/e/a2": "a", "d/b": "d/b", "z": "z", "d_1/b": "d/b"} {
		if b, err := r.ReadFile(name); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
}

// TestAppendToDamagedImage: appending to an image with damaged bytes
// fails or succeeds, but does not panic or hang.
func TestAppendToDamagedImage(t *testing.T) {
	dir := t.TempDir()
	src, more := filepath.Join(dir, "src"), filepath.Join(dir, "more")
	mkTree(t, src, "a", "d/b", "d/c", "d/e/", "l->a", "big")
	must(t, os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("0123456789abcdef"), 20000), 0o644))
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "d/e/a2")))
	mkTree(t, more, "z")
	base := writeImage(t, scan(t, []string{src}, Options{}), filepath.Join(dir, "base"))
	r, err := squash.NewReader(bytes.NewReader(base), int64(len(base)))
	must(t, err)
	end := int(r.Superblock().BytesUsed)
	rng := rand.New(rand.NewPCG(1, 2))
	out := filepath.Join(dir, "out")
	failed := 0
	for i := range 400 {
		b := bytes.Clone(base)
		for range 1 + i%4 {
			// The superblock is checked whole; damage what follows it.
			b[squash.SuperblockSize+rng.IntN(end-squash.SuperblockSize)] ^= byte(1 + rng.IntN(255))
		}
		if appendTo(b, []string{more}, out) != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Errorf("no damaged image was refused")
	}
}
