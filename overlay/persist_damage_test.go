package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
)

// damageFiles is a tree with a file of several blocks and small files
// filling more than one fragment block.
func damageFiles() map[string]string {
	files := map[string]string{"dev-lang/big/data": string(testtree.Text(0, 300<<10)), "unrelated.txt": "keep me\n"}
	for i := range 70 {
		files[fmt.Sprintf("cat%d/pkg/file%02d", i%3, i)] = string(testtree.Text(i+1, 3000))
	}
	return files
}

// TestPersistDamagedBase damages a data block and a fragment block of the
// mounted image on disk: a persist must fail naming the files they hold,
// leave IMAGE and the upper as they were, and not copy the damage into a
// new image. Deleting those files through the overlay lets it heal. The
// image is mksquashfs's, whose blocks are checked by decoding them, or one
// a persist wrote, checked against the block sums recorded after it.
func TestPersistDamagedBase(t *testing.T) {
	t.Run("mksquashfs", func(t *testing.T) { testPersistDamagedBase(t, false, "Adler-32 checksum mismatch") })
	t.Run("persisted", func(t *testing.T) { testPersistDamagedBase(t, true, "CRC-32C") })
}

func testPersistDamagedBase(t *testing.T, persisted bool, why string) {
	e := newEnv(t)
	files := damageFiles()
	img := makeImage(t, files)
	st := e.mount(img + ":" + e.target + ":layers=0")
	if persisted {
		writeFile(t, filepath.Join(e.target, "first"), "first persist\n")
		files["first"] = ""
		if res, err := Persist(st, PersistOptions{}); err != nil || !res.Remounted {
			t.Fatalf("first persist: %+v %v", res, err)
		}
		var err error
		if st, err = Load(e.stateDir, e.target); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(img + ".old"); err != nil {
			t.Fatal(err)
		}
	}
	damaged, err := testtree.DamageBlocks(img, "dev-lang/big/data", "cat1/pkg/file40")
	if err != nil {
		t.Fatal(err)
	}
	if len(damaged) < 3 || len(damaged) > len(files)-10 {
		t.Fatalf("want a fragment holding some of the files, not all: %v", damaged)
	}
	// The loop device must serve the damage too, not its cached pages.
	exec.Command("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches").Run()
	before := filepath.Join(t.TempDir(), "damaged.sqfs")
	copyTo(t, img, before)
	writeFile(t, filepath.Join(e.target, "NEWS"), "persist me\n")

	_, err = Persist(st, PersistOptions{})
	if err == nil {
		t.Fatal("persist over a damaged image succeeded")
	}
	t.Logf("persist: %v", err)
	msg := err.Error()
	named := func(p string) bool {
		for _, end := range []string{",", " ", ";", ")"} {
			if strings.Contains(msg, p+end) {
				return true
			}
		}
		return strings.HasSuffix(msg, p)
	}
	for name := range files {
		p := "/" + name
		if want := slices.Contains(damaged, p); named(p) != want {
			t.Errorf("%s: named %v, damaged %v", p, named(p), want)
		}
	}
	if !strings.Contains(msg, "untouched") || !strings.Contains(msg, why) {
		t.Errorf("error does not say the image is untouched, or %q: %v", why, err)
	}
	var de *squash.DamageError
	if !errors.As(err, &de) {
		t.Fatalf("error is not a *squash.DamageError: %v", err)
	}
	if got := de.Paths(); strings.Join(got, " ") != strings.Join(damaged, " ") {
		t.Errorf("damaged files named:\n%v\nwant\n%v", got, damaged)
	}
	if !sameBytes(t, img, before) {
		t.Error("IMAGE changed by a failed persist")
	}
	for _, p := range []string{img + ".new", img + ".old"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed persist: %v", p, err)
		}
	}
	if readFile(t, filepath.Join(st.UpperPath(), "NEWS")) != "persist me\n" {
		t.Error("the upper lost its change")
	}

	// Without the damaged files nothing damaged is copied forward.
	for _, p := range damaged {
		if err := os.Remove(filepath.Join(e.target, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Persist(st, PersistOptions{}); err != nil {
		t.Fatalf("persist without the damaged files: %v", err)
	}
	rc, err := squash.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Verify(t.Context(), nil); err != nil {
		t.Errorf("the new image: %v", err)
	}
	if b, err := rc.ReadFile("unrelated.txt"); err != nil || string(b) != "keep me\n" {
		t.Errorf("the new image lost unrelated.txt: %q %v", b, err)
	}
	if !sameBytes(t, img+".old", before) {
		t.Error("IMAGE.old is not the previous image")
	}
}
