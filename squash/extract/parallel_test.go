package extract

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/testtree"
)

// buildSharedFragmentTree makes a small Portage-like tree (most files
// small, so mksquashfs packs them into fragment blocks shared with their
// neighbours) and adds what parallel extraction could get wrong: hard links
// between far-apart directories (their files' tails lie in different
// fragment blocks, and the link is listed long after its target), links
// into and out of read-only directories, multi-block files with holes,
// owners, modes, times and xattrs on files and directories.
func buildSharedFragmentTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	mustMkdir(t, src)
	if _, err := testtree.GeneratePortage(src, testtree.PortageOptions{Scale: 0.013, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 9))
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return b
	}
	write := func(rel string, b []byte, perm os.FileMode) {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
	}
	link := func(old, new string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, new)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(src, old), filepath.Join(src, new)); err != nil {
			t.Fatal(err)
		}
	}
	// Hard links: "aaa-first" sorts before every category, "zzz-last"
	// after, so each link comes hundreds of files after its target.
	for i := range 12 {
		name := fmt.Sprintf("aaa-first/f%02d", i)
		write(name, data(100+rng.IntN(3000)), 0o644)
		link(name, fmt.Sprintf("zzz-last/l%02d", i))
		if i%3 == 0 {
			link(name, fmt.Sprintf("mmm-middle/l%02d", i))
		}
	}
	// A multi-block file with a hole and a tail, linked twice.
	big := make([]byte, 3*4096+1234)
	copy(big, data(4096))
	copy(big[2*4096:], data(4096+1234))
	write("aaa-first/big", big, 0o640)
	link("aaa-first/big", "zzz-last/big-link")
	// A file linked from a read-only directory into another one.
	write("ro-src/file", data(777), 0o444)
	link("ro-src/file", "ro-dst/file-link")
	for _, d := range []string{"ro-src", "ro-dst"} {
		if err := os.Chmod(filepath.Join(src, d), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	// Owners, odd modes, times and xattrs on files and directories.
	if err := os.Mkdir(filepath.Join(src, "meta"), 0o2775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "meta"), 0o2775); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		rel := fmt.Sprintf("meta/m%02d", i)
		write(rel, data(rng.IntN(2000)), []os.FileMode{0o600, 0o755, 0o4755, 0o400}[i%4])
		p := filepath.Join(src, rel)
		if err := os.Lchown(p, 1000+i, 2000+i%3); err != nil {
			t.Fatal(err)
		}
		if i%4 == 2 {
			// chown cleared setuid.
			if err := os.Chmod(p, 0o4755); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 0 {
			if err := unix.Setxattr(p, "user.note", []byte(rel), 0); err != nil {
				t.Fatal(err)
			}
		}
		mt := time.Unix(1500000000+int64(i)*86400, 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(src, "meta"), "user.dir", []byte("yes"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../aaa-first/f00", filepath.Join(src, "meta/sym")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "meta/fifo"), 0o620); err != nil {
		t.Fatal(err)
	}
	// Directory times last: creating entries changed them.
	return src
}

func setDirTimes(t *testing.T, root string) {
	t.Helper()
	mt := time.Unix(1600000000, 0)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return err
		}
		return os.Chtimes(p, mt, mt)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Extraction with workers gives the same tree as extraction without, down
// to every byte, hole, owner, mode, time, xattr and hard link, on an image
// whose files share fragment blocks: with the default block size (many
// files per fragment block) and with 4 KiB blocks (many fragment blocks,
// multi-block files). It runs again with room for only two decoded
// fragment blocks ahead, so the walk must wait for writers to release
// them.
func TestParallelEqualsSerial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for ownership")
	}
	src := buildSharedFragmentTree(t)
	setDirTimes(t, src)
	for _, bs := range []string{"131072", "4096"} {
		t.Run("b"+bs, func(t *testing.T) {
			r := mksquashfs(t, src, "-b", bs)
			if r.Superblock().Fragments < 2 {
				t.Fatalf("image has %d fragment blocks; the test needs many", r.Superblock().Fragments)
			}
			serial := filepath.Join(t.TempDir(), "serial")
			if err := Extract(r.Reader, serial, Options{Workers: 1}); err != nil {
				t.Fatal(err)
			}
			testtree.AssertEqual(t, src, serial, testtree.CompareOptions{IgnoreRootMeta: true})
			for _, tc := range []struct {
				name     string
				workers  int
				aheadMax int
			}{{"w2", 2, 0}, {"w8", 8, 0}, {"w4-squeezed", 4, 1}} {
				t.Run(tc.name, func(t *testing.T) {
					if tc.aheadMax > 0 {
						old := fragAheadBytes
						fragAheadBytes = tc.aheadMax
						defer func() { fragAheadBytes = old }()
					}
					dest := filepath.Join(t.TempDir(), "dest")
					if err := Extract(r.Reader, dest, Options{Workers: tc.workers}); err != nil {
						t.Fatal(err)
					}
					testtree.AssertEqual(t, serial, dest, testtree.CompareOptions{})
					if bs == "4096" {
						// Holes are as fine as the image's blocks.
						checkHole(t, filepath.Join(dest, "aaa-first/big"))
					}
					checkLinked(t, dest, 3, "aaa-first/f03", "mmm-middle/l03", "zzz-last/l03")
					checkLinked(t, dest, 2, "ro-src/file", "ro-dst/file-link")
				})
			}
		})
	}
}

