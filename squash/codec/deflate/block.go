package deflate

import "encoding/binary"

// histogram counts the symbols of a run of tokens. End-of-block is counted
// once, as every block sends it.
type histogram struct {
	lit  [numLitLen]uint32
	dist [numDist]uint32
}

func (h *histogram) reset() {
	*h = histogram{}
	h.lit[endBlock] = 1
}

func (h *histogram) addMatch(l, d int) {
	h.lit[257+int(lenCode[l-minMatch])]++
	h.dist[distCode(uint32(d))]++
}

func (h *histogram) merge(a, b *histogram) {
	for i := range h.lit {
		h.lit[i] = a.lit[i] + b.lit[i]
	}
	h.lit[endBlock] = 1
	for i := range h.dist {
		h.dist[i] = a.dist[i] + b.dist[i]
	}
}

// extraBits is the number of length and distance extra bits the tokens
// counted in h need; it does not depend on the block type.
func (h *histogram) extraBits() int {
	n := 0
	for k := 0; k < 29; k++ {
		n += int(h.lit[257+k]) * int(lenExtra[k])
	}
	for c := 0; c < numDist; c++ {
		n += int(h.dist[c]) * int(distExtra[c])
	}
	return n
}

// fixedBits is the size of the symbols of h under the fixed codes, without
// extra bits.
func (h *histogram) fixedBits() int {
	n := 0
	for s, f := range h.lit {
		n += int(f) * int(fixedLitLen(s))
	}
	for _, f := range h.dist {
		n += int(f) * 5
	}
	return n
}

func fixedLitLen(s int) uint8 {
	switch {
	case s < 144:
		return 8
	case s < 256:
		return 9
	case s < 280:
		return 7
	}
	return 8
}

// dynCode is a dynamic block's pair of codes and its header.
type dynCode struct {
	litLens  [numLitLen]uint8
	distLens [numDist]uint8
	litCodes [numLitLen]uint16
	dstCodes [numDist]uint16
	nlit     int // HLIT+257
	ndist    int // HDIST+1

	// The code-length sequence, run-length coded: symbol in the low 5
	// bits, repeat-count extra bits above.
	cl      []uint16
	clFreq  [numCL]uint32
	clLens  [numCL]uint8
	clCodes [numCL]uint16
	nclen   int // HCLEN+4

	// freqs with zero-count fix-ups so every code is complete
	litFreq  [numLitLen]uint32
	distFreq [numDist]uint32
}

// build makes the codes for histogram h and returns the header size plus
// the size of h's symbols, in bits, without extra bits.
func (d *dynCode) build(h *histogram, hb *huffBuilder) int {
	d.litFreq = h.lit
	d.distFreq = h.dist
	// Inflate only takes complete codes: make sure each has two symbols.
	ensureTwo(d.litFreq[:])
	ensureTwo(d.distFreq[:])
	hb.lengths(d.litFreq[:], d.litLens[:], maxCodeBits)
	hb.lengths(d.distFreq[:], d.distLens[:], maxCodeBits)

	d.nlit = numLitLen
	for d.nlit > 257 && d.litLens[d.nlit-1] == 0 {
		d.nlit--
	}
	d.ndist = numDist
	for d.ndist > 1 && d.distLens[d.ndist-1] == 0 {
		d.ndist--
	}
	d.runLengths()
	ensureTwo(d.clFreq[:])
	hb.lengths(d.clFreq[:], d.clLens[:], maxCLBits)
	d.nclen = numCL
	for d.nclen > 4 && d.clLens[clOrder[d.nclen-1]] == 0 {
		d.nclen--
	}

	n := 5 + 5 + 4 + 3*d.nclen
	for s, f := range d.clFreq {
		n += int(f) * int(d.clLens[s])
	}
	n += int(d.clFreq[16])*2 + int(d.clFreq[17])*3 + int(d.clFreq[18])*7
	for s, f := range h.lit {
		n += int(f) * int(d.litLens[s])
	}
	for s, f := range h.dist {
		n += int(f) * int(d.distLens[s])
	}
	return n
}

// ensureTwo gives frequency 1 to the first symbols so that at least two
// are nonzero.
func ensureTwo(freq []uint32) {
	nz := 0
	for _, f := range freq {
		if f != 0 {
			nz++
		}
	}
	for s := 0; nz < 2; s++ {
		if freq[s] == 0 {
			freq[s] = 1
			nz++
		}
	}
}

// runLengths run-length codes the literal/length and distance code lengths
// (one sequence, as runs may cross from one to the other) with the
// code-length code's repeat symbols and counts their use.
func (d *dynCode) runLengths() {
	var seq [numLitLen + numDist]uint8
	n := copy(seq[:], d.litLens[:d.nlit])
	n += copy(seq[n:], d.distLens[:d.ndist])
	cl := d.cl[:0]
	d.clFreq = [numCL]uint32{}
	for i := 0; i < n; {
		l := seq[i]
		run := 1
		for i+run < n && seq[i+run] == l {
			run++
		}
		i += run
		if l == 0 {
			for run >= 11 {
				r := min(run, 138)
				cl = append(cl, 18|uint16(r-11)<<5)
				run -= r
			}
			if run >= 3 {
				cl = append(cl, 17|uint16(run-3)<<5)
				run = 0
			}
		} else {
			cl = append(cl, uint16(l))
			run--
			for run >= 3 {
				r := min(run, 6)
				cl = append(cl, 16|uint16(r-3)<<5)
				run -= r
			}
		}
		for ; run > 0; run-- {
			cl = append(cl, uint16(l))
		}
	}
	for _, c := range cl {
		d.clFreq[c&31]++
	}
	d.cl = cl
}

