package codec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to every decoder (picked by codec): it must
// never panic, never write past the limit, and never claim more output than
// the buffer holds. Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for i, c := range decodeConfigs() {
		if comp := compressFor(f, c, textData(20000, 5)); comp != nil {
			f.Add(byte(i), uint16(32768), comp)
		}
	}
	cs := decodeConfigs()
	decs := make([]Decoder, len(cs))
	for i, c := range cs {
		d, err := c.NewDecoder()
		if err != nil {
			f.Fatal(err)
		}
		decs[i] = d
	}
	f.Fuzz(func(t *testing.T, which byte, limit uint16, src []byte) {
		i := int(which) % len(decs)
		buf := make([]byte, int(limit)+16)
		for k := range buf {
			buf[k] = 0xa5
		}
		n, err := decs[i].Decompress(buf[:limit], src)
		if err != nil {
			return
		}
		if n < 0 || n > int(limit) {
			t.Fatalf("%s: n=%d with limit %d", cs[i].ID, n, limit)
		}
		if !bytes.Equal(buf[limit:], bytes.Repeat([]byte{0xa5}, 16)) {
			t.Fatalf("%s: wrote past the limit", cs[i].ID)
		}
	})
}

// TestWriteFuzzSeeds regenerates the seed corpus when CODEC_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("CODEC_WRITE_SEEDS") == "" {
		return // a generator, not a check: set CODEC_WRITE_SEEDS=1 to regenerate testdata/fuzz
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, c := range decodeConfigs() {
		for j, in := range [][]byte{textData(3000, 51), randData(500, 52), {}} {
			comp := compressFor(t, c, in)
			if c.ID == LZO {
				comp = lzoLiteralStream(in)
			}
			body := fmt.Sprintf("go test fuzz v1\nbyte(%d)\nuint16(%d)\n[]byte(%q)\n", i, len(in)+1, comp)
			name := filepath.Join(dir, fmt.Sprintf("%s-%d", c.ID, j))
			if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// lzoLiteralStream is the simplest valid lzo1x stream: one literal run.
func lzoLiteralStream(in []byte) []byte {
	var b []byte
	switch n := len(in); {
	case n == 0:
	case n <= 238:
		b = append(b, byte(17+n))
	default:
		b = append(b, 0)
		rest := n - 18
		for ; rest > 255; rest -= 255 {
			b = append(b, 0)
		}
		b = append(b, byte(rest))
	}
	b = append(b, in...)
	return append(b, 0x11, 0, 0)
}

func TestLZOLiteralStream(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 238, 239, 300, 5000} {
		in := randData(n, uint64(n))
		out := make([]byte, n)
		got, err := lzoDecoder{}.Decompress(out, lzoLiteralStream(in))
		if err != nil || got != n || !bytes.Equal(out, in) {
			t.Errorf("n=%d: got %d, %v", n, got, err)
		}
	}
}