// checkHole makes sure the second block of p was left unallocated.
func checkHole(t *testing.T, p string) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	off, err := unix.Seek(fd, 4096, unix.SEEK_HOLE)
	if err != nil {
		t.Fatal(err)
	}
	if off != 4096 {
		t.Errorf("%s: first hole at %d, want 4096", p, off)
	}
}

// A file that cannot be created (the name is taken and force is off) fails
// the extraction, and the hard links listed after it do not wait for it
// forever; nothing is left running.
func TestParallelFailedLinkTarget(t *testing.T) {
	m := newMem()
	sub := m.dir(2, 0o755)
	m.add(1, "a", sub)
	target := m.file(3, "contents")
	m.add(2, "target", target)
	for i := range 50 {
		m.add(2, fmt.Sprintf("other%02d", i), m.file(uint32(10+i), "x"))
	}
	far := m.dir(4, 0o755)
	m.add(1, "z", far)
	m.add(4, "link", target)
	dest := t.TempDir()
	mustMkdir(t, filepath.Join(dest, "a"))
	mustWrite(t, filepath.Join(dest, "a/target"), "old")
	done := make(chan error, 1)
	go func() { done <- extract(m, dest, Options{Workers: 4}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("extract over an existing file without force succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("extract hung")
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a/target")); err != nil || !bytes.Equal(b, []byte("old")) {
		t.Errorf("a/target = %q, %v; want it untouched", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "z/link")); err == nil {
		t.Error("z/link was made to a file extraction did not create")
	}
}

// Files finish in any order with workers, but each directory gets its
// metadata only after everything in it exists: a read-only directory full
// of files, extracted with many workers, still has its files and its mode.
func TestParallelReadOnlyDirs(t *testing.T) {
	m := newMem()
	for d := range 5 {
		dir := m.dir(uint32(100+d), 0o555)
		dir.Mtime = 1234567890
		m.add(1, fmt.Sprintf("d%d", d), dir)
		for f := range 40 {
			m.add(uint32(100+d), fmt.Sprintf("f%02d", f), m.file(uint32(1000+d*100+f), fmt.Sprintf("%d/%d", d, f)))
		}
	}
	dest := t.TempDir()
	if err := extract(m, dest, Options{Workers: 6}); err != nil {
		t.Fatal(err)
	}
	for d := range 5 {
		p := filepath.Join(dest, fmt.Sprintf("d%d", d))
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o555 || st.ModTime().Unix() != 1234567890 {
			t.Errorf("%s: mode %v mtime %d, want 0555 and 1234567890", p, st.Mode(), st.ModTime().Unix())
		}
		for f := range 40 {
			b, err := os.ReadFile(filepath.Join(p, fmt.Sprintf("f%02d", f)))
			if err != nil || string(b) != fmt.Sprintf("%d/%d", d, f) {
				t.Errorf("%s/f%02d = %q, %v", p, f, b, err)
			}
		}
	}
}
