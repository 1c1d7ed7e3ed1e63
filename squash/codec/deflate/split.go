package deflate

// Block splitting. A deflate block pays for its own code (a header of
// typically 60-100 bytes) and in return its code fits its own statistics.
// Fragment blocks pack the tails of many small files, so statistics
// change often and fixed-size blocks fit them badly. The whole input is
// tokenized before anything is written, so the split is chosen from the
// actual tokens: the parser counts symbols per segment of about segBytes
// of input, and adjacent blocks are then merged, largest saving first,
// while the estimated cost of one block is below that of the two.

import (
	"math"
	"math/bits"
)

// segBytes: 4 KiB segments gain 0.2% over 8 KiB ones on Portage-like
// fragments, where small files differ most.
const segBytes = 4 << 10

type segment struct {
	tok0, tok1   int // token range
	byte0, byte1 int // input range
	hist         histogram
	cost         int // bits, without extra bits (they do not depend on the split)
	gain         int // cost saved by merging with the next segment
}

type splitter struct {
	segs []segment
	tmp  histogram
}

// blockCost estimates the size in bits of a block holding the symbols
// counted in h, extra bits left out: the entropy of its symbols plus an
// estimate of a dynamic header. Building the actual codes would be exact
// but costs twenty times more, and the merge loop asks often.
func blockCost(h *histogram) int {
	return int(entropyBits(h.lit[:]) + entropyBits(h.dist[:]))
}

// entropyBits returns the Shannon size of symbols with counts freq, plus
// headerBitsPerSym for each used symbol, which is about what a dynamic
// header spends to describe its code length.
func entropyBits(freq []uint32) float32 {
	const headerBitsPerSym = 5
	total := uint32(0)
	sum := float32(0)
	used := 0
	for _, f := range freq {
		if f != 0 {
			total += f
			sum += nlog2n(f)
			used++
		}
	}
	if total == 0 {
		return 0
	}
	return nlog2n(total) - sum + headerBitsPerSym*float32(used)
}

// nlog2nTab[n] is n*log2(n), for the small counts most symbols have.
var nlog2nTab [4096]float32

func init() {
	for n := 1; n < len(nlog2nTab); n++ {
		nlog2nTab[n] = float32(float64(n) * math.Log2(float64(n)))
	}
}

func nlog2n(n uint32) float32 {
	if n < uint32(len(nlog2nTab)) {
		return nlog2nTab[n]
	}
	return float32(n) * log2(n)
}

// log2Frac[i] is log2(1 + i/256).
var log2Frac [257]float32

func init() {
	for i := range log2Frac {
		log2Frac[i] = float32(math.Log2(1 + float64(i)/256))
	}
}

// log2 approximates log2(x), x > 0, to within about 0.003.
func log2(x uint32) float32 {
	e := bits.Len32(x) - 1
	var m uint32
	if e >= 8 {
		m = x >> (e - 8) & 0xFF
	} else {
		m = x << (8 - e) & 0xFF
	}
	return float32(e) + log2Frac[m]
}

// begin starts the first segment and returns its histogram, which the
// parser fills as it emits tokens.
func (sp *splitter) begin() *histogram {
	sp.segs = append(sp.segs[:0], segment{})
	h := &sp.segs[0].hist
	h.reset()
	return h
}

// nextEnd returns where a segment starting at pos should end: segBytes on,
// or at the end of the input if less than half a segment would be left.
func (sp *splitter) nextEnd(pos, n int) int {
	if n-pos < segBytes+segBytes/2 {
		return n
	}
	return pos + segBytes
}

// cut ends the current segment before token tok, input byte pos, and
// starts the next.
func (sp *splitter) cut(tok, pos int) *histogram {
	sp.end(tok, pos)
	sp.segs = append(sp.segs, segment{tok0: tok, byte0: pos})
	h := &sp.segs[len(sp.segs)-1].hist
	h.reset()
	return h
}

// end ends the current segment before token tok, input byte pos.
func (sp *splitter) end(tok, pos int) {
	s := &sp.segs[len(sp.segs)-1]
	s.tok1, s.byte1 = tok, pos
}

// writeBlocks sends e.toks, which spell src, as blocks made of the
// parser's segments.
func (e *Encoder) writeBlocks(w *bitWriter, src []byte) {
	toks := e.toks
	sp := &e.sp
	segs := sp.segs
	if len(segs) == 1 {
		e.writeBlock(w, toks, &segs[0].hist, src, true)
		return
	}
	for i := range segs {
		segs[i].cost = blockCost(&segs[i].hist)
	}
	gain := func(i int) int {
		a, b := &segs[i], &segs[i+1]
		sp.tmp.merge(&a.hist, &b.hist)
		return a.cost + b.cost - blockCost(&sp.tmp)
	}
	for i := 0; i+1 < len(segs); i++ {
		segs[i].gain = gain(i)
	}
	for len(segs) > 1 {
		best := 0
		for i := 1; i+1 < len(segs); i++ {
			if segs[i].gain > segs[best].gain {
				best = i
			}
		}
		if segs[best].gain <= 0 {
			break
		}
		a, b := &segs[best], &segs[best+1]
		a.hist.merge(&a.hist, &b.hist)
		a.cost = a.cost + b.cost - a.gain
		a.tok1, a.byte1 = b.tok1, b.byte1
		segs = append(segs[:best+1], segs[best+2:]...)
		if best+1 < len(segs) {
			segs[best].gain = gain(best)
		}
		if best > 0 {
			segs[best-1].gain = gain(best - 1)
		}
	}
	for i := range segs {
		s := &segs[i]
		e.writeBlock(w, toks[s.tok0:s.tok1], &s.hist, src[s.byte0:s.byte1], i == len(segs)-1)
	}
	sp.segs = segs
}
