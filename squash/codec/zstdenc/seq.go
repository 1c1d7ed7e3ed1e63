package zstdenc

import "encoding/binary"

// seq is one zstd sequence: litLen literals, then a match of matchLen bytes
// at Offset_Value offVal (1..3 repeat codes, otherwise distance+3).
type seq struct {
	litLen   uint32
	matchLen uint32
	offVal   uint32
}

var llCodeSmall = [64]uint8{
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 20, 20, 21, 21, 21, 21,
	22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 23, 23, 23, 23, 23,
	24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
}

var llBits = [maxLLCode + 1]uint8{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
}

var llBase = [maxLLCode + 1]uint32{
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096,
	8192, 16384, 32768, 65536,
}

var mlBits = [maxMLCode + 1]uint8{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
}

var mlBase = [maxMLCode + 1]uint32{
	3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
	19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
	35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051,
	4099, 8195, 16387, 32771, 65539,
}

// mlCodeSmall is indexed by matchLen-3.
var mlCodeSmall = [128]uint8{
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
	32, 32, 33, 33, 34, 34, 35, 35, 36, 36, 36, 36, 37, 37, 37, 37,
	38, 38, 38, 38, 38, 38, 38, 38, 39, 39, 39, 39, 39, 39, 39, 39,
	40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
	41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41,
	42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42,
	42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42,
}

func llCode(ll uint32) uint8 {
	if ll < 64 {
		return llCodeSmall[ll]
	}
	return uint8(highBit(ll) + 19)
}

func mlCode(ml uint32) uint8 {
	b := ml - 3
	if b < 128 {
		return mlCodeSmall[b]
	}
	return uint8(highBit(b) + 36)
}

func ofCode(offVal uint32) uint8 { return uint8(highBit(offVal)) }

// bitWriter fills a little-endian bit stream that the decoder reads from the
// end backwards.
type bitWriter struct {
	out []byte
	acc uint64
	nb  uint
}

func (w *bitWriter) add(v uint32, n uint) {
	w.acc |= uint64(v&(1<<n-1)) << w.nb
	w.nb += n
	if w.nb >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.acc))
		w.acc >>= 32
		w.nb -= 32
	}
}

// close writes the end marker bit the decoder uses to find the stream start.
func (w *bitWriter) close() []byte {
	w.add(1, 1)
	for w.nb > 0 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		if w.nb < 8 {
			w.nb = 0
		} else {
			w.nb -= 8
		}
	}
	return w.out
}

// seqCoder holds per-block scratch for the sequences section.
type seqCoder struct {
	llCodes, mlCodes, ofCodes []uint8
	llCount                   [maxLLCode + 1]uint32
	mlCount                   [maxMLCode + 1]uint32
	ofCount                   [maxOFCode + 1]uint32
	tabs                      [3]fseCTable
	norm                      [maxMLCode + 1]int16
	bestNorm                  [maxMLCode + 1]int16
	hdr                       []byte
	bw                        bitWriter
}

// chooseTable picks the cheapest of predefined, RLE and a freshly normalized
// table for one symbol stream, builds it into t, and appends its description
// to dst. It returns the mode.
func (c *seqCoder) chooseTable(dst []byte, t *fseCTable, counts []uint32, n uint32, predef []int16, predefLog uint8, maxLog uint8) ([]byte, uint8) {
	maxSym := -1
	distinct := 0
	for s, v := range counts {
		if v != 0 {
			maxSym = s
			distinct++
		}
	}
	if distinct == 1 && (n > 2 || maxSym >= len(predef)) {
		t.rle = true
		t.tableLog = 0
		return append(dst, byte(maxSym)), modeRLE
	}
	bestCost := uint64(1 << 63)
	if maxSym < len(predef) {
		bestCost = fseCost(counts[:maxSym+1], predef, predefLog)
	}
	bestLog := uint8(0)
	if n >= 8 || maxSym >= len(predef) {
		minLog := uint8(minFSELog)
		for l := minLog; l <= maxLog; l++ {
			if !normalize(c.norm[:maxSym+1], counts[:maxSym+1], n, l) {
				continue
			}
			cost := fseCost(counts[:maxSym+1], c.norm[:maxSym+1], l)
			c.hdr = writeNCount(c.hdr[:0], c.norm[:maxSym+1], l)
			cost += uint64(len(c.hdr)) * 8 * 256
			if cost < bestCost {
				bestCost = cost
				bestLog = l
				copy(c.bestNorm[:], c.norm[:maxSym+1])
			}
			// Larger tables stop paying once there are few symbols per state.
			if uint32(1)<<l > n {
				break
			}
		}
	}
	if bestLog == 0 {
		t.build(predef, predefLog)
		return dst, modePredefined
	}
	t.build(c.bestNorm[:maxSym+1], bestLog)
	return writeNCount(dst, c.bestNorm[:maxSym+1], bestLog), modeFSE
}

