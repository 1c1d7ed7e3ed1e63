package fold_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/overlay/fold"
	"github.com/squashportage/squashportage/squash"
)

// TestFoldDamagedFragment folds over an image whose fragment block and a
// data block are damaged, with an upper (no mount needed) that deletes
// most of the files: the fragment is then repacked rather than copied, and
// the fold must still name exactly the live files whose tails it held; once
// they are deleted too, nothing damaged is carried forward and the fold
// succeeds.
func TestFoldDamagedFragment(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "big"), testtree.Text(0, 300<<10), 0o644))
	for i := range 10 {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("small%d", i)), testtree.Text(i+1, 50), 0o644))
	}
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	damaged, err := testtree.DamageBlocks(img, "big", "small0")
	must(t, err)
	if !slices.Contains(damaged, "/small9") {
		t.Fatalf("the small files do not share the damaged fragment: %v", damaged)
	}

	upper := t.TempDir()
	whiteout := func(name string) { must(t, unix.Mknod(filepath.Join(upper, name), unix.S_IFCHR|0o600, 0)) }
	whiteout("big")
	for i := range 8 {
		whiteout(fmt.Sprintf("small%d", i))
	}
	foldTo := func() error {
		r, err := squash.OpenFile(img)
		must(t, err)
		defer r.Close()
		data, err := os.Open(img)
		must(t, err)
		defer data.Close()
		f, err := os.Create(filepath.Join(t.TempDir(), "new.sqfs"))
		must(t, err)
		defer f.Close()
		_, err = fold.Fold(r.Reader, data, upper, f, fold.Options{Workers: 2})
		return err
	}
	err = foldTo()
	var de *squash.DamageError
	if !errors.As(err, &de) || !slices.Equal(de.Paths(), []string{"/small8", "/small9"}) {
		t.Fatalf("fold over a damaged fragment: %v, want a damage error naming /small8 and /small9", err)
	}
	t.Logf("fold: %v", err)
	whiteout("small8")
	whiteout("small9")
	if err := foldTo(); err != nil {
		t.Fatalf("fold without the damaged files: %v", err)
	}
}
