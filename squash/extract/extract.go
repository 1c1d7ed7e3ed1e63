// Package extract writes the contents of a SquashFS image to a directory with
// all of its metadata, the job of unsquashfs.
//
// Images are untrusted: an entry name that could leave the destination
// ("..", "a/b", "") is refused, a directory that appears twice (a loop) is
// refused, and every entry is created relative to an open descriptor of its
// parent with O_NOFOLLOW semantics, so neither a symlink from the image nor
// one already present in the destination is ever followed.
package extract

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/squashportage/squashportage/squash"
)

// Options tune Extract. The zero value extracts the whole image, refusing to
// overwrite anything already present.
type Options struct {
	// Selection limits extraction to some entries (unsquashfs's extract
	// and exclude names). Parent directories of selected entries are
	// created with their image metadata.
	Selection
	// Force replaces existing non-directories (and symlinks where the image
	// has a directory), like unsquashfs -f. Existing directories are reused
	// whether or not Force is set.
	Force bool
	// NoXattrs skips extended attributes; UserXattrs skips all but the
	// user.* ones (unsquashfs -user-xattrs); KeepXattr, when set, says
	// which others to set (-xattrs-include, -xattrs-exclude).
	NoXattrs, UserXattrs bool
	KeepXattr            func(name string) bool
	// AllTime, when set, is every entry's time instead of the image's
	// (unsquashfs -all-time).
	AllTime *uint32
	// NoOwner skips chown. Ownership is only ever set when running as root,
	// because nobody else may give files away.
	NoOwner bool
	// Workers fills regular files and sets their metadata on that many
	// goroutines, and decodes the fragment blocks they need ahead of them
	// on as many more; one more goroutine makes every entry (directories,
	// files, links, symlinks, special files) in order. 0 or 1 does
	// everything in order on the calling goroutine.
	Workers int
	// Progress, if set, is called as work is done, in units of file data
	// bytes plus one per entry; total is known before the first call. Calls
	// are serialized.
	Progress func(done, total int64)
	// Info, if set, is called with each entry's slash path relative to the
	// destination ("" for the destination itself) as it is created.
	Info func(path string)
	// Warn, if set, receives problems unsquashfs also treats as warnings:
	// device nodes that may not be created (not root) and xattrs the
	// destination filesystem refuses. If nil, those are errors.
	Warn func(error)
	// Damaged, if set, is told of each file whose data cannot be read
	// from the image (a damaged block), which then keeps what could be
	// read before it and its metadata, and extraction goes on to salvage
	// the rest (unsquashfs -ignore-errors). If nil, such a file ends
	// extraction. Calls are serialized.
	Damaged func(error)
}

// Extract writes the image read by r (or the parts Options.Selection takes) into
// dest, creating dest if it does not exist. dest itself must not be a
// symlink; it receives the metadata of the image's root directory.
func Extract(r *squash.Reader, dest string, opts Options) error {
	return extract(readerSource{r: r}, dest, opts)
}

// dirent is one directory entry as the image lists it.
type dirent struct {
	name string
	ino  *squash.Inode
}

// source is what extraction needs from an image. It exists so tests can feed
// listings no honest writer would produce.
type source interface {
	// root returns the root directory's inode.
	root() (*squash.Inode, error)
	// readDir lists a directory inode as stored, names unchecked.
	readDir(dir *squash.Inode) ([]dirent, error)
	// open returns the contents of the regular file ino found at name.
	open(name string, ino *squash.Inode) (io.ReadCloser, error)
	// xattrs returns an inode's extended attributes.
	xattrs(ino *squash.Inode) ([]squash.Xattr, error)
	// blockSize is the image's data block size: the granularity of holes.
	blockSize() int
}

// readerSource adapts a *squash.Reader to source. Listings are read by
// inode, not by path, so nothing about them depends on path lookup.
type readerSource struct {
	r *squash.Reader
}

func (s readerSource) root() (*squash.Inode, error) { return s.r.Root() }

func (s readerSource) readDir(dir *squash.Inode) ([]dirent, error) {
	ents, err := s.r.ReadDirInode(dir)
	if err != nil {
		return nil, err
	}
	out := make([]dirent, 0, len(ents))
	for _, e := range ents {
		ino, err := s.r.InodeAt(e.Ref)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.Name, err)
		}
		if squash.BasicType(ino.Type) != e.Type {
			return nil, fmt.Errorf("entry %q of type %d points at an inode of type %d", e.Name, e.Type, ino.Type)
		}
		out = append(out, dirent{name: e.Name, ino: ino})
	}
	return out, nil
}

func (s readerSource) open(_ string, ino *squash.Inode) (io.ReadCloser, error) {
	return newFileData(s.r, ino, nil)
}

func (s readerSource) decodeFragment(i uint32, dst, scratch []byte) (int, error) {
	fe, err := s.r.Fragment(i)
	if err != nil {
		return 0, err
	}
	return s.r.ReadBlockInto(dst, fe.Start, fe.Size, scratch)
}

func (s readerSource) openFragment(ino *squash.Inode, block []byte) (io.ReadCloser, error) {
	return newFileData(s.r, ino, block)
}

func (s readerSource) xattrs(ino *squash.Inode) ([]squash.Xattr, error) { return s.r.Xattrs(ino) }

func (s readerSource) blockSize() int { return int(s.r.Superblock().BlockSize) }

// CheckName reports why an entry name from an image may not be created in a
// directory: it must be one non-empty path component.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty entry name")
	case name == "." || name == "..":
		return fmt.Errorf("entry name %q refers to a directory itself", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("entry name %q contains '/'", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("entry name %q contains NUL", name)
	}
	return nil
}

// isRoot is asked once per extraction, not cached globally, so tests that
// change credentials see the truth.
func isRoot() bool { return os.Geteuid() == 0 }

// Walk calls fn for the root ("") and every entry sel takes, in the order
// Extract creates them (pre-order, listing order), after validating the
// whole selection as Extract does. Listing tools use it to show exactly
// what extraction would write.
func Walk(r *squash.Reader, sel Selection, fn func(rel string, ino *squash.Inode) error) error {
	p, err := NewPlan(r, sel)
	if err != nil {
		return err
	}
	return p.Walk(fn)
}

// Plan is a validated selection of an image: what Extract would create.
// Tools that both describe and extract a selection (unsquashfs prints
// counts first) plan once instead of walking the image twice.
type Plan struct {
	src   source
	nodes []*node
	total int64
}

// NewPlan validates the selection sel of r as Extract does.
func NewPlan(r *squash.Reader, sel Selection) (*Plan, error) {
	src := readerSource{r: r}
	nodes, total, err := plan(src, sel)
	if err != nil {
		return nil, err
	}
	return &Plan{src: src, nodes: nodes, total: total}, nil
}

// Walk calls fn for the root ("") and every selected entry, in the order
// Extract creates them (pre-order, listing order).
func (p *Plan) Walk(fn func(rel string, ino *squash.Inode) error) error {
	for _, n := range p.nodes {
		if err := fn(n.rel, n.ino); err != nil {
			return err
		}
	}
	return nil
}

// Extract is Extract of the planned selection; opts.Selection is ignored.
func (p *Plan) Extract(dest string, opts Options) error {
	return extractNodes(p.src, p.nodes, p.total, dest, opts)
}
