// Package initramfs assembles squashportage's initramfs: a newc cpio
// archive, gzip-compressed, that the kernel unpacks into its rootfs.
//
// The archive is written here rather than with u-root's pkg/cpio because
// the format is small and the output must be byte-for-byte reproducible:
// every entry gets mtime 0, owner 0, and an inode number from its place
// in the sorted list.
package initramfs

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Entry is one file in the archive.
type Entry struct {
	Path string // relative, no leading slash: "dev/console"
	Mode uint32 // file type and permission bits, as in stat(2)
	Data []byte // file contents, or a symlink's target
	// RdevMajor and RdevMinor describe a device node.
	RdevMajor, RdevMinor uint32
}

// File type bits of the cpio mode field (the same as Linux's S_IF*).
const (
	TypeDir     = 0o040000
	TypeFile    = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
)

// Archive is a set of entries keyed by path; adding a path twice keeps the
// last, so callers can override defaults.
type Archive struct {
	entries map[string]Entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// Add puts e in the archive, creating its parent directories (mode 0755)
// as the kernel will not create them when unpacking.
func (a *Archive) Add(e Entry) {
	e.Path = strings.Trim(e.Path, "/")
	for dir := parent(e.Path); dir != ""; dir = parent(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = Entry{Path: dir, Mode: TypeDir | 0o755}
		}
	}
	a.entries[e.Path] = e
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Dir adds a directory.
func (a *Archive) Dir(path string, perm uint32) { a.Add(Entry{Path: path, Mode: TypeDir | perm}) }

// File adds a regular file.
func (a *Archive) File(path string, perm uint32, data []byte) {
	a.Add(Entry{Path: path, Mode: TypeFile | perm, Data: data})
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(path, target string) {
	a.Add(Entry{Path: path, Mode: TypeSymlink | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node.
func (a *Archive) CharDev(path string, perm, major, minor uint32) {
	a.Add(Entry{Path: path, Mode: TypeChar | perm, RdevMajor: major, RdevMinor: minor})
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
	for i, p := range a.Paths() {
		e := a.entries[p]
		nlink := uint32(1)
		if e.Mode&0o170000 == TypeDir {
			nlink = 2
		}
		if err := writeRecord(cw, uint32(i+1), e.Mode, nlink, e.RdevMajor, e.RdevMinor, p, e.Data); err != nil {
			return cw.n, fmt.Errorf("writing cpio entry %s: %w", p, err)
		}
	}
	if err := writeRecord(cw, 0, 0, 1, 0, 0, "TRAILER!!!", nil); err != nil {
		return cw.n, fmt.Errorf("writing cpio trailer: %w", err)
	}
	return cw.n, nil
}

// writeRecord writes one newc header, name and data, each padded to four
// bytes as the format requires (the header is 110 bytes).
func writeRecord(w *countWriter, ino, mode, nlink, rmaj, rmin uint32, name string, data []byte) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	if err := w.pad(); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.pad()
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

func (c *countWriter) pad() error {
	if r := c.n % 4; r != 0 {
		_, err := c.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
