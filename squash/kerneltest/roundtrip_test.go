// Package kerneltest holds the writer's tests that need the real kernel:
// images are loop-mounted with -t squashfs and compared with their source,
// and Debian's unsquashfs reads them too.
package kerneltest

import (
	"bytes"
	"context"
	"fmt"
	"github.com/squashportage/squashportage/internal/testimage"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/cirequire"
	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

func TestMain(m *testing.M) { privileged.Main(m) }

var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
	treeRep  testtree.AllCasesReport
)

// allCases builds the all-cases tree once per test binary, on tmpfs when
// there is one, since ext4 refuses large xattr values.
func allCases(t *testing.T) string {
	t.Helper()
	treeOnce.Do(func() {
		base := "/dev/shm"
		if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
			base = os.TempDir()
		}
		treeDir, treeErr = os.MkdirTemp(base, "sp-allcases-")
		if treeErr != nil {
			return
		}
		treeRep, treeErr = testtree.BuildAllCasesErr(treeDir, testtree.AllCasesOptions{})
	})
	if treeErr != nil {
		t.Fatal(treeErr)
	}
	for _, s := range treeRep.Skipped {
		cirequire.Unavailable(t, "all-cases tree: skipped %s", s)
	}
	if treeRep.LargeXattrSize < 60<<10 || treeRep.ManyXattrKeys < 200 {
		cirequire.Unavailable(t, "all-cases tree in %s: largest xattr value %d bytes (want 60 KiB), %d keys on xattrs/many (want 200)",
			treeDir, treeRep.LargeXattrSize, treeRep.ManyXattrKeys)
	}
	return treeDir
}

func writeImage(t testing.TB, src, image string, opts squash.WriterOptions, sopts sourcetree.Options) squash.WriteStats {
	t.Helper()
	return testimage.WriteWith(t, src, image, opts, sopts)
}

type rtCase struct {
	name string
	opts squash.WriterOptions
	cmp  testtree.CompareOptions
}

func cfg(id codec.ID, bs int, o codec.Options) codec.Config {
	return codec.Config{ID: id, BlockSize: bs, Options: o}
}

var rtCases = []rtCase{
	{name: "gzip", opts: squash.WriterOptions{Codec: cfg(codec.Gzip, 0, codec.Options{})}},
	{name: "gzip-level1-window8", opts: squash.WriterOptions{Codec: cfg(codec.Gzip, 0, codec.Options{Level: 1, WindowSize: 8})}},
	{name: "xz", opts: squash.WriterOptions{Codec: cfg(codec.XZ, 0, codec.Options{})}},
	{name: "xz-bcj-dict64k", opts: squash.WriterOptions{Codec: cfg(codec.XZ, 0, codec.Options{DictSize: 64 << 10, Filters: 0x3f})}},
	{name: "lz4", opts: squash.WriterOptions{Codec: cfg(codec.LZ4, 0, codec.Options{})}},
	{name: "lz4-hc", opts: squash.WriterOptions{Codec: cfg(codec.LZ4, 0, codec.Options{HC: true})}},
	{name: "zstd", opts: squash.WriterOptions{Codec: cfg(codec.Zstd, 0, codec.Options{})}},
	{name: "zstd-level3", opts: squash.WriterOptions{Codec: cfg(codec.Zstd, 0, codec.Options{Level: 3})}},
	{name: "lzo", opts: squash.WriterOptions{Codec: cfg(codec.LZO, 0, codec.Options{})}},
	{name: "block-1m-lzo", opts: squash.WriterOptions{Codec: cfg(codec.LZO, 1<<20, codec.Options{})}},
	{name: "uncompressed-all", opts: squash.WriterOptions{UncompressedInodes: true, UncompressedData: true, UncompressedFragments: true, UncompressedXattrs: true}},
	{name: "no-fragments", opts: squash.WriterOptions{NoFragments: true}},
	{name: "always-fragments", opts: squash.WriterOptions{AlwaysFragments: true}},
	{name: "no-duplicates", opts: squash.WriterOptions{NoDuplicates: true}},
	{name: "no-exports", opts: squash.WriterOptions{NoExports: true}},
	{name: "block-4k", opts: squash.WriterOptions{Codec: cfg(codec.Gzip, 4096, codec.Options{})}},
	{name: "block-1m-zstd", opts: squash.WriterOptions{Codec: cfg(codec.Zstd, 1<<20, codec.Options{})}},
	{name: "no-xattrs", opts: squash.WriterOptions{NoXattrs: true}, cmp: testtree.CompareOptions{IgnoreXattrs: true}},
	{name: "one-worker", opts: squash.WriterOptions{Workers: 1}},
}

