package zstdenc

import "github.com/klauspost/compress/huff0"

// Literals_Block_Type values.
const (
	litRaw        = 0
	litRLE        = 1
	litCompressed = 2
)

func appendRawLitHeader(dst []byte, typ byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, typ|byte(n)<<3)
	case n < 4096:
		return append(dst, typ|1<<2|byte(n)<<4, byte(n>>4))
	default:
		return append(dst, typ|3<<2|byte(n)<<4, byte(n>>4), byte(n>>12))
	}
}

// encodeLiterals appends the literals section. huff0's output is the zstd
// Huffman tree description followed by the stream(s), with the 6-byte jump
// table for four streams, which is exactly zstd's compressed literals payload.
func encodeLiterals(dst []byte, lits []byte, s *huff0.Scratch) []byte {
	n := len(lits)
	if n == 0 {
		return append(dst, litRaw)
	}
	rle := true
	for _, b := range lits[1:] {
		if b != lits[0] {
			rle = false
			break
		}
	}
	if rle && n > 2 {
		return append(appendRawLitHeader(dst, litRLE, n), lits[0])
	}
	if n >= 32 {
		var out []byte
		var err error
		single := n < 1024
		s.Reuse = huff0.ReusePolicyNone
		if single {
			out, _, err = huff0.Compress1X(lits, s)
		} else {
			out, _, err = huff0.Compress4X(lits, s)
		}
		if err == nil {
			c := len(out)
			var hdr int
			switch {
			case n < 1024 && c < 1024:
				hdr = 3
			case n < 16384 && c < 16384:
				hdr = 4
			default:
				hdr = 5
			}
			if c+hdr < n+rawLitHeaderSize(n) && c < 1<<18 {
				var sf uint64
				switch {
				case hdr == 3 && single:
					sf = 0
				case hdr == 3:
					sf = 1
				case hdr == 4:
					sf = 2
				default:
					sf = 3
				}
				bitsEach := uint(10)
				if hdr == 4 {
					bitsEach = 14
				} else if hdr == 5 {
					bitsEach = 18
				}
				h := uint64(litCompressed) | sf<<2 | uint64(n)<<4 | uint64(c)<<(4+bitsEach)
				for i := 0; i < hdr; i++ {
					dst = append(dst, byte(h>>(8*i)))
				}
				return append(dst, out...)
			}
		}
	}
	return append(appendRawLitHeader(dst, litRaw, n), lits...)
}

func rawLitHeaderSize(n int) int {
	switch {
	case n < 32:
		return 1
	case n < 4096:
		return 2
	}
	return 3
}
