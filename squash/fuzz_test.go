package squash

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// exerciseReader drives every read path of r with bounded work, returning
// how many entries it visited. It must never panic or hang, whatever r's
// image holds.
func exerciseReader(r *Reader) int {
	const maxEntries = 2000
	const maxFileRead = 4 << 20
	visited := 0
	r.Superblock()
	root, err := r.Root()
	if err == nil {
		// Low-level walk with a visited set: corrupt images may link a
		// directory back to an ancestor.
		seen := map[uint64]bool{root.Ref: true}
		queue := []*Inode{root}
		for len(queue) > 0 && visited < maxEntries {
			dir := queue[0]
			queue = queue[1:]
			ents, err := r.ReadDirInode(dir)
			if err != nil {
				continue
			}
			for _, e := range ents {
				visited++
				if visited >= maxEntries {
					break
				}
				ino, err := r.InodeAt(e.Ref)
				if err != nil {
					continue
				}
				r.Xattrs(ino)
				if ino.Fragment != NoFragment {
					r.Fragment(ino.Fragment)
				}
				if basicType(ino.Type) == TypeDir && !seen[e.Ref] {
					seen[e.Ref] = true
					queue = append(queue, ino)
				}
			}
		}
	}
	// The io/fs view, bounded the same way.
	n := 0
	fs.WalkDir(r, ".", func(p string, d fs.DirEntry, err error) error {
		n++
		if n > maxEntries || len(p) > 4096 {
			return fs.SkipAll
		}
		if err != nil {
			return nil
		}
		r.Lstat(p)
		r.Stat(p)
		if d.Type()&fs.ModeSymlink != 0 {
			r.ReadLink(p)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := r.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil
		}
		if fi.Size() <= maxFileRead {
			r.ReadFile(p)
		}
		io.Copy(io.Discard, io.LimitReader(f, maxFileRead))
		if ra, ok := f.(io.ReaderAt); ok {
			buf := make([]byte, 100)
			ra.ReadAt(buf, fi.Size()/2)
		}
		return nil
	})
	r.Verify(context.Background(), nil)
	return visited
}

// fuzzSeeds returns the seed images kept in testdata.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.sqfs"))
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzReader(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		exerciseReader(r)
	})
}
