package codec

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMksquashfsImages builds small images with the reference mksquashfs for
// every compressor it has, then checks FromImage on the stored options, that
// OptionsBlob reproduces them, and that the first metadata block and the
// first data block decode.
func TestMksquashfsImages(t *testing.T) {
	mksquashfs := needTool(t, "mksquashfs")
	// One file of exactly one block: its only data block then sits between
	// the options and the inode table, so no inode parsing is needed.
	srcs := map[int]string{}
	files := map[int][]byte{}
	for _, bs := range []int{4096, 131072} {
		srcs[bs] = t.TempDir()
		files[bs] = textData(bs, 41)
		writeFile(t, srcs[bs], "a.txt", files[bs])
	}
	for _, tc := range []struct {
		args []string
		want Config
	}{
		{[]string{"-comp", "gzip"}, Config{ID: Gzip}},
		{[]string{"-comp", "gzip", "-Xcompression-level", "4", "-Xwindow-size", "12"}, Config{ID: Gzip, Options: Options{Level: 4, WindowSize: 12}}},
		{[]string{"-comp", "lzo"}, Config{ID: LZO}},
		{[]string{"-comp", "lzo", "-Xalgorithm", "lzo1x_1"}, Config{ID: LZO}},
		{[]string{"-comp", "xz"}, Config{ID: XZ}},
		{[]string{"-comp", "xz", "-Xbcj", "x86,arm", "-Xdict-size", "64K"}, Config{ID: XZ, Options: Options{DictSize: 65536, Filters: FilterX86 | FilterARM}}},
		{[]string{"-comp", "xz", "-Xbcj", "x86"}, Config{ID: XZ, Options: Options{DictSize: 131072, Filters: FilterX86}}},
		{[]string{"-comp", "lz4"}, Config{ID: LZ4}},
		{[]string{"-comp", "lz4", "-Xhc"}, Config{ID: LZ4, Options: Options{HC: true}}},
		{[]string{"-comp", "zstd"}, Config{ID: Zstd}},
		{[]string{"-comp", "zstd", "-Xcompression-level", "3"}, Config{ID: Zstd, Options: Options{Level: 3}}},
		{[]string{"-comp", "gzip", "-b", "4096"}, Config{ID: Gzip}},
	} {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			bs := 131072
			if tc.args[len(tc.args)-2] == "-b" {
				bs = 4096
			}
			img := filepath.Join(t.TempDir(), "img")
			args := append([]string{srcs[bs], img, "-noappend", "-no-progress", "-processors", "1"}, tc.args...)
			if out, err := exec.Command(mksquashfs, args...).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "not supported") || strings.Contains(string(out), "Unrecognised") {
					t.Fatalf("mksquashfs lacks this: %s", out)
				}
				t.Fatalf("mksquashfs: %v: %s", err, out)
			}
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, b, tc.want, files[bs])
		})
	}
}

func checkImage(t *testing.T, img []byte, want Config, firstFile []byte) {
	le := binary.LittleEndian
	if len(img) < 96 || le.Uint32(img) != 0x73717368 {
		t.Fatal("not a squashfs image")
	}
	bs := int(le.Uint32(img[12:]))
	id := ID(le.Uint16(img[20:]))
	flags := le.Uint16(img[24:])
	inodeStart := le.Uint64(img[64:])
	var blob []byte
	if flags&0x400 != 0 {
		h := le.Uint16(img[96:])
		if h&0x8000 == 0 {
			t.Fatal("compressed options block")
		}
		blob = img[98 : 98+int(h&0x7fff)]
	}
	c, err := FromImage(id, blob, bs)
	if err != nil {
		t.Fatalf("FromImage(%s, %x): %v", id, blob, err)
	}
	want.BlockSize = bs
	if c.ID != want.ID || c.Options != want.Options {
		t.Fatalf("FromImage = %+v, want %+v", c, want)
	}
	// We must write exactly the options mksquashfs wrote (but for LZO: its
	// options name the compressor, which reading does not need, and we
	// write none).
	if id != LZO && !bytes.Equal(want.OptionsBlob(), blob) {
		t.Fatalf("OptionsBlob = %x, mksquashfs wrote %x", want.OptionsBlob(), blob)
	}
	dec, err := c.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	// First metadata block of the inode table.
	h := le.Uint16(img[inodeStart:])
	data := img[inodeStart+2 : inodeStart+2+uint64(h&0x7fff)]
	out := make([]byte, metadataSize)
	if h&0x8000 == 0 {
		n, err := dec.Decompress(out, data)
		if err != nil {
			t.Fatalf("metadata block: %v", err)
		}
		if n == 0 || n > metadataSize {
			t.Fatalf("metadata block decoded to %d bytes", n)
		}
	}
	start := 96
	if blob != nil {
		start += 2 + len(blob)
	}
	block := make([]byte, bs)
	n, err := dec.Decompress(block, img[start:inodeStart])
	if err != nil {
		t.Fatalf("data block: %v", err)
	}
	if !bytes.Equal(block[:n], firstFile) {
		t.Fatalf("data block decoded wrongly (%d bytes)", n)
	}
}
