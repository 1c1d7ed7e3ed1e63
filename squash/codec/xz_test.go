package codec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed", name)
	}
	return p
}

func runTool(t *testing.T, in []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestXZReferenceDecode decodes streams written by xz-utils, including the
// BCJ filters and check types mksquashfs and foreign tools may use.
func TestXZReferenceDecode(t *testing.T) {
	xz := needTool(t, "xz")
	exe := binaryData(t, 131072)
	if exe == nil {
		exe = textData(131072, 21)
	}
	text := textData(131072, 22)
	for _, tc := range []struct {
		in   []byte
		args []string
	}{
		{exe, []string{"--check=crc32", "--x86", "--lzma2=preset=6,dict=128KiB"}},
		{text, []string{"--check=crc32", "--lzma2=preset=6,dict=128KiB"}},
		{text, []string{"--check=none", "--lzma2=preset=1,dict=64KiB"}},
		{text, []string{"--check=crc64", "--lzma2=preset=9,dict=128KiB"}},
		{text, []string{"--check=sha256", "--lzma2=dict=96KiB"}},
		{exe, []string{"--check=crc32", "--powerpc", "--lzma2=dict=128KiB"}},
		{exe, []string{"--check=crc32", "--ia64", "--lzma2=dict=128KiB"}},
		{exe, []string{"--check=crc32", "--arm", "--lzma2=dict=128KiB"}},
		{exe, []string{"--check=crc32", "--armthumb", "--lzma2=dict=128KiB"}},
		{exe, []string{"--check=crc32", "--sparc", "--lzma2=dict=128KiB"}},
		{randData(50000, 23), []string{"--check=crc32", "--x86", "--lzma2=dict=128KiB"}},
		{[]byte{}, []string{"--check=crc32", "--lzma2=dict=128KiB"}},
		{text[:8192], []string{"--check=crc32", "--lzma2=dict=8KiB"}},
	} {
		name := strings.Join(tc.args, " ")
		comp := runTool(t, tc.in, xz, append([]string{"--format=xz", "-c"}, tc.args...)...)
		dec := newXZDecoder(131072)
		out := make([]byte, len(tc.in))
		n, err := dec.Decompress(out, comp)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(out[:n], tc.in) {
			t.Errorf("%s: output differs", name)
		}
		// The kernel refuses dictionaries larger than the image's: so do we.
		if strings.Contains(name, "dict=128KiB") && len(tc.in) > 0 { // xz writes no block for empty input
			if _, err := newXZDecoder(65536).Decompress(out, comp); err == nil || !strings.Contains(err.Error(), "dictionary") {
				t.Errorf("%s: oversized dictionary accepted: %v", name, err)
			}
		}
	}
}

// TestXZEncoderVsXZUtils checks that xz-utils accepts our streams (and so our
// BCJ encoders match its decoders).
func TestXZEncoderVsXZUtils(t *testing.T) {
	xz := needTool(t, "xz")
	exe := binaryData(t, 131072)
	if exe == nil {
		t.Fatal("no executable for BCJ data")
	}
	for bit := range bcjByBit {
		for _, in := range [][]byte{exe, textData(70001, 24), randData(4099, 25)} {
			c := Config{ID: XZ, BlockSize: 131072}
			enc, err := c.NewEncoder()
			if err != nil {
				t.Fatal(err)
			}
			// Force the filter to be used, not just tried.
			e := enc.(*xzEncoder)
			f := bcjByBit[bit]
			filt := bytes.Clone(in)
			f.conv(filt, true)
			comp, err := e.stream(nil, in, filt, f)
			if err != nil {
				t.Fatal(err)
			}
			out := runTool(t, comp, xz, "-d", "-c", "--format=xz")
			if !bytes.Equal(out, in) {
				t.Fatalf("filter %s: xz decoded different data", filterNames[bit])
			}
			// And our own decoder agrees.
			back := make([]byte, len(in))
			n, err := newXZDecoder(131072).Decompress(back, comp)
			if err != nil || !bytes.Equal(back[:n], in) {
				t.Fatalf("filter %s: self decode: %v", filterNames[bit], err)
			}
		}
	}
}

// TestXZBCJPicksSmallest checks that a BCJ filter is actually chosen for x86
// code and not for text.
func TestXZBCJPicksSmallest(t *testing.T) {
	exe := binaryData(t, 131072)
	if exe == nil {
		t.Fatal("no executable")
	}
	plain, _ := Config{ID: XZ, BlockSize: 131072}.NewEncoder()
	bcj, _ := Config{ID: XZ, BlockSize: 131072, Options: Options{Filters: FilterX86}}.NewEncoder()
	a, _ := plain.Compress(nil, exe)
	b, _ := bcj.Compress(nil, exe)
	if len(b) >= len(a) {
		t.Errorf("x86 filter did not help on an executable: %d >= %d", len(b), len(a))
	}
	text := textData(131072, 26)
	a, _ = plain.Compress(nil, text)
	b, _ = bcj.Compress(nil, text)
	if len(b) > len(a) {
		t.Errorf("filtered text larger than plain: %d > %d", len(b), len(a))
	}
}

// TestBCJInverse: decode(encode(x)) == x for every filter on varied data.
func TestBCJInverse(t *testing.T) {
	inputs := [][]byte{randData(10007, 31), textData(5000, 32), make([]byte, 64), {0xe8, 0, 0, 0}}
	if exe := binaryData(t, 65536); exe != nil {
		inputs = append(inputs, exe)
	}
	// Dense patterns that trigger each filter's match condition.
	inputs = append(inputs, bytes.Repeat([]byte{0xe8, 1, 2, 0, 0}, 100),
		bytes.Repeat([]byte{0x48, 0, 1, 1}, 100), bytes.Repeat([]byte{1, 2, 3, 0xeb}, 100),
		bytes.Repeat([]byte{1, 0xf0, 2, 0xf8}, 100), bytes.Repeat([]byte{0x40, 0, 1, 2, 0x7f, 0xc0, 3, 4}, 50),
		bytes.Repeat([]byte{0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a}, 40))
	for bit, f := range bcjByBit {
		for i, in := range inputs {
			b := bytes.Clone(in)
			f.conv(b, true)
			f.conv(b, false)
			if !bytes.Equal(b, in) {
				t.Errorf("%s input %d: not inverse", filterNames[bit], i)
			}
		}
	}
}

// TestXZStreamErrors exercises the container checks.
func TestXZStreamErrors(t *testing.T) {
	in := textData(10000, 33)
	enc, _ := Config{ID: XZ, BlockSize: 131072}.NewEncoder()
	good, _ := enc.Compress(nil, in)
	dec := newXZDecoder(131072)
	out := make([]byte, len(in))
	if _, err := dec.Decompress(out, good); err != nil {
		t.Fatal(err)
	}
	// Flip each header/footer/index byte: always detected by a CRC or check.
	for _, i := range []int{0, 7, 8, 12, 13, 16, len(good) - 30, len(good) - 20, len(good) - 13, len(good) - 9, len(good) - 5, len(good) - 1} {
		bad := bytes.Clone(good)
		bad[i] ^= 1
		if _, err := dec.Decompress(out, bad); err == nil {
			t.Errorf("flip at %d of %d undetected", i, len(good))
		}
	}
	// Two concatenated streams are not a squashfs block.
	if _, err := dec.Decompress(make([]byte, 2*len(in)), append(bytes.Clone(good), good...)); err == nil {
		t.Error("concatenated streams accepted")
	}
}

func TestLZMA2DictProp(t *testing.T) {
	for _, d := range []int{4096, 8192, 12288, 65536, 98304, 131072, 1 << 20} {
		p := lzma2DictProp(d)
		if lzma2DictSize(p) != uint64(d) {
			t.Errorf("dict %d: prop %d gives %d", d, p, lzma2DictSize(p))
		}
	}
}

// writeFile is a small helper for the image tests.
func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestXZFast checks the greedy parse persist uses for metadata: xz-utils
// and our decoder read it, and only xz takes it.
func TestXZFast(t *testing.T) {
	xz := needTool(t, "xz")
	for _, in := range [][]byte{textData(8192, 26), textData(131072, 27), randData(8192, 28), {}} {
		enc, err := Config{ID: XZ, BlockSize: 131072, Options: Options{Fast: true}}.NewEncoder()
		if err != nil {
			t.Fatal(err)
		}
		comp, err := enc.Compress(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		if out := runTool(t, comp, xz, "-d", "-c", "--format=xz"); !bytes.Equal(out, in) {
			t.Fatalf("%d bytes: xz decoded different data", len(in))
		}
		back := make([]byte, len(in))
		if n, err := newXZDecoder(131072).Decompress(back, comp); err != nil || !bytes.Equal(back[:n], in) {
			t.Fatalf("%d bytes: self decode: %v", len(in), err)
		}
	}
	if _, err := (Config{ID: Gzip, BlockSize: 131072, Options: Options{Fast: true}}).NewEncoder(); err == nil {
		t.Error("gzip accepted the xz-only Fast option")
	}
}
