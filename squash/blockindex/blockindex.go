// Package blockindex cuts a SquashFS image file into the pieces a fleet
// shares: every compressed data block, every fragment block, and the rest
// (superblock, metadata tables, padding, trailing records) as raw chunks,
// each with its SHA-256. The pieces cover the file from its first byte to
// its last, in order, so an image can be rebuilt byte for byte from them;
// publisher and client index images with the same code, so a block the
// client already holds is found by its hash.
package blockindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/squashportage/squashportage/squash"
)

// Kinds of pieces.
const (
	KindData     = 'd' // a compressed (or stored) data block of a file
	KindFragment = 'f' // a fragment block
	KindRaw      = 'r' // anything else: superblock, tables, padding, records
)

// RawChunk is the largest raw piece: the metadata region is cut into
// pieces of this size, so that the unchanged start of a table still
// matches.
const RawChunk = 32 << 10

// MaxPiece bounds a piece's length when decoding (a data block is at most
// squash.MaxBlockSize, stored).
const MaxPiece = squash.MaxBlockSize

// Block is one piece of the image file.
type Block struct {
	Off  uint64
	Len  uint32
	Kind byte
	Sum  [sha256.Size]byte
}

// Index is an image file cut into pieces.
type Index struct {
	Size   uint64            // the file's size
	SHA256 [sha256.Size]byte // of the whole file
	Blocks []Block
}

// Build indexes the image file of size bytes read through ra.
func Build(ra io.ReaderAt, size int64) (*Index, error) {
	r, err := squash.NewReader(ra, size)
	if err != nil {
		return nil, err
	}
	spans, err := blockSpans(r, uint64(size))
	if err != nil {
		return nil, err
	}
	ix := &Index{Size: uint64(size)}
	whole := sha256.New()
	buf := make([]byte, MaxPiece)
	add := func(off, n uint64, kind byte) error {
		b := buf[:n]
		if _, err := ra.ReadAt(b, int64(off)); err != nil && !(errors.Is(err, io.EOF) && off+n == uint64(size)) {
			return fmt.Errorf("read %d bytes at %d: %w", n, off, err)
		}
		whole.Write(b)
		ix.Blocks = append(ix.Blocks, Block{Off: off, Len: uint32(n), Kind: kind, Sum: sha256.Sum256(b)})
		return nil
	}
	raw := func(from, to uint64) error {
		for from < to {
			n := min(to-from, RawChunk)
			if err := add(from, n, KindRaw); err != nil {
				return err
			}
			from += n
		}
		return nil
	}
	pos := uint64(0)
	for _, s := range spans {
		if err := raw(pos, s.off); err != nil {
			return nil, err
		}
		if err := add(s.off, uint64(s.n), s.kind); err != nil {
			return nil, err
		}
		pos = s.off + uint64(s.n)
	}
	if err := raw(pos, uint64(size)); err != nil {
		return nil, err
	}
	copy(ix.SHA256[:], whole.Sum(nil))
	return ix, nil
}

// BuildFile indexes the image file at path.
func BuildFile(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return Build(f, fi.Size())
}

type span struct {
	off  uint64
	n    uint32
	kind byte
}

