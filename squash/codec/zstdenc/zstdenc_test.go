package zstdenc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

var testLevels = []int{1, 3, DefaultLevel, 6}

func newDecoder(t testing.TB) *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// cDecode runs the reference decoder, the zstd CLI (.ci/run installs it);
// without it the tests fail rather than check less.
func cDecode(t testing.TB, frame []byte) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("zstd")
	if err != nil {
		t.Fatal("zstd CLI not installed (apt-get install zstd)")
	}
	cmd := exec.Command(path, "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(frame)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out.Bytes(), nil
}

func checkFrameHeader(t testing.TB, frame []byte, n int) {
	t.Helper()
	if len(frame) < 6 || binary.LittleEndian.Uint32(frame) != magic {
		t.Fatalf("bad magic")
	}
	fhd := frame[4]
	if fhd&0x20 == 0 || fhd&0x04 != 0 || fhd&0x03 != 0 {
		t.Fatalf("descriptor %#x: want single segment, no checksum, no dict", fhd)
	}
}

func roundTrip(t *testing.T, e *Encoder, d *zstd.Decoder, src []byte, useC bool) []byte {
	t.Helper()
	prefix := []byte("prefix")
	frame := e.Encode(append([]byte(nil), prefix...), src)
	if !bytes.Equal(frame[:len(prefix)], prefix) {
		t.Fatal("dst prefix clobbered")
	}
	frame = frame[len(prefix):]
	checkFrameHeader(t, frame, len(src))
	got, err := d.DecodeAll(frame, nil)
	if err != nil {
		t.Fatalf("klauspost decode (len %d): %v", len(src), err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("klauspost decode mismatch: len %d want %d, first diff at %d", len(got), len(src), firstDiff(got, src))
	}
	if useC {
		got, err := cDecode(t, frame)
		if err != nil {
			t.Fatalf("C decode (len %d): %v", len(src), err)
		}
		if !bytes.Equal(got, src) {
			t.Fatalf("C decode mismatch: len %d want %d, first diff at %d", len(got), len(src), firstDiff(got, src))
		}
	}
	return frame
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textLike makes compressible data with a skewed alphabet and many repeats at
// varied distances.
func textLike(r *rand.Rand, n int) []byte {
	words := strings.Fields("the quick brown fox jumps over lazy dog func return if else for range struct int byte error nil package import const var type")
	var b []byte
	for len(b) < n {
		if r.IntN(10) == 0 && len(b) > 100 {
			s := r.IntN(len(b) - 50)
			b = append(b, b[s:s+10+r.IntN(40)]...)
			continue
		}
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, " \n\t."[r.IntN(4)])
	}
	return b[:n]
}

func goSources(t testing.TB, limit int) [][]byte {
	root := filepath.Join(runtime.GOROOT(), "src")
	var files [][]byte
	total := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || total >= limit || d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			files = append(files, b)
			total += len(b)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatal("no Go sources under GOROOT")
	}
	return files
}

