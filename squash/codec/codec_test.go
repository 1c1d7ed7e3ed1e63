package codec

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestIDStringParse(t *testing.T) {
	for _, tc := range []struct {
		id   ID
		name string
	}{{Gzip, "gzip"}, {LZO, "lzo"}, {LZMA, "lzma"}, {XZ, "xz"}, {LZ4, "lz4"}, {Zstd, "zstd"}} {
		if got := tc.id.String(); got != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.id, got, tc.name)
		}
		got, err := ParseID(tc.name)
		if err != nil || got != tc.id {
			t.Errorf("ParseID(%q) = %v, %v", tc.name, got, err)
		}
	}
	// The numbers are on disk: pin them.
	if Gzip != 1 || LZMA != 2 || LZO != 3 || XZ != 4 || LZ4 != 5 || Zstd != 6 {
		t.Error("compressor ids differ from squashfs_fs.h")
	}
	if s := ID(0).String(); s != "unknown(0)" {
		t.Errorf("ID(0) = %q", s)
	}
	if s := ID(77).String(); s != "unknown(77)" {
		t.Errorf("ID(77) = %q", s)
	}
	_, err := ParseID("brotli")
	if err == nil || !strings.Contains(err.Error(), "gzip, lzma, lzo, xz, lz4, zstd") {
		t.Errorf("ParseID(brotli) error = %v", err)
	}
}

func TestParseFilters(t *testing.T) {
	f, err := ParseFilters("x86,arm, sparc")
	if err != nil || f != FilterX86|FilterARM|FilterSPARC {
		t.Errorf("ParseFilters = %#x, %v", f, err)
	}
	if _, err := ParseFilters("mips"); err == nil {
		t.Error("ParseFilters(mips) succeeded")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string // substring of the error, "" for success
	}{
		{Config{ID: Gzip, BlockSize: 131072}, ""},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 1, WindowSize: 8}}, ""},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 10}}, "compression level 10"},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{WindowSize: 16}}, "window size 16"},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{HC: true}}, "high compression"},
		{Config{ID: Gzip, BlockSize: 1000}, "block size 1000"},
		{Config{ID: Gzip, BlockSize: 2 << 20}, "block size"},
		{Config{ID: Zstd, BlockSize: 4096, Options: Options{Level: 22}}, ""},
		{Config{ID: Zstd, BlockSize: 4096, Options: Options{Level: 23}}, "compression level 23"},
		{Config{ID: Zstd, BlockSize: 4096, Options: Options{WindowSize: 10}}, "window size"},
		{Config{ID: LZ4, BlockSize: 1 << 20, Options: Options{HC: true}}, ""},
		{Config{ID: LZ4, BlockSize: 1 << 20, Options: Options{Level: 3}}, "compression level"},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 8192, Filters: 0x3f}}, ""},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 98304}}, ""},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 4096}}, "too small"},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 262144}}, "larger than block size"},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 100000}}, "2^n or 2^n+2^(n-1)"},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{Filters: 0x40}}, "unknown bcj"},
		{Config{ID: LZO, BlockSize: 131072}, ""},
		{Config{ID: 9, BlockSize: 131072}, "unknown compressor"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one containing %q", tc.c, err, tc.want)
		}
	}
}

