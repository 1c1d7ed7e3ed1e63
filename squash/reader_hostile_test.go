package squash

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seedSpecs are the small images kept in testdata as fuzz seeds and used by
// the corruption tests. Regenerate with SQUASH_UPDATE_SEEDS=1 go test -run TestSeeds.
var seedSpecs = []struct {
	name string
	args []string
}{
	{"gzip", nil},
	{"gzip-nofrag", []string{"-no-fragments"}},
	{"uncompressed", []string{"-noI", "-noD", "-noF", "-noX", "-exports"}},
	{"xz", []string{"-comp", "xz"}},
	{"lz4", []string{"-comp", "lz4"}},
	{"zstd", []string{"-comp", "zstd", "-exports"}},
	{"lzo", []string{"-comp", "lzo"}},
}

// buildSeedTree makes a tiny tree touching most inode kinds.
func buildSeedTree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "a"), []byte("hello, squashfs\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "b"), bytes.Repeat([]byte("0123456789"), 500), 0o755))
	must(os.Mkdir(filepath.Join(dir, "d"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "d", "e"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "d", "f"), []byte("f"), 0o600))
	must(os.Symlink("../a", filepath.Join(dir, "d", "l")))
	must(os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "h")))
	must(unix.Mkfifo(filepath.Join(dir, "p"), 0o644))
	unix.Setxattr(filepath.Join(dir, "a"), "user.k", []byte("v"), 0)
	unix.Setxattr(filepath.Join(dir, "d"), "user.long", bytes.Repeat([]byte("x"), 300), 0)
	ts := time.Unix(1_600_000_000, 0)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		tv := []unix.Timeval{unix.NsecToTimeval(ts.UnixNano()), unix.NsecToTimeval(ts.UnixNano())}
		unix.Lutimes(p, tv)
		return nil
	})
	return dir
}

