package squash

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/squashportage/squashportage/squash/codec"
)

// metaStream is a metadata table laid out uncompressed first, with the
// fields that hold positions in another table left as patches. The inode
// and directory tables point into each other (entries name inode blocks,
// directory inodes name directory blocks), so neither can be compressed
// ahead of the other; laid out this way, both are compressed at once, each
// block waiting only for the positions its own patches need.
type metaStream struct {
	buf     []byte
	patches []patch // in increasing at order
}

// patch is a u32 field at buf[at:] that must hold the compressed position
// of block `block` of the other stream.
type patch struct {
	at    int
	block int
}

// pos returns the block index and offset of the next byte written.
func (m *metaStream) pos() (block int, offset uint16) {
	return len(m.buf) / MetadataSize, uint16(len(m.buf) % MetadataSize)
}

func (m *metaStream) write(p []byte) { m.buf = append(m.buf, p...) }

func (m *metaStream) blocks() int { return (len(m.buf) + MetadataSize - 1) / MetadataSize }

// compressedTables is the result of compressing two metaStreams.
type compressedTables struct {
	out [2][]byte
	pos [2][]uint64 // position of each block, plus the end
}

// ref resolves a virtual reference (block index << 16 | offset) of stream s.
func (c *compressedTables) ref(s int, vref uint64) uint64 {
	return c.pos[s][vref>>16]<<16 | vref&0xffff
}

// compressPair compresses two streams whose patches point into each other,
// one goroutine each.
func compressPair(streams [2]*metaStream, encs [2]codec.Encoder, uncompressed bool) (*compressedTables, error) {
	c := &compressedTables{}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	done := [2]int{} // blocks compressed so far
	var firstErr error
	for s := range 2 {
		c.pos[s] = make([]uint64, streams[s].blocks()+1)
	}
	// known reports whether the position of block b of stream s is known.
	known := func(s, b int) bool { return done[s] >= b || firstErr != nil }
	var wg sync.WaitGroup
	for s := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, other := streams[s], 1-s
			var scratch []byte
			pi := 0
			for b := range m.blocks() {
				lo, hi := b*MetadataSize, min((b+1)*MetadataSize, len(m.buf))
				// Patches touching this block, including one straddling
				// its start.
				for pi > 0 && m.patches[pi-1].at+4 > lo {
					pi--
				}
				first := pi
				need := -1
				for ; pi < len(m.patches) && m.patches[pi].at < hi; pi++ {
					need = max(need, m.patches[pi].block)
				}
				mu.Lock()
				for need >= 0 && !known(other, need) {
					cond.Wait()
				}
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				for _, p := range m.patches[first:pi] {
					binary.LittleEndian.PutUint32(m.buf[p.at:], uint32(c.pos[other][p.block]))
				}
				raw := m.buf[lo:hi]
				stored := true
				if !uncompressed && encs[s] != nil {
					var err error
					scratch, err = encs[s].Compress(scratch[:0], raw)
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("compress metadata block: %w", err)
						}
						cond.Broadcast()
						mu.Unlock()
						return
					}
					stored = len(scratch) >= len(raw)
				}
				if stored {
					c.out[s] = binary.LittleEndian.AppendUint16(c.out[s], uint16(len(raw))|metaUncompressed)
					c.out[s] = append(c.out[s], raw...)
				} else {
					c.out[s] = binary.LittleEndian.AppendUint16(c.out[s], uint16(len(scratch)))
					c.out[s] = append(c.out[s], scratch...)
				}
				mu.Lock()
				c.pos[s][b+1] = uint64(len(c.out[s]))
				done[s] = b + 1
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return c, nil
}
