package mksquashfs

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

// copyFile copies an image so that two tools can append to the same one.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	mustDo(t, err)
	mustDo(t, os.WriteFile(to, b, 0o644))
}

// TestAppendAgainstMksquashfs appends to an image as Debian's mksquashfs
// does, both tools starting from the same image (written by mksquashfs,
// or by us), and compares the listings and contents; our result is read
// back through the kernel too.
func TestAppendAgainstMksquashfs(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs", "diff"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed", tool)
		}
	}
	src := buildSource(t)
	mustDo(t, unix.Setxattr(filepath.Join(src, "dir/b.gz"), "user.origin", []byte("base"), 0))
	other := filepath.Join(filepath.Dir(src), "other")
	for name, data := range map[string]string{
		"alpha":         "clashes with the image's alpha\n",
		"alpha_1":       "takes the first free name before the renamed alpha does\n",
		"dir/o":         "other",
		"new/deep/file": strings.Repeat("new data ", 40_000),
		"dup-of-keep":   strings.Repeat("keep me ", 1000), // the image's dir/sub/keep.txt
	} {
		p := filepath.Join(other, name)
		mustDo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustDo(t, os.WriteFile(p, []byte(data), 0o644))
	}
	mustDo(t, os.Chtimes(other, time.Unix(2000000, 0), time.Unix(2000000, 0)))

	fixed := []string{"-all-time", "1000000", "-mkfs-time", "1000000"}
	tests := []struct {
		name     string
		baseOpts []string
		sources  []string
		opts     []string
	}{
		{"one source joins the root", nil, []string{other}, fixed},
		{"the same tree again, as a directory", nil, []string{src}, append([]string{"-keep-as-directory"}, fixed...)},
		{"old root becomes a directory", nil, []string{other}, append([]string{"-root-becomes", "previous"}, fixed...)},
		{"several sources", nil, []string{other, filepath.Join(src, "dir")}, append([]string{"-root-time", "3000000"}, fixed...)},
		{"the image's layout is kept", []string{"-comp", "xz", "-b", "64K", "-no-fragments", "-no-exports"},
			[]string{other}, append([]string{"-comp", "gzip", "-b", "1M", "-always-use-fragments"}, fixed...)},
		{"uncompressed image", []string{"-noI", "-noD", "-noF", "-noX", "-always-use-fragments"}, []string{other}, fixed},
	}
	for _, base := range []string{"mksquashfs", "ours"} {
		for _, tc := range tests {
			t.Run(base+"/"+tc.name, func(t *testing.T) {
				tmp := t.TempDir()
				orig, ours, ref := filepath.Join(tmp, "orig.img"), filepath.Join(tmp, "ours.img"), filepath.Join(tmp, "ref.img")
				baseArgs := append([]string{src, orig, "-noappend", "-quiet", "-no-progress", "-mkfs-time", "500"}, tc.baseOpts...)
				if base == "ours" {
					var stderr bytes.Buffer
					if code := Main(baseArgs, &stderr, &stderr); code != 0 {
						t.Fatalf("base: %d %s", code, &stderr)
					}
				} else if out, err := exec.Command("mksquashfs", baseArgs...).CombinedOutput(); err != nil {
					t.Fatalf("base: %v\n%s", err, out)
				}
				copyFile(t, orig, ours)
				copyFile(t, orig, ref)
				common := append([]string{"-no-progress"}, tc.opts...)
				refArgs := append(append(append([]string{}, tc.sources...), ref), common...)
				if out, err := exec.Command("mksquashfs", refArgs...).CombinedOutput(); err != nil {
					t.Fatalf("mksquashfs: %v\n%s", err, out)
				}
				var stdout, stderr bytes.Buffer
				args := append(append(append([]string{}, tc.sources...), ours), common...)
				if code := Main(args, &stdout, &stderr); code != 0 {
					t.Fatalf("Main(%q) = %d\n%s%s", args, code, &stdout, &stderr)
				}
				if got, want := listing(t, ours), listing(t, ref); got != want {
					t.Errorf("listing differs from mksquashfs\nours:\n%s\nmksquashfs:\n%s", got, want)
				}
				want := extract(t, ref)
				if out, err := exec.Command("diff", "-r", "--no-dereference", extract(t, ours), want).CombinedOutput(); err != nil && !onlyAlikeSpecials(string(out)) {
					t.Errorf("contents differ from mksquashfs: %v\n%s", err, out)
				}
				mnt := filepath.Join(tmp, "mnt")
				mustDo(t, os.Mkdir(mnt, 0o755))
				privileged.MountSquashfs(t, ours, mnt)
				if out, err := exec.Command("diff", "-r", "--no-dereference", mnt, want).CombinedOutput(); err != nil && !onlyAlikeSpecials(string(out)) {
					t.Errorf("through the kernel, contents differ from mksquashfs's: %v\n%s", err, out)
				}

				r, err := squash.OpenFile(ours)
				mustDo(t, err)
				defer r.Close()
				o, err := squash.OpenFile(orig)
				mustDo(t, err)
				defer o.Close()
				if got, want := r.Codec(), o.Codec(); got.ID != want.ID || got.BlockSize != want.BlockSize {
					t.Errorf("appended image is %s with %d-byte blocks, the image was %s with %d", got.ID, got.BlockSize, want.ID, want.BlockSize)
				}
				keep := squash.FlagNoFragments | squash.FlagAlwaysFragments | squash.FlagExportable | squash.FlagUncompressedData | squash.FlagUncompressedInodes
				if got, want := r.Superblock().Flags&uint16(keep), o.Superblock().Flags&uint16(keep); got != want {
					t.Errorf("flags %#x, the image had %#x", got, want)
				}
				xattrPath := "dir/b.gz"
				if tc.name == "old root becomes a directory" {
					xattrPath = "previous/dir/b.gz"
				}
				fi, err := r.Lstat(xattrPath)
				mustDo(t, err)
				xs, err := r.Xattrs(fi.Sys().(*squash.Inode))
				mustDo(t, err)
				if len(xs) != 1 || xs[0].Name != "user.origin" || string(xs[0].Value) != "base" {
					t.Errorf("%s's xattrs: %v", xattrPath, xs)
				}
			})
		}
	}
}

