package squash

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/squashportage/squashportage/squash/codec"
)

// metaStream is a metadata table written as the writer goes: each 8 KiB
// block is compressed as soon as it is full and the positions its patches
// need are known, so memory holds the compressed table and a block or
// two, not the table (a Portage tree's inode and directory tables are
// 10 MB uncompressed). The inode and directory tables point into each
// other (entries name inode blocks, directory inodes name directory
// blocks); a field naming a block of the other table is a patch, filled
// once that block's compressed position is known. Every patch names a
// block that had begun when the patch was written, so the two streams
// never wait for each other in a circle.
type metaStream struct {
	buf     []byte   // uncompressed, from block base on
	base    int      // blocks compressed
	patches []patch  // pending, in increasing at order
	pins    []int    // u32 fields (by offset) that may still change
	out     []byte   // the compressed blocks
	starts  []uint64 // compressed position of blocks 0..base
	enc     codec.Encoder
	stored  bool // keep blocks uncompressed (-noI)
	scratch []byte
}

// patch is a u32 field at offset at of the stream that must hold the
// compressed position of block `block` of the other stream.
type patch struct {
	at    int
	block int
}

func newMetaStream(enc codec.Encoder, uncompressed bool) *metaStream {
	return &metaStream{enc: enc, stored: uncompressed, starts: []uint64{0}}
}

func (m *metaStream) size() int { return m.base*MetadataSize + len(m.buf) }

// pos returns the block index and offset of the next byte written.
func (m *metaStream) pos() (block int, offset uint16) {
	n := m.size()
	return n / MetadataSize, uint16(n % MetadataSize)
}

func (m *metaStream) write(p []byte) { m.buf = append(m.buf, p...) }

// setU32 rewrites the field at offset at; false when its block is
// compressed already.
func (m *metaStream) setU32(at int, v uint32) bool {
	rel := at - m.base*MetadataSize
	if rel < 0 {
		return false
	}
	binary.LittleEndian.PutUint32(m.buf[rel:], v)
	return true
}

// pin keeps the block holding the field at offset at uncompressed until
// unpin: the field may still change (see setU32).
func (m *metaStream) pin(at int) { m.pins = append(m.pins, at) }

func (m *metaStream) unpin(at int) {
	if i := slices.Index(m.pins, at); i >= 0 {
		m.pins = slices.Delete(m.pins, i, i+1)
	}
}

// resolve turns a virtual reference (block index << 16 | offset) into the
// on-disk one; the block must be compressed already.
func (m *metaStream) resolve(vref uint64) uint64 {
	return m.starts[vref>>16]<<16 | vref&0xffff
}

// step compresses the stream's first uncompressed block if it can: it is
// full (or final says no more is coming), the positions its patches name
// in other are known, and nothing in it is pinned.
func (m *metaStream) step(other *metaStream, final bool) (bool, error) {
	n := min(len(m.buf), MetadataSize)
	if n == 0 || n < MetadataSize && !final {
		return false, nil
	}
	lo := m.base * MetadataSize
	hi := lo + n
	k := 0
	for ; k < len(m.patches) && m.patches[k].at < hi; k++ {
		if m.patches[k].block > other.base {
			return false, nil
		}
	}
	for _, at := range m.pins {
		if at < hi && at+4 > lo {
			return false, nil
		}
	}
	for _, p := range m.patches[:k] {
		binary.LittleEndian.PutUint32(m.buf[p.at-lo:], uint32(other.starts[p.block]))
	}
	m.patches = m.patches[:copy(m.patches, m.patches[k:])]
	raw := m.buf[:n]
	stored := m.stored || m.enc == nil
	if !stored {
		var err error
		if m.scratch, err = m.enc.Compress(m.scratch[:0], raw); err != nil {
			return false, fmt.Errorf("compress metadata block: %w", err)
		}
		stored = len(m.scratch) >= len(raw)
	}
	if stored {
		m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(raw))|metaUncompressed)
		m.out = append(m.out, raw...)
	} else {
		m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(m.scratch)))
		m.out = append(m.out, m.scratch...)
	}
	m.starts = append(m.starts, uint64(len(m.out)))
	m.base++
	m.buf = m.buf[:copy(m.buf, m.buf[n:])]
	return true, nil
}

// compressPair compresses what it can of two streams that point into each
// other; with final, everything (pins are dropped: no more changes come).
func compressPair(a, b *metaStream, final bool) error {
	if final {
		a.pins, b.pins = nil, nil
	}
	for {
		da, err := a.step(b, final)
		if err != nil {
			return err
		}
		db, err := b.step(a, final)
		if err != nil {
			return err
		}
		if !da && !db {
			if final && (len(a.buf) > 0 || len(b.buf) > 0) {
				return fmt.Errorf("metadata tables: %d and %d bytes left that wait for each other", len(a.buf), len(b.buf))
			}
			return nil
		}
	}
}
