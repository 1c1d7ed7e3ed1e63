package squash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sumsTestImage writes an image in dir, with a block sum record if sums:
// a file of three blocks, a duplicate of it, forty tails in fragments.
func sumsTestImage(t *testing.T, dir string, sums bool) string {
	t.Helper()
	img := filepath.Join(dir, fmt.Sprintf("sums-%v.sqfs", sums))
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, WriterOptions{BlockSums: sums, Workers: 2, MkfsTime: 1})
	if err != nil {
		t.Fatal(err)
	}
	var big []byte
	for i := 0; len(big) < 300<<10; i++ {
		big = fmt.Appendf(big, "line %d %x\n", i, i*i*7919)
	}
	add := func(name string, data []byte) {
		if err := w.Add(&Header{Name: name, Mode: 0o644, Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	add("big", big)
	add("dup", big)
	for i := range 40 {
		add(fmt.Sprintf("small%d", i), big[i*5000:i*5000+4000])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestBlockSums writes an image with a block sum record: every data and
// fragment block has its sum (a duplicate file's blocks, written and
// dropped, have none), the kernel's view is unchanged, and a record that
// does not check out is none.
func TestBlockSums(t *testing.T) {
	img := sumsTestImage(t, t.TempDir(), true)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	r, err := NewReader(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	sums, ok := r.BlockSums()
	if !ok {
		t.Fatal("no block sums")
	}
	blocks := 0
	check := func(what string, pos uint64, word uint32) {
		blocks++
		raw, err := r.ReadRawBlock(pos, word, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := sums[pos]; !ok || got != blockCRC(raw) {
			t.Errorf("%s at %#x: sum %08x %v, want %08x", what, pos, got, ok, blockCRC(raw))
		}
	}
	bi, err := r.Lstat("big")
	if err != nil {
		t.Fatal(err)
	}
	ino := bi.Sys().(*Inode)
	pos := ino.BlocksStart
	for i, word := range ino.BlockSizes {
		check(fmt.Sprintf("data block %d", i), pos, word)
		pos += uint64(BlockSize(word))
	}
	for i := range r.Superblock().Fragments {
		e, err := r.Fragment(i)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("fragment %d", i), e.Start, e.Size)
	}
	if len(sums) != blocks || blocks < 4 {
		t.Errorf("%d sums for %d blocks", len(sums), blocks)
	}

	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	start := int(sumsStart(r.Superblock().BytesUsed))

	// Verify holds the record to the blocks: a sum that disagrees with a
	// sound block (the record's own CRC made to match) is a fault.
	bad := bytes.Clone(raw)
	ents := bad[start+sumsHeaderSize:]
	ents[8] ^= 1
	binary.LittleEndian.PutUint32(bad[start+16:], blockCRC(ents))
	br, err := NewReader(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	var de *DamageError
	if err := br.Verify(context.Background(), nil); !errors.As(err, &de) || !strings.Contains(err.Error(), "CRC-32C") || len(de.Paths()) == 0 {
		t.Errorf("Verify with a wrong sum = %v", err)
	}

	for _, at := range []int{start + sumsHeaderSize + 5, start + 1, 8} {
		bad := bytes.Clone(raw)
		bad[at] ^= 0x10
		r, err := NewReader(bytes.NewReader(bad), int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r.BlockSums(); ok {
			t.Errorf("block sums with byte %d changed (record at %d) still taken", at, start)
		}
	}
}

// TestAddBlockSums records sums for an image written without them: the
// record is the one the writer makes for the same image, a second call
// finds it, and a damaged image, bytes after the padding or a device get
// none and are left as they were.
func TestAddBlockSums(t *testing.T) {
	dir := t.TempDir()
	want := sumsOf(t, sumsTestImage(t, dir, true))
	img := sumsTestImage(t, dir, false)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if got := sumsOf(t, img); got != nil {
		t.Fatalf("image written without sums has %d", len(got))
	}
	add := func(path string) (int, error) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return AddBlockSums(context.Background(), f, VerifyOptions{})
	}
	n, err := add(img)
	if err != nil || n != len(want) {
		t.Fatalf("AddBlockSums = %d, %v; want %d blocks", n, err, len(want))
	}
	if got := sumsOf(t, img); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded %v, the writer records %v", got, want)
	}
	after, _ := os.ReadFile(img)
	if !bytes.Equal(after[:len(orig)], orig) {
		t.Error("the image changed below its record")
	}
	if _, err := add(img); !errors.Is(err, ErrHasBlockSums) {
		t.Errorf("second AddBlockSums: %v, want ErrHasBlockSums", err)
	}

	refused := func(name string, data []byte, wantErr string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := add(p); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: AddBlockSums: %v, want %q", name, err, wantErr)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Errorf("%s: the file changed", name)
		}
	}
	r, err := NewReader(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	fe, err := r.Fragment(0)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(orig)
	damaged[fe.Start+10] ^= 0x40
	refused("damaged", damaged, "damaged")
	refused("trailing", append(bytes.Clone(orig), "not a record"...), "bytes follow the image's padding")

	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := AddBlockSums(context.Background(), f, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("AddBlockSums(%s) = %v", os.DevNull, err)
	}
}

// sumsOf returns the block sum record of the image at path, nil if none.
func sumsOf(t *testing.T, path string) map[uint64]uint32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.BlockSums()
	return m
}

// TestUseSourceSums copies a file's blocks and tail from an image with a
// sum record: the copy's record repeats the source's sums (a sum altered
// on purpose shows up unchanged, so it was taken, not computed), and
// blocks of a source without sums are read and summed.
func TestUseSourceSums(t *testing.T) {
	dir := t.TempDir()
	srcImg := sumsTestImage(t, dir, true)
	src, err := OpenFile(srcImg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	data, err := os.Open(srcImg)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	sums, ok := src.BlockSums()
	if !ok {
		t.Fatal("source has no block sums")
	}
	ino := inodeOf(t, src.Reader, "big")
	small := inodeOf(t, src.Reader, "small0")
	fe, err := src.Fragment(small.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		given map[uint64]uint32
	}{
		{"carried", maps.Clone(sums)},
		{"read", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const marked = 0x5eed5eed
			if tc.given != nil {
				tc.given[ino.BlocksStart] = marked
			}
			img := filepath.Join(dir, tc.name+".sqfs")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := NewWriter(f, WriterOptions{BlockSums: true, MkfsTime: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.given != nil {
				w.UseSourceSums(data, tc.given)
			}
			run, err := w.CopyRun(data, ino.BlocksStart, ino.BlockSizes)
			if err != nil {
				t.Fatal(err)
			}
			frag, err := w.CopyFragment(data, fe)
			if err != nil {
				t.Fatal(err)
			}
			h := &Header{Name: "big", Mode: 0o644, Size: int64(ino.Size)}
			if err := w.AddReused(h, Reused{Size: ino.Size, Run: run, Sizes: ino.BlockSizes, Fragment: NoFragment}); err != nil {
				t.Fatal(err)
			}
			h = &Header{Name: "small0", Mode: 0o644, Size: int64(small.Size)}
			if err := w.AddReused(h, Reused{Size: small.Size, Fragment: frag, FragOffset: small.FragOffset}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := OpenFile(img)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, ok := r.BlockSums()
			if !ok {
				t.Fatal("copy has no block sums")
			}
			nino := inodeOf(t, r.Reader, "big")
			want := map[uint64]uint32{}
			pos, spos := nino.BlocksStart, ino.BlocksStart
			for _, word := range ino.BlockSizes {
				want[pos] = sums[spos]
				pos, spos = pos+uint64(BlockSize(word)), spos+uint64(BlockSize(word))
			}
			nfe, err := r.Fragment(inodeOf(t, r.Reader, "small0").Fragment)
			if err != nil {
				t.Fatal(err)
			}
			want[nfe.Start] = sums[fe.Start]
			if tc.given != nil {
				want[nino.BlocksStart] = marked
			}
			if !maps.Equal(got, want) {
				t.Errorf("copy's sums %x, want %x", got, want)
			}
		})
	}
}
