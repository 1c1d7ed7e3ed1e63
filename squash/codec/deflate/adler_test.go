package deflate

import (
	"bytes"
	"hash/adler32"
	"math/rand/v2"
	"testing"
)

func TestAdler32(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	big := make([]byte, 300000)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	ff := bytes.Repeat([]byte{0xff}, 300000) // the largest sums
	for _, p := range [][]byte{big, ff} {
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 5551, 5552, 5553, 5560, 65536, 131072, 300000} {
			if got, want := adler(p[:n]), adler32.Checksum(p[:n]); got != want {
				t.Fatalf("%d bytes: %08x, want %08x", n, got, want)
			}
		}
	}
	for range 2000 {
		n := rng.IntN(20000)
		off := rng.IntN(len(big) - n)
		if got, want := adler(big[off:off+n]), adler32.Checksum(big[off:off+n]); got != want {
			t.Fatalf("%d bytes at %d: %08x, want %08x", n, off, got, want)
		}
	}
}

func BenchmarkAdler32(b *testing.B) {
	p := make([]byte, 128<<10)
	for i := range p {
		p[i] = byte(i * 7)
	}
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			adler(p)
		}
	})
	b.Run("hash/adler32", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			adler32.Checksum(p)
		}
	})
}
