package codec

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestLZOEncoderEdges: streams that need each instruction and length
// form round-trip through the decoder, which refuses what the kernel's
// lzo1x_decompress_safe refuses.
func TestLZOEncoderEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	far := random(40000) // M4: a match 40000 back
	far = append(far, far[:600]...)
	mid := random(10000) // M3: 10000 back, 300 long (length in extra bytes)
	mid = append(mid, mid[:300]...)
	long := bytes.Repeat([]byte("ab"), 60000) // runs far past 255 of length
	lits := append(random(700), random(5)...)
	lits = append(append(lits, lits[:40]...), random(300)...) // 300 literals after a match
	short := append(random(100), random(100)...)
	short = append(append(short, short[:10]...), random(2)...) // 2 literals in a match's low bits
	for name, in := range map[string][]byte{
		"empty": {}, "one": {1}, "three": {1, 2, 3}, "four": {1, 2, 3, 4},
		"far": far, "mid": mid, "long": long, "literal runs": lits, "short tails": short,
		"start 238": random(238), "start 239": random(239), "start 600": random(600),
	} {
		var e lzoEncoder
		comp, err := e.Compress(nil, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := make([]byte, len(in))
		n, err := lzoDecoder{}.Decompress(out, comp)
		if err != nil || !bytes.Equal(out[:n], in) {
			t.Errorf("%s: %d bytes back of %d, %v", name, n, len(in), err)
		}
		// Random bytes cost a little more than themselves; the repeats
		// must cost next to nothing.
		if most, ok := map[string]int{"far": 40000 * 101 / 100, "mid": 10000 * 101 / 100, "long": 1000}[name]; ok && len(comp) > most {
			t.Errorf("%s: %d bytes for %d (at most %d): the match was not found", name, len(comp), len(in), most)
		}
	}
}
