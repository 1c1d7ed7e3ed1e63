// Package testimage writes squashfs images of directory trees with our
// writer, for tests.
package testimage

import (
	"os"
	"testing"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// Write writes the tree at src into image.
func Write(t testing.TB, src, image string, opts squash.WriterOptions) {
	t.Helper()
	WriteWith(t, src, image, opts, sourcetree.Options{})
}

// WriteWith is Write with the source scan's options; it returns the
// writer's statistics.
func WriteWith(t testing.TB, src, image string, opts squash.WriterOptions, sopts sourcetree.Options) squash.WriteStats {
	t.Helper()
	tree, err := sourcetree.Scan([]string{src}, sopts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := squash.NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Write(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Stats()
}
