// Package xattr reads the extended attributes of a path without following
// symlinks: the one reader for the tree scan, the fold of an overlay
// upper and the tree comparisons.
package xattr

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"golang.org/x/sys/unix"
)

// Attr is one extended attribute with its full name ("user.foo").
type Attr struct {
	Name  string
	Value []byte
}

// Reader lists attributes, reusing its buffer across calls: a tree of
// 200k files would otherwise allocate one per file. Not for concurrent use.
type Reader struct{ buf []byte }

// Names returns the names of path's attributes in the order the
// filesystem lists them; none on a filesystem without xattrs.
func (r *Reader) Names(path string) ([]string, error) {
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	for {
		n, err := unix.Llistxattr(path, r.buf)
		switch {
		case err == nil:
			var names []string
			for raw := range bytes.SplitSeq(r.buf[:n], []byte{0}) {
				if len(raw) > 0 {
					names = append(names, string(raw))
				}
			}
			return names, nil
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.ENODATA):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			// Grown since the size was asked: ask again.
			size, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
			}
			r.buf = make([]byte, size+1024)
		default:
			return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
		}
	}
}

// All returns the attributes of path whose names keep accepts (all with
// nil keep), sorted by name. One removed between listing and reading is
// left out.
func (r *Reader) All(path string, keep func(name string) bool) ([]Attr, error) {
	names, err := r.Names(path)
	if err != nil {
		return nil, err
	}
	var out []Attr
	for _, name := range names {
		if keep != nil && !keep(name) {
			continue
		}
		v, err := Get(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Attr{Name: name, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get reads one attribute's value; a missing one is an error matching
// unix.ENODATA.
func Get(path, name string) ([]byte, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			size *= 16 // the kernel caps values at 64 KiB
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s of %s: %w", name, path, err)
		}
		return buf[:n], nil
	}
}
