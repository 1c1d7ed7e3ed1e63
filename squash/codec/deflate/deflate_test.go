package deflate

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"io"
	"math/bits"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/cirequire"
)

// decode inflates a zlib stream with the standard library, checking that
// nothing follows it.
func decode(t testing.TB, stream []byte) []byte {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(stream))
	if err != nil {
		t.Fatalf("zlib header: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// checkStream verifies the header and trailer bytes of a stream for src
// and that src round-trips through it.
func checkStream(t testing.TB, stream, src []byte) {
	t.Helper()
	if len(stream) < 6 || stream[0] != 0x78 || stream[1] != 0xDA {
		t.Fatalf("bad zlib header % x", stream[:min(len(stream), 2)])
	}
	if got, want := binary.BigEndian.Uint32(stream[len(stream)-4:]), adler32.Checksum(src); got != want {
		t.Fatalf("Adler-32 trailer %08x, want %08x", got, want)
	}
	// The raw deflate data must end exactly before the trailer.
	fr := flate.NewReader(bytes.NewReader(stream[2 : len(stream)-4]))
	raw, err := io.ReadAll(fr)
	if err != nil {
		t.Fatalf("raw inflate: %v", err)
	}
	if !bytes.Equal(raw, src) {
		t.Fatalf("raw inflate mismatch: got %d bytes, want %d", len(raw), len(src))
	}
	if got := decode(t, stream); !bytes.Equal(got, src) {
		t.Fatalf("round trip mismatch: got %d bytes, want %d", len(got), len(src))
	}
}

func testInputs() []struct {
	name string
	data []byte
} {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 128<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	// Matches at exactly the largest distance: a random 32 KiB block
	// repeated, so the only match is 32768 bytes back, with lengths of
	// 258 and beyond.
	far := append(random[:windowSize:windowSize], random[:windowSize]...)
	far = append(far, random[:1000]...)
	// Just out of reach: 32769 bytes back.
	tooFar := append(random[:windowSize+1:windowSize+1], random[:4000]...)
	var text strings.Builder
	words := strings.Fields("squashfs block fragment inode directory table compressor the of a to and zlib deflate huffman window match literal")
	for text.Len() < 200<<10 {
		text.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(10) == 0 {
			text.WriteString(".\n")
		} else {
			text.WriteByte(' ')
		}
	}
	// Mixed: text, then random, then text again (block splitting).
	mixed := append([]byte(text.String()[:60<<10]), random[:40<<10]...)
	mixed = append(mixed, text.String()[60<<10:160<<10]...)
	pattern := bytes.Repeat([]byte("abcdefghij0123456789"), 30000)
	// Runs of 258+ of one byte in the middle of noise, and short runs.
	runs := make([]byte, 0, 100000)
	for len(runs) < 100000 {
		n := rng.IntN(600)
		runs = append(runs, bytes.Repeat([]byte{byte(rng.IntN(4))}, n)...)
		runs = append(runs, random[:rng.IntN(20)]...)
	}
	return []struct {
		name string
		data []byte
	}{
		{"synthetic LZ", syntheticLZ(rng, 300<<10)},
		{"empty", nil},
		{"one byte", []byte{'x'}},
		{"two bytes", []byte{0, 0}},
		{"three bytes", []byte("aaa")},
		{"four equal", []byte("aaaa")},
		{"short text", []byte("hello, hello, hello world")},
		{"zeros 1 MiB", make([]byte, 1<<20)},
		{"random 128 KiB", random},
		{"random 100 KiB + 1", random[:100<<10+1]},
		{"pattern", pattern},
		{"distance 32768", far},
		{"distance 32769", tooFar},
		{"text", []byte(text.String())},
		{"mixed", mixed},
		{"runs", runs},
		{"metadata 8 KiB", []byte(text.String()[:8192])},
	}
}

// syntheticLZ builds data as an LZ77 decoder would from random tokens with
// skewed distributions: common short matches and rare long or far ones,
// so that codes reach their full 15 bits and every length and distance
// code and extra-bit width occurs.
func syntheticLZ(rng *rand.Rand, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		if rng.IntN(3) == 0 || len(out) < 100 {
			// Literals from a steep distribution.
			out = append(out, byte(min(255, int(rng.ExpFloat64()*6))))
			continue
		}
		l := 3 + min(255, int(rng.ExpFloat64()*float64(1+rng.IntN(60))))
		d := 1 + min(len(out)-1, windowSize-1, int(rng.ExpFloat64()*float64(int(1)<<rng.IntN(16))))
		for range l {
			out = append(out, out[len(out)-d])
		}
	}
	return out[:n]
}

func TestRoundTrip(t *testing.T) {
	for _, in := range testInputs() {
		for level := MinLevel; level <= MaxLevel; level++ {
			t.Run(fmt.Sprintf("%s/level%d", in.name, level), func(t *testing.T) {
				e := NewEncoder(level)
				prefix := []byte("prefix")
				out := e.Encode(prefix, in.data)
				if !bytes.Equal(out[:len(prefix)], prefix) {
					t.Fatal("Encode overwrote dst")
				}
				checkStream(t, out[len(prefix):], in.data)
				// The encoder is reusable: a second run gives the same bytes.
				again := e.Encode(nil, in.data)
				if !bytes.Equal(again, out[len(prefix):]) {
					t.Fatal("second Encode differs")
				}
			})
		}
	}
}

// TestCompresses checks that redundant input actually shrinks and that
// incompressible input grows by no more than stored-block overhead.
func TestCompresses(t *testing.T) {
	for _, in := range testInputs() {
		out := NewEncoder(DefaultLevel).Encode(nil, in.data)
		switch in.name {
		case "zeros 1 MiB":
			if len(out) > 2000 {
				t.Errorf("%s: %d bytes", in.name, len(out))
			}
		case "pattern", "distance 32768":
			if len(out) > len(in.data)/10+100 && in.name == "pattern" || len(out) > windowSize+2000 {
				t.Errorf("%s: %d bytes from %d", in.name, len(out), len(in.data))
			}
		case "random 128 KiB":
			// Stored: 5 bytes per stored block plus zlib framing.
			if len(out) > len(in.data)+40 {
				t.Errorf("%s: %d bytes from %d", in.name, len(out), len(in.data))
			}
		case "text":
			if len(out) > len(in.data)/3 {
				t.Errorf("%s: %d bytes from %d", in.name, len(out), len(in.data))
			}
		}
	}
}

// TestReuseAcrossSizes encodes inputs of varying sizes with one encoder,
// so stale match-finder state from earlier inputs would show.
func TestReuseAcrossSizes(t *testing.T) {
	e := NewEncoder(MaxLevel)
	ins := testInputs()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 60 {
		in := ins[rng.IntN(len(ins))].data
		if len(in) > 0 {
			a := rng.IntN(len(in))
			in = in[a : a+rng.IntN(len(in)-a+1)]
		}
		checkStream(t, e.Encode(nil, in), in)
	}
}

func TestHuffmanLengthLimit(t *testing.T) {
	// Fibonacci frequencies make the deepest possible Huffman tree.
	var freq [numLitLen]uint32
	a, b := uint32(1), uint32(1)
	for i := 0; i < 30; i++ {
		freq[i] = a
		a, b = b, a+b
	}
	var lens [numLitLen]uint8
	var hb huffBuilder
	for _, limit := range []int{maxCodeBits, maxCLBits} {
		hb.lengths(freq[:], lens[:], limit)
		kraft := 0
		for s, l := range lens {
			if (l == 0) != (freq[s] == 0) || int(l) > limit {
				t.Fatalf("limit %d: symbol %d freq %d length %d", limit, s, freq[s], l)
			}
			if l != 0 {
				kraft += 1 << (limit - int(l))
			}
		}
		if kraft != 1<<limit {
			t.Fatalf("limit %d: Kraft sum %d, want %d (incomplete or oversubscribed)", limit, kraft, 1<<limit)
		}
	}
}

func FuzzEncode(f *testing.F) {
	f.Add([]byte{}, uint8(6))
	f.Add([]byte("a"), uint8(1))
	f.Add(bytes.Repeat([]byte("abc"), 100), uint8(9))
	f.Add([]byte("hello, hello, hello world"), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, level uint8) {
		e := NewEncoder(int(level%MaxLevel) + 1)
		checkStream(t, e.Encode(nil, data), data)
	})
}

