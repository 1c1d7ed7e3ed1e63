package squash

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// streamWriter starts a writer on a temporary file for the tests below.
func streamWriter(t *testing.T, opts WriterOptions) (*Writer, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "i.sqfs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w, err := NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w, img
}

func addBytes(w *Writer, name string, data []byte) error {
	return w.Add(&Header{Name: name, Mode: 0o644, Size: int64(len(data))}, bytes.NewReader(data))
}

func addDir(w *Writer, name string) error {
	return w.Add(&Header{Name: name, Mode: fs.ModeDir | 0o755}, nil)
}

// TestWriterStreamsDirectories feeds thousands of directories and checks
// that the writer writes each one out soon after it is complete instead
// of holding the tree until Close: only the directories whose files'
// tails still wait for their fragment block may wait with them.
func TestWriterStreamsDirectories(t *testing.T) {
	w, img := streamWriter(t, WriterOptions{Workers: 2})
	const dirs = 4000
	most := 0
	for i := range dirs {
		d := fmt.Sprintf("d%04d", i)
		if err := addDir(w, d); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := addBytes(w, fmt.Sprintf("%s/f%d", d, j), bytes.Repeat([]byte{byte(i), byte(j)}, 300+i%50)); err != nil {
				t.Fatal(err)
			}
		}
		held := 0
		for _, n := range w.ready {
			if n.hdr.Mode.IsDir() {
				held++
			}
		}
		most = max(most, held)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A window of three 128 KiB fragment blocks holds about 140 of these
	// directories' tails; the compressors' queues hold a few more.
	if most > 400 {
		t.Errorf("up to %d complete directories were held back, of %d", most, dirs)
	}
	r, err := OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	checkInodes(t, r.Reader)
	for _, i := range []int{0, 1234, dirs - 1} {
		name := fmt.Sprintf("d%04d/f2", i)
		got, err := fs.ReadFile(r, name)
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte(i), 2}, 300+i%50)) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
}

// TestWriterLateHardLinks adds names of an inode after the directory of
// its first name was written out: the link count in the written inode is
// raised in place, and every name reads the same inode.
func TestWriterLateHardLinks(t *testing.T) {
	for _, typ := range []string{"fifo", "symlink", "file"} {
		t.Run(typ, func(t *testing.T) {
			w, img := streamWriter(t, WriterOptions{Workers: 2, NoFragments: true})
			h := &Header{Name: "a/first", Nlink: 3}
			var data io.Reader
			switch typ {
			case "fifo":
				h.Mode = fs.ModeNamedPipe | 0o644
			case "symlink":
				h.Mode, h.Target = fs.ModeSymlink|0o777, "somewhere"
			case "file":
				h.Mode, h.Size, data = 0o644, 5, strings.NewReader("hello")
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(addDir(w, "a"))
			must(w.Add(h, data))
			// Enough directories after a/ that its inode is written for
			// the fifo and symlink cases before the links come, and
			// blocks of the inode table after it fill: its own block
			// must wait (pinned) for the last name.
			for i := range 1000 {
				must(addDir(w, fmt.Sprintf("b%03d", i)))
			}
			if typ != "file" && (w.linkable["a/first"].nlinkAt < 0 || w.tables.inodes.size() < 2*MetadataSize) {
				t.Fatal("a/first was not written, or no block after it filled, before its links came: the test tests nothing")
			}
			must(w.Add(&Header{Name: "b999/second", Link: "a/first"}, nil))
			must(addDir(w, "c"))
			must(w.Add(&Header{Name: "c/third", Link: "/a/first"}, nil))
			must(w.Close())
			r, err := OpenFile(img)
			must(err)
			defer r.Close()
			var number uint32
			for _, name := range []string{"a/first", "b999/second", "c/third"} {
				fi, err := r.Lstat(name)
				must(err)
				ino := fi.Sys().(*Inode)
				if ino.Nlink != 3 {
					t.Errorf("%s: nlink %d, want 3", name, ino.Nlink)
				}
				if number == 0 {
					number = ino.Number
				} else if ino.Number != number {
					t.Errorf("%s: inode %d, want %d", name, ino.Number, number)
				}
			}
			must(r.Verify(context.Background(), nil))
		})
	}
}

// TestWriterAddOrder: entries that break pre-order, or name what the
// writer cannot find, are refused with an error that says what to do.
func TestWriterAddOrder(t *testing.T) {
	cases := []struct {
		name string
		add  func(w *Writer) error
		want string
	}{
		{"parent never added", func(w *Writer) error {
			return addBytes(w, "nodir/f", nil)
		}, "is not open"},
		{"parent already complete", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			if err := addDir(w, "b"); err != nil {
				return err
			}
			return addBytes(w, "a/late", nil)
		}, "all of a directory's entries before anything outside it"},
		{"parent is a file", func(w *Writer) error {
			if err := addBytes(w, "f", nil); err != nil {
				return err
			}
			return addBytes(w, "f/x", nil)
		}, "is not open"},
		{"empty component under an open directory", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			return addBytes(w, "a//f", nil)
		}, "empty, . or .. component"},
		{"dot-dot component", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			return addBytes(w, "a/../f", nil)
		}, "empty, . or .. component"},
		{"trailing slash", func(w *Writer) error {
			return addBytes(w, "f/", nil)
		}, "empty, . or .. component"},
		{"NUL in a parent's name", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			return addBytes(w, "a\x00/f", nil)
		}, "NUL byte"},
		{"long last component", func(w *Writer) error {
			return addBytes(w, strings.Repeat("x", 257), nil)
		}, "longer than 256 bytes"},
		{"root after entries", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			return addDir(w, "")
		}, "must come first"},
		{"link to an entry not marked linkable", func(w *Writer) error {
			if err := addBytes(w, "f", []byte("x")); err != nil {
				return err
			}
			return w.Add(&Header{Name: "g", Link: "f"}, nil)
		}, "Nlink above 1"},
		{"link to a directory", func(w *Writer) error {
			if err := w.Add(&Header{Name: "d", Mode: fs.ModeDir | 0o755, Nlink: 2}, nil); err != nil {
				return err
			}
			return w.Add(&Header{Name: "g", Link: "d"}, nil)
		}, "Nlink above 1"},
		{"more names than Nlink", func(w *Writer) error {
			if err := w.Add(&Header{Name: "f", Mode: fs.ModeNamedPipe | 0o644, Nlink: 2}, nil); err != nil {
				return err
			}
			if err := w.Add(&Header{Name: "g", Link: "f"}, nil); err != nil {
				return err
			}
			return w.Add(&Header{Name: "h", Link: "f"}, nil)
		}, "more than its Nlink 2"},
		{"same name twice", func(w *Writer) error {
			if err := addDir(w, "a"); err != nil {
				return err
			}
			if err := addBytes(w, "a/x", nil); err != nil {
				return err
			}
			if err := addBytes(w, "a/x", nil); err != nil {
				return err
			}
			return w.Close()
		}, "already added"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, _ := streamWriter(t, WriterOptions{Workers: 1})
			err := c.add(w)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			w.Close()
		})
	}
}

