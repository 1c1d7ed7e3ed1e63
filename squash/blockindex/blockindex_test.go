package blockindex

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/squashportage/squashportage/internal/testimage"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
)

func image(t *testing.T, src string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img")
	testimage.Write(t, src, p, squash.WriterOptions{BlockSums: true})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func build(t *testing.T, b []byte) *Index {
	t.Helper()
	ix, err := Build(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestBuildCoversImage(t *testing.T) {
	src := t.TempDir()
	if _, err := testtree.GeneratePortage(src, testtree.PortageOptions{Scale: 0.01, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	// A large file gives data blocks too.
	os.WriteFile(filepath.Join(src, "big"), testtree.Text(1, 600<<10), 0o644)
	b := image(t, src)
	ix := build(t, b)
	if ix.SHA256 != sha256.Sum256(b) || ix.Size != uint64(len(b)) {
		t.Fatalf("whole-file hash or size wrong")
	}
	pos := uint64(0)
	kinds := map[byte]int{}
	for _, bl := range ix.Blocks {
		if bl.Off != pos || bl.Sum != sha256.Sum256(b[bl.Off:bl.Off+uint64(bl.Len)]) {
			t.Fatalf("piece at %d (%d bytes): wrong offset or hash", bl.Off, bl.Len)
		}
		pos += uint64(bl.Len)
		kinds[bl.Kind]++
	}
	if pos != uint64(len(b)) || kinds[KindData] == 0 || kinds[KindFragment] == 0 || kinds[KindRaw] == 0 {
		t.Fatalf("pieces cover %d of %d bytes; kinds %v", pos, len(b), kinds)
	}
	enc, _ := ix.MarshalBinary()
	back, err := Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if enc2, _ := back.MarshalBinary(); !bytes.Equal(enc, enc2) {
		t.Fatal("round trip changed the index")
	}
	for name, bad := range map[string][]byte{
		"truncated": enc[:len(enc)-1],
		"magic":     append([]byte("XXXXXXXX"), enc[8:]...),
		"size":      func() []byte { c := bytes.Clone(enc); c[8]++; return c }(),
		"kind":      func() []byte { c := bytes.Clone(enc); c[headSize+4] = 'z'; return c }(),
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// A delta against an older image rebuilds the new index exactly.
	if _, err := testtree.MutatePortage(src, 0.05, 4); err != nil {
		t.Fatal(err)
	}
	ix2 := build(t, image(t, src))
	d := Diff(ix, ix2)
	got, err := Patch(ix, d)
	want, _ := ix2.MarshalBinary()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("patch: %v", err)
	}
	if len(d) >= len(want) {
		t.Errorf("delta %d bytes, index %d", len(d), len(want))
	}
	if _, err := Patch(ix2, d); !errors.Is(err, ErrBase) {
		t.Errorf("patch on another base: %v", err)
	}
}