// TestLongCodes writes one dynamic block of tokens drawn from geometric
// distributions, so that literal, length and distance codes all reach
// the 15-bit limit together with the largest extra-bit counts: the worst
// case for the bit writer.
func TestLongCodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	geo := func() int { return bits.TrailingZeros64(rng.Uint64() | 1<<62) }
	var toks []uint32
	var raw []byte
	for len(raw) < 1<<20 {
		if len(raw) < 64 || rng.IntN(2) == 0 {
			b := byte(geo())
			toks = append(toks, uint32(b))
			raw = append(raw, b)
			continue
		}
		// Length code 27 (symbol 284, 5 extra bits) and distance code 29
		// (13 extra bits) are made rare enough for 15-bit codes, and come
		// together: 48 bits in one token.
		lc, dc := geo()%27, min(geo(), 28)
		if rng.IntN(20000) == 0 {
			lc, dc = 27, 29
		}
		l := int(lenBase[lc]) + rng.IntN(1<<lenExtra[lc])
		d := min(int(distBase[dc])+rng.IntN(1<<distExtra[dc]), len(raw))
		toks = append(toks, matchToken(l, d))
		for range l {
			raw = append(raw, raw[len(raw)-d])
		}
	}
	e := NewEncoder(DefaultLevel)
	h := new(histogram)
	h.reset()
	for _, t := range toks {
		if t&matchFlag == 0 {
			h.lit[t]++
		} else {
			h.addMatch(int(t>>16&0xFF)+minMatch, int(t&0x7FFF)+1)
		}
	}
	e.dyn.build(h, &e.hb)
	if e.dyn.litLens[257+27] != maxCodeBits || e.dyn.distLens[29] != maxCodeBits {
		t.Fatalf("test does not reach 15-bit codes: length code 284 %d bits, distance code 29 %d bits",
			e.dyn.litLens[257+27], e.dyn.distLens[29])
	}
	var w bitWriter
	w.bits(1|2<<1, 3)
	e.dyn.writeHeader(&w)
	writeTokens(&w, toks, &e.dyn)
	w.align()
	got, err := io.ReadAll(flate.NewReader(bytes.NewReader(w.out)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatal("mismatch")
	}
}