func TestOptionsBlob(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want []byte
	}{
		// mksquashfs 4.5 writes nothing for default gzip, xz and zstd.
		{Config{ID: Gzip, BlockSize: 131072}, nil},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 9}}, nil},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 9, WindowSize: 15}}, nil},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 6}}, []byte{6, 0, 0, 0, 15, 0, 0, 0}},
		{Config{ID: Gzip, BlockSize: 131072, Options: Options{WindowSize: 10}}, []byte{9, 0, 0, 0, 10, 0, 0, 0}},
		{Config{ID: XZ, BlockSize: 131072}, nil},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 131072}}, nil},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{DictSize: 65536}}, []byte{0, 0, 1, 0, 0, 0, 0, 0}},
		{Config{ID: XZ, BlockSize: 131072, Options: Options{Filters: FilterX86 | FilterARM}}, []byte{0, 0, 2, 0, 9, 0, 0, 0}},
		{Config{ID: LZ4, BlockSize: 131072}, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{Config{ID: LZ4, BlockSize: 131072, Options: Options{HC: true}}, []byte{1, 0, 0, 0, 1, 0, 0, 0}},
		{Config{ID: Zstd, BlockSize: 131072}, nil},
		{Config{ID: Zstd, BlockSize: 131072, Options: Options{Level: 15}}, nil},
		{Config{ID: Zstd, BlockSize: 131072, Options: Options{Level: 19}}, []byte{19, 0, 0, 0}},
		{Config{ID: LZO, BlockSize: 131072}, nil},
		{Config{ID: LZMA, BlockSize: 131072}, nil},
	} {
		got := tc.c.OptionsBlob()
		if !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%+v: OptionsBlob = %v, want %v", tc.c, got, tc.want)
			continue
		}
		// What we write must read back as an equivalent configuration.
		back, err := FromImage(tc.c.ID, got, tc.c.BlockSize)
		if err != nil {
			if tc.c.ID != LZMA {
				t.Errorf("%+v: FromImage: %v", tc.c, err)
			}
			continue
		}
		if !bytes.Equal(back.OptionsBlob(), got) {
			t.Errorf("%+v: FromImage(OptionsBlob) = %+v, blob differs", tc.c, back)
		}
	}
}

func TestFromImage(t *testing.T) {
	const bs = 131072
	for _, tc := range []struct {
		id   ID
		blob []byte
		want Options
		err  string
	}{
		{Gzip, nil, Options{}, ""}, // no options: the format's default level, which is ours
		{Gzip, []byte{6, 0, 0, 0, 12, 0, 0x1f, 0}, Options{Level: 6, WindowSize: 12}, ""},
		{Gzip, []byte{0, 0, 0, 0, 15, 0, 0, 0}, Options{}, "compression level 0"},
		{Gzip, []byte{9, 0, 0, 0, 16, 0, 0, 0}, Options{}, "window size 16"},
		{Gzip, []byte{9, 0, 0}, Options{}, "need 8"},
		{XZ, nil, Options{}, ""},
		{XZ, []byte{0, 0x80, 0, 0, 1, 0, 0, 0}, Options{DictSize: 32768, Filters: 1}, ""},
		{XZ, []byte{0, 0xc0, 0, 0, 0xff, 0, 0, 0}, Options{DictSize: 49152, Filters: 0x3f}, ""},
		{XZ, []byte{1, 0x80, 0, 0, 0, 0, 0, 0}, Options{}, "2^n"},
		{XZ, []byte{0, 0, 0, 0x80, 0, 0, 0, 0}, Options{}, "too large"},
		{XZ, []byte{0, 0, 0, 0}, Options{}, "need 8"},
		{LZ4, nil, Options{}, "no compressor options"},
		{LZ4, []byte{1, 0, 0, 0, 0, 0, 0, 0}, Options{}, ""},
		{LZ4, []byte{1, 0, 0, 0, 1, 0, 0, 0}, Options{HC: true}, ""},
		{LZ4, []byte{2, 0, 0, 0, 0, 0, 0, 0}, Options{}, "version 2"},
		{LZ4, []byte{1, 0, 0, 0, 2, 0, 0, 0}, Options{}, "unknown flags"},
		{Zstd, nil, Options{}, ""},
		{Zstd, []byte{3, 0, 0, 0}, Options{Level: 3}, ""},
		{Zstd, []byte{23, 0, 0, 0}, Options{}, "compression level 23"},
		{Zstd, []byte{}, Options{}, "need 4"},
		{LZO, nil, Options{}, ""},
		{LZO, []byte{4, 0, 0, 0, 8, 0, 0, 0}, Options{}, ""},
		{LZO, []byte{0, 0, 0, 0, 0, 0, 0, 0}, Options{}, ""},
		{LZO, []byte{4, 0, 0, 0, 10, 0, 0, 0}, Options{}, "level 10"},
		{LZO, []byte{1, 0, 0, 0, 3, 0, 0, 0}, Options{}, "without levels"},
		{LZO, []byte{5, 0, 0, 0, 0, 0, 0, 0}, Options{}, "unknown algorithm"},
		{LZMA, nil, Options{}, ""},
		{0, nil, Options{}, "unknown compressor"},
		{99, []byte{1}, Options{}, "unknown compressor"},
	} {
		c, err := FromImage(tc.id, tc.blob, bs)
		name := fmt.Sprintf("%s/%x", tc.id, tc.blob)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.Options != tc.want || c.ID != tc.id || c.BlockSize != bs {
			t.Errorf("%s: got %+v, want options %+v", name, c, tc.want)
		}
	}
	if _, err := FromImage(Gzip, nil, 3000); err == nil {
		t.Error("FromImage accepted block size 3000")
	}
}

