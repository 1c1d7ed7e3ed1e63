package squash

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

var (
	_ fs.FS         = (*Reader)(nil)
	_ fs.ReadDirFS  = (*Reader)(nil)
	_ fs.StatFS     = (*Reader)(nil)
	_ fs.ReadFileFS = (*Reader)(nil)
	_ fs.ReadLinkFS = (*Reader)(nil)
)

// errNotDir is returned when a path goes through something that is not a
// directory. It counts as fs.ErrNotExist so io/fs callers treat it as a
// missing file.
var errNotDir = fmt.Errorf("not a directory: %w", fs.ErrNotExist)

var errLoop = errors.New("too many levels of symbolic links")

// lookup finds name in the listing of dir.
func (r *Reader) lookup(dir *Inode, name string) (*DirEntry, error) {
	if len(dir.DirIndex) > 0 && !r.dirCached(dir) {
		e, err := r.lookupIndexed(dir, name)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, fs.ErrNotExist
		}
		return e, nil
	}
	ents, err := r.readDir(dir)
	if err != nil {
		return nil, err
	}
	i := sort.Search(len(ents), func(i int) bool { return ents[i].Name >= name })
	if i < len(ents) && ents[i].Name == name {
		return &ents[i], nil
	}
	return nil, fs.ErrNotExist
}

// resolve walks name from the root, following symlinks met along the way
// (and the last component too when follow is set). Symlink targets resolve
// against the directory holding the link, absolute ones against the image
// root, and ".." pops back to the real parent of the directory reached.
func (r *Reader) resolve(op, name string, follow bool) (*Inode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	root, err := r.Root()
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	stack := []*Inode{root}
	var comps []string
	if name != "." {
		comps = strings.Split(name, "/")
	}
	hops := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1]
		if basicType(cur.Type) != TypeDir {
			return nil, &fs.PathError{Op: op, Path: name, Err: errNotDir}
		}
		if len(stack) > 4096 {
			return nil, &fs.PathError{Op: op, Path: name, Err: corruptf("path too deep")}
		}
		e, err := r.lookup(cur, c)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		child, err := r.InodeAt(e.Ref)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if basicType(child.Type) != e.Type {
			return nil, &fs.PathError{Op: op, Path: name, Err: corruptf("entry %q of type %d points at inode of type %d", c, e.Type, child.Type)}
		}
		if basicType(child.Type) == TypeSymlink && (len(comps) > 0 || follow) {
			hops++
			if hops > maxSymlinkHops {
				return nil, &fs.PathError{Op: op, Path: name, Err: errLoop}
			}
			if strings.HasPrefix(child.Target, "/") {
				stack = stack[:1]
			}
			comps = append(strings.Split(child.Target, "/"), comps...)
			continue
		}
		stack = append(stack, child)
	}
	return stack[len(stack)-1], nil
}

// Open opens the named file. Regular files also implement io.ReaderAt and
// io.Seeker; directories implement fs.ReadDirFile.
func (r *Reader) Open(name string) (fs.File, error) {
	ino, err := r.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	return r.openInode(name, ino)
}

func (r *Reader) openInode(name string, ino *Inode) (fs.File, error) {
	info := &fileInfo{name: path.Base(name), ino: ino}
	switch basicType(ino.Type) {
	case TypeDir:
		return &dirFile{r: r, info: info}, nil
	case TypeFile:
		pos, err := r.blockPositions(ino)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &regFile{r: r, name: name, info: info, pos: pos}, nil
	}
	return &specialFile{info: info}, nil
}

// blockPositions returns where each data block of a file starts.
func (r *Reader) blockPositions(ino *Inode) ([]uint64, error) {
	pos := make([]uint64, len(ino.BlockSizes))
	p := ino.BlocksStart
	for i, w := range ino.BlockSizes {
		pos[i] = p
		p += uint64(BlockSize(w))
		if p > r.size {
			return nil, corruptf("inode %d: data block %d past end of image", ino.Number, i)
		}
	}
	return pos, nil
}

// ReadDir returns the entries of the named directory, sorted by name.
func (r *Reader) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, err := r.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if basicType(ino.Type) != TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	ents, err := r.readDir(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(ents))
	for i := range ents {
		out[i] = &dirEntry{r: r, e: ents[i]}
	}
	return out, nil
}