// TestWriterBufferTails: a *bytes.Buffer's tails are taken without a copy
// of their own; the image must be the one a copying reader gives, even
// when the caller reuses the buffer's memory right after Add, and a
// buffer shorter than the header's size must fail as a short reader does.
func TestWriterBufferTails(t *testing.T) {
	files := [][]byte{
		[]byte("short tail"),
		bytes.Repeat([]byte("a tail of a larger file "), 9000), // blocks and a tail
		bytes.Repeat([]byte{7}, 4096),
	}
	build := func(buffer bool) []byte {
		w, img := streamWriter(t, WriterOptions{Workers: 2})
		for i, data := range files {
			mem := append([]byte(nil), data...)
			var r io.Reader = bytes.NewReader(mem)
			if buffer {
				r = bytes.NewBuffer(mem)
			}
			if err := w.Add(&Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(len(mem))}, r); err != nil {
				t.Fatal(err)
			}
			for j := range mem { // the caller's memory is its own again
				mem[j] = 0xEE
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		rc := openImage(t, img)
		for i, data := range files {
			got, err := rc.ReadFile(fmt.Sprintf("f%d", i))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("f%d: %d bytes read back (%v), want its %d", i, len(got), err, len(data))
			}
		}
		return b
	}
	if !bytes.Equal(build(true), build(false)) {
		t.Error("a bytes.Buffer and a bytes.Reader of the same data give different images")
	}
	w, _ := streamWriter(t, WriterOptions{})
	err := w.Add(&Header{Name: "short", Mode: 0o644, Size: 100}, bytes.NewBuffer(make([]byte, 60)))
	if err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Errorf("buffer shorter than the size: %v", err)
	}
}

// TestWriterContentsAhead: data written ahead of its entries (in another
// order) reads back as each file's, duplicates among it are found, and a
// Contents is taken once, for a file of its size.
func TestWriterContentsAhead(t *testing.T) {
	w, img := streamWriter(t, WriterOptions{Workers: 2})
	data := map[string][]byte{
		"a/big":   bytes.Repeat([]byte("0123456789"), 30000),
		"a/small": []byte("small"),
		"b/dup":   []byte("small"),
		"b/empty": nil,
	}
	cs := map[string]*Contents{}
	for _, name := range []string{"b/empty", "b/dup", "a/small", "a/big"} { // not the entries' order
		c, err := w.WriteContents(name, int64(len(data[name])), bytes.NewReader(data[name]))
		if err != nil {
			t.Fatal(err)
		}
		cs[name] = c
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string) *Header {
		return &Header{Name: name, Mode: 0o644, Size: int64(len(data[name]))}
	}
	must(addDir(w, "a"))
	must(w.AddContents(file("a/big"), cs["a/big"]))
	if err := w.AddContents(&Header{Name: "a/wrong", Mode: 0o644, Size: 4}, cs["a/small"]); err == nil {
		t.Error("contents of 5 bytes taken for a file of 4")
	}
	must(w.AddContents(file("a/small"), cs["a/small"]))
	if err := w.AddContents(&Header{Name: "a/again", Mode: 0o644, Size: 5}, cs["a/small"]); err == nil {
		t.Error("contents added twice")
	}
	must(addDir(w, "b"))
	must(w.AddContents(file("b/dup"), cs["b/dup"]))
	must(w.AddContents(file("b/empty"), cs["b/empty"]))
	must(w.Close())
	if d := w.Stats().Duplicates; d != 1 {
		t.Errorf("%d duplicates, want 1 (a/small of b/dup)", d)
	}
	r, err := OpenFile(img)
	must(err)
	defer r.Close()
	for name, want := range data {
		if got, err := r.ReadFile(name); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d", name, len(got), err, len(want))
		}
	}
	must(r.Verify(context.Background(), nil))
}
