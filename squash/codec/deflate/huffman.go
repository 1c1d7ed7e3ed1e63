package deflate

import (
	"math/bits"
	"slices"
)

// huffBuilder computes length-limited Huffman code lengths. Its scratch
// space makes a build allocation-free.
type huffBuilder struct {
	items [numLitLen]uint64 // freq<<16 | symbol, sorted by frequency
	a     [numLitLen]int
}

// lengths sets lens[s] to a code length of at most maxBits for every symbol
// with freq[s] > 0, and 0 for the others. Inflate rejects incomplete codes
// (bar a single distance code), so callers make sure at least two
// frequencies are nonzero; then the code is complete.
//
// Lengths come from Moffat and Katajainen's in-place minimum-redundancy
// algorithm on the sorted frequencies; if the tree is deeper than maxBits,
// the overlong codes are cut to maxBits and the Kraft sum is restored by
// lengthening the deepest codes that still have room, one unit at a time,
// so the code stays complete. Lengths are then handed out again in
// frequency order, longest to the rarest symbols.
func (h *huffBuilder) lengths(freq []uint32, lens []uint8, maxBits int) {
	n := 0
	for s, f := range freq {
		lens[s] = 0
		if f != 0 {
			h.items[n] = uint64(f)<<16 | uint64(s)
			n++
		}
	}
	if n == 0 {
		return
	}
	if n == 1 {
		lens[h.items[0]&0xFFFF] = 1
		return
	}
	items := h.items[:n]
	slices.Sort(items)
	a := h.a[:n]
	for i, it := range items {
		a[i] = int(it >> 16)
	}

	// Pass 1, left to right: pair the two lightest of the remaining leaves
	// (a[leaf:]) and internal nodes (a[root:next]); an internal node's
	// slot then holds its parent's index.
	a[0] += a[1]
	root, leaf := 0, 2
	for next := 1; next < n-1; next++ {
		if leaf >= n || a[root] < a[leaf] {
			a[next] = a[root]
			a[root] = next
			root++
		} else {
			a[next] = a[leaf]
			leaf++
		}
		if leaf >= n || (root < next && a[root] < a[leaf]) {
			a[next] += a[root]
			a[root] = next
			root++
		} else {
			a[next] += a[leaf]
			leaf++
		}
	}
	// Pass 2, right to left: internal node depths.
	a[n-2] = 0
	for next := n - 3; next >= 0; next-- {
		a[next] = a[a[next]] + 1
	}
	// Pass 3: leaf depths, the deepest going to the lightest leaves.
	var count [32]int // codes per length, lengths above maxBits cut down
	avail, used, depth := 1, 0, 0
	root = n - 2
	for avail > 0 {
		for root >= 0 && a[root] == depth {
			used++
			root--
		}
		if avail > used {
			count[min(depth, maxBits)] += avail - used
		}
		avail = 2 * used
		depth++
		used = 0
	}

	// Restore the Kraft sum (in units of 2^-maxBits) if lengths were cut.
	kraft := 0
	for l := 1; l <= maxBits; l++ {
		kraft += count[l] << (maxBits - l)
	}
	for kraft > 1<<maxBits && count[maxBits] > 0 {
		// Drop one maxBits code and split a shorter one into two: net one
		// unit less, the number of codes unchanged.
		l := maxBits - 1
		for count[l] == 0 {
			l--
		}
		count[maxBits]--
		count[l]--
		count[l+1] += 2
		kraft--
	}

	i := 0
	for l := maxBits; l >= 1; l-- {
		for c := count[l]; c > 0; c-- {
			lens[items[i]&0xFFFF] = uint8(l)
			i++
		}
	}
}

// canonicalCodes fills codes with the canonical code of each symbol (RFC
// 1951 3.2.2), bit-reversed so the bit writer can send it LSB first.
func canonicalCodes(lens []uint8, codes []uint16) {
	var count [maxCodeBits + 1]uint16
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [maxCodeBits + 1]uint16
	code := uint16(0)
	for l := 1; l <= maxCodeBits; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	for s, l := range lens {
		if l != 0 {
			codes[s] = bits.Reverse16(next[l]) >> (16 - l)
			next[l]++
		} else {
			codes[s] = 0
		}
	}
}
