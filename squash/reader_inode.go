package squash

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"strings"
)

// DirEntry is one entry of a directory listing as stored on disk.
type DirEntry struct {
	Name   string
	Type   uint16 // basic inode type
	Ref    uint64 // inode reference
	Number uint32 // inode number
}

// dirKey identifies a directory listing for the listing cache.
type dirKey struct {
	block  uint32
	offset uint16
	size   uint32
}

func dirKeyOf(dir *Inode) dirKey {
	return dirKey{block: dir.DirBlock, offset: dir.DirOffset, size: uint32(dir.Size)}
}

// dirCached reports whether dir's parsed listing is in the cache.
func (r *Reader) dirCached(dir *Inode) bool {
	_, ok := r.dirs.get(dirKeyOf(dir))
	return ok
}

// Root returns the root directory's inode.
func (r *Reader) Root() (*Inode, error) {
	ino, err := r.InodeAt(r.sb.RootInode)
	if err != nil {
		return nil, fmt.Errorf("root inode: %w", err)
	}
	if basicType(ino.Type) != TypeDir {
		return nil, corruptf("root inode is of type %d, not a directory", ino.Type)
	}
	return ino, nil
}

// InodeAt decodes the inode at reference ref (block position relative to the
// inode table << 16 | offset in the decoded block).
func (r *Reader) InodeAt(ref uint64) (*Inode, error) {
	ino, err := r.readInode(ref)
	if err != nil {
		return nil, fmt.Errorf("inode %#x: %w", ref, err)
	}
	return ino, nil
}

func (r *Reader) readInode(ref uint64) (*Inode, error) {
	ino := new(Inode)
	if err := r.readInodeInto(ref, ino); err != nil {
		return nil, err
	}
	return ino, nil
}

// readInodeInto is readInode into ino, for walks that look at most
// inodes once and keep few: its block list's memory is reused.
func (r *Reader) readInodeInto(ref uint64, ino *Inode) error {
	blk := ref >> 16
	if blk >= r.size-r.sb.InodeTable {
		return corruptf("reference past end of image")
	}
	return r.parseInodeInto(r.newCursor(r.sb.InodeTable+blk, uint16(ref)), ref, ino)
}

// Inodes calls fn with every inode of the inode table, in table order, for
// work that needs each inode once but not the tree: a fold plans which
// blocks to copy from every file's. It stops at fn's first error. The
// Inode passed is reused for the next one: fn keeps a Clone.
func (r *Reader) Inodes(fn func(*Inode) error) error {
	c := r.newCursor(r.sb.InodeTable, 0)
	ino := new(Inode)
	for i := uint32(0); i < r.sb.Inodes; i++ {
		// A cursor at a block's end moves to the next block's start,
		// which is how the inode there is referenced.
		if err := c.load(); err != nil {
			return fmt.Errorf("inode table, inode %d of %d: %w", i+1, r.sb.Inodes, err)
		}
		ref := (c.pos-r.sb.InodeTable)<<16 | uint64(c.off)
		if err := r.parseInodeInto(c, ref, ino); err != nil {
			return fmt.Errorf("inode %#x: %w", ref, err)
		}
		if err := fn(ino); err != nil {
			return err
		}
	}
	return nil
}

