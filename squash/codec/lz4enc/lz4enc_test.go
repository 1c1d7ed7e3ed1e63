package lz4enc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"

	"github.com/squashportage/squashportage/squash/codec/internal/corpus"
)

// decodeStrict decodes an LZ4 block to exactly n bytes and checks the
// format's end-of-block rules, which a decoder into an exact-size buffer
// (the kernel's, for a full block) enforces: the last sequence is literals
// only, the last 5 bytes are literals, and no match starts within the last
// 12 bytes.
func decodeStrict(blk []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	i := 0
	readLen := func(l int) (int, error) {
		if l != 15 {
			return l, nil
		}
		for {
			if i >= len(blk) {
				return 0, fmt.Errorf("length runs past the block")
			}
			b := blk[i]
			i++
			l += int(b)
			if b != 255 {
				return l, nil
			}
		}
	}
	for {
		if i >= len(blk) {
			return nil, fmt.Errorf("block ends without a final sequence")
		}
		tok := blk[i]
		i++
		ll, err := readLen(int(tok >> 4))
		if err != nil {
			return nil, err
		}
		if i+ll > len(blk) {
			return nil, fmt.Errorf("literals run past the block")
		}
		out = append(out, blk[i:i+ll]...)
		i += ll
		if i == len(blk) {
			if tok&15 != 0 {
				return nil, fmt.Errorf("last sequence has a match length")
			}
			break
		}
		if i+2 > len(blk) {
			return nil, fmt.Errorf("offset runs past the block")
		}
		off := int(blk[i]) | int(blk[i+1])<<8
		i += 2
		if off == 0 || off > len(out) {
			return nil, fmt.Errorf("offset %d at output %d", off, len(out))
		}
		if len(out) > n-mfLimit {
			return nil, fmt.Errorf("match starts at %d, within the last %d bytes of %d", len(out), mfLimit, n)
		}
		ml, err := readLen(int(tok & 15))
		if err != nil {
			return nil, err
		}
		ml += minMatch
		if len(out)+ml > n-lastLiterals {
			return nil, fmt.Errorf("match ends at %d, within the last %d bytes of %d", len(out)+ml, lastLiterals, n)
		}
		for k := 0; k < ml; k++ {
			out = append(out, out[len(out)-off])
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("decoded %d bytes, want %d", len(out), n)
	}
	return out, nil
}

// roundTrip encodes src without an output limit, checks the block decodes
// to src, and checks Encode against it: the same block when it is smaller
// than src, false otherwise.
func roundTrip(t *testing.T, e *Encoder, src []byte) []byte {
	t.Helper()
	free := make([]byte, 2*len(src)+16)
	n := e.encode(free, src)
	if n < 0 {
		t.Fatalf("%d bytes: no room in %d", len(src), len(free))
	}
	blk := free[:n]
	got, err := decodeStrict(blk, len(src))
	if err != nil {
		t.Fatalf("%d bytes: %v", len(src), err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("%d bytes: round trip differs", len(src))
	}
	// And through an independent decoder.
	dst := make([]byte, len(src))
	if m, err := lz4.UncompressBlock(blk, dst); err != nil || m != len(src) || !bytes.Equal(dst, src) {
		t.Fatalf("%d bytes: pierrec/lz4 decodes %d, %v", len(src), m, err)
	}
	limited, ok := e.Encode(nil, src)
	switch {
	case ok != (len(blk) < len(src)):
		t.Fatalf("%d bytes: Encode says %v for a block of %d", len(src), ok, len(blk))
	case ok && !bytes.Equal(limited, blk):
		t.Fatalf("%d bytes: Encode's block differs from the unlimited one", len(src))
	case !ok && len(limited) != 0:
		t.Fatalf("%d bytes: Encode returned %d bytes with false", len(src), len(limited))
	}
	return blk
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := bytes.Repeat([]byte("static int squashfs_read_inode(struct inode *inode, long long ino)\n{\n"), 16000)
	mixed := append(append(random(40000), text[:50000]...), random(40000)...)
	zeros := make([]byte, 128<<10)
	runs := make([]byte, 128<<10)
	for i := range runs {
		runs[i] = byte(i / 300)
	}
	far := append(append(random(1000), random(70000)...), 0)
	far = append(far, far[:1000]...) // a repeat beyond the 64 KiB window
	r64 := random(65536)
	at64k := append(r64, r64[:200]...) // a repeat exactly one past the window
	cases := map[string][]byte{
		"64 KiB back": at64k,
		"empty":       nil,
		"one":         {7},
		"12 bytes":    []byte("abcdabcdabcd"),
		"13 bytes":    []byte("abcdabcdabcda"),
		"13 zeros":    make([]byte, 13),
		"17 zeros":    make([]byte, 17),
		"random":      random(128 << 10),
		"text":        text[:128<<10],
		"mixed":       mixed,
		"zeros":       zeros,
		"runs":        runs,
		"1 MiB":       append(text[:600<<10], random(424<<10)...),
		"far":         far,
	}
	e := new(Encoder)
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			blk := roundTrip(t, e, src)
			if name == "zeros" && len(blk) > 600 {
				t.Errorf("128 KiB of zeros took %d bytes", len(blk))
			}
			if name == "text" && len(blk) > len(src)/20 {
				t.Errorf("repetitive text: %d of %d bytes", len(blk), len(src))
			}
		})
	}
	// Every length near the end-of-block limits, over data with matches
	// ending at every position.
	for n := 0; n < 300; n++ {
		roundTrip(t, e, text[:n])
		roundTrip(t, e, zeros[:n])
		roundTrip(t, e, runs[:n])
	}
	// Output is a function of the input: the table left by a previous call
	// does not leak into the next.
	a, _ := e.Encode(nil, text[:5000])
	e.Encode(nil, random(128<<10))
	if b, _ := e.Encode(nil, text[:5000]); !bytes.Equal(a, b) {
		t.Error("same input, different output after another block")
	}
	// Appends after what dst holds, and leaves it as it was when the block
	// would not be smaller.
	pre := []byte("prefix")
	if out, ok := e.Encode(pre, text[:5000]); !ok || !bytes.Equal(out[:6], pre) || !bytes.Equal(out[6:], a) {
		t.Error("appending to dst: prefix lost or block differs")
	}
	if out, ok := e.Encode(pre, random(5000)); ok || !bytes.Equal(out, pre) {
		t.Errorf("random data: %v, %d bytes", ok, len(out))
	}
	// Output limits met exactly: data whose block is one byte more or less
	// than the data, at every length around where literals-only blocks
	// cross it (a block of n literals takes n+1+(n-15)/255+1 bytes).
	for n := 1; n < 600; n++ {
		roundTrip(t, e, random(n))
		half := append(random(n/2), make([]byte, n-n/2)...)
		roundTrip(t, e, half)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("abcabcabcabcabcabcabcabcabc"))
	f.Add(make([]byte, 100))
	e := new(Encoder)
	f.Fuzz(func(t *testing.T, src []byte) {
		roundTrip(t, e, src)
	})
}