// TestAppendFindsDuplicates: the sources' files that repeat the image's
// take no room again, as when mksquashfs appends a tree's next version
// beside the last.
func TestAppendFindsDuplicates(t *testing.T) {
	src := buildSource(t)
	img := filepath.Join(t.TempDir(), "img")
	var out, errb bytes.Buffer
	if code := Main([]string{src, img, "-quiet"}, &out, &errb); code != 0 {
		t.Fatalf("base: %d %s", code, &errb)
	}
	before, err := os.Stat(img)
	mustDo(t, err)
	if code := Main([]string{src, img, "-keep-as-directory", "-no-progress"}, &out, &errb); code != 0 {
		t.Fatalf("append: %d %s", code, &errb)
	}
	// Every non-empty file of the source, but for one name of the hard
	// link, and dup2 which is a duplicate within the sources already.
	m := regexp.MustCompile(`Number of duplicate files found (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no duplicate count in:\n%s", &out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 9 {
		t.Errorf("%d duplicates found, want at least 9 (every file of the source again)\n%s", n, &out)
	}
	after, err := os.Stat(img)
	mustDo(t, err)
	// The data is there once; the second tree costs its metadata only.
	if grown := after.Size() - before.Size(); grown > 8192 {
		t.Errorf("the image grew by %d bytes for a second copy of its tree", grown)
	}
}

// TestAppendLeavesImageOnFailure: an append that fails or is interrupted
// leaves DEST as it was, and nothing beside it.
func TestAppendLeavesImageOnFailure(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	incompressible(t, src, 48)
	imgDir := filepath.Join(dir, "images")
	mustDo(t, os.Mkdir(imgDir, 0o755))
	img := filepath.Join(imgDir, "img")
	var out, errb bytes.Buffer
	if code := Main([]string{src, img, "-quiet", "-comp", "xz", "-e", "f01", "f02", "f03"}, &out, &errb); code != 0 {
		t.Fatalf("base: %d %s", code, &errb)
	}
	mustDo(t, os.Chmod(img, 0o640))
	orig, err := os.ReadFile(img)
	mustDo(t, err)
	unchanged := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(img); err != nil || !bytes.Equal(b, orig) {
			t.Errorf("%s: the image changed (%v)", what, err)
		}
		ents, err := os.ReadDir(imgDir)
		mustDo(t, err)
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s: left beside the image: %q", what, names)
		}
	}

	// Interrupted: a SIGINT while the new image is written.
	stderr := interrupt(t, []string{src, img, "-keep-as-directory", "-no-duplicates", "-processors", "1"}, func() bool {
		ents, _ := os.ReadDir(imgDir)
		return len(ents) > 1
	})
	if !strings.Contains(stderr, "is as it was") {
		t.Errorf("nothing said: %q", stderr)
	}
	unchanged("interrupted")

	// Failed: a source file that grows while it is read.
	errb.Reset()
	if code := Main([]string{"/proc/self/status", img, "-quiet"}, &out, &errb); code == 0 {
		t.Errorf("appending a growing file succeeded")
	}
	unchanged("failed")

	// Refused: -root-becomes with nothing to append to, an image whose
	// compressor is not written here.
	errb.Reset()
	if code := Main([]string{src, filepath.Join(dir, "none"), "-root-becomes", "x"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "-root-becomes applies") {
		t.Errorf("-root-becomes without an image: %d %s", code, &errb)
	}
	// An lzma image (squashfs 4.0 images before xz; no tool here writes
	// one): its superblock says lzma.
	lzma := filepath.Join(dir, "lzma.img")
	b := bytes.Clone(orig)
	binary.LittleEndian.PutUint16(b[20:], 2)
	mustDo(t, os.WriteFile(lzma, b, 0o644))
	errb.Reset()
	if code := Main([]string{src, lzma, "-quiet"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "lzma") {
		t.Errorf("appending to an lzma image: %d %s", code, &errb)
	}
	if got, _ := os.ReadFile(lzma); !bytes.Equal(got, b) {
		t.Errorf("the lzma image changed")
	}
	// An lzo image (Debian's mksquashfs, lzo1x_999) takes our lzo blocks.
	lzo := filepath.Join(dir, "lzo.img")
	if out, err := exec.Command("mksquashfs", src, lzo, "-comp", "lzo", "-quiet", "-no-progress", "-e", "f01").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs -comp lzo: %v\n%s", err, out)
	}
	errb.Reset()
	if code := Main([]string{src, lzo, "-quiet", "-keep-as-directory"}, &out, &errb); code != 0 {
		t.Errorf("appending to an lzo image: %d %s", code, &errb)
	}
	if l := listing(t, lzo); !strings.Contains(l, "R/src/f01") || !strings.Contains(l, "R/f00") {
		t.Errorf("the appended lzo image lists:\n%s", l)
	}
	extract(t, lzo) // Debian's unsquashfs decodes every block

	// Done: the permissions stay, and the result is the old image plus
	// the sources.
	errb.Reset()
	if code := Main([]string{src, img, "-keep-as-directory", "-quiet"}, &out, &errb); code != 0 {
		t.Fatalf("append: %d %s", code, &errb)
	}
	if fi, err := os.Stat(img); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("appended image's mode: %v %v, want 0640", fi.Mode(), err)
	}
	r, err := squash.OpenFile(img)
	mustDo(t, err)
	defer r.Close()
	if r.Codec().ID != codec.XZ {
		t.Errorf("compressor %s, want xz", r.Codec().ID)
	}
	for _, name := range []string{"f00", "src/f00", "src/f02"} {
		if _, err := r.Stat(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := r.Stat("f02"); err == nil {
		t.Errorf("f02 is in the root, but was excluded from the image")
	}
}

// TestMountedImageRefused: an image that a loop device serves (mounted)
// is neither written in place (-noappend) nor replaced (an append), and is
// appended to again once it is unmounted.
func TestMountedImageRefused(t *testing.T) {
	src := buildSource(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	var out, errb bytes.Buffer
	if code := Main([]string{src, img, "-quiet"}, &out, &errb); code != 0 {
		t.Fatalf("base: %d %s", code, &errb)
	}
	orig, err := os.ReadFile(img)
	mustDo(t, err)
	mnt := filepath.Join(dir, "mnt")
	mustDo(t, os.Mkdir(mnt, 0o755))
	m := privileged.MountSquashfs(t, img, mnt)
	for _, opts := range [][]string{{"-noappend"}, nil} {
		errb.Reset()
		args := append([]string{src, img, "-quiet"}, opts...)
		if code := Main(args, &out, &errb); code == 0 || !strings.Contains(errb.String(), "unmount it first") {
			t.Errorf("Main(%q) on a mounted image = %d: %s", args, code, &errb)
		}
		if b, _ := os.ReadFile(img); !bytes.Equal(b, orig) {
			t.Errorf("Main(%q): the mounted image changed", args)
		}
	}
	mustDo(t, m.Unmount())
	for i := 0; len(loopdev.Serving(img)) > 0; i++ {
		if i == 200 {
			t.Fatal("the loop device still serves the image 2 s after the unmount")
		}
		time.Sleep(10 * time.Millisecond)
	}
	errb.Reset()
	if code := Main([]string{src, img, "-quiet", "-keep-as-directory"}, &out, &errb); code != 0 {
		t.Errorf("append once unmounted = %d: %s", code, &errb)
	}
}

// TestAppendOnFullDisk: an append that runs out of room (a small tmpfs)
// fails saying so, and leaves DEST as it was and nothing beside it.
func TestAppendOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	mountFS(t, "tmpfs", dir, "tmpfs", 0)
	small := filepath.Join(t.TempDir(), "small")
	mustDo(t, os.MkdirAll(filepath.Join(small, "d"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(small, "d/f"), []byte("small"), 0o644))
	big := filepath.Join(t.TempDir(), "big")
	mustDo(t, os.Mkdir(big, 0o755))
	random := make([]byte, 6<<20)
	rand.Read(random)
	mustDo(t, os.WriteFile(filepath.Join(big, "random"), random, 0o644))
	// Room for the image, not for the image and its appended copy.
	mustDo(t, unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT, "size=4m"))
	img := filepath.Join(dir, "img")
	var out, errb bytes.Buffer
	if code := Main([]string{small, img, "-quiet"}, &out, &errb); code != 0 {
		t.Fatalf("base: %d %s", code, &errb)
	}
	orig, err := os.ReadFile(img)
	mustDo(t, err)
	errb.Reset()
	if code := Main([]string{big, img, "-quiet", "-no-duplicates"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "no space left") {
		t.Errorf("append of 6 MiB into 4 MiB = %d: %s", code, &errb)
	}
	if b, err := os.ReadFile(img); err != nil || !bytes.Equal(b, orig) {
		t.Errorf("the image changed (%v): %d bytes, was %d; %s", err, len(b), len(orig), &errb)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the tmpfs, want the image alone", len(ents))
	}
}
