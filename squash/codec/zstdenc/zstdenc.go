// Package zstdenc is a zstd frame encoder tuned for squashfs blocks: each
// Encode produces one independent single-segment frame (content size set,
// no checksum, no dictionary) that the kernel's decompressor accepts.
//
// klauspost's encoder at its best level stays about 6-8% larger than C
// zstd -15 on such blocks because it parses greedily/lazily. This one spends
// its effort on the parse instead: a price-driven optimal parse (opt.go,
// in the manner of zstd's btopt) over hash-chain or binary-tree match
// finders (match.go), with prices from running block statistics (price.go),
// block splitting where statistics change (split.go), and its own
// sequences-section FSE coder (fse.go, seq.go). Literals are Huffman coded
// with klauspost's huff0, whose output is zstd's literals payload (lits.go).
package zstdenc

import (
	"encoding/binary"

	"github.com/klauspost/compress/huff0"
)

const (
	magic = 0xFD2FB528
	// maxBlockSize is Block_Maximum_Size for any frame whose window (here the
	// content size) is at least 128 KiB.
	maxBlockSize = 128 << 10
	// maxInput bounds what the match finder indexes (int32 positions, and
	// links memory of 4-8 bytes per input byte).
	maxInput = 1 << 30
)

// Block_Type values.
const (
	blockRaw        = 0
	blockRLE        = 1
	blockCompressed = 2
)

// Encoder compresses whole buffers into single zstd frames. Reused across
// calls; not safe for concurrent use.
type Encoder struct {
	p     params
	huff  huff0.Scratch
	sc    seqCoder
	seqs  []seq
	lits  []byte
	blk   []byte
	reps  [3]uint32
	m     matcher
	pm    priceModel
	split splitter

	matches []match
	opt     []optNode
	path    []match
}

// NewEncoder returns an encoder. level is an effort scale from MinLevel
// (fastest) to MaxLevel (smallest output); levels outside it are clamped.
// See levelParams for what each level costs and gains.
func NewEncoder(level int) *Encoder {
	return &Encoder{p: levelParams(level)}
}

// Encode appends one complete zstd frame holding src and returns it.
func (e *Encoder) Encode(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, magic)
	// Frame_Header_Descriptor: Single_Segment_Flag (0x20) plus the smallest
	// Frame_Content_Size field; no checksum, no dictionary.
	n := uint64(len(src))
	switch {
	case n < 256:
		dst = append(dst, 0x20, byte(n))
	case n < 65536+256:
		dst = append(dst, 0x60)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(n-256))
	case n <= 0xFFFFFFFF:
		dst = append(dst, 0xA0)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	default:
		dst = append(dst, 0xE0)
		dst = binary.LittleEndian.AppendUint64(dst, n)
	}
	if len(src) == 0 {
		return appendBlockHeader(dst, true, blockRaw, 0)
	}
	if len(src) > maxInput {
		// Positions are int32 in the match finder; nothing this large is
		// expected, but it must still produce a valid frame.
		for start := 0; start < len(src); start += maxBlockSize {
			end := min(start+maxBlockSize, len(src))
			dst = appendBlockHeader(dst, end == len(src), blockRaw, end-start)
			dst = append(dst, src[start:end]...)
		}
		return dst
	}
	e.reps = [3]uint32{1, 4, 8}
	e.m.reset(src, &e.p)
	for start := 0; start < len(src); start += maxBlockSize {
		end := min(start+maxBlockSize, len(src))
		dst = e.encodeBlock(dst, src, start, end, end == len(src))
	}
	return dst
}

func appendBlockHeader(dst []byte, last bool, typ uint32, size int) []byte {
	h := typ<<1 | uint32(size)<<3
	if last {
		h |= 1
	}
	return append(dst, byte(h), byte(h>>8), byte(h>>16))
}

