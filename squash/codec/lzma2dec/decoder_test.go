package lzma2dec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

// checkRoundTrip decodes stream with a tight capacity, a loose one and
// one byte too few, and with trailing garbage.
func checkRoundTrip(t *testing.T, d *Decoder, stream, want []byte, dict int) {
	t.Helper()
	dst := make([]byte, 0, len(want))
	out, n, err := d.Decode(dst, stream, dict)
	if err != nil {
		t.Fatalf("decode: %v (n=%d, %d of %d bytes out)", err, n, len(out), len(want))
	}
	if n != len(stream) {
		t.Fatalf("consumed %d of %d bytes", n, len(stream))
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("output differs: got %d bytes, want %d", len(out), len(want))
	}
	if len(want) > 0 && &out[0] != &dst[:1][0] {
		t.Fatal("output not in dst's backing array")
	}
	garbage := append(append([]byte(nil), stream...), 0xff, 0x42)
	out, n, err = d.Decode(make([]byte, 0, len(want)+100), garbage, dict)
	if err != nil || n != len(stream) || !bytes.Equal(out, want) {
		t.Fatalf("with trailing garbage: err %v, n %d of %d", err, n, len(stream))
	}
	if len(want) > 0 {
		_, _, err = d.Decode(make([]byte, 0, len(want)-1), stream, dict)
		if !errors.Is(err, ErrOutputTooLarge) {
			t.Fatalf("cap one short: got %v, want ErrOutputTooLarge", err)
		}
	}
}

type corpus struct {
	name string
	data []byte
}

var (
	corpusOnce sync.Once
	corpusData []corpus
)

func testInputs(t *testing.T) []corpus {
	corpusOnce.Do(func() {
		text := repoText(t)
		mixed := cat(pseudoText(100_000, 7), randomBytes(150_000, 8), text[:min(len(text), 100_000)], randomBytes(70_000, 9), pseudoText(50_000, 10))
		corpusData = []corpus{
			{"empty", nil},
			{"one", []byte{'x'}},
			{"zeros", make([]byte, 300_000)},
			{"random", randomBytes(200_000, 1)},
			{"text", pseudoText(200_000, 2)},
			{"source", text},
			{"mixed", mixed},
			{"big", cat(pseudoText(1_200_000, 3), randomBytes(300_000, 4), pseudoText(800_000, 5))},
		}
	})
	return corpusData
}

func TestXZUtils(t *testing.T) {
	d := NewDecoder()
	type xzCase struct {
		opts string
		dict int
	}
	cases := []xzCase{
		{"preset=0,dict=4KiB", 4 << 10},
		{"preset=1,dict=8KiB", 8 << 10},
		{"preset=2,dict=64KiB", 64 << 10},
		{"preset=3,dict=128KiB", 128 << 10},
		{"preset=4,dict=256KiB", 256 << 10},
		{"preset=5,dict=1MiB", 1 << 20},
		{"preset=6,dict=1MiB", 1 << 20},
		{"preset=7,dict=512KiB", 512 << 10},
		{"preset=8,dict=1MiB", 1 << 20},
		{"preset=9,dict=1MiB", 1 << 20},
		{"preset=6,dict=64KiB,lc=0,lp=2,pb=0", 64 << 10},
		{"preset=6,dict=64KiB,lc=4,lp=0,pb=4", 64 << 10},
		{"preset=6,dict=64KiB,lc=1,lp=3,pb=1", 64 << 10},
		{"preset=6,dict=64KiB,lc=0,lp=4,pb=3", 64 << 10},
		{"preset=6e,dict=32KiB,lc=2,lp=1,pb=2", 32 << 10},
		{"preset=1,dict=4KiB,mf=hc3,mode=fast,nice=8", 4 << 10},
	}
	for _, in := range testInputs(t) {
		for i, c := range cases {
			// Big inputs take seconds per slow preset; a few settings
			// cover the multi-chunk logic.
			if len(in.data) > 1<<20 && i%4 != 0 {
				continue
			}
			t.Run(in.name+"/"+c.opts, func(t *testing.T) {
				stream := xzRaw(t, in.data, c.opts)
				checkRoundTrip(t, d, stream, in.data, c.dict)
			})
		}
	}
}

