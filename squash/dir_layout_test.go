package squash

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash/codec"
)

// Directory listings are laid out for the kernel's cache of 8 metadata
// blocks: one that fits in a block lies in one block, and a larger one
// has an index entry per block's worth of listing, not at every block
// boundary (each entry makes a lookup read the directory's inode too).
func TestDirectoryListingLayout(t *testing.T) {
	w, img := streamWriter(t, WriterOptions{Codec: codec.Config{ID: codec.Gzip}, MkfsTime: 1})
	add := func(h *Header) {
		t.Helper()
		if err := w.Add(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	add(&Header{Name: "", Mode: fs.ModeDir | 0o755})
	// Listings from a few entries to about 30 KiB, with names long
	// enough that many listings would straddle block boundaries.
	sizes := []int{1, 3, 20, 60, 90, 120, 150, 200, 400, 700}
	for d := 0; d < 60; d++ {
		dir := fmt.Sprintf("d%02d", d)
		add(&Header{Name: dir, Mode: fs.ModeDir | 0o755})
		for i := 0; i < sizes[d%len(sizes)]; i++ {
			add(&Header{Name: fmt.Sprintf("%s/file-%04d-%s", dir, i, strings.Repeat("n", i%30)), Mode: 0o644})
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openImage(t, img).Reader
	small, large := 0, 0
	for d := 0; d < 60; d++ {
		dir := fmt.Sprintf("d%02d", d)
		fi, err := r.Lstat(dir)
		if err != nil {
			t.Fatal(err)
		}
		ino := fi.Sys().(*Inode)
		n := int(ino.Size) - 3
		if n <= MetadataSize {
			small++
			if int(ino.DirOffset)+n > MetadataSize {
				t.Errorf("%s: listing of %d bytes at offset %d straddles two blocks", dir, n, ino.DirOffset)
			}
			if len(ino.DirIndex) != 0 {
				t.Errorf("%s: listing of %d bytes has %d index entries", dir, n, len(ino.DirIndex))
			}
			continue
		}
		large++
		if want := (int(ino.DirOffset) + n) / MetadataSize; len(ino.DirIndex) == 0 || len(ino.DirIndex) > want {
			t.Errorf("%s: listing of %d bytes at offset %d has %d index entries, want 1 to %d", dir, n, ino.DirOffset, len(ino.DirIndex), want)
		}
		for i, x := range ino.DirIndex {
			if i > 0 && int(x.Index-ino.DirIndex[i-1].Index) < MetadataSize {
				t.Errorf("%s: index entries %d and %d only %d bytes apart", dir, i-1, i, x.Index-ino.DirIndex[i-1].Index)
			}
		}
		// Every name is found through the index.
		ents, err := r.ReadDirInode(ino)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			got, err := r.lookupIndexed(ino, e.Name)
			if err != nil || got == nil || *got != e {
				t.Fatalf("%s: lookupIndexed(%q) = %v, %v", dir, e.Name, got, err)
			}
		}
	}
	if small < 30 || large < 5 {
		t.Fatalf("%d small and %d large listings: the tree no longer covers both", small, large)
	}
}

// Inodes lie in the order a walk that stats each entry as it comes to it
// (find, tar) visits them, as in mksquashfs's images: each entry's inode
// after the whole subtree of the entry before it, and a directory's after
// its subtree. Files interleave with subdirectories in every listing.
func TestInodeOrder(t *testing.T) {
	w, img := streamWriter(t, WriterOptions{Workers: 2})
	var add func(dir string, depth int)
	add = func(dir string, depth int) {
		for i := 0; i < 6; i++ {
			name := fmt.Sprintf("%s%c", dir, 'a'+i)
			if i%2 == 1 && depth < 3 {
				if err := addDir(w, name); err != nil {
					t.Fatal(err)
				}
				add(name+"/", depth+1)
				continue
			}
			// Tails of several sizes, so some wait in the fragment window.
			if err := addBytes(w, name, []byte(strings.Repeat(name, 40*(i+1)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("", 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openImage(t, img).Reader
	// check returns the greatest inode reference in dir's subtree, dir's
	// own included; refs grow with the position in the inode table.
	var check func(name string, dir *Inode) uint64
	check = func(name string, dir *Inode) uint64 {
		ents, err := r.ReadDirInode(dir)
		if err != nil {
			t.Fatal(err)
		}
		last := uint64(0) // the greatest ref in the subtrees so far
		for i, e := range ents {
			if i > 0 && e.Ref <= last {
				t.Errorf("/%s%s: inode at %#x, before the end (%#x) of what precedes it in the listing", name, e.Name, e.Ref, last)
			}
			last = e.Ref
			if e.Type == TypeDir {
				child, err := r.InodeAt(e.Ref)
				if err != nil {
					t.Fatal(err)
				}
				if end := check(name+e.Name+"/", child); end != e.Ref {
					t.Errorf("/%s%s/: inode at %#x, before its subtree's end %#x", name, e.Name, e.Ref, end)
				}
			}
		}
		return max(last, dir.Ref)
	}
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	check("", root)
}
