package squash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/squashportage/squashportage/squash/codec"
)

// Limits that keep a hostile image from making the Reader do unbounded work.
const (
	// maxSymlinkHops bounds symlink resolution, like the kernel's MAXSYMLINKS.
	maxSymlinkHops = 40
	// maxSymlinkSize is the kernel's limit too (it refuses larger targets).
	maxSymlinkSize = 4096
	// maxNameLen is SQUASHFS_NAME_LEN.
	maxNameLen = 256
	// maxDirCount is the most entries one directory header may announce.
	maxDirCount = 256
	// maxXattrCount bounds the pairs of one xattr set; Linux caps the whole
	// list at 64 KiB, so a real set never comes close.
	maxXattrCount = 1 << 16
)

// Cache sizes: metadata blocks are 8 KiB each; data blocks up to the block
// size each; directory listings are weighed by their entry count.
const (
	metaCacheBlocks = 512
	dataCacheBlocks = 16
	dirCacheEntries = 1 << 16
)

// errCorrupt is wrapped into every error caused by inconsistent image data so
// callers can tell corruption apart from I/O errors.
var errCorrupt = errors.New("squashfs: corrupt image")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errCorrupt}, args...)...)
}

// IsCorrupt reports whether err was caused by inconsistent image data.
func IsCorrupt(err error) bool { return errors.Is(err, errCorrupt) }

// Reader reads a SquashFS 4.0 image. It implements io/fs interfaces and is
// safe for concurrent use by multiple goroutines.
type Reader struct {
	ra   io.ReaderAt
	size uint64 // bytes_used: nothing is read past it
	// fileSize is the size given to NewReader: only the block sum record
	// is read past bytes_used.
	fileSize int64
	// dataStart is where files' data begins: after the superblock and
	// the compressor options.
	dataStart uint64
	sb        Superblock
	cfg       codec.Config

	decoders sync.Pool // of codec.Decoder; decoders are not goroutine-safe
	rawMeta  sync.Pool // of *[2 + MetadataSize]byte, for compressed metadata blocks

	ids         []uint32
	idIndex     []uint64
	fragIndex   []uint64 // positions of the fragment table's metadata blocks
	exportIndex []uint64
	xattrStart  uint64 // start of the key/value area refs are relative to
	xattrIDs    uint32
	xattrIndex  []uint64

	meta  *metaCache
	data  *readerLRU[uint64, dataBlock]
	frags *fragBlocks
	dirs  *readerLRU[dirKey, []DirEntry]
}

// ReadCloser is a Reader over a file it owns.
type ReadCloser struct {
	*Reader
	f *os.File
}

// OpenFile opens the image at path.
func OpenFile(path string) (*ReadCloser, error) { return OpenFileAt(path, 0) }

