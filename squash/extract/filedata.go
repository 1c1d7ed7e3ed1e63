package extract

import (
	"fmt"
	"io"
	"sync"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

// fileData reads a regular file's contents straight from its inode. The
// Reader's Open goes by path, and image names need not be valid io/fs paths
// (any byte but '/' and NUL is allowed), so extraction reads by inode.
type fileData struct {
	r     *squash.Reader
	frags *fragCache
	ino   *squash.Inode
	dec   codec.Decoder
	bs    int

	block int    // next block to decode
	pos   uint64 // image position of that block
	buf   []byte // decoded bytes not yet returned
	store []byte // backing storage of buf
	raw   []byte
	left  uint64 // bytes not yet returned
}

// fragCache keeps the last decoded fragment block: files sharing one are
// usually extracted one after another.
type fragCache struct {
	mu    sync.Mutex
	index uint32
	data  []byte
}

func newFileData(r *squash.Reader, frags *fragCache, ino *squash.Inode) (*fileData, error) {
	dec, err := r.Codec().NewDecoder()
	if err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	bs := int(r.Superblock().BlockSize)
	full := ino.Size / uint64(bs)
	want := full
	if ino.Size%uint64(bs) != 0 && ino.Fragment == squash.NoFragment {
		want++
	}
	if uint64(len(ino.BlockSizes)) != want {
		return nil, fmt.Errorf("inode %d: %d blocks listed for %d bytes", ino.Number, len(ino.BlockSizes), ino.Size)
	}
	return &fileData{r: r, frags: frags, ino: ino, dec: dec, bs: bs,
		pos: ino.BlocksStart, store: make([]byte, bs), left: ino.Size}, nil
}

func (f *fileData) Close() error { return nil }

func (f *fileData) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, io.EOF
	}
	if len(f.buf) == 0 {
		if err := f.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	f.left -= uint64(n)
	return n, nil
}

// next decodes the following block (or the fragment tail) into f.buf.
func (f *fileData) next() error {
	want := min(uint64(f.bs), f.left)
	if f.block >= len(f.ino.BlockSizes) {
		tail, err := f.fragment()
		if err != nil {
			return err
		}
		if uint64(len(tail)) != want {
			return fmt.Errorf("inode %d: fragment tail of %d bytes, want %d", f.ino.Number, len(tail), want)
		}
		f.buf = tail
		return nil
	}
	word := f.ino.BlockSizes[f.block]
	f.block++
	dst := f.store[:want]
	switch {
	case word == 0:
		clear(dst)
	case squash.BlockCompressed(word):
		raw, err := f.r.ReadRawBlock(f.pos, word, f.raw)
		if err != nil {
			return fmt.Errorf("inode %d block %d: %w", f.ino.Number, f.block-1, err)
		}
		f.raw = raw
		n, err := f.dec.Decompress(f.store, raw)
		if err != nil {
			return fmt.Errorf("inode %d block %d: %w", f.ino.Number, f.block-1, err)
		}
		if uint64(n) != want {
			return fmt.Errorf("inode %d block %d: decoded %d bytes, want %d", f.ino.Number, f.block-1, n, want)
		}
	default:
		raw, err := f.r.ReadRawBlock(f.pos, word, f.raw)
		if err != nil {
			return fmt.Errorf("inode %d block %d: %w", f.ino.Number, f.block-1, err)
		}
		f.raw = raw
		if uint64(len(raw)) != want {
			return fmt.Errorf("inode %d block %d: %d bytes stored, want %d", f.ino.Number, f.block-1, len(raw), want)
		}
		copy(dst, raw)
	}
	f.pos += uint64(squash.BlockSize(word))
	f.buf = dst
	return nil
}

// fragment returns the file's tail from its fragment block.
func (f *fileData) fragment() ([]byte, error) {
	ino := f.ino
	if ino.Fragment == squash.NoFragment {
		return nil, fmt.Errorf("inode %d: %d bytes beyond its blocks and no fragment", ino.Number, f.left)
	}
	block, err := f.fragBlock(ino.Fragment)
	if err != nil {
		return nil, err
	}
	end := uint64(ino.FragOffset) + f.left
	if end > uint64(len(block)) {
		return nil, fmt.Errorf("inode %d: fragment %d of %d bytes has no %d bytes at %d", ino.Number, ino.Fragment, len(block), f.left, ino.FragOffset)
	}
	return block[ino.FragOffset:end], nil
}

func (f *fileData) fragBlock(i uint32) ([]byte, error) {
	c := f.frags
	c.mu.Lock()
	if c.data != nil && c.index == i {
		b := c.data
		c.mu.Unlock()
		return b, nil
	}
	c.mu.Unlock()
	fe, err := f.r.Fragment(i)
	if err != nil {
		return nil, fmt.Errorf("fragment %d: %w", i, err)
	}
	raw, err := f.r.ReadRawBlock(fe.Start, fe.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("fragment %d: %w", i, err)
	}
	b := raw
	if squash.BlockCompressed(fe.Size) {
		b = make([]byte, f.bs)
		n, err := f.dec.Decompress(b, raw)
		if err != nil {
			return nil, fmt.Errorf("fragment %d: %w", i, err)
		}
		b = b[:n]
	}
	// The cached slice is never written to again, so readers may share it.
	c.mu.Lock()
	c.index, c.data = i, b
	c.mu.Unlock()
	return b, nil
}
