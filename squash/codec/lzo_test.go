package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// lzopBlock is one block of an lzop file: raw lzo1x data plus what lzop
// recorded about it.
type lzopBlock struct {
	ulen     int
	data     []byte // raw lzo1x stream, or the plain bytes when stored
	stored   bool
	checksum uint32
	crc      bool // checksum is crc32 rather than adler32
}

// parseLzop splits an lzop file into its raw lzo1x blocks; only the
// fields lzop 1.04 writes by default are handled.
func parseLzop(b []byte) ([]lzopBlock, error) {
	magic := []byte{0x89, 'L', 'Z', 'O', 0, '\r', '\n', 0x1a, '\n'}
	if !bytes.HasPrefix(b, magic) {
		return nil, errors.New("not an lzop file")
	}
	be := binary.BigEndian
	p := len(magic)
	need := func(n int) error {
		if len(b)-p < n {
			return errors.New("truncated lzop file")
		}
		return nil
	}
	if err := need(16); err != nil {
		return nil, err
	}
	version := be.Uint16(b[p:])
	p += 4 // version, library version
	if version >= 0x0940 {
		p += 2 // version needed to extract
	}
	p++ // method
	if version >= 0x0940 {
		p++ // level
	}
	flags := be.Uint32(b[p:])
	p += 4
	if flags&0x800 != 0 {
		p += 4 // filter
	}
	p += 8 // mode, mtime low
	if version >= 0x0940 {
		p += 4 // mtime high
	}
	if err := need(1); err != nil {
		return nil, err
	}
	p += 1 + int(b[p]) + 4 // name, header checksum
	if flags&0x40 != 0 {
		return nil, errors.New("lzop extra field not supported")
	}
	var blocks []lzopBlock
	for {
		if err := need(4); err != nil {
			return nil, err
		}
		ulen := int(be.Uint32(b[p:]))
		p += 4
		if ulen == 0 {
			return blocks, nil
		}
		if err := need(8); err != nil {
			return nil, err
		}
		clen := int(be.Uint32(b[p:]))
		p += 4
		blk := lzopBlock{ulen: ulen, stored: clen == ulen}
		switch {
		case flags&0x1 != 0:
			blk.checksum = be.Uint32(b[p:])
			p += 4
		case flags&0x100 != 0:
			blk.checksum, blk.crc = be.Uint32(b[p:]), true
			p += 4
		}
		if clen < ulen && flags&0x202 != 0 {
			p += 4 // checksum of compressed data
		}
		if err := need(clen); err != nil {
			return nil, err
		}
		blk.data = b[p : p+clen]
		p += clen
		blocks = append(blocks, blk)
	}
}

// lzoFixture is text compressed by lzop 1.04 (lzo1x_999 for -9, lzo1x_1 for
// -1); see TestLZOFixtures for how to regenerate it.
func lzoFixture(t testing.TB, level string) []lzopBlock {
	b, err := os.ReadFile(filepath.Join("testdata", "lzo", "text20000.txt.lzo"+level))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseLzop(b)
	if err != nil {
		t.Fatal(err)
	}
	return blocks
}

func lzoTestStream(in []byte) []byte {
	if !bytes.Equal(in, textData(20000, 5)) {
		return nil
	}
	b, err := os.ReadFile(filepath.Join("testdata", "lzo", "text20000.txt.lzo-9"))
	if err != nil {
		return nil
	}
	blocks, err := parseLzop(b)
	if err != nil || len(blocks) != 1 {
		return nil
	}
	return blocks[0].data
}