func TestUnsupported(t *testing.T) {
	_, err := Config{ID: LZMA, BlockSize: 131072}.NewEncoder()
	if err == nil || !strings.Contains(err.Error(), "not supported for writing") {
		t.Errorf("lzma encoder: %v", err)
	}
	_, err = Config{ID: LZMA, BlockSize: 131072}.NewDecoder()
	if err == nil || err.Error() != "compressor lzma is not supported" {
		t.Errorf("lzma decoder: %v", err)
	}
	if _, err := (Config{ID: Gzip, BlockSize: 131072, Options: Options{Level: 42}}).NewEncoder(); err == nil {
		t.Error("NewEncoder accepted an invalid config")
	}
}

func TestDescriptors(t *testing.T) {
	help := Help()
	for _, id := range []ID{Gzip, LZO, LZMA, XZ, LZ4, Zstd} {
		d := Describe(id)
		if d == nil || d.Summary == "" {
			t.Fatalf("no descriptor for %s", id)
		}
		if !strings.Contains(help, "  "+id.String()+" ") {
			t.Errorf("Help lacks %s", id)
		}
		for _, x := range d.XOptions {
			if ok, _ := IsXOption(x.Flag); !ok || !strings.Contains(help, x.Flag) {
				t.Errorf("%s %s: IsXOption %v, in help %v", id, x.Flag, ok, strings.Contains(help, x.Flag))
			}
		}
	}
	tests := []struct {
		id          ID
		flag, value string
		want        Options
		err         string
	}{
		{Gzip, "-Xcompression-level", "6", Options{Level: 6}, ""},
		{Gzip, "-Xcompression-level", "10", Options{}, "compression level from 1 to 9"},
		{Zstd, "-Xcompression-level", "22", Options{Level: 22}, ""},
		{Gzip, "-Xwindow-size", "7", Options{}, "from 8 to 15"},
		{XZ, "-Xdict-size", "50%", Options{DictSize: 65536}, ""},
		{XZ, "-Xdict-size", "64K", Options{DictSize: 65536}, ""},
		{XZ, "-Xdict-size", "1x", Options{}, "is not a size"},
		{XZ, "-Xbcj", "x86,arm", Options{Filters: FilterX86 | FilterARM}, ""},
		{LZ4, "-Xhc", "", Options{HC: true}, ""},
		{LZ4, "-Xcompression-level", "3", Options{}, "not an option of compressor lz4"},
		{LZO, "-Xhc", "", Options{}, "not an option of compressor lzo"},
	}
	for _, tc := range tests {
		c := Config{ID: tc.id, BlockSize: 131072}
		err := SetXOption(&c, tc.flag, tc.value)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s %s: %v, want %q", tc.id, tc.flag, tc.value, err, tc.err)
			}
			continue
		}
		if err != nil || c.Options != tc.want {
			t.Errorf("%s %s %s: %+v, %v", tc.id, tc.flag, tc.value, c.Options, err)
		}
	}
	lines := map[string][]string{
		"gzip": Describe(Gzip).Lines(Config{ID: Gzip, BlockSize: 131072}),
		"xz":   Describe(XZ).Lines(Config{ID: XZ, BlockSize: 131072, Options: Options{Filters: FilterX86 | FilterARM}}),
		"lz4":  Describe(LZ4).Lines(Config{ID: LZ4, Options: Options{HC: true}}),
	}
	want := map[string][]string{
		"gzip": {"compression-level 9", "window-size 15", "Strategies selected: default"},
		"xz":   {"Dictionary size 131072", "Filters selected: x86 arm"},
		"lz4":  {"High Compression option specified (-Xhc)"},
	}
	for k, w := range want {
		if strings.Join(lines[k], "|") != strings.Join(w, "|") {
			t.Errorf("%s lines %q, want %q", k, lines[k], w)
		}
	}
}

