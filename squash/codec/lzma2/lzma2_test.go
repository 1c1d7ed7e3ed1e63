package lzma2

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/ulikunitz/xz/lzma"
)

func decodeUlikunitz(t *testing.T, stream []byte, dict int) []byte {
	t.Helper()
	r, err := lzma.Reader2Config{DictCap: max(dict, lzma.MinDictCap)}.NewReader2(bytes.NewReader(stream))
	if err != nil {
		t.Fatalf("ulikunitz reader: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ulikunitz decode: %v", err)
	}
	return out
}

func decodeXZ(t *testing.T, stream []byte, dict int) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatalf("xz CLI (xz-utils) is required: %v", err)
	}
	cmd := exec.Command("xz", "-d", "-q", "--format=raw",
		fmt.Sprintf("--lzma2=dict=%d,lc=3,lp=0,pb=2", max(dict, 4096)), "-c")
	cmd.Stdin = bytes.NewReader(stream)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz -d: %v: %s", err, stderr.String())
	}
	return out.Bytes()
}

// decodeKernel runs the program named by LZMA2_KXZ, if set: a userspace
// build of the Linux kernel's lib/xz LZMA2 decoder that reads a raw stream
// on stdin and takes the LZMA2 dictionary property byte as its argument.
func decodeKernel(t *testing.T, stream []byte, dict int) ([]byte, bool) {
	t.Helper()
	prog := os.Getenv("LZMA2_KXZ")
	if prog == "" {
		return nil, false
	}
	prop := 0
	for uint64(2|prop&1)<<(prop/2+11) < uint64(dict) {
		prop++
	}
	cmd := exec.Command(prog, fmt.Sprint(prop))
	cmd.Stdin = bytes.NewReader(stream)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kernel xz_dec: %v: %s", err, stderr.String())
	}
	return out.Bytes(), true
}

// checkChunks walks the LZMA2 chunk sequence and enforces the rules a
// decoder enforces (and a few it may not): chunk size limits, the reset
// order, and that the stream ends exactly at the end marker.
func checkChunks(t *testing.T, s []byte, total int) {
	t.Helper()
	needDict, needProps, needState := true, true, false
	n := 0
	for i := 0; ; {
		if i >= len(s) {
			t.Fatalf("stream truncated at %d", i)
		}
		ctrl := s[i]
		switch {
		case ctrl == 0:
			if i+1 != len(s) {
				t.Fatalf("end marker at %d of %d", i, len(s))
			}
			if n != total {
				t.Fatalf("chunks hold %d bytes, want %d", n, total)
			}
			return
		case ctrl == 1 || ctrl == 2:
			if needDict && ctrl != 1 {
				t.Fatalf("chunk at %d: missing dictionary reset", i)
			}
			if ctrl == 1 {
				needProps = true
			}
			needDict = false
			needState = true
			sz := int(s[i+1])<<8 | int(s[i+2]) + 1
			i += 3 + sz
			n += sz
		case ctrl >= 0x80:
			reset := ctrl >> 5 & 3
			if needDict && reset != 3 || needProps && reset < 2 || needState && reset < 1 {
				t.Fatalf("chunk at %d: control %#x with dict=%v props=%v state=%v", i, ctrl, needDict, needProps, needState)
			}
			u := int(ctrl&0x1f)<<16 | int(s[i+1])<<8 | int(s[i+2]) + 1
			c := int(s[i+3])<<8 | int(s[i+4]) + 1
			if u > 1<<21 || c > 1<<16 {
				t.Fatalf("chunk at %d: sizes %d/%d", i, u, c)
			}
			i += 5
			if reset >= 2 {
				if s[i] != propsByte {
					t.Fatalf("props %#x", s[i])
				}
				i++
			}
			needDict, needProps, needState = false, false, false
			i += c
			n += u
		default:
			t.Fatalf("invalid control %#x at %d", ctrl, i)
		}
	}
}

