package lzma2

import (
	"os"
	"testing"
)

// BenchmarkEncode128K codes the package's own sources as 128 KiB blocks.
func BenchmarkEncode128K(b *testing.B) {
	var src []byte
	for _, n := range []string{"opt.go", "encoder.go", "mf.go", "rc.go", "lzma2_test.go", "ratio_test.go"} {
		d, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, d...)
	}
	for len(src) < 128<<10 {
		src = append(src, src...)
	}
	// Distort the repeats so the block is not trivially self-similar.
	for i := 100; i < len(src); i += 997 {
		src[i] ^= byte(i)
	}
	src = src[:128<<10]
	e := NewEncoder(128 << 10)
	b.SetBytes(int64(len(src)))
	var dst []byte
	for b.Loop() {
		dst = e.Encode(dst[:0], src)
	}
}
