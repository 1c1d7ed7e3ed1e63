// Package lz4enc is a fast LZ4 block encoder for squashfs blocks: raw LZ4
// blocks (no frame), one per call, as the kernel's LZ4_decompress_safe
// reads them.
//
// It is the greedy single-probe scheme of LZ4's reference "fast" mode: one
// hash table of recent positions, no chains, a search step that grows over
// incompressible stretches, and a probe for a match right where the previous
// one ended. What it is tuned for is the size of a squashfs block: at most
// 128 KiB (or 1 MiB), so the table is small (64 KiB) and is cleared per
// block, which keeps the output a function of the input alone.
package lz4enc

import (
	"encoding/binary"
	"math/bits"
)

const (
	minMatch = 4
	// The format's end-of-block rules (lz4_Block_format.md), which the
	// kernel's decoder enforces on a block decoded to its exact size: the
	// last 5 bytes are literals, and the last match starts at least 12
	// bytes before the end.
	lastLiterals = 5
	mfLimit      = 12

	// The table: 2^hashLog entries of 16 bits (64 KiB), keyed by the hash
	// of hashBytes bytes. Measured with TestCorpus on 64 MiB of Linux 6.1's
	// sources and of the Portage-like tree, output against pierrec/lz4's
	// (2^16 entries, 6 bytes): 6 bytes, 2^15: 0.993 and 0.996; 2^16: 0.988
	// and 0.993 but slower; 2^14: 1.003 and 1.004. Hashing 5 bytes finds
	// more short matches, which help the sources (0.987 at 2^15) and cost
	// the Portage tree's near-identical lines (1.007), where a 5-byte match
	// taken greedily hides a longer one.
	hashLog   = 15
	hashBytes = 6
	// skipTrigger: after 2^skipTrigger failed probes the step grows by one
	// byte, and so on, so data that does not compress is crossed quickly.
	skipTrigger = 6
)

// Encoder holds the hash table between calls, so encoding allocates
// nothing. Not safe for concurrent use. Entries are positions' low 16 bits
// (see at): the table is half the size it would be with whole positions.
// TestCorpus on 128 MiB of the Linux sources, 2^14 entries: 1.04 of
// pierrec's time with 32-bit entries, 0.92 with 16-bit ones.
type Encoder struct {
	table [1 << hashLog]uint16
}

func hash(v uint64) uint32 {
	const prime = 227718039650203
	return uint32(((v << (64 - 8*hashBytes)) * prime) >> (64 - hashLog))
}

// at turns a table entry, a position's low 16 bits, back into the latest
// position before s with those bits, or -1 when there is none within
// reach (the same low bits are 64 KiB back, one past the largest offset;
// before the start). An entry older than 64 KiB names a wrong position,
// which the comparison of the bytes there rejects.
func at(entry uint16, s int) int {
	d := int(uint16(s) - entry)
	if d == 0 {
		return -1
	}
	return s - d
}

func load32(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[i:]) }
func load64(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// Encode appends the LZ4 block of src to dst and returns it with true; or
// dst unchanged and false when the block would not be smaller than src,
// for the caller to store src as it is. dst needs room for len(src) bytes
// to be used as it is.
func (e *Encoder) Encode(dst, src []byte) ([]byte, bool) {
	start := len(dst)
	if cap(dst)-start < len(src) {
		nd := make([]byte, start, start+len(src))
		copy(nd, dst)
		dst = nd
	}
	n := e.encode(dst[start:start+max(len(src)-1, 0)], src)
	if n < 0 {
		return dst[:start], false
	}
	return dst[:start+n], true
}

// encode writes the block of src into out and returns its length, or -1
// when it would not fit in len(out) bytes. Room is checked for exactly
// the bytes about to be written (a sequence's token, literals and offset,
// then its match length), so -1 means the whole block is longer.
func (e *Encoder) encode(out, src []byte) int {
	n := len(src)
	di, anchor := 0, 0
	if n < mfLimit+1 {
		return literals(out, di, src[anchor:])
	}
	t := &e.table
	clear(t[:])

	sLimit := n - mfLimit          // latest position a match may start at
	matchLimit := n - lastLiterals // a match ends at or before this
	t[hash(load64(src, 0))] = 0    // position 0: entries start out 0 anyway
	s := 1
	nextVal := load64(src, s)

	for {
		// Look for a 4-byte match, probing one position per step.
		var cand int
		next := s
		step, probes := 1, 1<<skipTrigger
		for {
			v := nextVal
			s = next
			next = s + step
			step = probes >> skipTrigger
			probes++
			if next > sLimit {
				return literals(out, di, src[anchor:])
			}
			h := hash(v)
			cand = at(t[h], s)
			nextVal = load64(src, next)
			t[h] = uint16(s)
			if cand >= 0 && load32(src, cand) == uint32(v) {
				break
			}
		}
		// Bytes before the match may match too.
		for s > anchor && cand > 0 && src[s-1] == src[cand-1] {
			s--
			cand--
		}
		tok := di
		if di = literals(out, di, src[anchor:s]); di < 0 || di+2 > len(out) {
			return -1
		}

		for {
			// The match at s against cand: offset, then its length.
			off := s - cand
			out[di] = byte(off)
			out[di+1] = byte(off >> 8)
			di += 2
			s += minMatch
			cand += minMatch
			m0 := s
			for s+8 <= matchLimit {
				if x := load64(src, s) ^ load64(src, cand); x != 0 {
					s += bits.TrailingZeros64(x) >> 3
					goto counted
				}
				s += 8
				cand += 8
			}
			for s < matchLimit && src[s] == src[cand] {
				s++
				cand++
			}
		counted:
			ml := s - m0
			if ml < 15 {
				out[tok] |= byte(ml)
			} else {
				if di+(ml-15)/255+1 > len(out) {
					return -1
				}
				out[tok] |= 15
				di = lenBytes(out, di, ml-15)
			}
			anchor = s
			if s > sLimit {
				return literals(out, di, src[anchor:])
			}
			// Index a position inside the match, then probe right at its
			// end: runs of matches with no literals between are common.
			t[hash(load64(src, s-2))] = uint16(s - 2)
			v := load64(src, s)
			h := hash(v)
			cand = at(t[h], s)
			t[h] = uint16(s)
			if cand < 0 || load32(src, cand) != uint32(v) {
				break
			}
			if di+3 > len(out) {
				return -1
			}
			tok = di
			out[di] = 0
			di++
		}
		s++
		nextVal = load64(src, s)
	}
}

// literals writes a sequence's token (its match-length half left 0) and
// literals, and returns the new end, or -1 when they do not fit.
func literals(out []byte, di int, lit []byte) int {
	l := len(lit)
	need := 1 + l
	if l >= 15 {
		need += (l-15)/255 + 1
	}
	if di+need > len(out) {
		return -1
	}
	if l < 15 {
		out[di] = byte(l << 4)
		di++
	} else {
		out[di] = 0xF0
		di = lenBytes(out, di+1, l-15)
	}
	return di + copy(out[di:], lit)
}

// lenBytes writes the rest of a length of 15 or more: 255s, then the
// remainder.
func lenBytes(out []byte, di, l int) int {
	for l >= 255 {
		out[di] = 255
		di++
		l -= 255
	}
	out[di] = byte(l)
	return di + 1
}