// Stat returns the FileInfo of name, following symlinks.
func (r *Reader) Stat(name string) (fs.FileInfo, error) {
	ino, err := r.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: path.Base(name), ino: ino}, nil
}

// Lstat returns the FileInfo of name without following a final symlink.
func (r *Reader) Lstat(name string) (fs.FileInfo, error) {
	ino, err := r.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: path.Base(name), ino: ino}, nil
}

// ReadLink returns the target of the named symlink.
func (r *Reader) ReadLink(name string) (string, error) {
	ino, err := r.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if basicType(ino.Type) != TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return ino.Target, nil
}

// ReadFile returns the contents of the named file.
func (r *Reader) ReadFile(name string) ([]byte, error) {
	ino, err := r.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	if basicType(ino.Type) != TypeFile {
		if basicType(ino.Type) == TypeDir {
			return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
		}
		return nil, nil
	}
	pos, err := r.blockPositions(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if ino.Size > uint64(maxInt) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("file of %d bytes too large", ino.Size)}
	}
	// Grow the buffer as data arrives instead of trusting the size, which
	// for a sparse file may be far larger than the image.
	const step = 64 << 20
	buf := make([]byte, min(ino.Size, step))
	f := &regFile{r: r, name: name, info: &fileInfo{ino: ino}, pos: pos}
	var off uint64
	for off < ino.Size {
		if off == uint64(len(buf)) {
			buf = append(buf, make([]byte, min(ino.Size-off, uint64(len(buf))))...)
		}
		n, err := f.readAt(buf[off:], int64(off))
		off += uint64(n)
		if err != nil && !(err == io.EOF && off == ino.Size) {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
	}
	return buf, nil
}

const maxInt = int(^uint(0) >> 1)

// fileInfo implements fs.FileInfo over a decoded inode.
type fileInfo struct {
	name string
	ino  *Inode
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return int64(fi.ino.Size) }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.ino.Mode }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(int64(fi.ino.Mtime), 0) }
func (fi *fileInfo) IsDir() bool        { return fi.ino.Mode.IsDir() }
func (fi *fileInfo) Sys() any           { return fi.ino }
func (fi *fileInfo) String() string     { return fs.FormatFileInfo(fi) }

// dirEntry implements fs.DirEntry, decoding the inode only when asked.
type dirEntry struct {
	r *Reader
	e DirEntry
}

func (d *dirEntry) Name() string               { return d.e.Name }
func (d *dirEntry) IsDir() bool                { return d.e.Type == TypeDir }
func (d *dirEntry) Type() fs.FileMode          { return modeType(d.e.Type) }
func (d *dirEntry) String() string             { return fs.FormatDirEntry(d) }
func (d *dirEntry) Info() (fs.FileInfo, error) { return d.r.entryInfo(d.e) }

func (r *Reader) entryInfo(e DirEntry) (fs.FileInfo, error) {
	ino, err := r.InodeAt(e.Ref)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: e.Name, Err: err}
	}
	if basicType(ino.Type) != e.Type {
		return nil, &fs.PathError{Op: "stat", Path: e.Name, Err: corruptf("entry of type %d points at inode of type %d", e.Type, ino.Type)}
	}
	return &fileInfo{name: e.Name, ino: ino}, nil
}

// regFile is an open regular file.
type regFile struct {
	r    *Reader
	name string
	info *fileInfo
	pos  []uint64 // start of each data block

	mu     sync.Mutex // guards off and closed for Read/Seek
	off    int64
	closed bool
}

var (
	_ io.ReaderAt = (*regFile)(nil)
	_ io.Seeker   = (*regFile)(nil)
)

func (f *regFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *regFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

func (f *regFile) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	n, err := f.readAt(p, f.off)
	f.off += int64(n)
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "read", Path: f.name, Err: err}
	}
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *regFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: f.name, Err: fs.ErrInvalid}
	}
	n, err := f.readAt(p, off)
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "readat", Path: f.name, Err: err}
	}
	return n, err
}

func (f *regFile) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrClosed}
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += int64(f.info.ino.Size)
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