// OpenFileAt opens the image that starts offset bytes into the file or
// block device at path (unsquashfs -offset: an image embedded in another
// file).
func OpenFileAt(path string, offset int64) (*ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		// A block device's size is where it ends, not what stat says.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: size: %w", path, err)
		}
	}
	if offset < 0 || offset > size {
		f.Close()
		return nil, fmt.Errorf("%s: offset %d is beyond its %d bytes", path, offset, size)
	}
	var ra io.ReaderAt = f
	if offset > 0 {
		ra = io.NewSectionReader(f, offset, size-offset)
	}
	r, err := NewReader(ra, size-offset)
	if err != nil {
		f.Close()
		if offset > 0 {
			return nil, fmt.Errorf("%s at offset %d: %w", path, offset, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &ReadCloser{Reader: r, f: f}, nil
}

// Close closes the underlying file.
func (rc *ReadCloser) Close() error { return rc.f.Close() }

// File returns the file or block device the image is in.
func (rc *ReadCloser) File() *os.File { return rc.f }

// Data returns the image's bytes (the file, or the part of it from the
// offset on), what a Writer's CopyRun copies blocks from.
func (rc *ReadCloser) Data() io.ReaderAt { return rc.ra }

// NewReader reads and validates the superblock and the small tables of the
// image in r, which is size bytes long.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	if size < SuperblockSize {
		return nil, fmt.Errorf("squashfs: image of %d bytes is shorter than a superblock", size)
	}
	var buf [SuperblockSize]byte
	if err := readFullAt(r, buf[:], 0); err != nil {
		return nil, fmt.Errorf("squashfs: reading superblock: %w", err)
	}
	rd := &Reader{ra: r, fileSize: size}
	if err := rd.sb.UnmarshalBinary(buf[:]); err != nil {
		return nil, err
	}
	sb := &rd.sb
	if sb.BytesUsed < SuperblockSize || sb.BytesUsed > uint64(size) {
		return nil, corruptf("superblock: bytes used %d outside image of %d bytes", sb.BytesUsed, size)
	}
	rd.size = sb.BytesUsed
	if sb.Inodes == 0 {
		return nil, corruptf("superblock: no inodes")
	}
	for _, t := range []struct {
		name string
		pos  uint64
	}{{"inode table", sb.InodeTable}, {"directory table", sb.DirTable}, {"id table", sb.IDTable}} {
		if t.pos < SuperblockSize || t.pos >= rd.size {
			return nil, corruptf("superblock: %s at %#x outside image", t.name, t.pos)
		}
	}
	if sb.DirTable < sb.InodeTable {
		return nil, corruptf("superblock: directory table %#x before inode table %#x", sb.DirTable, sb.InodeTable)
	}

	rd.meta = newMetaCache(metaCacheSize(*sb))
	rd.data = newReaderLRU[uint64, dataBlock](dataCacheBlocks)
	rd.frags = newFragBlocks(fragCacheBytes)
	rd.dirs = newReaderLRU[dirKey, []DirEntry](dirCacheEntries)

	var opts []byte
	rd.dataStart = SuperblockSize
	if sb.Flags&FlagCompressorOptions != 0 {
		// The options block is always stored uncompressed: decoding it
		// cannot depend on the options it carries.
		b, next, err := rd.readMetaBlockRaw(SuperblockSize, false)
		if err != nil {
			return nil, fmt.Errorf("squashfs: compressor options: %w", err)
		}
		opts, rd.dataStart = b, next
	}
	cfg, err := codec.FromImage(sb.Compression, opts, int(sb.BlockSize))
	if err != nil {
		return nil, fmt.Errorf("squashfs: %w", err)
	}
	rd.cfg = cfg
	dec, err := cfg.NewDecoder()
	if err != nil {
		return nil, fmt.Errorf("squashfs: %w", err)
	}
	rd.decoders.Put(dec)

	if err := rd.loadIDs(); err != nil {
		return nil, err
	}
	if sb.Fragments > 0 {
		if sb.FragmentTable == NoTable {
			return nil, corruptf("superblock: %d fragments but no fragment table", sb.Fragments)
		}
		rd.fragIndex, err = rd.readIndex("fragment table", sb.FragmentTable, uint64(sb.Fragments)*16)
		if err != nil {
			return nil, err
		}
	}
	if sb.ExportTable != NoTable {
		rd.exportIndex, err = rd.readIndex("export table", sb.ExportTable, uint64(sb.Inodes)*8)
		if err != nil {
			return nil, err
		}
	}
	if sb.XattrTable != NoTable {
		if err := rd.loadXattrIndex(); err != nil {
			return nil, err
		}
	}
	return rd, nil
}

// XattrIDs is the number of distinct xattr sets the image stores.
func (r *Reader) XattrIDs() uint32 { return r.xattrIDs }

// Superblock returns a copy of the image's superblock.
func (r *Reader) Superblock() Superblock { return r.sb }

// metaCacheSize sizes the metadata block cache so that the inode and
// directory tables of a large tree (a Portage tree's are ~10 MB decoded)
// fit whole: walking the tree then decodes each block once. Compressed
// tables expand 4x (gzip) to 5x (xz, whose decoding costs most, on a
// Portage tree); room for 8x is a few MB more. The cap bounds memory
// (8 KiB a block) for hostile superblocks.
func metaCacheSize(sb Superblock) int {
	end := sb.FragmentTable
	for _, p := range []uint64{sb.ExportTable, sb.IDTable, sb.XattrTable} {
		if p != NoTable && p > sb.DirTable && p < end {
			end = p
		}
	}
	if end == NoTable || end <= sb.InodeTable {
		return metaCacheBlocks
	}
	blocks := (end - sb.InodeTable) / 1024
	return int(max(metaCacheBlocks, min(blocks, 8192)))
}

// SetCache bounds the decoded metadata blocks and the directory listings
// r keeps. The defaults hold a large tree's tables whole, for walks that
// come back to them (verify, extraction); a reader that passes over the
// tree in order (a fold) needs a few hundred blocks. It drops what is
// cached; r must not be in use meanwhile.
func (r *Reader) SetCache(metaBlocks, listings int) {
	r.meta = newMetaCache(metaBlocks)
	r.dirs = newReaderLRU[dirKey, []DirEntry](max(listings, 1))
}

// DataStart returns the position of the first data block: right after
// the superblock and the compressor options block.
func (r *Reader) DataStart() uint64 { return r.dataStart }

