package deflate

import "encoding/binary"

// adler is the Adler-32 of p (RFC 1950), which zlib streams end with.
// hash/adler32 adds one byte at a time, each sum waiting for the one
// before. Here sixteen bytes at a time go in, as two words: summed, and
// weighted by their distance from the end of their word, by
// multiplications in 16-bit lanes that cannot carry; s2's share of s1 is
// summed apart and added once per chunk. 6.0 GB/s on 128 KiB against
// hash/adler32's 3.3-3.5 (BenchmarkAdler32).
func adler(p []byte) uint32 {
	const (
		mod = 65521
		// chunk bounds the bytes between reductions; 64-bit sums of a
		// chunk cannot overflow.
		chunk = 1 << 20
		lanes = 0x00ff00ff00ff00ff
		ones  = 0x0001000100010001
		// Weights of bytes 0, 2, 4, 6 (8, 6, 4, 2) and 1, 3, 5, 7 (7,
		// 5, 3, 1): a lane's weight sits where it multiplies into the
		// top lane.
		evenW = 2 | 4<<16 | 6<<32 | 8<<48
		oddW  = 1 | 3<<16 | 5<<32 | 7<<48
	)
	s1, s2 := uint64(1), uint64(0)
	for len(p) > 0 {
		c := p[:min(len(p), chunk)]
		p = p[len(c):]
		var before, weighted uint64 // s1 before each word; the words' weighted sums
		for len(c) >= 16 {
			// Two words: the weights of the first are the second's plus
			// 8, and lanes of both still cannot carry.
			w0, w1 := binary.LittleEndian.Uint64(c), binary.LittleEndian.Uint64(c[8:])
			e0, o0 := w0&lanes, w0>>8&lanes
			e, o := e0+w1&lanes, o0+w1>>8&lanes
			sum0 := ((e0 + o0) * ones) >> 48
			before += 2*s1 + sum0
			weighted += (e*evenW)>>48 + (o*oddW)>>48
			s1 += ((e + o) * ones) >> 48
			c = c[16:]
		}
		s2 += 8*before + weighted
		for _, b := range c {
			s1 += uint64(b)
			s2 += s1
		}
		s1 %= mod
		s2 %= mod
	}
	return uint32(s2<<16 | s1)
}