// parseInodeInto decodes the inode at c into ino, reusing its block
// list's memory, and leaves c just after it.
func (r *Reader) parseInodeInto(c *metaCursor, ref uint64, ino *Inode) error {
	le := binary.LittleEndian
	var b [64]byte
	if err := c.read(b[:16]); err != nil {
		return err
	}
	*ino = Inode{
		Ref:        ref,
		Type:       le.Uint16(b[0:]),
		Mtime:      le.Uint32(b[8:]),
		Number:     le.Uint32(b[12:]),
		Nlink:      1,
		XattrIndex: NoXattr,
		Fragment:   NoFragment,
		BlockSizes: ino.BlockSizes[:0],
	}
	if ino.Type < TypeDir || ino.Type > TypeLSocket {
		return corruptf("unknown inode type %d", ino.Type)
	}
	ino.Mode = modeType(ino.Type) | goPerm(le.Uint16(b[2:]))
	var err error
	if ino.UID, err = r.lookupID(le.Uint16(b[4:])); err != nil {
		return fmt.Errorf("uid: %w", err)
	}
	if ino.GID, err = r.lookupID(le.Uint16(b[6:])); err != nil {
		return fmt.Errorf("gid: %w", err)
	}
	if ino.Number == 0 || ino.Number > r.sb.Inodes {
		return corruptf("inode number %d out of range 1..%d", ino.Number, r.sb.Inodes)
	}

	switch ino.Type {
	case TypeDir:
		if err := c.read(b[:16]); err != nil {
			return err
		}
		ino.DirBlock = le.Uint32(b[0:])
		ino.Nlink = le.Uint32(b[4:])
		ino.Size = uint64(le.Uint16(b[8:]))
		ino.DirOffset = le.Uint16(b[10:])
		ino.Parent = le.Uint32(b[12:])
	case TypeLDir:
		if err := c.read(b[:24]); err != nil {
			return err
		}
		ino.Nlink = le.Uint32(b[0:])
		ino.Size = uint64(le.Uint32(b[4:]))
		ino.DirBlock = le.Uint32(b[8:])
		ino.Parent = le.Uint32(b[12:])
		count := le.Uint16(b[16:])
		ino.DirOffset = le.Uint16(b[18:])
		ino.XattrIndex = le.Uint32(b[20:])
		if count > 0 {
			ino.DirIndex = make([]DirIndex, 0, min(int(count), 64))
		}
		for i := 0; i < int(count); i++ {
			if err := c.read(b[:12]); err != nil {
				return fmt.Errorf("directory index %d: %w", i, err)
			}
			n := le.Uint32(b[8:]) + 1
			if n > maxNameLen {
				return corruptf("directory index %d: name of %d bytes", i, n)
			}
			name, err := c.readBytes(uint64(n))
			if err != nil {
				return fmt.Errorf("directory index %d: %w", i, err)
			}
			ino.DirIndex = append(ino.DirIndex, DirIndex{
				Index: le.Uint32(b[0:]),
				Start: le.Uint32(b[4:]),
				Name:  string(name),
			})
		}
	case TypeFile:
		if err := c.read(b[:16]); err != nil {
			return err
		}
		ino.BlocksStart = uint64(le.Uint32(b[0:]))
		ino.Fragment = le.Uint32(b[4:])
		ino.FragOffset = le.Uint32(b[8:])
		ino.Size = uint64(le.Uint32(b[12:]))
		if err := r.readBlockList(c, ino); err != nil {
			return err
		}
	case TypeLFile:
		if err := c.read(b[:40]); err != nil {
			return err
		}
		ino.BlocksStart = le.Uint64(b[0:])
		ino.Size = le.Uint64(b[8:])
		ino.Sparse = le.Uint64(b[16:])
		ino.Nlink = le.Uint32(b[24:])
		ino.Fragment = le.Uint32(b[28:])
		ino.FragOffset = le.Uint32(b[32:])
		ino.XattrIndex = le.Uint32(b[36:])
		if err := r.readBlockList(c, ino); err != nil {
			return err
		}
	case TypeSymlink, TypeLSymlink:
		if err := c.read(b[:8]); err != nil {
			return err
		}
		ino.Nlink = le.Uint32(b[0:])
		n := le.Uint32(b[4:])
		if n == 0 || n > maxSymlinkSize {
			return corruptf("symlink target of %d bytes", n)
		}
		t, err := c.readBytes(uint64(n))
		if err != nil {
			return fmt.Errorf("symlink target: %w", err)
		}
		ino.Target = string(t)
		ino.Size = uint64(n)
		if ino.Type == TypeLSymlink {
			if err := c.read(b[:4]); err != nil {
				return err
			}
			ino.XattrIndex = le.Uint32(b[0:])
		}
	case TypeBlockDev, TypeCharDev, TypeLBlock, TypeLChar:
		n := 8
		if ino.Type > TypeSocket {
			n = 12
		}
		if err := c.read(b[:n]); err != nil {
			return err
		}
		ino.Nlink = le.Uint32(b[0:])
		ino.Rdev = le.Uint32(b[4:])
		if n == 12 {
			ino.XattrIndex = le.Uint32(b[8:])
		}
	case TypeFifo, TypeSocket, TypeLFifo, TypeLSocket:
		n := 4
		if ino.Type > TypeSocket {
			n = 8
		}
		if err := c.read(b[:n]); err != nil {
			return err
		}
		ino.Nlink = le.Uint32(b[0:])
		if n == 8 {
			ino.XattrIndex = le.Uint32(b[4:])
		}
	}
	if ino.XattrIndex != NoXattr && ino.XattrIndex >= r.xattrIDs {
		return corruptf("xattr index %d out of range (%d sets)", ino.XattrIndex, r.xattrIDs)
	}
	return nil
}