// TestKernelRoundTrip writes the all-cases tree with every compressor and
// option family, mounts each image with the kernel and compares every
// entry and its metadata with the source. Our reader must verify each image,
// and Debian's unsquashfs must extract it identically.
func TestKernelRoundTrip(t *testing.T) {
	src := allCases(t)
	for _, tc := range rtCases {
		t.Run(tc.name, func(t *testing.T) {
			image := filepath.Join(t.TempDir(), "img.sqfs")
			writeImage(t, src, image, tc.opts, sourcetree.Options{NoXattrs: tc.opts.NoXattrs})
			mnt := t.TempDir()
			privileged.MountSquashfs(t, image, mnt)
			if d := testtree.CompareWith(src, mnt, tc.cmp); len(d) > 0 {
				report(t, "kernel mount", d)
			}
			r, err := squash.OpenFile(image)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Verify(context.Background(), nil); err != nil {
				t.Errorf("our reader: %v", err)
			}
		})
	}
}

// TestUnsquashfsReadsOurImages extracts our images with Debian's
// unsquashfs (the reference peer) and compares with the source.
func TestUnsquashfsReadsOurImages(t *testing.T) {
	src := allCases(t)
	for _, tc := range rtCases {
		switch tc.name {
		case "gzip", "xz-bcj-dict64k", "lz4-hc", "zstd", "uncompressed-all", "no-fragments", "always-fragments", "block-4k":
		default:
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			image := filepath.Join(t.TempDir(), "img.sqfs")
			writeImage(t, src, image, tc.opts, sourcetree.Options{})
			// On tmpfs: ext4 cannot hold the tree's 60 KiB xattr value.
			shm, err := os.MkdirTemp("/dev/shm", "sp-unsq-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(shm) })
			out := filepath.Join(shm, "x")
			cmd := exec.Command("unsquashfs", "-no-progress", "-quiet", "-d", out, image)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("unsquashfs: %v\n%s", err, b)
			}
			// unsquashfs 4.5.1 writes the root with its own mode and cannot
			// restore a hard link between two names of a symlink.
			opts := tc.cmp
			opts.IgnoreRootMeta = true
			d := testtree.CompareWith(src, out, opts)
			d = dropSymlinkHardlinkQuirk(d)
			if len(d) > 0 {
				report(t, "unsquashfs", d)
			}
		})
	}
}