// blockSpans lists the data and fragment blocks of r, sorted, each once.
func blockSpans(r *squash.Reader, size uint64) ([]span, error) {
	sb := r.Superblock()
	seen := make(map[uint64]bool)
	var spans []span
	addSpan := func(off uint64, word uint32, kind byte) error {
		n := squash.BlockSize(word)
		if n == 0 || seen[off] {
			return nil
		}
		if n > MaxPiece || off+uint64(n) > size || off+uint64(n) > sb.InodeTable {
			return fmt.Errorf("block at %d (%d bytes) lies outside the data region", off, n)
		}
		seen[off] = true
		spans = append(spans, span{off, n, kind})
		return nil
	}
	for i := uint32(0); i < sb.Fragments; i++ {
		e, err := r.Fragment(i)
		if err != nil {
			return nil, err
		}
		if err := addSpan(e.Start, e.Size, KindFragment); err != nil {
			return nil, err
		}
	}
	root, err := r.Root()
	if err != nil {
		return nil, err
	}
	visited := map[uint64]bool{root.Ref: true}
	queue := []*squash.Inode{root}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		ents, err := r.ReadDirInode(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if visited[e.Ref] {
				continue
			}
			visited[e.Ref] = true
			ino, err := r.InodeAt(e.Ref)
			if err != nil {
				return nil, err
			}
			switch {
			case ino.Mode.IsDir():
				queue = append(queue, ino)
			case ino.Mode.IsRegular():
				pos := ino.BlocksStart
				for _, w := range ino.BlockSizes {
					if err := addSpan(pos, w, KindData); err != nil {
						return nil, err
					}
					pos += uint64(squash.BlockSize(w))
				}
			}
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	for i := 1; i < len(spans); i++ {
		if spans[i-1].off+uint64(spans[i-1].n) > spans[i].off {
			return nil, fmt.Errorf("blocks at %d and %d overlap", spans[i-1].off, spans[i].off)
		}
	}
	return spans, nil
}

// The encoded index ("SPIDX002"), little-endian:
//
//	"SPIDX002"   magic
//	u64          file size
//	[32]byte     SHA-256 of the whole file
//	u32          count
//	count × { u32 length, u8 kind, [32]byte SHA-256 }
//
// The pieces are in file order and cover it exactly, so each one's offset
// is the sum of the lengths before it.
const (
	magic     = "SPIDX002"
	headSize  = 8 + 8 + 32 + 4
	entrySize = 4 + 1 + 32
)

// MarshalBinary encodes the index.
func (ix *Index) MarshalBinary() ([]byte, error) {
	le := binary.LittleEndian
	b := make([]byte, 0, headSize+entrySize*len(ix.Blocks))
	b = append(b, magic...)
	b = le.AppendUint64(b, ix.Size)
	b = append(b, ix.SHA256[:]...)
	b = le.AppendUint32(b, uint32(len(ix.Blocks)))
	for _, bl := range ix.Blocks {
		b = le.AppendUint32(b, bl.Len)
		b = append(b, bl.Kind)
		b = append(b, bl.Sum[:]...)
	}
	return b, nil
}

// Parse decodes an index and checks that its pieces cover the file exactly.
func Parse(b []byte) (*Index, error) {
	le := binary.LittleEndian
	if len(b) < headSize || !bytes.Equal(b[:8], []byte(magic)) {
		return nil, errors.New("not a block index (bad magic)")
	}
	ix := &Index{Size: le.Uint64(b[8:])}
	copy(ix.SHA256[:], b[16:48])
	n := uint64(le.Uint32(b[48:]))
	if uint64(len(b)-headSize) != n*entrySize {
		return nil, fmt.Errorf("block index: %d entries need %d bytes, have %d", n, n*entrySize, len(b)-headSize)
	}
	ix.Blocks = make([]Block, n)
	pos := uint64(0)
	for i := range ix.Blocks {
		e := b[headSize+uint64(i)*entrySize:]
		bl := Block{Off: pos, Len: le.Uint32(e), Kind: e[4]}
		copy(bl.Sum[:], e[5:37])
		if bl.Len == 0 || bl.Len > MaxPiece || pos+uint64(bl.Len) > ix.Size {
			return nil, fmt.Errorf("block index: entry %d (%d bytes at offset %d) is out of bounds", i, bl.Len, pos)
		}
		switch bl.Kind {
		case KindData, KindFragment, KindRaw:
		default:
			return nil, fmt.Errorf("block index: entry %d has unknown kind %q", i, bl.Kind)
		}
		pos += uint64(bl.Len)
		ix.Blocks[i] = bl
	}
	if pos != ix.Size {
		return nil, fmt.Errorf("block index: entries cover %d bytes of %d", pos, ix.Size)
	}
	return ix, nil
}

// BySum maps each piece's hash to one piece with it.
func (ix *Index) BySum() map[[sha256.Size]byte]Block {
	m := make(map[[sha256.Size]byte]Block, len(ix.Blocks))
	for _, bl := range ix.Blocks {
		if _, ok := m[bl.Sum]; !ok {
			m[bl.Sum] = bl
		}
	}
	return m
}