// TestCorpus compares size and speed with pierrec/lz4's fast compressor on
// real data, when LZ4ENC_CORPUS names a directory, e.g.
//
//	LZ4ENC_CORPUS=/var/tmp/spbench/linux/linux-source-6.1 LZ4ENC_MB=256 \
//	  go test -run Corpus -v ./squash/codec/lz4enc/
//
// Files are concatenated in WalkDir order, cut to LZ4ENC_MB MiB and split
// into 128 KiB blocks; times are the best of LZ4ENC_REPS (3) passes each,
// alternating between the encoders.
func TestCorpus(t *testing.T) {
	root := os.Getenv("LZ4ENC_CORPUS")
	if root == "" {
		t.Skip("set LZ4ENC_CORPUS to run")
	}
	blocks, total := corpus.Blocks(root, corpus.EnvInt("LZ4ENC_MB", 256)<<20, 128<<10)
	e := new(Encoder)
	var c lz4.Compressor
	encs := []func(dst, src []byte) int{
		func(dst, src []byte) int {
			b, ok := e.Encode(dst[:0], src)
			if !ok {
				return len(src)
			}
			return len(b)
		},
		func(dst, src []byte) int {
			n, _ := c.CompressBlock(src, dst)
			if n == 0 {
				n = len(src)
			}
			return n
		},
	}
	var size [2]int
	best := [2]time.Duration{1 << 62, 1 << 62}
	dst := make([]byte, 2<<20)
	for range corpus.EnvInt("LZ4ENC_REPS", 3) { // alternating, so both see the same machine
		for k, enc := range encs {
			size[k] = 0
			t0 := time.Now()
			for _, b := range blocks {
				size[k] += enc(dst, b)
			}
			best[k] = min(best[k], time.Since(t0))
		}
	}
	ours, theirs, od, td := size[0], size[1], best[0], best[1]
	mbps := func(d time.Duration) float64 { return float64(total) / d.Seconds() / 1e6 }
	t.Logf("%d MB in 128 KiB blocks: ours %d bytes, %.0f MB/s; pierrec/lz4 %d bytes, %.0f MB/s; size %.4f, time %.3f",
		total>>20, ours, mbps(od), theirs, mbps(td), float64(ours)/float64(theirs), od.Seconds()/td.Seconds())
}