// repeatOffsets builds data whose best parse alternates between a few
// distances, with matches directly following matches (literal length 0),
// which exercises every repeat-offset code including rep1-1.
func repeatOffsets(r *rand.Rand, n int) []byte {
	b := randBytes(r, 4096)
	for len(b) < n {
		switch r.IntN(6) {
		case 0:
			b = append(b, byte(r.Uint32()))
		case 1, 2:
			d := []int{100, 333, 1000, 2048}[r.IntN(4)]
			s := len(b) - d
			for k := 0; k < 5+r.IntN(20); k++ {
				b = append(b, b[s+k])
			}
		case 3:
			// offset rep1-1 right after a match
			d := 101
			s := len(b) - d
			for k := 0; k < 8; k++ {
				b = append(b, b[s+k])
			}
		default:
			d := 1 + r.IntN(8)
			s := len(b) - d
			for k := 0; k < 4+r.IntN(6); k++ {
				b = append(b, b[s+k])
			}
		}
	}
	return b[:n]
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := goSources(t, 2<<20)
	var goConcat []byte
	for _, f := range src {
		goConcat = append(goConcat, f...)
	}
	mixed := append(append(append([]byte{}, randBytes(r, 100000)...), textLike(r, 300000)...), make([]byte, 70000)...)
	mixed = append(mixed, randBytes(r, 50000)...)
	long := make([]byte, 0, 1<<20)
	for len(long) < 1<<20 {
		long = append(long, "0123456789abcdefghij"...)
	}
	longMatch := append(randBytes(r, 1000), bytes.Repeat(randBytes(r, 1000), 300)...)
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one", []byte{'x'}},
		{"two", []byte("ab")},
		{"short", []byte("hello hello hello hello")},
		{"zeros1M", make([]byte, 1<<20)},
		{"zeros300K", make([]byte, 300<<10)},
		{"random128K", randBytes(r, 128<<10)},
		{"random1M", randBytes(r, 1<<20)},
		{"random255", randBytes(r, 255)},
		{"random256", randBytes(r, 256)},
		{"random65791", randBytes(r, 65791)},
		{"text4K", textLike(r, 4<<10)},
		{"text64K", textLike(r, 64<<10)},
		{"text128K", textLike(r, 128<<10)},
		{"text129K", textLike(r, 129<<10)},
		{"text1M", textLike(r, 1<<20)},
		{"mixed", mixed},
		{"repeatOffsets", repeatOffsets(r, 300<<10)},
		{"period20", long},
		{"longMatch", longMatch},
		{"go1M", goConcat[:1<<20]},
		{"go3M", goConcat[:min(len(goConcat), 3<<20)]},
	}
	for _, lvl := range testLevels {
		e := NewEncoder(lvl)
		d := newDecoder(t)
		for _, c := range cases {
			t.Run(fmt.Sprintf("L%d/%s", lvl, c.name), func(t *testing.T) {
				frame := roundTrip(t, e, d, c.data, true)
				if len(c.data) >= 64<<10 && strings.HasPrefix(c.name, "random") && len(frame) > len(c.data)+len(c.data)/(128<<10)*3+16 {
					t.Errorf("incompressible input grew to %d", len(frame))
				}
				if strings.HasPrefix(c.name, "zeros") && len(frame) > 64 {
					t.Errorf("zeros compressed to %d bytes", len(frame))
				}
			})
		}
	}
}

// TestGoFiles round-trips individual real files at every size they come in.
func TestGoFiles(t *testing.T) {
	files := goSources(t, 4<<20)
	e := NewEncoder(DefaultLevel)
	d := newDecoder(t)
	var batch []byte
	for i, f := range files {
		roundTrip(t, e, d, f, i%40 == 0)
		batch = append(batch, f...)
	}
	_ = batch
}

// TestSizes covers block boundaries and the frame content size encodings.
func TestSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base := textLike(r, 1<<20+5000)
	d := newDecoder(t)
	e := NewEncoder(DefaultLevel)
	for _, n := range []int{3, 4, 5, 31, 32, 33, 1023, 1024, 1025, 4096, 8191, 16384, 65535, 65536 + 255, 65536 + 256, 131071, 131072, 131073, 262144, 500000, 1 << 20, 1<<20 + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { roundTrip(t, e, d, base[:n], true) })
	}
}

// TestMaxMatchLength needs matches covering every length code up to the
// largest: one repeated period spanning a whole 128 KiB block.
func TestMaxMatchLength(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	unit := randBytes(r, 777)
	var src []byte
	for len(src) < 600<<10 {
		src = append(src, unit...)
	}
	d := newDecoder(t)
	for _, lvl := range testLevels {
		e := NewEncoder(lvl)
		frame := roundTrip(t, e, d, src, true)
		if len(frame) > 1200 {
			t.Errorf("level %d: periodic data compressed to %d", lvl, len(frame))
		}
	}
}

// TestRandomized mixes random, repeated and structured pieces, checking the
// pure-Go decoder on each and the C decoder on a sample.
func TestRandomized(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	d := newDecoder(t)
	encs := map[int]*Encoder{}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		n := r.IntN(1 << (4 + r.IntN(17)))
		src := make([]byte, 0, n)
		for len(src) < n {
			k := 1 + r.IntN(2000)
			switch r.IntN(5) {
			case 0:
				src = append(src, randBytes(r, k)...)
			case 1:
				src = append(src, bytes.Repeat([]byte{byte(r.Uint32())}, k)...)
			case 2:
				if len(src) > 0 {
					s := r.IntN(len(src))
					for j := 0; j < k; j++ {
						src = append(src, src[s+j])
					}
				}
			case 3:
				alpha := 1 + r.IntN(8)
				for j := 0; j < k; j++ {
					src = append(src, byte('a'+r.IntN(alpha)))
				}
			default:
				src = append(src, textLike(r, k)...)
			}
		}
		src = src[:n]
		lvl := testLevels[r.IntN(len(testLevels))]
		if encs[lvl] == nil {
			encs[lvl] = NewEncoder(lvl)
		}
		roundTrip(t, encs[lvl], d, src, i%10 == 0)
	}
}