func TestOurEncoder(t *testing.T) {
	d := NewDecoder()
	for _, in := range testInputs(t) {
		for _, dict := range []int{4 << 10, 64 << 10, 1 << 20} {
			if len(in.data) > 1<<20 && dict != 1<<20 {
				continue
			}
			stream := ourEncode(in.data, dict)
			t.Run(in.name, func(t *testing.T) { checkRoundTrip(t, d, stream, in.data, dict) })
		}
	}
}

func TestUlikunitzWriter(t *testing.T) {
	d := NewDecoder()
	for _, in := range testInputs(t) {
		// Writer2 fails with "insufficient space" on a 4 KiB dictionary.
		for _, dict := range []int{64 << 10, 1 << 20} {
			stream := ulikunitzEncode(t, in.data, dict)
			t.Run(in.name, func(t *testing.T) { checkRoundTrip(t, d, stream, in.data, dict) })
		}
	}
}

// TestDictResetMidStream decodes two streams glued into one: the second
// one's dictionary reset must cut matches and literal context at its start.
func TestDictResetMidStream(t *testing.T) {
	a, b := pseudoText(5000, 11), pseudoText(7000, 12)
	sa := ourEncode(a, 1<<16)
	sb := ourEncode(b, 1<<16)
	// Both start with a dictionary reset; dropping a's end marker gives
	// one stream with a reset in the middle.
	stream := cat(sa[:len(sa)-1], sb)
	checkRoundTrip(t, NewDecoder(), stream, cat(a, b), 1<<16)
}