// TestCZlibDecodes has C zlib (through python3's zlib module) inflate
// every test stream at every level: it rejects incomplete or oversubscribed
// codes as the kernel's inflate does, where Go's reader is laxer.
func TestCZlibDecodes(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		cirequire.Unavailable(t, "python3 (C zlib) not found: %v", err)
		return
	}
	var buf bytes.Buffer
	for _, in := range testInputs() {
		for level := MinLevel; level <= MaxLevel; level++ {
			out := NewEncoder(level).Encode(nil, in.data)
			for _, b := range [][]byte{out, in.data} {
				binary.Write(&buf, binary.LittleEndian, uint32(len(b)))
				buf.Write(b)
			}
		}
	}
	const script = `
import sys, zlib
data = sys.stdin.buffer.read()
i, n = 0, 0
while i < len(data):
    parts = []
    for _ in range(2):
        k = int.from_bytes(data[i:i+4], "little"); i += 4
        parts.append(data[i:i+k]); i += k
    if zlib.decompress(parts[0]) != parts[1]:
        sys.exit("stream %d: mismatch" % n)
    n += 1
print(n)
`
	cmd := exec.Command("python3", "-c", script)
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("C zlib: %v: %s", err, out)
	}
}

// TestHugeInput covers inputs beyond maxInput, which are stored.
func TestHugeInput(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	src := bytes.Repeat([]byte("0123456789abcdef"), (maxInput+16)/16+1)
	checkStream(t, NewEncoder(DefaultLevel).Encode(nil, src), src)
}

func BenchmarkEncode(b *testing.B) {
	var text []byte
	for _, in := range testInputs() {
		if in.name == "text" {
			text = in.data[:128<<10]
		}
	}
	for _, level := range []int{1, DefaultLevel, MaxLevel} {
		b.Run(fmt.Sprintf("level%d", level), func(b *testing.B) {
			e := NewEncoder(level)
			dst := e.Encode(nil, text)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				dst = e.Encode(dst[:0], text)
			}
		})
	}
}