// readBlockList reads a regular file's block size words after checking the
// count they imply against the image, so a bogus file size cannot make us
// allocate or read without bound.
func (r *Reader) readBlockList(c *metaCursor, ino *Inode) error {
	bs := uint64(r.sb.BlockSize)
	n := ino.Size / bs
	if ino.Fragment == NoFragment {
		if ino.Size%bs != 0 {
			n++
		}
	} else {
		if ino.Fragment >= r.sb.Fragments {
			return corruptf("fragment %d out of range (%d fragments)", ino.Fragment, r.sb.Fragments)
		}
		if ino.Size%bs == 0 {
			return corruptf("file of %d bytes has a fragment but no tail", ino.Size)
		}
		if uint64(ino.FragOffset) >= bs || ino.Size%bs > bs-uint64(ino.FragOffset) {
			return corruptf("fragment tail of %d bytes at offset %d exceeds block size", ino.Size%bs, ino.FragOffset)
		}
	}
	// Each word occupies 4 bytes of metadata, and a metadata block holding
	// at most 8 KiB takes at least 3 bytes on disk.
	if n > (r.size/3+1)*(MetadataSize/4) {
		return corruptf("file of %d bytes needs %d blocks, more than the image can list", ino.Size, n)
	}
	if ino.BlocksStart > r.size {
		return corruptf("data at %#x past end of image", ino.BlocksStart)
	}
	// Read in small pieces: a buffer on the stack is cleared on every
	// call, and most files (a Portage tree's) have no blocks at all.
	const chunk = 64
	sizes := ino.BlockSizes[:0] // Inodes reuses one Inode, and its list
	if n == 0 {
		ino.BlockSizes = sizes
		return nil
	}
	if uint64(cap(sizes)) < min(n, 2048) {
		sizes = make([]uint32, 0, min(n, 2048))
	}
	var buf [chunk * 4]byte
	var total uint64
	for uint64(len(sizes)) < n {
		k := min(n-uint64(len(sizes)), chunk)
		if err := c.read(buf[:k*4]); err != nil {
			return fmt.Errorf("block list: %w", err)
		}
		for i := uint64(0); i < k; i++ {
			w := binary.LittleEndian.Uint32(buf[i*4:])
			if w&^(dataUncompressed|(dataUncompressed-1)) != 0 || BlockSize(w) > r.sb.BlockSize {
				return corruptf("block %d: bad size word %#x", len(sizes), w)
			}
			total += uint64(BlockSize(w))
			if total > r.size-ino.BlocksStart {
				return corruptf("data blocks run past end of image")
			}
			sizes = append(sizes, w)
		}
	}
	ino.BlockSizes = sizes
	return nil
}

// ReadDirInode returns the listing of directory dir as stored on disk.
func (r *Reader) ReadDirInode(dir *Inode) ([]DirEntry, error) {
	ents, err := r.readDir(dir)
	if err != nil {
		return nil, err
	}
	return append([]DirEntry(nil), ents...), nil
}

// readDir returns the cached listing of dir; the slice is shared.
func (r *Reader) readDir(dir *Inode) ([]DirEntry, error) {
	if ents, ok := r.dirs.get(dirKeyOf(dir)); ok {
		return ents, nil
	}
	var ents []DirEntry
	err := r.eachEntry(dir, func(e DirEntry) bool {
		ents = append(ents, e)
		return true
	})
	if err != nil {
		return nil, err
	}
	r.dirs.add(dirKeyOf(dir), ents, len(ents)+1)
	return ents, nil
}