// writeConfigs covers every writable codec and option.
func writeConfigs() []Config {
	const bs = 131072
	cs := []Config{
		{ID: Gzip, BlockSize: bs},
		{ID: Gzip, BlockSize: bs, Options: Options{Level: 1}},
		{ID: Gzip, BlockSize: bs, Options: Options{Level: 6, WindowSize: 8}},
		{ID: LZ4, BlockSize: bs},
		{ID: LZ4, BlockSize: bs, Options: Options{HC: true}},
		{ID: Zstd, BlockSize: bs},
		{ID: Zstd, BlockSize: bs, Options: Options{Level: 1}},
		{ID: Zstd, BlockSize: bs, Options: Options{Level: 22}},
		{ID: Zstd, BlockSize: 4096},
		{ID: XZ, BlockSize: bs},
		{ID: XZ, BlockSize: 4096},
		{ID: XZ, BlockSize: bs, Options: Options{DictSize: 8192}},
		{ID: XZ, BlockSize: bs, Options: Options{DictSize: 98304}},
		{ID: XZ, BlockSize: bs, Options: Options{Filters: allFilters}},
		{ID: LZO, BlockSize: bs},
		{ID: LZO, BlockSize: 1 << 20},
	}
	for bit := range bcjByBit {
		cs = append(cs, Config{ID: XZ, BlockSize: bs, Options: Options{Filters: 1 << bit}})
	}
	return cs
}

func testInputs(t testing.TB) map[string][]byte {
	in := map[string][]byte{
		"empty":    {},
		"one":      {'x'},
		"short":    []byte("hello, squashfs"),
		"meta8k":   textData(8192, 1),
		"text128k": textData(131072, 2),
		"rand128k": randData(131072, 3),
		"zero128k": make([]byte, 131072),
		"rand3k":   randData(3000, 4),
	}
	if b := binaryData(t, 131072); b != nil {
		in["exe128k"] = b
	}
	return in
}

func TestRoundTrip(t *testing.T) {
	inputs := testInputs(t)
	for _, c := range writeConfigs() {
		t.Run(fmt.Sprintf("%s-%d-%+v", c.ID, c.BlockSize, c.Options), func(t *testing.T) {
			enc, err := c.NewEncoder()
			if err != nil {
				t.Fatal(err)
			}
			dec, err := c.NewDecoder()
			if err != nil {
				t.Fatal(err)
			}
			var comp []byte
			for name, in := range inputs {
				if len(in) > max(c.BlockSize, metadataSize) {
					continue
				}
				prefix := []byte("prefix")
				comp, err = enc.Compress(append(comp[:0], prefix...), in)
				if err != nil {
					t.Fatalf("%s: compress: %v", name, err)
				}
				if !bytes.HasPrefix(comp, prefix) {
					t.Fatalf("%s: Compress did not append to dst", name)
				}
				comp = comp[len(prefix):]
				if len(comp) >= len(in) {
					// The writer would store this block raw; nothing to decode.
					if name == "text128k" || name == "zero128k" {
						t.Errorf("%s: not compressed (%d >= %d)", name, len(comp), len(in))
					}
					if c.ID == LZ4 {
						continue
					}
				}
				out := make([]byte, len(in)+10)
				n, err := dec.Decompress(out, comp)
				if err != nil {
					t.Fatalf("%s: decompress: %v", name, err)
				}
				if !bytes.Equal(out[:n], in) {
					t.Fatalf("%s: round trip mismatch (n=%d, want %d)", name, n, len(in))
				}
				// Exact-size buffer works; one byte less must fail.
				if n, err := dec.Decompress(out[:len(in)], comp); err != nil || n != len(in) {
					t.Fatalf("%s: exact buffer: n=%d err=%v", name, n, err)
				}
				if len(in) > 0 {
					if _, err := dec.Decompress(out[:len(in)-1], comp); err == nil {
						t.Fatalf("%s: output limit not enforced", name)
					}
				}
			}
		})
	}
}