// ReadAt reads the image file itself, for callers that look at raw bytes
// (such as the first word of a table's index).
func (rc *ReadCloser) ReadAt(p []byte, off int64) (int, error) { return rc.f.ReadAt(p, off) }

// Codec returns the compressor configuration of the image.
func (r *Reader) Codec() codec.Config { return r.cfg }

func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readAt reads len(b) bytes at pos, refusing anything past bytes_used.
func (r *Reader) readAt(b []byte, pos uint64) error {
	if pos > r.size || uint64(len(b)) > r.size-pos {
		return corruptf("read of %d bytes at %#x past end of image (%#x)", len(b), pos, r.size)
	}
	if err := readFullAt(r.ra, b, int64(pos)); err != nil {
		return fmt.Errorf("reading %d bytes at %#x: %w", len(b), pos, err)
	}
	return nil
}

// readIndex reads the array of metadata block positions that a table of
// tableBytes bytes (uncompressed) is split into.
func (r *Reader) readIndex(name string, pos, tableBytes uint64) ([]uint64, error) {
	n := (tableBytes + MetadataSize - 1) / MetadataSize
	if pos > r.size || n > (r.size-pos)/8 {
		return nil, corruptf("%s index of %d entries at %#x past end of image", name, n, pos)
	}
	b := make([]byte, n*8)
	if err := r.readAt(b, pos); err != nil {
		return nil, fmt.Errorf("%s index: %w", name, err)
	}
	idx := make([]uint64, n)
	for i := range idx {
		idx[i] = binary.LittleEndian.Uint64(b[i*8:])
		if idx[i] >= r.size {
			return nil, corruptf("%s: block %d at %#x past end of image", name, i, idx[i])
		}
	}
	return idx, nil
}

// readTableEntry reads an entry of entrySize bytes numbered i from a table
// split into metadata blocks listed in index.
func (r *Reader) readTableEntry(index []uint64, i uint64, entrySize int, dst []byte) error {
	off := i * uint64(entrySize)
	blk := off / MetadataSize
	if blk >= uint64(len(index)) {
		return corruptf("table entry %d beyond index", i)
	}
	c := r.newCursor(index[blk], uint16(off%MetadataSize))
	return c.read(dst[:entrySize])
}

func (r *Reader) loadIDs() error {
	n := uint64(r.sb.IDs)
	if n == 0 {
		return corruptf("superblock: empty id table")
	}
	idx, err := r.readIndex("id table", r.sb.IDTable, n*4)
	if err != nil {
		return err
	}
	ids := make([]uint32, 0, n)
	var b [4]byte
	for bi, pos := range idx {
		c := r.newCursor(pos, 0)
		for j := 0; j < MetadataSize/4 && uint64(len(ids)) < n; j++ {
			if err := c.read(b[:]); err != nil {
				return fmt.Errorf("id table block %d: %w", bi, err)
			}
			ids = append(ids, binary.LittleEndian.Uint32(b[:]))
		}
	}
	r.ids, r.idIndex = ids, idx
	return nil
}

func (r *Reader) loadXattrIndex() error {
	var b [16]byte
	if err := r.readAt(b[:], r.sb.XattrTable); err != nil {
		return fmt.Errorf("xattr table header: %w", err)
	}
	r.xattrStart = binary.LittleEndian.Uint64(b[0:])
	r.xattrIDs = binary.LittleEndian.Uint32(b[8:])
	if r.xattrStart >= r.size {
		return corruptf("xattr table: key/value area at %#x past end of image", r.xattrStart)
	}
	idx, err := r.readIndex("xattr id table", r.sb.XattrTable+16, uint64(r.xattrIDs)*16)
	if err != nil {
		return err
	}
	r.xattrIndex = idx
	return nil
}

func (r *Reader) lookupID(i uint16) (uint32, error) {
	if int(i) >= len(r.ids) {
		return 0, corruptf("id index %d out of range (%d ids)", i, len(r.ids))
	}
	return r.ids[i], nil
}

// Fragment returns entry i of the fragment table.
func (r *Reader) Fragment(i uint32) (FragmentEntry, error) {
	if i >= r.sb.Fragments {
		return FragmentEntry{}, corruptf("fragment %d out of range (%d fragments)", i, r.sb.Fragments)
	}
	var b [16]byte
	if err := r.readTableEntry(r.fragIndex, uint64(i), 16, b[:]); err != nil {
		return FragmentEntry{}, fmt.Errorf("fragment table entry %d: %w", i, err)
	}
	e := FragmentEntry{Start: binary.LittleEndian.Uint64(b[0:]), Size: binary.LittleEndian.Uint32(b[8:])}
	if err := r.checkBlock(e.Start, e.Size); err != nil {
		return FragmentEntry{}, fmt.Errorf("fragment %d: %w", i, err)
	}
	return e, nil
}