// eachEntry hands dir's entries to fn, in order, until fn returns false:
// for walks that read each listing once (readDir keeps them).
func (r *Reader) eachEntry(dir *Inode, fn func(DirEntry) bool) error {
	if basicType(dir.Type) != TypeDir {
		return fmt.Errorf("inode %d is not a directory", dir.Number)
	}
	if dir.Size > 0xFFFFFFFF {
		return corruptf("directory %d: listing of %d bytes", dir.Number, dir.Size)
	}
	if err := r.scanDir(dir, 0, dir.DirBlock, fn); err != nil {
		return fmt.Errorf("directory inode %d: %w", dir.Number, err)
	}
	return nil
}

// scanDir decodes dir's listing from byte index (where a header must start,
// in the metadata block at block) and hands each entry to fn until fn
// returns false. Entries must be validly named and strictly ascending.
func (r *Reader) scanDir(dir *Inode, index, block uint32, fn func(DirEntry) bool) error {
	if dir.Size < 3 {
		return corruptf("listing size %d below 3", dir.Size)
	}
	if uint64(block) >= r.size-r.sb.DirTable {
		return corruptf("listing at block %#x past end of image", block)
	}
	if uint64(index) > dir.Size-3 {
		return corruptf("listing index %d beyond size %d", index, dir.Size)
	}
	remain := dir.Size - 3 - uint64(index)
	if remain == 0 {
		return nil
	}
	off := (uint64(dir.DirOffset) + uint64(index)) % MetadataSize
	c := r.newCursor(r.sb.DirTable+uint64(block), uint16(off))
	le := binary.LittleEndian
	var b [12]byte
	var name [maxNameLen]byte
	var prev string
	first := true
	for remain > 0 {
		if remain < 12 {
			return corruptf("listing ends inside a header")
		}
		if err := c.read(b[:12]); err != nil {
			return err
		}
		remain -= 12
		count := uint64(le.Uint32(b[0:])) + 1
		start := le.Uint32(b[4:])
		base := le.Uint32(b[8:])
		if count > maxDirCount {
			return corruptf("directory header with %d entries", count)
		}
		for ; count > 0; count-- {
			if remain < 8 {
				return corruptf("listing ends inside an entry")
			}
			if err := c.read(b[:8]); err != nil {
				return err
			}
			n := uint64(le.Uint16(b[6:])) + 1
			if n > maxNameLen {
				return corruptf("name of %d bytes", n)
			}
			if remain < 8+n {
				return corruptf("listing ends inside a name")
			}
			remain -= 8 + n
			if err := c.read(name[:n]); err != nil {
				return err
			}
			e := DirEntry{
				Name:   string(name[:n]),
				Type:   le.Uint16(b[4:]),
				Ref:    uint64(start)<<16 | uint64(le.Uint16(b[0:])),
				Number: base + uint32(int32(int16(le.Uint16(b[2:])))),
			}
			if e.Type < TypeDir || e.Type > TypeSocket {
				return corruptf("entry %q: bad type %d", e.Name, e.Type)
			}
			if err := checkName(e.Name); err != nil {
				return err
			}
			if !first && prev >= e.Name {
				return corruptf("entries %q and %q out of order", prev, e.Name)
			}
			prev, first = e.Name, false
			if !fn(e) {
				return nil
			}
		}
	}
	return nil
}

