package zstdenc

import "math/bits"

// Alphabet sizes and accuracy limits of the three sequence tables (RFC 8878
// section 3.1.1.3.2.2). Decoders reject larger accuracy logs.
const (
	maxLLCode = 35
	maxMLCode = 52
	maxOFCode = 31

	maxLLLog  = 9
	maxMLLog  = 9
	maxOFLog  = 8
	minFSELog = 5
)

// Default distributions (RFC 8878 section 3.1.1.3.2.2); a -1 is a
// "less than one" probability that still owns one state.
var (
	predefLL = [...]int16{4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
		2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
		-1, -1, -1, -1}
	predefML = [...]int16{1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1,
		-1, -1, -1, -1, -1}
	predefOF = [...]int16{1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1}
)

const (
	predefLLLog = 6
	predefMLLog = 6
	predefOFLog = 5
)

// Symbol compression modes of the sequences section header.
const (
	modePredefined = 0
	modeRLE        = 1
	modeFSE        = 2
)

type fseSymbolTT struct {
	deltaNbBits    uint32
	deltaFindState int32
}

// fseCTable is an FSE encoding table. The encoder walks the decoder's state
// machine backwards: from state x it emits the low bits that the decoder will
// read to get back to x, and moves to a state that decodes the symbol.
type fseCTable struct {
	tableLog   uint8
	rle        bool // RLE mode: no state, no bits
	stateTable []uint16
	symTT      [maxMLCode + 1]fseSymbolTT
	// scratch for building
	cumul  [maxMLCode + 2]int32
	spread []uint8
}

func highBit(v uint32) uint32 { return uint32(bits.Len32(v)) - 1 }

// build prepares the table for the normalized distribution norm, which must
// sum (with -1 counting as 1) to 1<<tableLog.
func (t *fseCTable) build(norm []int16, tableLog uint8) {
	t.rle = false
	t.tableLog = tableLog
	size := 1 << tableLog
	if cap(t.stateTable) < size {
		t.stateTable = make([]uint16, size)
		t.spread = make([]uint8, size)
	}
	t.stateTable = t.stateTable[:size]
	spread := t.spread[:size]
	mask := size - 1
	high := size - 1
	t.cumul[0] = 0
	for s, n := range norm {
		if n == -1 {
			t.cumul[s+1] = t.cumul[s] + 1
			spread[high] = uint8(s)
			high--
		} else {
			t.cumul[s+1] = t.cumul[s] + int32(n)
		}
	}
	// The decoder's spreading rule; the encoder must reproduce it exactly.
	step := (size >> 1) + (size >> 3) + 3
	pos := 0
	for s, n := range norm {
		for i := 0; i < int(n); i++ {
			spread[pos] = uint8(s)
			pos = (pos + step) & mask
			for pos > high {
				pos = (pos + step) & mask
			}
		}
	}
	// States of each symbol, in increasing decoder-state order, so the k-th
	// one is the state whose decoder "next state" is count+k.
	var next [maxMLCode + 2]int32
	copy(next[:len(norm)], t.cumul[:len(norm)])
	for u := 0; u < size; u++ {
		s := spread[u]
		t.stateTable[next[s]] = uint16(size + u)
		next[s]++
	}
	total := int32(0)
	for s, n := range norm {
		switch {
		case n == 0:
			t.symTT[s] = fseSymbolTT{deltaNbBits: (uint32(tableLog+1) << 16) - uint32(size)}
		case n == -1 || n == 1:
			t.symTT[s] = fseSymbolTT{deltaNbBits: (uint32(tableLog) << 16) - uint32(size), deltaFindState: total - 1}
			total++
		default:
			maxBitsOut := uint32(tableLog) - highBit(uint32(n-1))
			minStatePlus := uint32(n) << maxBitsOut
			t.symTT[s] = fseSymbolTT{deltaNbBits: (maxBitsOut << 16) - minStatePlus, deltaFindState: total - int32(n)}
			total += int32(n)
		}
	}
}

// initState returns a starting encoder state for the last symbol; the
// decoder reads it verbatim, so any state of the symbol works.
func (t *fseCTable) initState(sym uint8) uint32 {
	return uint32(t.stateTable[t.cumul[sym]])
}

