package lzma2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// metadataLike imitates the squashfs metadata the fast mode is for:
// short records of keys, names and numbers that repeat with variations.
func metadataLike(r *rand.Rand, n int) []byte {
	keys := strings.Fields("DEPEND RDEPEND BDEPEND IUSE KEYWORDS LICENSE SLOT SRC_URI HOMEPAGE EAPI DEFINED_PHASES INHERIT")
	names := strings.Fields("dev-libs/foo sys-apps/bar app-misc/baz net-misc/qux media-libs/quux x11-libs/corge dev-python/grault")
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%s=", keys[r.IntN(len(keys))])
		for i := r.IntN(5); i >= 0; i-- {
			fmt.Fprintf(&b, ">=%s-%d.%d ", names[r.IntN(len(names))], r.IntN(30), r.IntN(100))
		}
		b.WriteByte('\n')
		if r.IntN(8) == 0 {
			var rec [16]byte
			for i := range rec {
				rec[i] = byte(r.IntN(4))
			}
			b.Write(rec[:])
		}
	}
	return b.Bytes()[:n]
}

// chunkKinds counts the LZMA and uncompressed chunks of a stream that
// checkChunks has accepted.
func chunkKinds(s []byte) (lzmaChunks, rawChunks int) {
	for i := 0; s[i] != 0; {
		ctrl := s[i]
		if ctrl < 0x80 {
			rawChunks++
			i += 3 + (int(s[i+1])<<8 | int(s[i+2])) + 1
			continue
		}
		lzmaChunks++
		hdr := 5
		if ctrl >= 0xC0 {
			hdr++
		}
		i += hdr + (int(s[i+3])<<8 | int(s[i+4])) + 1
	}
	return
}

func TestFastRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	meta := metadataLike(r, 3<<20)
	text := textLike(r, 1<<20)
	random := randBytes(r, 300<<10)
	// Random stretches with sparse repeats: compressible, but to well over
	// 64 KiB, so the stream needs several LZMA chunks.
	multi := randBytes(r, 400<<10)
	for i := 0; i+200 < len(multi); i += 600 {
		copy(multi[i:i+200], multi[max(0, i-3000):])
	}
	tests := []struct {
		name string
		dict int
		data []byte
		// maxRatio bounds compressed/uncompressed size, so a parser that
		// stops finding matches fails; 0 skips the check.
		maxRatio  float64
		wantRaw   bool // some chunk must be stored uncompressed
		minChunks int  // at least this many LZMA chunks
	}{
		{"empty", 1 << 16, nil, 0, false, 0},
		{"one", 1 << 16, []byte{'x'}, 0, false, 0},
		{"two", 4096, []byte("xx"), 0, false, 0},
		{"five", 4096, []byte("aaaaa"), 0, false, 0},
		{"zeros", 1 << 20, make([]byte, 1<<20), 0.001, false, 1},
		{"random", 1 << 20, random, 0, true, 0},
		{"text", 1 << 20, text[:400<<10], 0.45, false, 1},
		{"meta8K-dict8K", 8 << 10, meta[:8<<10], 0.4, false, 1},
		{"meta8K-dict128K", 128 << 10, meta[8<<10 : 16<<10], 0.4, false, 1},
		{"meta128K-dict128K", 128 << 10, meta[:128<<10], 0.3, false, 1},
		{"meta-dict4K", 4096, meta[:200<<10], 0.4, false, 1},
		{"meta-dict12K", 12 << 10, meta[:200<<10], 0.4, false, 1},
		{"text-dict8K", 8 << 10, text[:300<<10], 0.5, false, 1},
		{"multichunk", 1 << 20, multi, 0.9, false, 2},
		{"meta3M-dict1M", 1 << 20, meta, 0.3, false, 2},
		{"period3", 4096, bytes.Repeat([]byte("abc"), 30000), 0.01, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEncoder(tc.dict)
			e.SetFast(true)
			enc := roundTrip(t, e, tc.dict, tc.data, true)
			ratio := float64(len(enc)) / float64(max(len(tc.data), 1))
			t.Logf("%d -> %d (%.4f)", len(tc.data), len(enc), ratio)
			if tc.maxRatio > 0 && ratio > tc.maxRatio {
				t.Errorf("ratio %.4f, want <= %.4f", ratio, tc.maxRatio)
			}
			if len(tc.data) > 0 && len(enc) > len(tc.data)+len(tc.data)/(1<<16)*3+16 {
				t.Errorf("expansion: %d -> %d", len(tc.data), len(enc))
			}
			lz, raw := chunkKinds(enc)
			if tc.wantRaw && raw == 0 {
				t.Errorf("no uncompressed chunk for incompressible input")
			}
			if lz < tc.minChunks {
				t.Errorf("%d LZMA chunks, want >= %d", lz, tc.minChunks)
			}
		})
	}
}

// TestFastSwitch switches one encoder between the modes: each call must
// give what a fresh encoder in that mode gives, so neither mode leaks
// state (tables, prices, generation tags) into the other.
func TestFastSwitch(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	meta := metadataLike(r, 64<<10)
	srcs := [][]byte{meta[:8<<10], textLike(r, 20<<10), meta[8<<10 : 16<<10], nil, randBytes(r, 5000), meta[:3], meta}
	for _, dict := range []int{8 << 10, 128 << 10} {
		fresh := func(fast bool, src []byte) []byte {
			e := NewEncoder(dict)
			e.SetFast(fast)
			return e.Encode(nil, src)
		}
		e := NewEncoder(dict)
		for round := 0; round < 3; round++ {
			for i, src := range srcs {
				fast := (i+round)%2 == 0
				e.SetFast(fast)
				got := e.Encode(nil, src)
				if want := fresh(fast, src); !bytes.Equal(got, want) {
					t.Fatalf("dict %d round %d input %d fast=%v: output differs from a fresh encoder", dict, round, i, fast)
				}
				if got := decodeUlikunitz(t, got, dict); !bytes.Equal(got, src) {
					t.Fatalf("dict %d round %d input %d fast=%v: round trip mismatch", dict, round, i, fast)
				}
			}
		}
		if bytes.Equal(fresh(true, meta), fresh(false, meta)) {
			t.Errorf("dict %d: fast and normal mode give the same stream", dict)
		}
	}
}

// TestFastGenerationWrap starts the finder's position tags just below
// the point where they wrap, so the tables are cleared, and checks that
// stale entries never become matches.
func TestFastGenerationWrap(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	a := metadataLike(r, 8<<10)
	b := metadataLike(r, 8<<10)
	for _, end := range []uint32{1<<32 - 8<<10 - 1, 1<<32 - 100, 1<<32 - 1} {
		e := NewEncoder(8 << 10)
		e.SetFast(true)
		want := e.Encode(nil, b)
		e.Encode(nil, a)
		e.ff.end = end
		for i := 0; i < 3; i++ {
			if got := e.Encode(nil, b); !bytes.Equal(got, want) {
				t.Fatalf("end %#x call %d: output differs after the tags wrapped", end, i)
			}
		}
	}
}