func checkLzopBlocks(t *testing.T, blocks []lzopBlock, want []byte) {
	t.Helper()
	var got []byte
	for i, blk := range blocks {
		if blk.stored {
			got = append(got, blk.data...)
			continue
		}
		out := make([]byte, blk.ulen)
		n, err := lzoDecoder{}.Decompress(out, blk.data)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if n != blk.ulen {
			t.Fatalf("block %d: got %d bytes, want %d", i, n, blk.ulen)
		}
		sum := adler32.Checksum(out)
		if blk.crc {
			sum = crc32.ChecksumIEEE(out)
		}
		if sum != blk.checksum {
			t.Fatalf("block %d: checksum mismatch", i)
		}
		if _, err := (lzoDecoder{}).Decompress(out[:blk.ulen-1], blk.data); !errors.Is(err, ErrOutputLimit) {
			t.Fatalf("block %d: short buffer error = %v", i, err)
		}
		got = append(got, out...)
	}
	if want != nil && !bytes.Equal(got, want) {
		t.Fatal("lzo output differs from the original")
	}
}

// TestLZOFixtures decodes streams made by the real lzop tool. To regenerate:
// write textData(20000, 5) to text20000.txt and run "lzop -9 -S .lzo-9" and
// "lzop -1 -S .lzo-1" on it.
func TestLZOFixtures(t *testing.T) {
	want := textData(20000, 5)
	for _, level := range []string{"-1", "-9"} {
		t.Run(level, func(t *testing.T) {
			checkLzopBlocks(t, lzoFixture(t, level), want)
		})
	}
}

// TestLZOLzopTool compresses varied data with the installed lzop, when there
// is one, covering long matches, long literal runs and multiple blocks.
func TestLZOLzopTool(t *testing.T) {
	lzop, err := exec.LookPath("lzop")
	if err != nil {
		t.Fatal("lzop not installed")
	}
	dir := t.TempDir()
	inputs := map[string][]byte{
		"text":  textData(600000, 11), // several 256 KiB lzop blocks
		"rand":  randData(70000, 12),
		"zeros": make([]byte, 100000),
		"mixed": append(append(randData(5000, 13), make([]byte, 3000)...), textData(9000, 14)...),
	}
	if b := binaryData(t, 200000); b != nil {
		inputs["exe"] = b
	}
	for name, in := range inputs {
		for _, level := range []string{"-1", "-3", "-7", "-9"} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, in, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(lzop, level, "-f", "-o", p+".lzo", p).CombinedOutput()
			if err != nil {
				t.Fatalf("lzop: %v: %s", err, out)
			}
			b, err := os.ReadFile(p + ".lzo")
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := parseLzop(b)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(name+level, func(t *testing.T) { checkLzopBlocks(t, blocks, in) })
		}
	}
}

func TestLZOHandmade(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  []byte
		want string
		err  bool
	}{
		{"empty", []byte{0x11, 0, 0}, "", false},
		{"first literals", []byte{17 + 3, 'a', 'b', 'c', 0x11, 0, 0}, "abc", false},
		{"first long literal", append(append([]byte{17 + 5}, "hello"...), 0x11, 0, 0), "hello", false},
		// "abcd" then a 5-byte copy at distance 4 (1LLDDDSS: L=0, D=3, H=0).
		{"match", append(append([]byte{17 + 4}, "abcd"...), 0x80|3<<2, 0, 0x11, 0, 0), "abcdabcda", false},
		// Distance beyond the output so far.
		{"bad distance", append(append([]byte{17 + 4}, "abcd"...), 0x80|7<<2, 0, 0x11, 0, 0), "", true},
		// Version byte 1 is zram's lzo-rle.
		{"lzo-rle", []byte{17, 1, 17 + 1, 'a', 0x11, 0, 0}, "", true},
		{"version 0", []byte{17, 0, 17 + 1, 'a', 0x11, 0, 0}, "a", false},
		{"trailing", []byte{0x11, 0, 0, 0}, "", true},
		{"no end", []byte{17 + 1, 'a'}, "", true},
		{"bad end", []byte{0x11, 1, 0}, "", true},
		{"long zero run", append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{0}, 100)...), "", true},
	} {
		out := make([]byte, 64)
		n, err := lzoDecoder{}.Decompress(out, tc.src)
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || string(out[:n]) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, out[:n], err, tc.want)
		}
	}
}