func seedImage(t testing.TB, src string, args []string) []byte {
	t.Helper()
	img := buildImage(t, src, append([]string{"-b", "4096", "-nopad", "-all-root", "-mkfs-time", "0"}, args...)...)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSeeds keeps testdata/*.sqfs readable and, with SQUASH_UPDATE_SEEDS=1,
// rewrites them from mksquashfs.
func TestSeeds(t *testing.T) {
	if os.Getenv("SQUASH_UPDATE_SEEDS") != "" {
		needMksquashfs(t)
		src := buildSeedTree(t)
		for _, s := range seedSpecs {
			b := seedImage(t, src, s.args)
			if err := os.WriteFile(filepath.Join("testdata", s.name+".sqfs"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	seeds := fuzzSeeds(t)
	if len(seeds) == 0 {
		t.Fatal("no seed images in testdata")
	}
	for i, b := range seeds {
		r, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if err := r.Verify(context.Background(), nil); err != nil {
			t.Fatalf("seed %d: Verify: %v", i, err)
		}
		if got, err := r.ReadFile("d/l"); err != nil || string(got) != "hello, squashfs\n" {
			t.Fatalf("seed %d: ReadFile(d/l) = %q, %v", i, got, err)
		}
	}
}

// runBounded runs fn with a deadline so that a hang fails the test instead
// of stalling it.
func runBounded(t *testing.T, what string, limit time.Duration, fn func()) {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		fn()
	}()
	select {
	case p := <-done:
		if p != nil {
			t.Fatalf("%s: panic: %v", what, p)
		}
	case <-time.After(limit):
		t.Fatalf("%s: still running after %v", what, limit)
	}
}

func exerciseBytes(b []byte) {
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return
	}
	exerciseReader(r)
}

func TestHostileTruncations(t *testing.T) {
	for _, seed := range fuzzSeeds(t) {
		step := 1
		if testing.Short() {
			step = 7
		}
		for n := 0; n < len(seed); n += step {
			b := seed[:n]
			runBounded(t, fmt.Sprintf("truncated to %d of %d", n, len(seed)), 10*time.Second, func() {
				r, err := NewReader(bytes.NewReader(b), int64(len(b)))
				if err == nil {
					exerciseReader(r)
				}
			})
		}
		// A reader that claims more bytes than it can deliver.
		runBounded(t, "short ReaderAt", 10*time.Second, func() {
			r, err := NewReader(bytes.NewReader(seed[:len(seed)/2]), int64(len(seed)))
			if err == nil {
				exerciseReader(r)
			}
		})
	}
}

func TestHostileBitFlips(t *testing.T) {
	for si, seed := range fuzzSeeds(t) {
		step := 1
		if testing.Short() {
			step = 5
		}
		for off := 0; off < len(seed); off += step {
			for _, mut := range []func(byte) byte{
				func(c byte) byte { return c ^ (1 << (off % 8)) },
				func(c byte) byte { return 0xff },
			} {
				b := bytes.Clone(seed)
				b[off] = mut(b[off])
				runBounded(t, fmt.Sprintf("seed %d: byte %d changed", si, off), 10*time.Second, func() { exerciseBytes(b) })
			}
		}
	}
}

func TestHostileSuperblocks(t *testing.T) {
	for si, seed := range fuzzSeeds(t) {
		for name, mut := range superblockMutations(uint64(len(seed))) {
			b := bytes.Clone(seed)
			mut(b)
			runBounded(t, fmt.Sprintf("%s (seed %d)", name, si), 10*time.Second, func() { exerciseBytes(b) })
		}
	}
}

func superblockMutations(size uint64) map[string]func([]byte) {
	le := binary.LittleEndian
	u32 := func(off int, v uint32) func([]byte) { return func(b []byte) { le.PutUint32(b[off:], v) } }
	u16 := func(off int, v uint16) func([]byte) { return func(b []byte) { le.PutUint16(b[off:], v) } }
	u64 := func(off int, v uint64) func([]byte) { return func(b []byte) { le.PutUint64(b[off:], v) } }
	return map[string]func([]byte){
		"inodes max":          u32(4, 0xFFFFFFFF),
		"inodes zero":         u32(4, 0),
		"block size 3000":     u32(12, 3000),
		"block size 2M":       func(b []byte) { u32(12, 2<<20)(b); u16(22, 21)(b) },
		"block log mismatch":  u16(22, 13),
		"fragments max":       u32(16, 0xFFFFFFFF),
		"compressor 0":        u16(20, 0),
		"compressor lzma":     u16(20, 2),
		"compressor 99":       u16(20, 99),
		"options flag":        func(b []byte) { b[24] |= 0x04 },
		"ids zero":            u16(26, 0),
		"ids max":             u16(26, 0xFFFF),
		"version 3":           u16(28, 3),
		"root inode garbage":  u64(32, 0xFFFFFFFFFFFF1234),
		"root inode offset":   u64(32, 0x0000000000001FFF),
		"bytes used huge":     u64(40, 1<<62),
		"bytes used small":    u64(40, 100),
		"id table past end":   u64(48, size+10),
		"id table at 0":       u64(48, 0),
		"xattr table past":    u64(56, size-4),
		"xattr table sb":      u64(56, 0),
		"inode table past":    u64(64, size+1),
		"inode table = dir":   func(b []byte) { copy(b[64:72], b[72:80]) },
		"dir table = inode":   func(b []byte) { copy(b[72:80], b[64:72]) },
		"dir table past":      u64(72, 1<<40),
		"fragment table past": u64(80, size-1),
		"export table 0":      u64(88, 0),
		"export table past":   u64(88, size-3),
		"all tables at 96": func(b []byte) {
			for off := 48; off < 96; off += 8 {
				le.PutUint64(b[off:], 96)
			}
		},
	}
}

// TestHostileDirectoryLoop points a subdirectory's entry back at the root,
// the cycle a naive walker would follow forever.
func TestHostileDirectoryLoop(t *testing.T) {
	img, err := os.ReadFile(filepath.Join("testdata", "uncompressed.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := r.Stat("d")
	if err != nil {
		t.Fatal(err)
	}
	d := fi.Sys().(*Inode)
	if r.sb.Flags&FlagUncompressedInodes == 0 || d.DirBlock != 0 {
		t.Fatalf("seed layout unexpected")
	}
	// The listing of d starts with a header; its first entry is "e", an
	// empty directory. Redirect it to the root.
	le := binary.LittleEndian
	p := int(r.sb.DirTable) + 2 + int(d.DirOffset)
	le.PutUint32(img[p+4:], uint32(root.Ref>>16))
	le.PutUint32(img[p+8:], root.Number)
	if name := string(img[p+20 : p+21]); name != "e" {
		t.Fatalf("first entry of d is %q, want e", name)
	}
	le.PutUint16(img[p+12:], uint16(root.Ref))
	le.PutUint16(img[p+14:], 0)

	r, err = NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFile("d/e/d/e/d/e/a"); err != nil {
		t.Errorf("walking the loop by name: %v", err)
	}
	runBounded(t, "exercise loop", 20*time.Second, func() { exerciseReader(r) })
	for _, n := range []int{1, 2, 8} {
		err = r.VerifyWith(context.Background(), VerifyOptions{Workers: n})
		if err == nil || !strings.Contains(err.Error(), "reached twice") {
			t.Errorf("Verify with %d workers = %v, want a loop error", n, err)
		}
	}
}

// TestHostileHugeSizes patches size fields of the uncompressed seed to
// absurd values: each must fail fast without a matching allocation.
func TestHostileHugeSizes(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("testdata", "uncompressed.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(seed), int64(len(seed)))
	if err != nil {
		t.Fatal(err)
	}
	inodePos := func(name string) int {
		fi, err := r.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		ref := fi.Sys().(*Inode).Ref
		return int(r.sb.InodeTable) + int(ref>>16) + 2 + int(ref&0xffff)
	}
	le := binary.LittleEndian
	aPos := inodePos("a") // a hard link, so an extended file inode
	if le.Uint16(seed[aPos:]) != TypeLFile {
		t.Fatalf("a is of type %d", le.Uint16(seed[aPos:]))
	}
	lPos := inodePos("d/l")
	// The 300-byte value of user.long, preceded by its length.
	xPos := bytes.Index(seed, []byte("\x2c\x01\x00\x00xxxx"))
	if xPos < 0 {
		t.Fatal("xattr user.long not found")
	}
	cases := []struct {
		name  string
		patch func([]byte)
		check func(*Reader) error
	}{
		{"file of 2^60 bytes", func(b []byte) { le.PutUint64(b[aPos+24:], 1<<60+5) }, func(r *Reader) error {
			_, err := r.ReadFile("a")
			return err
		}},
		{"file of 2^64-1 bytes", func(b []byte) { le.PutUint64(b[aPos+24:], ^uint64(0)) }, func(r *Reader) error {
			_, err := r.Stat("a")
			return err
		}},
		{"file of 2^40 bytes, no fragment", func(b []byte) {
			le.PutUint64(b[aPos+24:], 1<<40)
			le.PutUint32(b[aPos+44:], NoFragment)
		}, func(r *Reader) error {
			_, err := r.ReadFile("a")
			return err
		}},
		{"file of 12 GB", func(b []byte) { le.PutUint64(b[aPos+24:], 3_000_000*4096+5) }, func(r *Reader) error {
			_, err := r.ReadFile("a")
			return err
		}},
		{"symlink of 4 GiB", func(b []byte) { le.PutUint32(b[lPos+20:], 0xFFFFFFFF) }, func(r *Reader) error {
			_, err := r.ReadLink("d/l")
			return err
		}},
		{"symlink of 4000 bytes", func(b []byte) { le.PutUint32(b[lPos+20:], 4000) }, func(r *Reader) error {
			_, err := r.ReadLink("d/l")
			return err
		}},
		{"xattr value of 4 GiB", func(b []byte) { le.PutUint32(b[xPos:], 0xFFFFFFF0) }, func(r *Reader) error {
			fi, err := r.Stat("d")
			if err != nil {
				return err
			}
			_, err = r.Xattrs(fi.Sys().(*Inode))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(seed)
			tc.patch(b)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var err error
			runBounded(t, tc.name, 10*time.Second, func() {
				var r *Reader
				if r, err = NewReader(bytes.NewReader(b), int64(len(b))); err == nil {
					err = tc.check(r)
				}
			})
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Errorf("no error")
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
				t.Errorf("allocated %d bytes", d)
			}
			t.Log(err)
		})
	}
}