func roundTrip(t *testing.T, e *Encoder, dict int, src []byte, withXZ bool) []byte {
	t.Helper()
	enc := e.Encode([]byte("prefix"), src)
	if string(enc[:6]) != "prefix" {
		t.Fatal("dst prefix clobbered")
	}
	enc = enc[6:]
	checkChunks(t, enc, len(src))
	if got := decodeUlikunitz(t, enc, dict); !bytes.Equal(got, src) {
		t.Fatalf("ulikunitz round trip mismatch: got %d bytes, want %d", len(got), len(src))
	}
	if withXZ {
		if got := decodeXZ(t, enc, dict); !bytes.Equal(got, src) {
			t.Fatalf("xz round trip mismatch: got %d bytes, want %d", len(got), len(src))
		}
		if got, ok := decodeKernel(t, enc, dict); ok && !bytes.Equal(got, src) {
			t.Fatalf("kernel xz_dec round trip mismatch: got %d bytes, want %d", len(got), len(src))
		}
	}
	return enc
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textLike produces word soup with enough repetition to give matches of
// all lengths and distances.
func textLike(r *rand.Rand, n int) []byte {
	words := strings.Fields("the quick brown fox jumps over lazy dog func return if else for range package import error nil struct type interface map slice chan select case default go defer")
	var b bytes.Buffer
	for b.Len() < n {
		switch r.IntN(20) {
		case 0:
			b.WriteByte('\n')
		case 1:
			fmt.Fprintf(&b, "%d", r.IntN(100000))
		default:
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func goSources(t *testing.T, limit int) [][]byte {
	t.Helper()
	root := filepath.Join(runtime.GOROOT(), "src")
	var names []string
	for _, dir := range []string{"runtime", "net/http", "go/types", "compress/flate"} {
		m, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		sort.Strings(m)
		names = append(names, m...)
	}
	var out [][]byte
	for _, n := range names {
		if len(out) == limit {
			break
		}
		b, err := os.ReadFile(n)
		if err == nil && len(b) > 0 {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Fatal("no Go sources under GOROOT")
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	text := textLike(r, 1<<20)
	mixed := func(n int) []byte {
		var b []byte
		for len(b) < n {
			if r.IntN(2) == 0 {
				b = append(b, randBytes(r, r.IntN(20000))...)
			} else {
				off := r.IntN(len(text) - 30000)
				b = append(b, text[off:off+r.IntN(30000)]...)
			}
		}
		return b[:n]
	}
	// A few compressible inputs whose compressed size lands near the 64 KiB
	// chunk limit: mostly random with repeats.
	nearLimit := func(n int) []byte {
		b := randBytes(r, n)
		for i := 0; i+100 < n; i += 1000 {
			copy(b[i:i+100], b[max(0, i-5000):])
		}
		return b
	}
	big := make([]byte, 0, 5<<20)
	for len(big) < 5<<20 {
		big = append(big, text[:min(len(text), 5<<20-len(big))]...)
		big = append(big, randBytes(r, 1000)...)
	}
	big = big[:5<<20]
	src := bytes.Join(goSources(t, 40), nil)

	tests := []struct {
		name string
		dict int
		data []byte
	}{
		{"empty", 1 << 16, nil},
		{"one", 1 << 16, []byte{'x'}},
		{"two", 4096, []byte{'x', 'x'}},
		{"five", 4096, []byte("aaaaa")},
		{"zeros1M", 1 << 20, make([]byte, 1<<20)},
		{"random128K", 128 << 10, randBytes(r, 128<<10)},
		{"random300K", 1 << 20, randBytes(r, 300<<10)},
		{"random300K-dict64K", 64 << 10, randBytes(r, 300<<10)},
		{"text", 1 << 20, text[:400<<10]},
		{"mixed", 128 << 10, mixed(600 << 10)},
		{"nearLimit64K", 1 << 20, nearLimit(64 << 10)},
		{"nearLimit70K", 1 << 20, nearLimit(70 << 10)},
		{"nearLimit200K", 1 << 20, nearLimit(200 << 10)},
		{"big5M-dict8M", 8 << 20, big},
		{"big5M-dict1M", 1 << 20, big},
		{"text-dict4K", 4096, text[:100<<10]},
		{"text-dict12K", 12 << 10, text[:100<<10]},
		{"mixed-dict32K", 32 << 10, mixed(200 << 10)},
		{"gosrc-dict128K", 128 << 10, src},
		{"gosrc-dict1M", 1 << 20, src},
		{"period3", 4096, bytes.Repeat([]byte("abc"), 30000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := roundTrip(t, NewEncoder(tc.dict), tc.dict, tc.data, true)
			t.Logf("%d -> %d", len(tc.data), len(enc))
			if len(tc.data) > 0 && len(enc) > len(tc.data)+len(tc.data)/(1<<16)*3+16 {
				t.Errorf("expansion: %d -> %d", len(tc.data), len(enc))
			}
		})
	}
}

// TestReuse checks that one encoder gives identical output on repeated and
// interleaved calls, so no state leaks between calls.
func TestReuse(t *testing.T) {
	srcs := goSources(t, 12)
	e := NewEncoder(128 << 10)
	first := make([][]byte, len(srcs))
	for i, s := range srcs {
		first[i] = e.Encode(nil, s)
	}
	for i := len(srcs) - 1; i >= 0; i-- {
		if got := e.Encode(nil, srcs[i]); !bytes.Equal(got, first[i]) {
			t.Fatalf("file %d: output differs on reuse", i)
		}
		if got := NewEncoder(128<<10).Encode(nil, srcs[i]); !bytes.Equal(got, first[i]) {
			t.Fatalf("file %d: output differs from a fresh encoder", i)
		}
	}
	for i, s := range srcs {
		roundTrip(t, e, 128<<10, s, i < 3)
	}
}

// TestRandomStructured throws many inputs built from runs, repeats at
// random distances, random bytes and text at encoders of random
// dictionary sizes.
func TestRandomStructured(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	text := textLike(r, 64<<10)
	n := 300
	if testing.Short() {
		n = 60
	}
	var xzInputs [][]byte
	var xzDicts []int
	// Fast-mode encoders are kept per dictionary size and reused, so their
	// tables carry entries of earlier inputs that must be ignored.
	fastEnc := map[int]*Encoder{}
	for iter := 0; iter < n; iter++ {
		size := r.IntN(1 << uint(4+r.IntN(14)))
		b := make([]byte, 0, size)
		alpha := 1 + r.IntN(256)
		for len(b) < size {
			switch r.IntN(5) {
			case 0:
				b = append(b, bytes.Repeat([]byte{byte(r.IntN(alpha))}, r.IntN(300))...)
			case 1:
				if len(b) > 0 {
					d := 1 + r.IntN(len(b))
					l := r.IntN(400)
					for i := 0; i < l; i++ {
						b = append(b, b[len(b)-d])
					}
				}
			case 2:
				for i := r.IntN(50); i > 0; i-- {
					b = append(b, byte(r.IntN(alpha)))
				}
			case 3:
				off := r.IntN(len(text) - 500)
				b = append(b, text[off:off+r.IntN(500)]...)
			case 4:
				if len(b) > 8 {
					// a repeat with a few edits, for literal+rep0 chains
					d := 1 + r.IntN(min(len(b), 5000))
					for i := r.IntN(200); i > 0; i-- {
						c := b[len(b)-d]
						if r.IntN(16) == 0 {
							c++
						}
						b = append(b, c)
					}
				}
			}
		}
		b = b[:size]
		dict := 4096 << uint(r.IntN(9))
		if r.IntN(4) == 0 {
			dict = 1 + r.IntN(5000)
		}
		e := NewEncoder(dict)
		e.SetNiceLen([]int{8, 16, 32, 64, 128, 273}[r.IntN(6)])
		enc := e.Encode(nil, b)
		checkChunks(t, enc, len(b))
		if got := decodeUlikunitz(t, enc, max(dict, 4096)); !bytes.Equal(got, b) {
			t.Fatalf("iter %d (size %d dict %d nice %d): mismatch", iter, len(b), dict, e.nice)
		}
		if dict >= 4096 && iter%10 == 0 {
			xzInputs = append(xzInputs, enc, b)
			xzDicts = append(xzDicts, dict)
		}
		fe := fastEnc[dict]
		if fe == nil {
			fe = NewEncoder(dict)
			fe.SetFast(true)
			fastEnc[dict] = fe
		}
		enc = fe.Encode(nil, b)
		checkChunks(t, enc, len(b))
		if got := decodeUlikunitz(t, enc, max(dict, 4096)); !bytes.Equal(got, b) {
			t.Fatalf("iter %d (size %d dict %d fast): mismatch", iter, len(b), dict)
		}
		if dict >= 4096 && iter%10 == 5 {
			xzInputs = append(xzInputs, enc, b)
			xzDicts = append(xzDicts, dict)
		}
	}
	for i := range xzDicts {
		if got := decodeXZ(t, xzInputs[2*i], xzDicts[i]); !bytes.Equal(got, xzInputs[2*i+1]) {
			t.Fatalf("xz decode %d mismatch", i)
		}
		if got, ok := decodeKernel(t, xzInputs[2*i], xzDicts[i]); ok && !bytes.Equal(got, xzInputs[2*i+1]) {
			t.Fatalf("kernel xz_dec decode %d mismatch", i)
		}
	}
}

// TestRawThenLZMA makes chunks that alternate between incompressible and
// compressible, so LZMA chunks follow uncompressed ones (state reset with
// ops already queued) and later chunks continue the state.
func TestRawThenLZMA(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	text := textLike(r, 200<<10)
	var transitions, continued int
	for _, density := range []int{0, 40, 80, 120, 200} {
		var b []byte
		for len(b) < 1<<20 {
			// Random stretches with short copies: density sets how
			// compressible a chunk is.
			for i := 0; i < 100<<10; i += 100 {
				b = append(b, randBytes(r, 100-density/4)...)
				if d := density / 4; d > 0 && len(b) > 5000 {
					off := len(b) - 1 - r.IntN(5000)
					b = append(b, b[off:off+d]...)
				}
			}
			off := r.IntN(len(text) - 50000)
			b = append(b, text[off:off+r.IntN(50000)]...)
		}
		dict := 256 << 10
		enc := roundTrip(t, NewEncoder(dict), dict, b, true)
		prevRaw := false
		for i := 0; enc[i] != 0; {
			ctrl := enc[i]
			if ctrl < 0x80 {
				prevRaw = true
				i += 3 + (int(enc[i+1])<<8 | int(enc[i+2])) + 1
				continue
			}
			if prevRaw {
				transitions++
			}
			if ctrl>>5 == 4 {
				continued++
			}
			prevRaw = false
			hdr := 5
			if ctrl >= 0xC0 {
				hdr++
			}
			i += hdr + (int(enc[i+3])<<8 | int(enc[i+4])) + 1
		}
	}
	t.Logf("uncompressed->LZMA transitions %d, state-continuing chunks %d", transitions, continued)
	if transitions == 0 || continued == 0 {
		t.Errorf("uncompressed->LZMA transitions %d, state-continuing chunks %d; want both > 0", transitions, continued)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add([]byte("hello hello hello"), uint16(4095), uint8(64))
	f.Add(bytes.Repeat([]byte{0, 1, 0, 1, 2}, 1000), uint16(100), uint8(8))
	f.Add([]byte("metadata metadata metadata"), uint16(8191), uint8(65))
	f.Fuzz(func(t *testing.T, data []byte, d uint16, nice uint8) {
		dict := int(d) + 1
		e := NewEncoder(dict)
		e.SetNiceLen(int(nice))
		// The low bit of nice picks the mode, keeping the corpus format.
		e.SetFast(nice&1 != 0)
		enc := e.Encode(nil, data)
		checkChunks(t, enc, len(data))
		if got := decodeUlikunitz(t, enc, max(dict, 4096)); !bytes.Equal(got, data) {
			t.Fatal("round trip mismatch")
		}
	})
}