func (e *Encoder) encodeBlock(dst, src []byte, start, end int, last bool) []byte {
	blk := src[start:end]
	if isRun(blk) && len(blk) > 8 {
		// The match finder still has to see these positions.
		e.m.insertTo(src, end)
		dst = appendBlockHeader(dst, last, blockRLE, len(blk))
		return append(dst, blk[0])
	}
	savedReps := e.reps
	e.seqs = e.seqs[:0]
	e.lits = e.lits[:0]
	e.parse(src, start, end)
	if out, ok := e.encodeSplit(dst, last); ok {
		return out
	}
	body := encodeLiterals(e.blk[:0], e.lits, &e.huff)
	body = e.sc.encode(body, e.seqs)
	e.blk = body
	if len(body) >= len(blk) {
		// The decoder keeps its repeat offsets across a raw block, so the
		// parse's updates must be undone.
		e.reps = savedReps
		dst = appendBlockHeader(dst, last, blockRaw, len(blk))
		return append(dst, blk...)
	}
	dst = appendBlockHeader(dst, last, blockCompressed, len(body))
	return append(dst, body...)
}

// encodeSplit emits the parsed block as several compressed blocks when the
// splitter finds that pays. It declines (false) if a piece would not
// compress, since a raw piece would leave the decoder's repeat offsets
// behind the ones the later pieces were coded against.
func (e *Encoder) encodeSplit(dst []byte, last bool) ([]byte, bool) {
	pts := e.split.split(e.seqs, e.lits)
	if len(pts) <= 2 {
		return dst, false
	}
	orig := len(dst)
	litPos := 0
	for k := 0; k+1 < len(pts); k++ {
		a, b := pts[k], pts[k+1]
		final := k+2 == len(pts)
		nl := 0
		regen := 0
		for _, q := range e.seqs[a:b] {
			nl += int(q.litLen)
			regen += int(q.litLen + q.matchLen)
		}
		if final {
			regen += len(e.lits) - litPos - nl
			nl = len(e.lits) - litPos
		}
		body := encodeLiterals(e.blk[:0], e.lits[litPos:litPos+nl], &e.huff)
		body = e.sc.encode(body, e.seqs[a:b])
		e.blk = body
		if len(body) >= regen {
			return dst[:orig], false
		}
		dst = appendBlockHeader(dst, last && final, blockCompressed, len(body))
		dst = append(dst, body...)
		litPos += nl
	}
	return dst, true
}

func isRun(b []byte) bool {
	for _, c := range b {
		if c != b[0] {
			return false
		}
	}
	return true
}

// addSeq records literals src[litStart:matchStart] followed by a match of
// length ml at distance off, choosing the repeat code when one applies.
func (e *Encoder) addSeq(src []byte, litStart, matchStart int, ml, off uint32) {
	ll := uint32(matchStart - litStart)
	e.lits = append(e.lits, src[litStart:matchStart]...)
	ov := offsetValue(&e.reps, ll, off)
	e.seqs = append(e.seqs, seq{litLen: ll, matchLen: ml, offVal: ov})
}

// offsetValue returns the Offset_Value for a match at distance off after ll
// literals, and updates reps as the decoder will (RFC 8878 3.1.2.5).
func offsetValue(reps *[3]uint32, ll, off uint32) uint32 {
	r0, r1, r2 := reps[0], reps[1], reps[2]
	if ll != 0 {
		switch off {
		case r0:
			return 1
		case r1:
			reps[0], reps[1] = r1, r0
			return 2
		case r2:
			reps[0], reps[1], reps[2] = r2, r0, r1
			return 3
		}
	} else {
		switch off {
		case r1:
			reps[0], reps[1] = r1, r0
			return 1
		case r2:
			reps[0], reps[1], reps[2] = r2, r0, r1
			return 2
		case r0 - 1:
			reps[0], reps[1], reps[2] = r0-1, r0, r1
			return 3
		}
	}
	reps[0], reps[1], reps[2] = off, r0, r1
	return off + 3
}