// readAt fills p from offset off, returning io.EOF when it reaches the end
// of the file.
func (f *regFile) readAt(p []byte, off int64) (int, error) {
	ino := f.info.ino
	size := ino.Size
	if uint64(off) >= size {
		return 0, io.EOF
	}
	if rest := size - uint64(off); uint64(len(p)) > rest {
		p = p[:rest]
	}
	bs := uint64(f.r.sb.BlockSize)
	done := 0
	var scratch []byte
	for done < len(p) {
		cur := uint64(off) + uint64(done)
		bi := cur / bs
		inBlock := cur % bs
		blockLen := min(bs, size-bi*bs)
		dst := p[done:]
		if uint64(len(dst)) > blockLen-inBlock {
			dst = dst[:blockLen-inBlock]
		}
		if bi < uint64(len(ino.BlockSizes)) {
			w := ino.BlockSizes[bi]
			switch {
			case BlockSize(w) == 0:
				clear(dst)
			case inBlock == 0 && uint64(len(dst)) == blockLen:
				// A whole block wanted: decode straight into p and
				// keep it out of the cache, which is meant for the
				// partial reads of small or unaligned callers.
				if scratch == nil {
					scratch = make([]byte, bs)
				}
				n, err := f.r.decodeDataBlockInto(dst, f.pos[bi], w, scratch)
				if err != nil {
					return done, fmt.Errorf("data block %d at %#x: %w", bi, f.pos[bi], err)
				}
				if uint64(n) != blockLen {
					return done, corruptf("data block %d at %#x: decoded %d bytes, want %d", bi, f.pos[bi], n, blockLen)
				}
			default:
				b, err := f.r.readDataBlock(f.pos[bi], w)
				if err != nil {
					return done, fmt.Errorf("data block %d at %#x: %w", bi, f.pos[bi], err)
				}
				if uint64(len(b)) != blockLen {
					return done, corruptf("data block %d at %#x: decoded %d bytes, want %d", bi, f.pos[bi], len(b), blockLen)
				}
				copy(dst, b[inBlock:])
			}
		} else {
			tail, err := f.r.fragmentTail(ino)
			if err != nil {
				return done, err
			}
			if uint64(len(tail)) != blockLen {
				return done, corruptf("file tail of %d bytes, want %d", len(tail), blockLen)
			}
			copy(dst, tail[inBlock:])
		}
		done += len(dst)
	}
	if uint64(off)+uint64(done) >= size {
		return done, io.EOF
	}
	return done, nil
}

// fragmentTail returns the part of a fragment block holding ino's tail.
func (r *Reader) fragmentTail(ino *Inode) ([]byte, error) {
	if ino.Fragment == NoFragment {
		return nil, corruptf("file of %d bytes has too few blocks and no fragment", ino.Size)
	}
	b, err := r.FragmentBlock(ino.Fragment)
	if err != nil {
		return nil, err
	}
	tail := ino.Size % uint64(r.sb.BlockSize)
	if uint64(ino.FragOffset) > uint64(len(b)) || tail > uint64(len(b))-uint64(ino.FragOffset) {
		return nil, corruptf("fragment %d of %d bytes has no %d bytes at %d", ino.Fragment, len(b), tail, ino.FragOffset)
	}
	return b[ino.FragOffset : uint64(ino.FragOffset)+tail], nil
}

// dirFile is an open directory.
type dirFile struct {
	r    *Reader
	info *fileInfo

	mu     sync.Mutex
	ents   []DirEntry
	loaded bool
	next   int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		ents, err := d.r.readDir(d.info.ino)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.info.name, Err: err}
		}
		d.ents, d.loaded = ents, true
	}
	rest := d.ents[d.next:]
	if n > 0 {
		if len(rest) == 0 {
			return nil, io.EOF
		}
		rest = rest[:min(n, len(rest))]
	}
	out := make([]fs.DirEntry, len(rest))
	for i := range rest {
		out[i] = &dirEntry{r: d.r, e: rest[i]}
	}
	d.next += len(rest)
	return out, nil
}

// specialFile is an open symlink (only reachable via a dangling path),
// device, fifo or socket: it can be stat'ed but holds no data.
type specialFile struct{ info *fileInfo }

func (s *specialFile) Stat() (fs.FileInfo, error) { return s.info, nil }
func (s *specialFile) Read([]byte) (int, error)   { return 0, io.EOF }
func (s *specialFile) Close() error               { return nil }
