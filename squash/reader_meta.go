package squash

import (
	"encoding/binary"
	"fmt"
)

// metaBlock is a decoded metadata block and the position of the block that
// follows it on disk.
type metaBlock struct {
	data []byte
	next uint64
}

// readMetaBlockRaw decodes the metadata block at pos without the cache.
// With allowCompressed false, a compressed block is an error.
func (r *Reader) readMetaBlockRaw(pos uint64, allowCompressed bool) ([]byte, uint64, error) {
	if pos > r.size || r.size-pos < 2 {
		return nil, 0, corruptf("metadata block at %#x past end of image", pos)
	}
	avail := r.size - pos
	if avail > 2+MetadataSize {
		avail = 2 + MetadataSize
	}
	// One read for header and body: the body is at most 8 KiB and is
	// almost always needed whole. A compressed body is only passing
	// through: its buffer goes back to the pool (a persist reads the old
	// image's tables two or three times over).
	raw, _ := r.rawMeta.Get().(*[2 + MetadataSize]byte)
	if raw == nil {
		raw = new([2 + MetadataSize]byte)
	}
	buf := raw[:avail]
	if err := r.readAt(buf, pos); err != nil {
		r.rawMeta.Put(raw)
		return nil, 0, fmt.Errorf("metadata block at %#x: %w", pos, err)
	}
	hdr := binary.LittleEndian.Uint16(buf)
	n := int(hdr &^ metaUncompressed)
	if n == 0 || n > MetadataSize {
		r.rawMeta.Put(raw)
		return nil, 0, corruptf("metadata block at %#x: bad length %d", pos, n)
	}
	if 2+n > len(buf) {
		r.rawMeta.Put(raw)
		return nil, 0, corruptf("metadata block at %#x: %d bytes past end of image", pos, n)
	}
	next := pos + 2 + uint64(n)
	if hdr&metaUncompressed != 0 {
		return buf[2 : 2+n : 2+n], next, nil // kept: the caller holds it
	}
	defer r.rawMeta.Put(raw)
	if !allowCompressed {
		return nil, 0, corruptf("metadata block at %#x: compressed where it must not be", pos)
	}
	out := make([]byte, MetadataSize)
	m, err := r.decompress(out, buf[2:2+n])
	if err != nil {
		return nil, 0, fmt.Errorf("metadata block at %#x: %w", pos, err)
	}
	return out[:m:m], next, nil
}

// readMetaBlock decodes the metadata block at absolute position pos,
// through the cache. The returned data must not be modified.
func (r *Reader) readMetaBlock(pos uint64) (metaBlock, error) {
	if b, ok := r.meta.get(pos); ok {
		return b, nil
	}
	data, next, err := r.readMetaBlockRaw(pos, true)
	if err != nil {
		return metaBlock{}, err
	}
	b := metaBlock{data: data, next: next}
	r.meta.add(pos, b)
	return b, nil
}

// metaCursor reads a byte stream that continues across consecutive metadata
// blocks, the way inodes, directory listings and table entries are stored.
// It always moves forward on disk, so a corrupt stream ends at the end of
// the image rather than looping.
type metaCursor struct {
	r      *Reader
	pos    uint64 // position of the current block
	off    int    // offset in the current block's data
	blk    metaBlock
	loaded bool
}

func (r *Reader) newCursor(pos uint64, off uint16) *metaCursor {
	return &metaCursor{r: r, pos: pos, off: int(off)}
}

// load makes sure the current block has unread data, moving to the next
// block when the current one is used up.
func (c *metaCursor) load() error {
	for {
		if !c.loaded {
			b, err := c.r.readMetaBlock(c.pos)
			if err != nil {
				return err
			}
			if c.off > len(b.data) {
				return corruptf("offset %d beyond metadata block at %#x of %d bytes", c.off, c.pos, len(b.data))
			}
			c.blk, c.loaded = b, true
		}
		if c.off < len(c.blk.data) {
			return nil
		}
		c.pos, c.off, c.loaded = c.blk.next, 0, false
	}
}

// read fills dst.
func (c *metaCursor) read(dst []byte) error {
	for len(dst) > 0 {
		if err := c.load(); err != nil {
			return err
		}
		n := copy(dst, c.blk.data[c.off:])
		c.off += n
		dst = dst[n:]
	}
	return nil
}

// readBytes reads n bytes, growing the result as data actually arrives so
// that a corrupt length cannot trigger a huge allocation.
func (c *metaCursor) readBytes(n uint64) ([]byte, error) {
	const chunk = 64 << 10
	var out []byte
	if n <= chunk {
		out = make([]byte, n)
		return out, c.read(out)
	}
	for uint64(len(out)) < n {
		k := n - uint64(len(out))
		if k > chunk {
			k = chunk
		}
		start := len(out)
		out = append(out, make([]byte, k)...)
		if err := c.read(out[start:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
