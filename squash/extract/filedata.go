package extract

import (
	"fmt"
	"io"

	"github.com/squashportage/squashportage/squash"
)

// fileData reads a regular file's contents straight from its inode. The
// Reader's Open goes by path, and image names need not be valid io/fs paths
// (any byte but '/' and NUL is allowed), so extraction reads by inode.
//
// It allocates nothing per file in the common case: a Read of a whole block
// (what extraction asks for) decodes straight into the caller's buffer with
// the Reader's pooled decoders, and a fragment tail is served from the
// Reader's shared cache of decoded fragment blocks.
type fileData struct {
	r   *squash.Reader
	ino *squash.Inode
	bs  int

	block int    // next block to decode
	pos   uint64 // image position of that block
	buf   []byte // decoded bytes not yet returned
	store []byte // backing storage of buf, allocated on a short Read
	raw   []byte // compressed bytes of the last block
	left  uint64 // bytes not yet returned
	frag  []byte // the file's fragment block if already decoded, or nil
}

// newFileData reads ino's contents. frag, if not nil, is its decoded
// fragment block.
func newFileData(r *squash.Reader, ino *squash.Inode, frag []byte) (*fileData, error) {
	bs := int(r.Superblock().BlockSize)
	full := ino.Size / uint64(bs)
	want := full
	if ino.Size%uint64(bs) != 0 && ino.Fragment == squash.NoFragment {
		want++
	}
	if uint64(len(ino.BlockSizes)) != want {
		return nil, fmt.Errorf("inode %d: %d blocks listed for %d bytes", ino.Number, len(ino.BlockSizes), ino.Size)
	}
	return &fileData{r: r, ino: ino, bs: bs, pos: ino.BlocksStart, left: ino.Size, frag: frag}, nil
}

func (f *fileData) Close() error { return nil }

func (f *fileData) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, io.EOF
	}
	if len(f.buf) == 0 {
		want := min(uint64(f.bs), f.left)
		if uint64(len(p)) >= want && f.block < len(f.ino.BlockSizes) {
			// The whole next block fits: decode it in place.
			if err := f.next(p[:want]); err != nil {
				return 0, err
			}
			f.left -= want
			return int(want), nil
		}
		if f.block < len(f.ino.BlockSizes) {
			if f.store == nil {
				f.store = make([]byte, f.bs)
			}
			if err := f.next(f.store[:want]); err != nil {
				return 0, err
			}
			f.buf = f.store[:want]
		} else {
			tail, err := f.fragment(want)
			if err != nil {
				return 0, err
			}
			f.buf = tail
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	f.left -= uint64(n)
	return n, nil
}

// next decodes the following block into dst, whose length is the block's.
func (f *fileData) next(dst []byte) error {
	word := f.ino.BlockSizes[f.block]
	i := f.block
	f.block++
	if squash.BlockSize(word) == 0 {
		clear(dst)
		return nil
	}
	if cap(f.raw) < f.bs {
		f.raw = make([]byte, f.bs)
	}
	n, err := f.r.ReadBlockInto(dst, f.pos, word, f.raw)
	if err != nil {
		return fmt.Errorf("inode %d block %d: %w", f.ino.Number, i, err)
	}
	if n != len(dst) {
		return fmt.Errorf("inode %d block %d: decoded %d bytes, want %d", f.ino.Number, i, n, len(dst))
	}
	f.pos += uint64(squash.BlockSize(word))
	return nil
}

// fragment returns the file's tail of want bytes from its fragment block.
// The slice is shared with the Reader's cache and must not be modified.
func (f *fileData) fragment(want uint64) ([]byte, error) {
	ino := f.ino
	if ino.Fragment == squash.NoFragment {
		return nil, fmt.Errorf("inode %d: %d bytes beyond its blocks and no fragment", ino.Number, f.left)
	}
	block := f.frag
	if block == nil {
		var err error
		if block, err = f.r.FragmentBlock(ino.Fragment); err != nil {
			return nil, err
		}
	}
	return tailOf(ino, block, want)
}

// tailOf returns the want bytes of ino's tail in its decoded fragment
// block.
func tailOf(ino *squash.Inode, block []byte, want uint64) ([]byte, error) {
	end := uint64(ino.FragOffset) + want
	if end > uint64(len(block)) {
		return nil, fmt.Errorf("inode %d: fragment %d of %d bytes has no %d bytes at %d", ino.Number, ino.Fragment, len(block), want, ino.FragOffset)
	}
	return block[ino.FragOffset:end], nil
}