// encode appends the sequences section for seqs.
func (c *seqCoder) encode(dst []byte, seqs []seq) []byte {
	n := len(seqs)
	switch {
	case n < 128:
		dst = append(dst, byte(n))
	case n < 0x7F00:
		dst = append(dst, byte(n>>8)+128, byte(n))
	default:
		dst = append(dst, 255, byte(n-0x7F00), byte((n-0x7F00)>>8))
	}
	if n == 0 {
		return dst
	}
	c.llCount = [maxLLCode + 1]uint32{}
	c.mlCount = [maxMLCode + 1]uint32{}
	c.ofCount = [maxOFCode + 1]uint32{}
	if cap(c.llCodes) < n {
		c.llCodes = make([]uint8, n, n+n/4)
		c.mlCodes = make([]uint8, n, n+n/4)
		c.ofCodes = make([]uint8, n, n+n/4)
	}
	llc, mlc, ofc := c.llCodes[:n], c.mlCodes[:n], c.ofCodes[:n]
	for i, s := range seqs {
		a, b, o := llCode(s.litLen), mlCode(s.matchLen), ofCode(s.offVal)
		llc[i], mlc[i], ofc[i] = a, b, o
		c.llCount[a]++
		c.mlCount[b]++
		c.ofCount[o]++
	}
	modePos := len(dst)
	dst = append(dst, 0)
	var mLL, mOF, mML uint8
	dst, mLL = c.chooseTable(dst, &c.tabs[0], c.llCount[:], uint32(n), predefLL[:], predefLLLog, maxLLLog)
	dst, mOF = c.chooseTable(dst, &c.tabs[1], c.ofCount[:], uint32(n), predefOF[:], predefOFLog, maxOFLog)
	dst, mML = c.chooseTable(dst, &c.tabs[2], c.mlCount[:], uint32(n), predefML[:], predefMLLog, maxMLLog)
	dst[modePos] = mLL<<6 | mOF<<4 | mML<<2

	tLL, tOF, tML := &c.tabs[0], &c.tabs[1], &c.tabs[2]
	w := &c.bw
	w.out, w.acc, w.nb = dst, 0, 0
	// The decoder reads sequences first to last, so write them last to first.
	last := n - 1
	var sLL, sOF, sML uint32
	if !tLL.rle {
		sLL = tLL.initState(llc[last])
	}
	if !tOF.rle {
		sOF = tOF.initState(ofc[last])
	}
	if !tML.rle {
		sML = tML.initState(mlc[last])
	}
	for i := last; i >= 0; i-- {
		if i != last {
			if !tOF.rle {
				sOF = encSym(w, tOF, sOF, ofc[i])
			}
			if !tML.rle {
				sML = encSym(w, tML, sML, mlc[i])
			}
			if !tLL.rle {
				sLL = encSym(w, tLL, sLL, llc[i])
			}
		}
		s := &seqs[i]
		w.add(s.litLen-llBase[llc[i]], uint(llBits[llc[i]]))
		w.add(s.matchLen-mlBase[mlc[i]], uint(mlBits[mlc[i]]))
		w.add(s.offVal, uint(ofc[i]))
	}
	if !tML.rle {
		w.add(sML, uint(tML.tableLog))
	}
	if !tOF.rle {
		w.add(sOF, uint(tOF.tableLog))
	}
	if !tLL.rle {
		w.add(sLL, uint(tLL.tableLog))
	}
	return w.close()
}

func encSym(w *bitWriter, t *fseCTable, state uint32, sym uint8) uint32 {
	tt := t.symTT[sym]
	nb := (state + tt.deltaNbBits) >> 16
	w.add(state, uint(nb))
	return uint32(t.stateTable[int32(state>>nb)+tt.deltaFindState])
}