// writeHeader sends BTYPE's dynamic header after BFINAL/BTYPE bits.
func (d *dynCode) writeHeader(w *bitWriter) {
	canonicalCodes(d.clLens[:], d.clCodes[:])
	canonicalCodes(d.litLens[:], d.litCodes[:])
	canonicalCodes(d.distLens[:], d.dstCodes[:])
	w.bits(uint32(d.nlit-257), 5)
	w.bits(uint32(d.ndist-1), 5)
	w.bits(uint32(d.nclen-4), 4)
	for _, s := range clOrder[:d.nclen] {
		w.bits(uint32(d.clLens[s]), 3)
	}
	for _, c := range d.cl {
		s := c & 31
		w.bits(uint32(d.clCodes[s]), uint(d.clLens[s]))
		switch s {
		case 16:
			w.bits(uint32(c>>5), 2)
		case 17:
			w.bits(uint32(c>>5), 3)
		case 18:
			w.bits(uint32(c>>5), 7)
		}
	}
}

// fixedCode holds the fixed literal/length and distance codes (RFC 1951
// 3.2.6), made once.
var fixedCode dynCode

func init() {
	// Symbols 286 and 287 are never sent but take part in the code.
	var lens [288]uint8
	var codes [288]uint16
	for s := range lens {
		lens[s] = fixedLitLen(s)
	}
	canonicalCodes(lens[:], codes[:])
	copy(fixedCode.litLens[:], lens[:])
	copy(fixedCode.litCodes[:], codes[:])
	for s := range fixedCode.distLens {
		fixedCode.distLens[s] = 5
	}
	canonicalCodes(fixedCode.distLens[:], fixedCode.dstCodes[:])
}

// writeBlock sends toks, which spell raw and whose symbols h counts, as
// one block of whichever type is smallest: dynamic Huffman, fixed Huffman
// or stored.
func (e *Encoder) writeBlock(w *bitWriter, toks []uint32, h *histogram, raw []byte, final bool) {
	extra := h.extraBits()
	d := &e.dyn
	dynBits := 3 + d.build(h, &e.hb) + extra
	fixedBits := 3 + h.fixedBits() + extra
	// Stored: padding to the byte after the 3 header bits, then LEN/NLEN
	// and the bytes, for each 65535-byte piece.
	pieces := max(1, (len(raw)+0xFFFE)/0xFFFF)
	storedBits := (int(w.n)+3+7)&^7 - int(w.n) + 32 + 8*len(raw) + (pieces-1)*(40)

	fin := uint32(0)
	if final {
		fin = 1
	}
	switch {
	case storedBits < dynBits && storedBits < fixedBits:
		writeStoredBlocks(w, raw, final)
	case fixedBits <= dynBits:
		w.bits(fin|1<<1, 3)
		writeTokens(w, toks, &fixedCode)
	default:
		w.bits(fin|2<<1, 3)
		d.writeHeader(w)
		writeTokens(w, toks, d)
	}
}

// writeStoredBlocks sends raw as stored blocks of up to 65535 bytes, the
// last one final if final is set.
func writeStoredBlocks(w *bitWriter, raw []byte, final bool) {
	for {
		n := min(len(raw), 0xFFFF)
		last := n == len(raw)
		if last && final {
			w.bits(1, 3)
		} else {
			w.bits(0, 3)
		}
		w.align()
		w.out = binary.LittleEndian.AppendUint16(w.out, uint16(n))
		w.out = binary.LittleEndian.AppendUint16(w.out, ^uint16(n))
		w.out = append(w.out, raw[:n]...)
		raw = raw[n:]
		if last {
			return
		}
	}
}

// writeTokens sends toks and the end-of-block symbol with code c. It is
// the hot loop of writing, so it keeps the bit buffer in locals and stores
// into room reserved up front (at most 48 bits per token) instead of
// appending. n stays below 32 between codes; a code with its extra bits
// takes at most 28.
func writeTokens(w *bitWriter, toks []uint32, c *dynCode) {
	o := len(w.out)
	if need := o + 6*len(toks) + 16; cap(w.out) < need {
		w.out = append(w.out[:cap(w.out)], make([]byte, need-cap(w.out))...)
	}
	buf := w.out[:cap(w.out)]
	acc, n := w.acc, w.n
	litCodes, litLens := &c.litCodes, &c.litLens
	for _, t := range toks {
		if t&matchFlag == 0 {
			acc |= uint64(litCodes[t&0xFF]) << n
			n += uint(litLens[t&0xFF])
		} else {
			lc := lenCode[t>>16&0xFF]
			s := 257 + int(lc)
			l := t>>16&0xFF + minMatch
			acc |= uint64(uint32(litCodes[s])|(l-uint32(lenBase[lc]))<<litLens[s]) << n
			n += uint(litLens[s] + lenExtra[lc])
			if n >= 32 {
				binary.LittleEndian.PutUint32(buf[o:], uint32(acc))
				o += 4
				acc >>= 32
				n -= 32
			}
			dist := t&0x7FFF + 1
			dc := distCode(dist)
			acc |= uint64(uint32(c.dstCodes[dc])|(dist-uint32(distBase[dc]))<<c.distLens[dc]) << n
			n += uint(c.distLens[dc] + distExtra[dc])
		}
		if n >= 32 {
			binary.LittleEndian.PutUint32(buf[o:], uint32(acc))
			o += 4
			acc >>= 32
			n -= 32
		}
	}
	w.out = buf[:o]
	w.acc, w.n = acc, n
	w.bits(uint32(litCodes[endBlock]), uint(litLens[endBlock]))
}
