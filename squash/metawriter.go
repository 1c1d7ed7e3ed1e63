package squash

import (
	"encoding/binary"
	"fmt"

	"github.com/squashportage/squashportage/squash/codec"
)

// metaWriter builds one metadata table (xattrs, a lookup table) in memory as a stream chopped into 8 KiB blocks, each compressed on its own.
// Tables are small next to the data (a few MB for a Portage tree), so keeping
// them in memory until Close is cheap and lets positions be known at once.
type metaWriter struct {
	enc          codec.Encoder // nil: store uncompressed
	buf          []byte        // uncompressed bytes not yet in a block (< MetadataSize)
	out          []byte        // finished blocks with their 16-bit headers
	blockStarts  []uint64      // position in out of each finished block
	scratch      []byte
	uncompressed bool
}

func newMetaWriter(enc codec.Encoder, uncompressed bool) *metaWriter {
	return &metaWriter{enc: enc, uncompressed: uncompressed}
}

// pos returns the reference of the next byte written: the position of its
// block within the table and its offset inside the uncompressed block.
func (m *metaWriter) pos() (block uint64, offset uint16) {
	return uint64(len(m.out)), uint16(len(m.buf))
}

// ref packs pos into the 48/16-bit form used by inode references.
func (m *metaWriter) ref() uint64 {
	b, o := m.pos()
	return b<<16 | uint64(o)
}

func (m *metaWriter) write(p []byte) error {
	for len(p) > 0 {
		n := min(MetadataSize-len(m.buf), len(p))
		m.buf = append(m.buf, p[:n]...)
		p = p[n:]
		if len(m.buf) == MetadataSize {
			if err := m.flushBlock(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *metaWriter) flushBlock() error {
	if len(m.buf) == 0 {
		return nil
	}
	m.blockStarts = append(m.blockStarts, uint64(len(m.out)))
	var err error
	m.scratch, err = encodeMetaBlock(m.scratch, m.buf, m.enc, m.uncompressed)
	m.out = append(m.out, m.scratch...)
	m.buf = m.buf[:0]
	return err
}

// encodeMetaBlock encodes raw as one metadata block, its 16-bit header
// then its body, into buf (reused): raw compressed with enc, or raw
// itself when stored is set, enc is nil or compressing does not make it
// smaller.
func encodeMetaBlock(buf, raw []byte, enc codec.Encoder, stored bool) ([]byte, error) {
	if !stored && enc != nil {
		out, err := enc.Compress(append(buf[:0], 0, 0), raw)
		if err != nil {
			return buf, fmt.Errorf("compress metadata block: %w", err)
		}
		if len(out)-2 < len(raw) {
			binary.LittleEndian.PutUint16(out, uint16(len(out)-2))
			return out, nil
		}
		buf = out
	}
	buf = binary.LittleEndian.AppendUint16(buf[:0], uint16(len(raw))|metaUncompressed)
	return append(buf, raw...), nil
}

// finish flushes the last, partial block and returns the table's bytes.
func (m *metaWriter) finish() ([]byte, error) {
	if err := m.flushBlock(); err != nil {
		return nil, err
	}
	return m.out, nil
}

// compressLookup compresses a lookup table (fixed-size entries, no
// references inside) as metadata blocks, spreading the blocks over workers
// since they are independent. It returns the blocks and where each starts.
func compressLookup(cfg codec.Config, data []byte, workers int, uncompressed bool) ([]byte, []uint64, error) {
	n := (len(data) + MetadataSize - 1) / MetadataSize
	parts := make([][]byte, n)
	errs := make(chan error, workers)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	workers = max(1, min(workers, n))
	for range workers {
		go func() {
			enc, err := cfg.NewEncoder()
			if err != nil {
				errs <- err
				return
			}
			m := newMetaWriter(enc, uncompressed)
			for i := range next {
				m.out = nil
				if err := m.write(data[i*MetadataSize : min((i+1)*MetadataSize, len(data))]); err != nil {
					errs <- err
					return
				}
				out, err := m.finish()
				if err != nil {
					errs <- err
					return
				}
				parts[i] = out
			}
			errs <- nil
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, nil, first
	}
	var out []byte
	starts := make([]uint64, n)
	for i, p := range parts {
		starts[i] = uint64(len(out))
		out = append(out, p...)
	}
	return out, starts, nil
}