// lookupIndexed finds name in a directory too large to keep parsed, by
// starting at the last index point whose first name is not after name:
// the index exists so a lookup decodes about one metadata block.
func (r *Reader) lookupIndexed(dir *Inode, name string) (*DirEntry, error) {
	index, block := uint32(0), dir.DirBlock
	for _, x := range dir.DirIndex {
		if x.Name > name {
			break
		}
		index, block = x.Index, x.Start
	}
	var found *DirEntry
	err := r.scanDir(dir, index, block, func(e DirEntry) bool {
		if e.Name >= name {
			if e.Name == name {
				found = &e
			}
			return false
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("directory inode %d: %w", dir.Number, err)
	}
	return found, nil
}

// checkName rejects names that would break path handling: the format
// forbids them and the kernel would refuse them too.
func checkName(s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return corruptf("invalid name %q", s)
	}
	return nil
}

// Header returns what a Writer needs to add ino again as the entry name:
// its type, permissions, owner, time, size, device numbers, symlink target
// and extended attributes.
func (r *Reader) Header(name string, ino *Inode) (Header, error) {
	h := Header{Name: name, Mode: ino.Mode, UID: ino.UID, GID: ino.GID, Mtime: ino.Mtime, Target: ino.Target}
	if ino.Mode.IsRegular() {
		h.Size = int64(ino.Size)
	}
	if ino.Mode&fs.ModeDevice != 0 {
		h.Major, h.Minor = DecodeDev(ino.Rdev)
	}
	if ino.XattrIndex != NoXattr {
		xs, err := r.Xattrs(ino)
		if err != nil {
			return h, fmt.Errorf("/%s: %w", name, err)
		}
		h.Xattrs = xs
	}
	return h, nil
}

// Xattrs returns the extended attributes of ino with their full names.
func (r *Reader) Xattrs(ino *Inode) ([]Xattr, error) {
	if ino.XattrIndex == NoXattr {
		return nil, nil
	}
	x, err := r.readXattrs(ino.XattrIndex)
	if err != nil {
		return nil, fmt.Errorf("xattrs of inode %d: %w", ino.Number, err)
	}
	return x, nil
}

func (r *Reader) readXattrs(idx uint32) ([]Xattr, error) {
	if idx >= r.xattrIDs {
		return nil, corruptf("xattr set %d out of range (%d sets)", idx, r.xattrIDs)
	}
	le := binary.LittleEndian
	var b [16]byte
	if err := r.readTableEntry(r.xattrIndex, uint64(idx), 16, b[:]); err != nil {
		return nil, fmt.Errorf("xattr id %d: %w", idx, err)
	}
	ref := le.Uint64(b[0:])
	count := le.Uint32(b[8:])
	if count > maxXattrCount {
		return nil, corruptf("xattr set %d claims %d pairs", idx, count)
	}
	c, err := r.xattrCursor(ref)
	if err != nil {
		return nil, err
	}
	out := make([]Xattr, 0, min(count, 16))
	for i := uint32(0); i < count; i++ {
		if err := c.read(b[:4]); err != nil {
			return nil, err
		}
		typ := le.Uint16(b[0:])
		prefix := typ &^ xattrOutOfLine
		if int(prefix) >= len(xattrPrefixes) {
			return nil, corruptf("xattr with unknown prefix type %d", typ)
		}
		nameLen := uint64(le.Uint16(b[2:]))
		name, err := c.readBytes(nameLen)
		if err != nil {
			return nil, err
		}
		if err := c.read(b[:4]); err != nil {
			return nil, err
		}
		vlen := uint64(le.Uint32(b[0:]))
		var val []byte
		if typ&xattrOutOfLine != 0 {
			if vlen != 8 {
				return nil, corruptf("out-of-line xattr reference of %d bytes", vlen)
			}
			if err := c.read(b[:8]); err != nil {
				return nil, err
			}
			vc, err := r.xattrCursor(le.Uint64(b[0:]))
			if err != nil {
				return nil, err
			}
			if err := vc.read(b[:4]); err != nil {
				return nil, err
			}
			if val, err = vc.readBytes(uint64(le.Uint32(b[0:]))); err != nil {
				return nil, err
			}
		} else if val, err = c.readBytes(vlen); err != nil {
			return nil, err
		}
		out = append(out, Xattr{Name: xattrPrefixes[prefix] + string(name), Value: val})
	}
	return out, nil
}

func (r *Reader) xattrCursor(ref uint64) (*metaCursor, error) {
	blk := ref >> 16
	if blk >= r.size-r.xattrStart {
		return nil, corruptf("xattr reference %#x past end of image", ref)
	}
	return r.newCursor(r.xattrStart+blk, uint16(ref)), nil
}