// ExportRef returns the inode reference of inode number (1-based) from the
// export table.
func (r *Reader) ExportRef(number uint32) (uint64, error) {
	if r.exportIndex == nil {
		return 0, errors.New("squashfs: image has no export table")
	}
	if number == 0 || number > r.sb.Inodes {
		return 0, fmt.Errorf("squashfs: inode number %d out of range 1..%d", number, r.sb.Inodes)
	}
	var b [8]byte
	if err := r.readTableEntry(r.exportIndex, uint64(number-1), 8, b[:]); err != nil {
		return 0, fmt.Errorf("export table entry %d: %w", number, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// checkBlock validates a data or fragment block's position and size word
// against the image.
func (r *Reader) checkBlock(pos uint64, word uint32) error {
	if word&^(dataUncompressed|(dataUncompressed-1)) != 0 {
		return corruptf("block size word %#x has unknown bits", word)
	}
	n := uint64(BlockSize(word))
	if n > uint64(r.sb.BlockSize) {
		return corruptf("block at %#x: %d bytes exceed block size %d", pos, n, r.sb.BlockSize)
	}
	if pos > r.size || n > r.size-pos {
		return corruptf("block of %d bytes at %#x past end of image", n, pos)
	}
	return nil
}

// ReadRawBlock returns the on-disk bytes of the data or fragment block at pos
// with the given size word, reusing dst's storage when it is large enough.
func (r *Reader) ReadRawBlock(pos uint64, sizeWord uint32, dst []byte) ([]byte, error) {
	if err := r.checkBlock(pos, sizeWord); err != nil {
		return nil, err
	}
	n := int(BlockSize(sizeWord))
	if cap(dst) >= n {
		dst = dst[:n]
	} else {
		dst = make([]byte, n)
	}
	if err := r.readAt(dst, pos); err != nil {
		return nil, err
	}
	return dst, nil
}

// decompress decodes src into dst (whose length is the maximum allowed)
// with a pooled decoder.
func (r *Reader) decompress(dst, src []byte) (int, error) {
	d, _ := r.decoders.Get().(codec.Decoder)
	if d == nil {
		var err error
		if d, err = r.cfg.NewDecoder(); err != nil {
			return 0, err
		}
	}
	n, err := d.Decompress(dst, src)
	if err != nil {
		// A decoder that failed may hold broken state; let it go.
		return 0, err
	}
	r.decoders.Put(d)
	if n < 0 || n > len(dst) {
		return 0, corruptf("decoder returned %d bytes for a %d-byte buffer", n, len(dst))
	}
	return n, nil
}

// dataBlock is a decoded data or fragment block kept in the cache; word
// guards against two different size words claiming the same position.
type dataBlock struct {
	word uint32
	data []byte
}

// readDataBlock returns the decoded contents of the block at pos. The result
// is shared with the cache and must not be modified.
func (r *Reader) readDataBlock(pos uint64, word uint32) ([]byte, error) {
	if b, ok := r.data.get(pos); ok && b.word == word {
		return b.data, nil
	}
	out := make([]byte, r.sb.BlockSize)
	n, err := r.decodeDataBlockInto(out, pos, word, nil)
	if err != nil {
		return nil, err
	}
	out = out[:n]
	r.data.add(pos, dataBlock{word: word, data: out}, 1)
	return out, nil
}

// decodeDataBlockInto decodes the block at pos into dst (len(dst) is the
// most it may produce), using scratch for the compressed bytes if large
// enough. A zero size word is a hole and is not handled here. Errors do not
// name the position: callers know better what the block is.
func (r *Reader) decodeDataBlockInto(dst []byte, pos uint64, word uint32, scratch []byte) (int, error) {
	if BlockCompressed(word) {
		raw, err := r.ReadRawBlock(pos, word, scratch)
		if err != nil {
			return 0, err
		}
		return r.decompress(dst, raw)
	}
	if err := r.checkBlock(pos, word); err != nil {
		return 0, err
	}
	n := int(BlockSize(word))
	if n > len(dst) {
		return 0, corruptf("uncompressed block at %#x: %d bytes, expected at most %d", pos, n, len(dst))
	}
	if err := r.readAt(dst[:n], pos); err != nil {
		return 0, err
	}
	return n, nil
}
