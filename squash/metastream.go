package squash

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/squashportage/squashportage/squash/codec"
)

// metaStream is a metadata table written as the writer goes: each 8 KiB
// block is handed to a metaPacker (sealed) as soon as it is full and
// nothing in it may still change, so memory holds the compressed table
// and a few blocks, not the table (a Portage tree's inode and directory
// tables are 11 MB uncompressed). The inode and directory tables point
// into each other (entries name inode blocks, directory inodes name
// directory blocks); a field naming a block of the other table is a
// patch, filled by the packer once that block's compressed position is
// known. Every patch names a block that had begun when the patch was
// written, so the two streams never wait for each other in a circle.
type metaStream struct {
	id      int     // which of the packer's streams
	buf     []byte  // uncompressed, from block base on
	base    int     // blocks sealed
	patches []patch // pending, in increasing at order
	pins    []int   // u32 fields (by offset) that may still change
	pk      *metaPacker
}

// patch is a u32 field at offset at of the stream (of its block, once
// sealed: then at may be negative, or the field may run past the block's
// end, for a field that straddles two blocks) that must hold the
// compressed position of block `block` of the other stream.
type patch struct {
	at    int
	block int
}

func (m *metaStream) size() int { return m.base*MetadataSize + len(m.buf) }

// pos returns the block index and offset of the next byte written.
func (m *metaStream) pos() (block int, offset uint16) {
	n := m.size()
	return n / MetadataSize, uint16(n % MetadataSize)
}

func (m *metaStream) write(p []byte) { m.buf = append(m.buf, p...) }

// setU32 rewrites the field at offset at; false when its block is
// sealed already.
func (m *metaStream) setU32(at int, v uint32) bool {
	rel := at - m.base*MetadataSize
	if rel < 0 {
		return false
	}
	binary.LittleEndian.PutUint32(m.buf[rel:], v)
	return true
}

// pin keeps the block holding the field at offset at unsealed until
// unpin: the field may still change (see setU32).
func (m *metaStream) pin(at int) { m.pins = append(m.pins, at) }

func (m *metaStream) unpin(at int) {
	if i := slices.Index(m.pins, at); i >= 0 {
		m.pins = slices.Delete(m.pins, i, i+1)
	}
}

// seal hands the packer every block it can: full (or, with final, the
// last partial one) and holding no pinned field.
func (m *metaStream) seal(final bool) {
	if final {
		m.pins = nil // no more changes come
	}
	for {
		n := min(len(m.buf), MetadataSize)
		if n == 0 || n < MetadataSize && !final {
			return
		}
		lo := m.base * MetadataSize
		hi := lo + n
		for _, at := range m.pins {
			if at < hi && at+4 > lo {
				return
			}
		}
		// Fields may straddle blocks: one that starts in this block and
		// ends in the next is patched in both (at relative to each).
		k, keep := 0, 0
		for k < len(m.patches) && m.patches[k].at < hi {
			if m.patches[k].at+4 <= hi {
				keep = k + 1
			}
			k++
		}
		b := m.pk.block()
		b.stream = m.id
		b.data = append(b.data[:0], m.buf[:n]...)
		for _, p := range m.patches[:k] {
			b.patches = append(b.patches, patch{at: p.at - lo, block: p.block})
		}
		m.pk.in <- b
		m.patches = m.patches[:copy(m.patches, m.patches[keep:])]
		m.base++
		m.buf = m.buf[:copy(m.buf, m.buf[n:])]
	}
}

// metaPacker compresses the sealed blocks of two metadata streams that
// point into each other, on a goroutine of its own: a Portage tree's
// tables are some 1,400 blocks, whose compression would otherwise sit on
// the writer's critical path (a persist's, above all, whose goroutine
// merges the tree and adds every entry). Blocks are compressed in order
// within each stream, the two streams interleaved as their patches allow,
// so the tables come out the same as if compressed inline.
type metaPacker struct {
	in      chan *sealedBlock
	done    chan struct{}
	closed  bool
	enc     codec.Encoder
	stored  bool // keep blocks uncompressed (-noI)
	streams [2]packedStream
	err     error
	free    sync.Pool
	scratch []byte
}

