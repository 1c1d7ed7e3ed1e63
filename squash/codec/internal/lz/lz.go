// Package lz holds what our LZ77-family encoders (deflate, zstdenc) share.
package lz

import (
	"encoding/binary"
	"math/bits"
)

// MatchLen counts equal bytes of src[i:] and src[j:], i < j, up to limit
// (exclusive end for j), eight at a time.
func MatchLen(src []byte, i, j, limit int) int {
	n := 0
	for j+n+8 <= limit {
		x := binary.LittleEndian.Uint64(src[i+n:]) ^ binary.LittleEndian.Uint64(src[j+n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		n += 8
	}
	for j+n < limit && src[i+n] == src[j+n] {
		n++
	}
	return n
}
