package squash

import (
	"errors"
	"fmt"
	"io"
)

// Run is a run of compressed data blocks copied verbatim from another image
// by CopyRun; files that lived there point at it with AddReused.
type Run struct {
	start   uint64 // position in the new image, set when written
	started bool
}

// Reused describes a file whose data is already in the image being written:
// blocks copied by CopyRun and a tail in a fragment copied by CopyFragment,
// or a tail given as bytes to be packed anew.
type Reused struct {
	Size       uint64
	Run        *Run     // nil when the file has no stored blocks
	Sizes      []uint32 // the block size words, as in the source image
	Sparse     uint64
	Fragment   uint32 // the new image's fragment index, or NoFragment
	FragOffset uint32
	Tail       []byte // when not nil, the tail to pack into a new fragment
}

// CopyRun copies a file's compressed data blocks from src, an image with the
// same compressor and block size, at this point of the data order. Reusing
// blocks verbatim is what makes a persist cost what changed, not the tree.
func (w *Writer) CopyRun(src io.ReaderAt, start uint64, sizes []uint32) (*Run, error) {
	if w.closed {
		return nil, errors.New("copy run: writer is closed")
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	run := &Run{}
	pos := start
	for i, word := range sizes {
		n := BlockSize(word)
		if n == 0 {
			continue
		}
		if n > uint32(w.blockSize) {
			return nil, fmt.Errorf("copy run at %d: block %d is %d bytes, over the block size", start, i, n)
		}
		buf := w.getBuf()[:n]
		if _, err := src.ReadAt(buf, int64(pos)); err != nil {
			w.bufs.Put(&buf)
			return nil, fmt.Errorf("copy run at %d: block %d: %w", start, i, err)
		}
		w.submit(&job{kind: jobCopy, raw: buf, run: run})
		pos += uint64(n)
	}
	return run, nil
}

// CopyFragment copies a compressed fragment block from src verbatim and
// returns its index in the new image.
func (w *Writer) CopyFragment(src io.ReaderAt, e FragmentEntry) (uint32, error) {
	if w.closed {
		return 0, errors.New("copy fragment: writer is closed")
	}
	if err := w.err(); err != nil {
		return 0, err
	}
	n := BlockSize(e.Size)
	if n == 0 || n > uint32(w.blockSize) {
		return 0, fmt.Errorf("copy fragment at %d: bad size %d", e.Start, n)
	}
	buf := w.getBuf()[:n]
	if _, err := src.ReadAt(buf, int64(e.Start)); err != nil {
		w.bufs.Put(&buf)
		return 0, fmt.Errorf("copy fragment at %d: %w", e.Start, err)
	}
	// Fragments being filled get their indices when flushed; the copy
	// takes the next one now.
	idx := w.fragCount
	w.fragCount++
	w.submit(&job{kind: jobFragment, index: idx, raw: buf, pre: true, word: e.Size})
	return idx, nil
}

// AddReused adds a regular file whose data was copied with CopyRun and
// CopyFragment (or whose tail is given in r.Tail).
func (w *Writer) AddReused(h *Header, r Reused) error {
	if !h.Mode.IsRegular() {
		return fmt.Errorf("add %q: reused data for a non-regular file", h.Name)
	}
	bs := uint64(w.blockSize)
	nb := r.Size / bs
	if r.Fragment == NoFragment && r.Tail == nil && r.Size%bs != 0 {
		nb++
	}
	if uint64(len(r.Sizes)) != nb {
		return fmt.Errorf("add %q: %d block sizes for %d bytes", h.Name, len(r.Sizes), r.Size)
	}
	if r.Tail != nil && (uint64(len(r.Tail)) != r.Size%bs || r.Fragment != NoFragment) {
		return fmt.Errorf("add %q: tail of %d bytes for %d bytes", h.Name, len(r.Tail), r.Size)
	}
	f := &fileRec{size: r.Size, sizes: r.Sizes, sparse: r.Sparse, frag: r.Fragment, fragOff: r.FragOffset, run: r.Run}
	if len(r.Tail) > 0 {
		w.addTail(f, h.Name, r.Tail)
	}
	return w.add(h, f)
}
