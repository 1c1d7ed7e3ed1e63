package squash

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash/codec"
)

// Tails are grouped by kind only within windows, so that reading files in
// directory order through a cache of three decoded fragment blocks (the
// kernel's) decodes each block once, and within a window alike tails sit
// together.
func TestFragmentWindows(t *testing.T) {
	kinds := []string{".ebuild", ".xml", ".patch", ""}
	rng := rand.New(rand.NewSource(1))
	img := filepath.Join(t.TempDir(), "img")
	out, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w, err := NewWriter(out, WriterOptions{Codec: codec.Config{ID: codec.Gzip, BlockSize: 4096}, MkfsTime: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&Header{Name: "", Mode: fs.ModeDir | 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	// Added in directory order, as every source does: a Manifest, then
	// files of mixed kinds.
	var names []string
	contents := map[string][]byte{}
	for d := range 30 {
		dir := fmt.Sprintf("d%02d", d)
		if err := w.Add(&Header{Name: dir, Mode: fs.ModeDir | 0o755}, nil); err != nil {
			t.Fatal(err)
		}
		for i := range 13 {
			name := fmt.Sprintf("%s/f%02d%s", dir, i, kinds[rng.Intn(len(kinds))])
			if i == 0 {
				name = dir + "/Manifest"
			}
			data := make([]byte, 50+rng.Intn(400))
			rng.Read(data)
			contents[name] = data
			names = append(names, name)
			if err := w.Add(&Header{Name: name, Mode: 0o644, Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := out.Stat()
	r, err := NewReader(out, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	// Read in directory order through an LRU of three blocks.
	var lru []uint32
	decoded := map[uint32]int{}
	type place struct {
		frag, off uint32
		kind      string
	}
	var places []place
	for _, name := range names {
		ino := inodeOf(t, r, name)
		if ino.Fragment == NoFragment {
			t.Fatalf("%s: no fragment", name)
		}
		got, err := r.ReadFile(name)
		if err != nil || !bytes.Equal(got, contents[name]) {
			t.Fatalf("%s: read back %d bytes, %v", name, len(got), err)
		}
		places = append(places, place{ino.Fragment, ino.FragOffset, fragmentClass(name)})
		if i := slices.Index(lru, ino.Fragment); i >= 0 {
			lru = slices.Delete(lru, i, i+1)
		} else {
			decoded[ino.Fragment]++
			if len(lru) == 3 {
				lru = lru[1:]
			}
		}
		lru = append(lru, ino.Fragment)
	}
	for f, n := range decoded {
		if n > 1 {
			t.Errorf("fragment block %d decoded %d times reading in directory order", f, n)
		}
	}
	// Alike tails are adjacent: laid out, kinds change far less often
	// than in directory order.
	switches := func(ps []place) int {
		n := 0
		for i := 1; i < len(ps); i++ {
			if ps[i].kind != ps[i-1].kind {
				n++
			}
		}
		return n
	}
	inDirOrder := switches(places)
	slices.SortFunc(places, func(a, b place) int {
		if a.frag != b.frag {
			return int(a.frag) - int(b.frag)
		}
		return int(a.off) - int(b.off)
	})
	if laid := switches(places); laid*2 > inDirOrder {
		t.Errorf("kinds change %d times as laid out, %d in directory order: not grouped", laid, inDirOrder)
	}
}

func inodeOf(t *testing.T, r *Reader, name string) *Inode {
	t.Helper()
	ino, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range strings.Split(name, "/") {
		ents, err := r.ReadDirInode(ino)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(ents, func(e DirEntry) bool { return e.Name == c })
		if i < 0 {
			t.Fatalf("%s: %s not found", name, c)
		}
		if ino, err = r.InodeAt(ents[i].Ref); err != nil {
			t.Fatal(err)
		}
	}
	return ino
}

func TestFragmentClass(t *testing.T) {
	for _, tc := range []struct{ name, class string }{
		{"sys-apps/portage/portage-3.0.66.ebuild", ".ebuild"},
		{"sys-apps/portage/Manifest", "Manifest"},
		{"drivers/net/foo.c", ".c"},
		{"drivers/net/foo.h", ".c"}, // headers beside their sources
		{"include/linux/FOO.H", ".c"},
		{"arch/arm/boot/dts/a.dtsi", ".dtsi"},
		{"metadata/md5-cache/app-misc/foo-1.2", ""},
		{"files/foo-1.2.patch", ".patch"},
		{"archive.1234", ""},
		{".gitignore", ".gitignore"},
	} {
		if got := fragmentClass(tc.name); got != tc.class {
			t.Errorf("fragmentClass(%q) = %q, want %q", tc.name, got, tc.class)
		}
	}
}