func TestCrafted(t *testing.T) {
	const props = 3 // lc=3, lp=0, pb=0, as the crafter assumes

	// "AB" then a match of 10 at distance 2.
	valid := newCrafter()
	valid.literal('A')
	valid.literal('B')
	valid.match(10, 1)
	validData := valid.finish()
	validStream := cat(lzmaChunk(0xe0, valid.n, len(validData), props, validData), []byte{0})
	validOut := []byte("ABABABABABAB")

	// A match at the very start: nothing to copy from.
	atStart := newCrafter()
	atStart.match(2, 0)
	atStartData := atStart.finish()

	// "A" then distance 2: one byte behind the output start.
	beyond := newCrafter()
	beyond.literal('A')
	beyond.match(3, 1)
	beyondData := beyond.finish()

	// "A" then rep0 (distance 1, the initial rep) of 10 in a chunk that
	// declares 5 bytes.
	cross := newCrafter()
	cross.literal('A')
	cross.rep0(10)
	crossData := cross.finish()

	rawA := []byte{1, 0, 0, 'A'}
	twoLits := func() []byte {
		c := newCrafter()
		c.literal('x')
		c.literal('y')
		return c.finish()
	}
	tl := twoLits()

	tests := []struct {
		name   string
		stream []byte
		cap    int
		dict   int
		want   []byte
		err    error
	}{
		{"valid", validStream, 100, 1 << 16, validOut, nil},
		{"valid dict exactly 2", validStream, 100, 2, validOut, nil},
		{"dict smaller than distance", validStream, 100, 1, nil, errDistance},
		{"match at start", cat(lzmaChunk(0xe0, 2, len(atStartData), props, atStartData), []byte{0}), 100, 1 << 16, nil, errDistance},
		{"distance beyond output", cat(lzmaChunk(0xe0, beyond.n, len(beyondData), props, beyondData), []byte{0}), 100, 1 << 16, nil, errDistance},
		{"match crosses chunk end", cat(lzmaChunk(0xe0, 5, len(crossData), props, crossData), []byte{0}), 100, 1 << 16, nil, errChunkMatch},
		{"chunk declares extra compressed byte", cat(lzmaChunk(0xe0, valid.n, len(validData)+1, props, append(validData[:len(validData):len(validData)], 0)), []byte{0}), 100, 1 << 16, nil, errChunkSize},
		{"chunk declares more output", cat(lzmaChunk(0xe0, valid.n+1, len(validData), props, validData), []byte{0}), 100, 1 << 16, nil, errChunkSize},
		{"chunk declares less output", cat(lzmaChunk(0xe0, 2, len(validData), props, validData), []byte{0}), 100, 1 << 16, nil, errChunkSize},
		{"range coder first byte", cat(lzmaChunk(0xe0, valid.n, len(validData), props, cat([]byte{1}, validData[1:])), []byte{0}), 100, 1 << 16, nil, errRangeInit},
		{"compressed size below 5", cat(lzmaChunk(0xe0, 1, 4, props, []byte{0, 0, 0, 0}), []byte{0}), 100, 1 << 16, nil, errRangeInit},
		{"props lc+lp=5", cat(lzmaChunk(0xe0, valid.n, len(validData), 4+9*1, validData), []byte{0}), 100, 1 << 16, nil, errProps},
		{"props out of range", cat(lzmaChunk(0xe0, valid.n, len(validData), 225, validData), []byte{0}), 100, 1 << 16, nil, errProps},
		{"huge LZMA chunk, small cap", cat(lzmaChunk(0xe0, 1<<21, 1<<16, props, nil)), 4096, 1 << 16, nil, ErrOutputTooLarge},
		{"huge raw chunk, small cap", cat([]byte{1, 0xff, 0xff}, make([]byte, 1<<16), []byte{0}), 100, 1 << 16, nil, ErrOutputTooLarge},
		{"raw chunk truncated", []byte{1, 0, 9, 'a'}, 100, 1 << 16, nil, ErrTruncated},
		{"empty input", nil, 100, 1 << 16, nil, ErrTruncated},
		{"only end marker", []byte{0}, 100, 1 << 16, []byte{}, nil},
		{"raw chunks", cat(rawA, []byte{2, 0, 1, 'B', 'C'}, []byte{0}), 3, 1 << 16, []byte("ABC"), nil},
		{"first chunk raw without reset", []byte{2, 0, 0, 'A', 0}, 100, 1 << 16, nil, errDictReset},
		{"first chunk LZMA without reset", cat(lzmaChunk(0xc0, 2, len(tl), props, tl), []byte{0}), 100, 1 << 16, nil, errDictReset},
		{"bad control 3", []byte{3, 0, 0, 'A', 0}, 100, 1 << 16, nil, errControl},
		{"bad control 0x7f", cat(rawA, []byte{0x7f, 0}), 100, 1 << 16, nil, errControl},
		{"LZMA after dict reset needs props", cat(rawA, lzmaChunk(0xa0, 2, len(tl), -1, tl), []byte{0}), 100, 1 << 16, nil, errNeedProps},
		{"LZMA after dict reset, props", cat(rawA, lzmaChunk(0xc0, 2, len(tl), props, tl), []byte{0}), 100, 1 << 16, []byte("Axy"), nil},
		{"LZMA after raw needs props after dict reset", cat(lzmaChunk(0xe0, 2, len(tl), props, tl), []byte{1, 0, 0, 'A'}, lzmaChunk(0xa0, 2, len(tl), -1, tl), []byte{0}), 100, 1 << 16, nil, errNeedProps},
		{"LZMA after raw, state reset", cat(lzmaChunk(0xe0, 2, len(tl), props, tl), []byte{2, 0, 0, 'A'}, lzmaChunk(0xa0, 2, len(tl), -1, tl), []byte{0}), 100, 1 << 16, []byte("xyAxy"), nil},
		{"negative dict", []byte{0}, 100, -1, nil, errDictSize},
		{"zero dict rejects matches", validStream, 100, 0, nil, errDistance},
	}
	d := NewDecoder()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := d.Decode(make([]byte, 0, tc.cap), tc.stream, tc.dict)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got error %v, want %v", err, tc.err)
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrOutputTooLarge) {
					t.Fatalf("error %v is in no exported category", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !bytes.Equal(out, tc.want) {
				t.Fatalf("got %q, want %q", out, tc.want)
			}
		})
	}
}

