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
	"unsafe"

	"golang.org/x/sys/unix"
)

// Attr is one extended attribute with its full name ("user.foo").
type Attr struct {
	Name  string
	Value []byte
}

// Reader lists attributes, reusing its buffer across calls: a tree of
// 200k files would otherwise allocate one per file. Not for concurrent use.
type Reader struct {
	buf []byte
	// noAt is set once listxattrat(2) turned out missing (kernels before
	// 6.13, or a seccomp filter that refuses it).
	noAt bool
}

// Names returns the names of path's attributes in the order the
// filesystem lists them; none on a filesystem without xattrs.
func (r *Reader) Names(path string) ([]string, error) {
	return r.names(path, func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) })
}

// NamesAt is Names for the entry name of the directory open as dirfd,
// whose path is path: the kernel then walks one name, not the whole path
// (a scan of a Portage tree spent a quarter of its time walking paths to
// list attributes). Kernels without listxattrat get the path.
func (r *Reader) NamesAt(dirfd int, name, path string) ([]string, error) {
	if r.noAt {
		return r.Names(path)
	}
	names, err := r.names(path, func(buf []byte) (int, error) { return listxattrat(dirfd, name, buf) })
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		r.noAt = true
		return r.Names(path)
	}
	return names, err
}

func (r *Reader) names(path string, list func(buf []byte) (int, error)) ([]string, error) {
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	for {
		n, err := list(r.buf)
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
			size, err := list(nil)
			if err != nil {
				return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
			}
			r.buf = make([]byte, size+1024)
		default:
			return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
		}
	}
}

// listxattrat is listxattrat(2) of name in dirfd, not following a
// symlink.
func listxattrat(dirfd int, name string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var b unsafe.Pointer
	if len(buf) > 0 {
		b = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(b), uintptr(len(buf)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// All returns the attributes of path whose names keep accepts (all with
// nil keep), sorted by name. One removed between listing and reading is
// left out.
func (r *Reader) All(path string, keep func(name string) bool) ([]Attr, error) {
	names, err := r.Names(path)
	if err != nil {
		return nil, err
	}
	return r.values(path, names, keep)
}

// AllAt is All listing through dirfd and name (see NamesAt); the values
// of the few files that have attributes are read by path.
func (r *Reader) AllAt(dirfd int, name, path string, keep func(name string) bool) ([]Attr, error) {
	names, err := r.NamesAt(dirfd, name, path)
	if err != nil {
		return nil, err
	}
	return r.values(path, names, keep)
}

func (r *Reader) values(path string, names []string, keep func(name string) bool) ([]Attr, error) {
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