// writeNCount appends the FSE table description (RFC 8878 section 4.1.1) of
// norm, whose last entry must be non-zero.
func writeNCount(dst []byte, norm []int16, tableLog uint8) []byte {
	var acc uint64
	var nb uint
	put := func(v uint32, n uint) {
		acc |= uint64(v) << nb
		nb += n
		for nb >= 8 {
			dst = append(dst, byte(acc))
			acc >>= 8
			nb -= 8
		}
	}
	put(uint32(tableLog)-minFSELog, 4)
	size := int32(1) << tableLog
	remaining := size + 1
	threshold := size
	nbBits := uint(tableLog) + 1
	prevZero := false
	s := 0
	for s < len(norm) && remaining > 1 {
		if prevZero {
			start := s
			for norm[s] == 0 {
				s++
			}
			for s >= start+3 {
				put(3, 2)
				start += 3
			}
			put(uint32(s-start), 2)
		}
		n := int32(norm[s])
		s++
		max := 2*threshold - 1 - remaining
		if n < 0 {
			remaining += n
		} else {
			remaining -= n
		}
		v := n + 1
		if v >= threshold {
			v += max
		}
		if v < max {
			put(uint32(v), nbBits-1)
		} else {
			put(uint32(v), nbBits)
		}
		prevZero = v == 1
		for remaining < threshold {
			nbBits--
			threshold >>= 1
		}
	}
	if nb > 0 {
		dst = append(dst, byte(acc))
	}
	return dst
}

// log2 in 1/256 bit units, good to about 0.09 bit; enough to rank choices.
func log2Fix(v uint32) uint32 {
	if v == 0 {
		return 0
	}
	hb := highBit(v)
	var frac uint32
	if hb >= 8 {
		frac = (v >> (hb - 8)) - 256
	} else {
		frac = (v << (8 - hb)) - 256
	}
	return hb<<8 + frac
}

// normalize turns counts (total = sum) into a distribution over 1<<tableLog
// states, giving every present symbol at least one state and placing the
// rest where they save the most bits. It returns false if impossible.
func normalize(norm []int16, counts []uint32, total uint32, tableLog uint8) bool {
	size := int32(1) << tableLog
	sum := int32(0)
	present := int32(0)
	for s, c := range counts {
		if c == 0 {
			norm[s] = 0
			continue
		}
		present++
		n := int32((uint64(c)<<tableLog + uint64(total)/2) / uint64(total))
		if n < 1 {
			n = 1
		}
		norm[s] = int16(n)
		sum += n
	}
	if present > size {
		return false
	}
	// Fix the rounding error one state at a time, always taking the step
	// with the smallest cost increase (or largest saving).
	for sum != size {
		best := -1
		var bestGain int64
		for s, c := range counts {
			if c == 0 {
				continue
			}
			n := int64(norm[s])
			var gain int64
			if sum < size {
				// bits saved by adding a state: c*log2((n+1)/n)
				gain = int64(c) * (int64(log2Fix(uint32(n+1))) - int64(log2Fix(uint32(n))))
			} else {
				if n <= 1 {
					continue
				}
				gain = -int64(c) * (int64(log2Fix(uint32(n))) - int64(log2Fix(uint32(n-1))))
			}
			if best < 0 || gain > bestGain {
				best, bestGain = s, gain
			}
		}
		if best < 0 {
			return false
		}
		if sum < size {
			norm[best]++
			sum++
		} else {
			norm[best]--
			sum--
		}
	}
	return true
}

// fseCost estimates, in 1/256 bits, coding counts with norm.
func fseCost(counts []uint32, norm []int16, tableLog uint8) uint64 {
	var cost uint64
	tl := uint32(tableLog) << 8
	for s, c := range counts {
		if c == 0 {
			continue
		}
		n := int32(norm[s])
		if n <= 0 {
			if n == 0 {
				return 1 << 62
			}
			n = 1
		}
		cost += uint64(c) * uint64(tl-log2Fix(uint32(n)))
	}
	return cost
}