// sealedBlock is a block of a stream that no longer changes but for its
// patches (at relative to the block).
type sealedBlock struct {
	stream  int
	data    []byte
	patches []patch
}

// packedStream is a stream's compressed side.
type packedStream struct {
	queue  []*sealedBlock // sealed, waiting for the other stream
	out    chunks[byte]   // the compressed blocks
	starts []uint64       // compressed position of blocks 0..len(starts)-1
}

// newMetaPair returns the inode and directory streams and starts their
// packer; close stops it.
func newMetaPair(enc codec.Encoder, uncompressed bool) (inodes, dirs *metaStream, pk *metaPacker) {
	pk = &metaPacker{
		in:     make(chan *sealedBlock, 16),
		done:   make(chan struct{}),
		enc:    enc,
		stored: uncompressed || enc == nil,
	}
	for i := range pk.streams {
		pk.streams[i].starts = []uint64{0}
	}
	go pk.run()
	return &metaStream{id: 0, pk: pk}, &metaStream{id: 1, pk: pk}, pk
}

func (p *metaPacker) block() *sealedBlock {
	if b, ok := p.free.Get().(*sealedBlock); ok {
		b.patches = b.patches[:0]
		return b
	}
	return &sealedBlock{data: make([]byte, 0, MetadataSize)}
}

func (p *metaPacker) run() {
	defer close(p.done)
	for b := range p.in {
		p.streams[b.stream].queue = append(p.streams[b.stream].queue, b)
		p.pack()
	}
	if q0, q1 := len(p.streams[0].queue), len(p.streams[1].queue); (q0 > 0 || q1 > 0) && p.err == nil {
		p.err = fmt.Errorf("metadata tables: %d and %d blocks left that wait for each other", q0, q1)
	}
}

// pack compresses every queued block whose patches can be filled.
func (p *metaPacker) pack() {
	for progress := true; progress; {
		progress = false
		for i := range p.streams {
			for p.step(i) {
				progress = true
			}
		}
	}
}

// step compresses stream i's first queued block if the positions its
// patches name in the other stream are known.
func (p *metaPacker) step(i int) bool {
	s, other := &p.streams[i], &p.streams[1-i]
	if len(s.queue) == 0 {
		return false
	}
	b := s.queue[0]
	for _, pt := range b.patches {
		if pt.block >= len(other.starts) {
			return false
		}
	}
	s.queue[0] = nil
	s.queue = s.queue[1:]
	defer p.free.Put(b)
	if p.err != nil {
		return true // draining: the writer fails anyway
	}
	for _, pt := range b.patches {
		v := uint32(other.starts[pt.block])
		if pt.at >= 0 && pt.at+4 <= len(b.data) {
			binary.LittleEndian.PutUint32(b.data[pt.at:], v)
			continue
		}
		for j := range 4 { // the part of a straddling field in this block
			if q := pt.at + j; q >= 0 && q < len(b.data) {
				b.data[q] = byte(v >> (8 * j))
			}
		}
	}
	var err error
	if p.scratch, err = encodeMetaBlock(p.scratch, b.data, p.enc, p.stored); err != nil {
		p.err = err
		return true
	}
	s.out.append(p.scratch...)
	s.starts = append(s.starts, uint64(s.out.len()))
	return true
}

// close waits for the packer to finish what it was handed and returns
// its error; calling it again returns the same.
func (p *metaPacker) close() error {
	if !p.closed {
		p.closed = true
		close(p.in)
	}
	<-p.done
	return p.err
}

// resolve turns a virtual reference of stream i (block index << 16 |
// offset) into the on-disk one; only after close.
func (p *metaPacker) resolve(i int, vref uint64) uint64 {
	return p.streams[i].starts[vref>>16]<<16 | vref&0xffff
}