func TestOutputLimitError(t *testing.T) {
	in := textData(65536, 9)
	for _, c := range []Config{{ID: Gzip, BlockSize: 131072}, {ID: XZ, BlockSize: 131072}, {ID: Zstd, BlockSize: 131072}} {
		enc, _ := c.NewEncoder()
		dec, _ := c.NewDecoder()
		comp, err := enc.Compress(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dec.Decompress(make([]byte, 1000), comp)
		if !errors.Is(err, ErrOutputLimit) {
			t.Errorf("%s: error %v does not wrap ErrOutputLimit", c.ID, err)
		}
	}
}

// TestGarbage feeds every decoder random bytes, truncations and bit flips of
// valid streams: each must return an error (or, for a flip, possibly wrong
// data) and never panic.
func TestGarbage(t *testing.T) {
	in := textData(20000, 5)
	for _, c := range decodeConfigs() {
		dec, err := c.NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 32768)
		for i := 0; i < 50; i++ {
			g := randData(1+i*37, uint64(i))
			if _, err := dec.Decompress(out, g); err == nil && c.ID != LZ4 {
				t.Errorf("%s: random input %d decoded without error", c.ID, i)
			}
		}
		comp := compressFor(t, c, in)
		if comp == nil {
			continue
		}
		for cut := 0; cut < len(comp); cut += 1 + len(comp)/40 {
			if _, err := dec.Decompress(out, comp[:cut]); err == nil && (c.ID != LZ4 || cut == 0) {
				t.Errorf("%s: truncated to %d of %d decoded without error", c.ID, cut, len(comp))
			}
		}
		for i := 0; i < len(comp); i += 1 + len(comp)/60 {
			bad := bytes.Clone(comp)
			bad[i] ^= 0x55
			dec.Decompress(out, bad) //nolint:errcheck // only panics matter here
		}
		// The decoder must still work after errors.
		n, err := dec.Decompress(out, comp)
		if err != nil || !bytes.Equal(out[:n], in) {
			t.Errorf("%s: decoder broken after garbage: %v", c.ID, err)
		}
	}
}

func decodeConfigs() []Config {
	return []Config{
		{ID: Gzip, BlockSize: 131072},
		{ID: LZO, BlockSize: 131072},
		{ID: XZ, BlockSize: 131072},
		{ID: LZ4, BlockSize: 131072},
		{ID: Zstd, BlockSize: 131072},
	}
}

// compressFor returns in compressed by c, using a reference lzo stream for
// the read-only codec.
func compressFor(t testing.TB, c Config, in []byte) []byte {
	if c.ID == LZO {
		return lzoTestStream(in)
	}
	enc, err := c.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	comp, err := enc.Compress(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	return comp
}

func TestPacked(t *testing.T) {
	for _, tc := range []struct {
		in   Config
		want int // level of the packed config
	}{
		{Config{ID: Gzip}, packedGzipLevel},
		{Config{ID: Gzip, Options: Options{Level: 9}}, 9}, // asked for: every block
		{Config{ID: Gzip, Options: Options{Level: 3}}, 3},
		{Config{ID: Zstd}, 0},
		{Config{ID: XZ}, 0},
	} {
		if got := tc.in.Packed().Options.Level; got != tc.want {
			t.Errorf("%+v.Packed() level %d, want %d", tc.in, got, tc.want)
		}
	}
	if b := (Config{ID: Gzip, BlockSize: 131072}).OptionsBlob(); b != nil {
		t.Errorf("default gzip writes options %x; mksquashfs writes none", b)
	}
}
