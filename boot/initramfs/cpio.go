// Package initramfs assembles squashportage's initramfs: a newc cpio
// archive, gzip-compressed, that the kernel unpacks into its rootfs.
//
// Records are written by u-root's pkg/cpio. What is ours is the keyed set
// of entries around it: a path added twice keeps the last (so the
// initramfs's own files override u-root's), parents are created with
// mode 0755, and entries are written sorted with inode numbers by
// position, so the same inputs give the same bytes.
package initramfs

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// File type bits of the cpio mode field (the same as Linux's S_IF*).
const (
	TypeDir     = cpio.S_IFDIR
	TypeFile    = cpio.S_IFREG
	TypeSymlink = cpio.S_IFLNK
	TypeChar    = cpio.S_IFCHR
)

// Archive is a set of records keyed by path; adding a path twice keeps
// the last, so callers can override defaults.
type Archive struct {
	entries map[string]cpio.Record
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]cpio.Record{}} }

// Add puts r in the archive, creating its parent directories (mode 0755)
// as the kernel will not create them when unpacking. (cpio.WriteRecordsAndDirs
// would make them 0777 and refuses a path given twice.)
func (a *Archive) Add(r cpio.Record) {
	r.Name = strings.Trim(cpio.Normalize(r.Name), "/")
	for dir := parent(r.Name); dir != ""; dir = parent(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = cpio.Directory(dir, 0o755)
		}
	}
	a.entries[r.Name] = r
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Dir adds a directory.
func (a *Archive) Dir(path string, perm uint64) { a.Add(cpio.Directory(path, perm)) }

// File adds a regular file.
func (a *Archive) File(path string, perm uint64, data []byte) {
	a.Add(cpio.StaticRecord(data, cpio.Info{Name: path, Mode: TypeFile | perm}))
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(path, target string) { a.Add(cpio.Symlink(path, target)) }

// CharDev adds a character device node.
func (a *Archive) CharDev(path string, perm, major, minor uint64) {
	a.Add(cpio.CharDev(path, perm, major, minor))
}

// Merge adds every record of another archive (u-root's), contents read
// into memory so the source may be closed.
func (a *Archive) Merge(rr cpio.RecordReader) error {
	return cpio.ForEachRecord(cpio.EOFReader{RecordReader: rr}, func(r cpio.Record) error {
		var data []byte
		if r.ReaderAt != nil && r.FileSize > 0 {
			data = make([]byte, r.FileSize)
			if _, err := r.ReadAt(data, 0); err != nil && err != io.EOF {
				return fmt.Errorf("reading %s: %w", r.Name, err)
			}
		}
		if r.Name == "." {
			return nil // the archive's root: the kernel's rootfs already is
		}
		a.Add(cpio.StaticRecord(data, r.Info))
		return nil
	})
}

// Get returns the record at path.
func (a *Archive) Get(path string) (cpio.Record, bool) {
	r, ok := a.entries[strings.Trim(cpio.Normalize(path), "/")]
	return r, ok
}

// Paths lists the archive's paths in the order they are written.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	// Plain byte order puts every directory before its contents, since
	// "a" sorts before "a/..." .
	sort.Strings(ps)
	return ps
}

// WriteTo writes the archive as newc cpio, trailer included.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	rw := cpio.Newc.Writer(cw)
	for i, p := range a.Paths() {
		r := cpio.MakeReproducible(a.entries[p])
		// Our own numbering: records from memory have no inode, those
		// read from u-root's archive carry its builder's numbers.
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := rw.WriteRecord(r); err != nil {
			return cw.n, fmt.Errorf("writing cpio entry %s: %w", p, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.n, fmt.Errorf("writing cpio trailer: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