// dropSymlinkHardlinkQuirk removes the differences unsquashfs 4.5.1 makes
// on purpose: it extracts hard-linked symlinks as separate symlinks.
func dropSymlinkHardlinkQuirk(ds []testtree.Diff) []testtree.Diff {
	var out []testtree.Diff
	for _, d := range ds {
		if strings.HasPrefix(d.Path, "hardlinks/symlink-") && (d.What == "nlink" || strings.Contains(d.What, "hard")) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func report(t *testing.T, what string, ds []testtree.Diff) {
	t.Helper()
	for i, d := range ds {
		if i == 20 {
			t.Errorf("%s: ... and %d more differences", what, len(ds)-20)
			return
		}
		t.Errorf("%s: %v", what, d)
	}
}

// TestHugeFile stores a sparse file over 4 GiB (extended inode, 64-bit
// size) and reads it back through the kernel.
func TestHugeFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 5<<30 + 12345
	marks := []int64{0, 1 << 30, 4<<30 - 3, 4<<30 + 1<<20, size - 5}
	for i, off := range marks {
		if _, err := f.WriteAt([]byte(fmt.Sprintf("mark%d", i)), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Truncate(size)
	f.Close()
	image := filepath.Join(t.TempDir(), "img.sqfs")
	st := writeImage(t, src, image, squash.WriterOptions{Codec: cfg(codec.LZ4, 1<<20, codec.Options{})}, sourcetree.Options{})
	if fi, _ := os.Stat(image); fi.Size() > 1<<20 {
		t.Errorf("a 5 GiB sparse file took %d bytes: holes not stored as holes", fi.Size())
	}
	t.Logf("%+v", st)
	mnt := t.TempDir()
	privileged.MountSquashfs(t, image, mnt)
	g, err := os.Open(filepath.Join(mnt, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fi, _ := g.Stat()
	if fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
	for i, off := range marks {
		want := []byte(fmt.Sprintf("mark%d", i))
		got := make([]byte, len(want)+2)
		n, _ := g.ReadAt(got, off-1)
		if off == 0 {
			n, _ = g.ReadAt(got[1:], 0)
			n++
		}
		if n < len(want)+1 || !bytes.Equal(got[1:1+len(want)], want) {
			t.Errorf("at %d: read %q, want %q", off, got[:n], want)
		}
	}
}

// TestReproducible writes the same tree twice with different worker counts,
// and a copy of it created in the opposite order: all images must be
// identical byte for byte.
func TestReproducible(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	mkTree(t, a, false)
	mkTree(t, b, true)
	img := func(src string, workers int) []byte {
		p := filepath.Join(t.TempDir(), "img.sqfs")
		writeImage(t, src, p, squash.WriterOptions{Workers: workers, MkfsTime: 1234567}, sourcetree.Options{})
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	ref := img(a, 1)
	for _, c := range []struct {
		src     string
		workers int
	}{{a, 1}, {a, 2}, {a, 7}, {b, 1}, {b, 3}} {
		if got := img(c.src, c.workers); !bytes.Equal(got, ref) {
			t.Errorf("image of %s with %d workers differs from the first", filepath.Base(c.src), c.workers)
		}
	}
}

// mkTree creates a tree with duplicates, fragments, multi-block files and
// hard links, in sorted order or in reverse, so that directory listing
// order differs between the two.
func mkTree(t *testing.T, dir string, reverse bool) {
	t.Helper()
	type ent struct {
		name string
		size int
		link string
	}
	var ents []ent
	for i := range 400 {
		ents = append(ents, ent{name: fmt.Sprintf("d%02d/f%03d", i%13, i), size: (i * 7919) % 300000})
	}
	ents = append(ents, ent{name: "d00/dup1", size: 200000}, ent{name: "d01/dup2", size: 200000}, ent{name: "d02/hl", link: "d00/f000"})
	order := make([]int, len(ents))
	for i := range order {
		order[i] = i
		if reverse {
			order[i] = len(ents) - 1 - i
		}
	}
	for _, i := range order {
		e := ents[i]
		p := filepath.Join(dir, e.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if e.link != "" {
			continue
		}
		data := make([]byte, e.size)
		for j := range data {
			data[j] = byte((j*31 + e.size) % 251)
			if j%1000 < 300 {
				data[j] = byte(j)
			}
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range ents {
		if e.link != "" {
			if err := os.Link(filepath.Join(dir, e.link), filepath.Join(dir, e.name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Same times everywhere, whatever the creation order did to them.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			unix.Lutimes(p, []unix.Timeval{{Sec: 1e9}, {Sec: 1e9}})
		}
		return nil
	})
}
