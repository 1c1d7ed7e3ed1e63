package squash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlockSums writes an image with a block sum record: every data and
// fragment block has its sum (a duplicate file's blocks, written and
// dropped, have none), the kernel's view is unchanged, and a record that
// does not check out is none.
func TestBlockSums(t *testing.T) {
	img := filepath.Join(t.TempDir(), "i.sqfs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, WriterOptions{BlockSums: true, Workers: 2})
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
