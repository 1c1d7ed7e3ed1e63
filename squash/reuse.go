package squash

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Run is a run of compressed data blocks copied verbatim from another image
// by CopyRun; files that lived there point at it with AddReused.
type Run struct {
	start   uint64 // position in the new image, set when written
	started bool
	seq     uint64 // the job that writes it, once queued
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
	// Sum, when set, is the SHA-256 of the file's contents: files added
	// after it with the same contents become duplicates of it.
	Sum *[sha256.Size]byte
}

// CopyRun copies a file's compressed data blocks from src, an image with the
// same compressor and block size, at this point of the data order. Reusing
// blocks verbatim is what makes a persist cost what changed, not the tree.
// Copies of consecutive source ranges are merged and done in one go when
// the output reaches them (by copy_file_range between files), so errors
// reading src may surface only at Close.
func (w *Writer) CopyRun(src io.ReaderAt, start uint64, sizes []uint32) (*Run, error) {
	if w.closed {
		return nil, errors.New("copy run: writer is closed")
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	var n uint64
	for i, word := range sizes {
		b := BlockSize(word)
		if b > uint32(w.blockSize) {
			return nil, fmt.Errorf("copy run at %d: block %d is %d bytes, over the block size", start, i, b)
		}
		n += uint64(b)
	}
	run := &Run{}
	if n > 0 {
		w.addSpan(src, start, n, copyPart{run: run, sizes: sizes})
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
	idx := w.fragCount
	w.fragCount++
	w.addSpan(src, e.Start, uint64(n), copyPart{frag: true, index: idx, word: e.Size})
	return idx, nil
}

// UseSourceSums gives the recorded CRC-32C of src's blocks by position
// (Reader.BlockSums), which the sums of the copied blocks then repeat
// instead of reading every copied block once more: a persist of the
// Portage-like tree read 119 MB again for them. The caller vouches for
// them as for the blocks themselves: it checks each copied block against
// its sum (a fold does, and fails on a mismatch). Call before the first
// copy from src; blocks without a sum are read.
func (w *Writer) UseSourceSums(src io.ReaderAt, sums map[uint64]uint32) {
	if w.srcSums == nil {
		w.srcSums = make(map[io.ReaderAt]map[uint64]uint32)
	}
	w.srcSums[src] = sums
}

// copySpan is a contiguous range of a source image to copy, and the runs
// and fragment blocks it holds, in source order.
type copySpan struct {
	src      io.ReaderAt
	off, end uint64
	parts    []copyPart
}

type copyPart struct {
	off   uint64   // in the source
	run   *Run     // a run's first stored block, with its block size words, or
	sizes []uint32 //
	frag  bool     // a fragment block with this index and size word
	index uint32
	word  uint32
}

// maxSpan bounds one span so that a failure reports a narrow range and
// progress stays smooth.
const maxSpan = 64 << 20

func (w *Writer) addSpan(src io.ReaderAt, off, n uint64, p copyPart) {
	p.off = off
	if s := w.span; s == nil || s.src != src || s.end != off || s.end-s.off+n > maxSpan {
		w.flushSpan()
		w.span = &copySpan{src: src, off: off, end: off}
	}
	w.span.parts = append(w.span.parts, p)
	w.span.end += n
}

func (w *Writer) flushSpan() {
	if s := w.span; s != nil {
		w.span = nil
		j := &job{kind: jobCopy, span: s}
		w.submit(j)
		for _, p := range s.parts {
			if p.run != nil {
				p.run.seq = j.seq
			}
		}
	}
}

// copySpan writes span s, queued as job seq, at the output position; run
// by the output goroutine. The files in it are placed before the copy
// starts: a span is up to 64 MiB, and their directories need not wait.
func (w *Writer) copySpan(s *copySpan, seq uint64) error {
	base := uint64(w.pos)
	for _, p := range s.parts {
		at := base + p.off - s.off
		switch {
		case p.frag:
			w.setFragment(p.index, FragmentEntry{Start: at, Size: p.word})
		case !p.run.started:
			p.run.start, p.run.started = at, true
		}
	}
	w.placedSeq.Store(seq)
	if err := w.flushOut(); err != nil {
		return err
	}
	n := int64(s.end - s.off)
	done, err := copyFileRange(w.out, s.src, int64(s.off), w.pos, n)
	if err == nil && done < n {
		err = w.copyRange(s.src, int64(s.off)+done, w.pos+done, n-done)
	}
	if err != nil {
		return fmt.Errorf("copy %d bytes at %d of the source image: %w", n, s.off, err)
	}
	if w.opts.BlockSums {
		if err := w.sumSpan(s, base); err != nil {
			return fmt.Errorf("copy %d bytes at %d of the source image: %w", n, s.off, err)
		}
	}
	w.pos += n
	w.obufStart = w.pos
	return nil
}

// sumSpan records the sums of the blocks of span s, copied at base, reading
// them back from the source: a copy is as sound as its source, which the
// caller checks (a fold does, against the source's record or by decoding).
func (w *Writer) sumSpan(s *copySpan, base uint64) error {
	buf := w.getBuf()[:w.blockSize]
	defer w.bufs.Put(&buf)
	known := w.srcSums[s.src]
	add := func(off uint64, n uint32) error {
		if n == 0 {
			return nil
		}
		if sum, ok := known[off]; ok {
			w.sums = append(w.sums, blockSum{base + off - s.off, sum})
			return nil
		}
		b := buf[:n]
		if err := readFullAt(s.src, b, int64(off)); err != nil {
			return err
		}
		w.sums = append(w.sums, blockSum{base + off - s.off, blockCRC(b)})
		return nil
	}
	for _, p := range s.parts {
		if p.frag {
			if err := add(p.off, BlockSize(p.word)); err != nil {
				return err
			}
			continue
		}
		off := p.off
		for _, word := range p.sizes {
			if err := add(off, BlockSize(word)); err != nil {
				return err
			}
			off += uint64(BlockSize(word))
		}
	}
	return nil
}

// copyRange copies through memory, for outputs and sources that are not
// plain files (and for what copy_file_range left).
func (w *Writer) copyRange(src io.ReaderAt, from, to, n int64) error {
	buf := w.getBuf()[:w.blockSize]
	defer w.bufs.Put(&buf)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		if _, err := src.ReadAt(b, from); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if _, err := w.out.WriteAt(b, to); err != nil {
			return fmt.Errorf("write image: %w", err)
		}
		from, to, n = from+int64(len(b)), to+int64(len(b)), n-int64(len(b))
	}
	return nil
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
	if r.Sum != nil && r.Size > 0 && !w.opts.NoDuplicates {
		k := dupKey{size: r.Size, sum: *r.Sum}
		if _, ok := w.dups[k]; !ok {
			w.dups[k] = f
		}
	}
	return w.add(h, f)
}
