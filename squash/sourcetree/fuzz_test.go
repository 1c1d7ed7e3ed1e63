package sourcetree

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/squashportage/squashportage/squash"
)

// FuzzParsePseudo: no definition makes the parser panic, and what it
// accepts names a clean path and a known type.
func FuzzParsePseudo(f *testing.F) {
	for _, s := range []string{"dev d 755 0 0", "a/b c 600 root root 5 1", `"x y"\ z F 9 644 0 0 echo hi`,
		"l S 1 0 0 0 t a r g e t", "f i 644 0 0 s", "x R 1 644 0 0 5 7", "y L x", "/ m 1777 0 0", "x D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, def string) {
		p, err := ParsePseudo(def)
		if err != nil {
			return
		}
		if strings.HasPrefix(p.Name, "/") || strings.Contains("/"+p.Name+"/", "/../") || !strings.ContainsRune("dmbcfsiLR", rune(p.Type)) {
			t.Errorf("ParsePseudo(%q) = name %q type %q", def, p.Name, p.Type)
		}
	})
}

// TestScanTarMutations: archives with a few random bytes changed make
// ScanTar fail or succeed, never panic or hang, leave no spool behind,
// and what it accepts writes as an image that reads back. (As a Go fuzz
// target this path made 3-6 executions in a minute here, both workers
// busy, though each input alone takes milliseconds; why was not found.)
func TestScanTarMutations(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "h", Typeflag: tar.TypeLink, Linkname: "d/f"},
		{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "d"},
		{Name: "c", Typeflag: tar.TypeChar, Mode: 0o600, Devmajor: 1, Devminor: 3},
		{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3, PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b"}},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	seed := b.Bytes()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for i := 0; i < 3000; i++ {
		in := bytes.Clone(seed)
		for k := rng.IntN(4) + 1; k > 0; k-- {
			in[rng.IntN(len(in))] = byte(rng.IntN(256))
		}
		done := make(chan error, 1)
		go func() {
			tr, err := ScanTar(bytes.NewReader(in), Options{})
			if err != nil {
				done <- nil
				return
			}
			defer tr.Close()
			accepted++
			_, err = writeToMemory(tr)
			if err != nil && strings.Contains(err.Error(), "out of range") {
				err = nil // a device number the format cannot hold
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("mutation %d: accepted, then: %v\n%q", i, err, in)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("mutation %d hangs:\n%q", i, in)
		}
	}
	if accepted == 0 {
		t.Error("no mutation was accepted: the test shows nothing")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "squashportage-*")); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
}

// writeToMemory writes the tree as an image into memory and reads it back.
func writeToMemory(tr *Tree) (*squash.Reader, error) {
	var out memOutput
	w, err := squash.NewWriter(&out, squash.WriterOptions{Workers: 1})
	if err != nil {
		return nil, err
	}
	if err := tr.Write(w, nil); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return squash.NewReader(bytes.NewReader(out.b), int64(len(out.b)))
}

// memOutput is a squash.Output in memory.
type memOutput struct{ b []byte }

func (m *memOutput) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memOutput) Truncate(n int64) error {
	if n < int64(len(m.b)) {
		m.b = m.b[:n]
	} else {
		m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	}
	return nil
}

// TestScanTarInPlace: from an archive file, contents are read where they
// lie (no spool, but for the sparse file, whose stored bytes are not its
// contents), and the image is byte for byte the one a pipe of the same
// archive makes.
func TestScanTarInPlace(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "small"), []byte("small file"), 0o644))
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	must(t, os.WriteFile(filepath.Join(src, "big"), big, 0o644))
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	sparse.WriteAt([]byte("tail"), 5<<20)
	sparse.Close()
	must(t, os.Link(filepath.Join(src, "small"), filepath.Join(src, "link")))
	archive := filepath.Join(t.TempDir(), "a.tar")
	if out, err := exec.Command("tar", "--sparse", "-C", src, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	image := func(r io.Reader) []byte {
		t.Helper()
		tr, err := ScanTar(r, Options{RootTime: ptr32(1)})
		must(t, err)
		defer tr.Close()
		var out memOutput
		w, err := squash.NewWriter(&out, squash.WriterOptions{MkfsTime: 1})
		must(t, err)
		must(t, tr.Write(w, nil))
		must(t, w.Close())
		return out.b
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	f, err := os.Open(archive)
	must(t, err)
	defer f.Close()
	var spooled int
	inPlace := func() []byte {
		tr, err := ScanTar(f, Options{RootTime: ptr32(1)})
		must(t, err)
		spooled = len(tr.open)
		tr.Close()
		must2(f.Seek(0, io.SeekStart))
		return image(f)
	}
	a := inPlace()
	if spooled != 1 {
		t.Errorf("%d spool files for an archive file with one sparse file, want 1", spooled)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) != 0 {
		t.Errorf("left in TMPDIR: %q", left)
	}
	data, err := os.ReadFile(archive)
	must(t, err)
	b := image(bytes.NewReader(data))
	if !bytes.Equal(a, b) {
		t.Errorf("the image from the archive file (%d bytes) differs from the one from a pipe of it (%d bytes)", len(a), len(b))
	}
	r, err := squash.NewReader(bytes.NewReader(a), int64(len(a)))
	must(t, err)
	for name, want := range map[string][]byte{"big": big, "small": []byte("small file"), "link": []byte("small file")} {
		got, err := fs.ReadFile(r, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	if got, err := fs.ReadFile(r, "sparse"); err != nil || len(got) != 5<<20+4 || string(got[5<<20:]) != "tail" {
		t.Errorf("sparse: %d bytes, %v", len(got), err)
	}
}

func ptr32(v uint32) *uint32 { return &v }

func must2(_ int64, err error) {
	if err != nil {
		panic(err)
	}
}