func hostileStreams(t *testing.T) map[string][]byte {
	text := pseudoText(8_000, 21)
	mixed := cat(pseudoText(40_000, 22), randomBytes(40_000, 23), pseudoText(20_000, 24))
	return map[string][]byte{
		"ours/text":    ourEncode(text, 1<<16),
		"xz/text":      xzRaw(t, text, "preset=6,dict=64KiB"),
		"xz/lp":        xzRaw(t, text, "preset=6,dict=64KiB,lc=0,lp=2,pb=0"),
		"xz/mixed":     xzRaw(t, mixed, "preset=6,dict=64KiB"),
		"ours/mixed":   ourEncode(mixed, 1<<16),
		"ulikunitz/tx": ulikunitzEncode(t, text, 1<<16),
	}
}

func TestTruncations(t *testing.T) {
	d := NewDecoder()
	for name, stream := range hostileStreams(t) {
		t.Run(name, func(t *testing.T) {
			dst := make([]byte, 0, 200_000)
			// Long streams: every cut in the first and last 512
			// bytes and about 300 between.
			stride := max(1, len(stream)/300)
			for i := 0; i < len(stream); i++ {
				if i > 512 && i < len(stream)-512 && i%stride != 0 {
					continue
				}
				_, n, err := d.Decode(dst, stream[:i], 1<<16)
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("cut at %d of %d: got %v, n %d, want ErrTruncated", i, len(stream), err, n)
				}
			}
		})
	}
}

func TestBitFlips(t *testing.T) {
	d := NewDecoder()
	r := rand.New(rand.NewPCG(99, 99))
	for name, stream := range hostileStreams(t) {
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, len(stream))
			const capOut = 150_000
			dst := make([]byte, 0, capOut)
			for range 1000 {
				copy(buf, stream)
				for range 1 + r.IntN(3) {
					i := r.IntN(len(buf))
					buf[i] ^= 1 << r.IntN(8)
				}
				dict := 1 << (12 + r.IntN(5))
				out, n, err := d.Decode(dst, buf, dict)
				if len(out) > capOut || n > len(buf) || n < 0 {
					t.Fatalf("out %d bytes, n %d, err %v", len(out), n, err)
				}
			}
		})
	}
}

func TestWrongDictSize(t *testing.T) {
	// Text with repeats 40 KiB apart: a 64 KiB dictionary is needed.
	block := pseudoText(40_000, 31)
	data := cat(block, block)
	for _, tc := range []struct {
		name   string
		stream []byte
	}{
		{"ours", ourEncode(data, 1<<16)},
		{"xz", xzRaw(t, data, "preset=6,dict=64KiB")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder()
			if _, _, err := d.Decode(make([]byte, 0, len(data)), tc.stream, 1<<16); err != nil {
				t.Fatal(err)
			}
			_, _, err := d.Decode(make([]byte, 0, len(data)), tc.stream, 32<<10)
			if !errors.Is(err, errDistance) {
				t.Fatalf("dict 32 KiB: got %v, want errDistance", err)
			}
		})
	}
}

// TestNoAllocs guards the promise that decoding allocates nothing.
func TestNoAllocs(t *testing.T) {
	data := pseudoText(100_000, 41)
	stream := ourEncode(data, 1<<16)
	d := NewDecoder()
	dst := make([]byte, 0, len(data))
	allocs := testing.AllocsPerRun(20, func() {
		if _, _, err := d.Decode(dst, stream, 1<<16); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Decode", allocs)
	}
}
