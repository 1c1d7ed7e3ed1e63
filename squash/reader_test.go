package squash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/cirequire"
)

func needMksquashfs(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
}

func isRoot() bool { return os.Geteuid() == 0 }

// buildImage runs mksquashfs over src and returns the image path.
func buildImage(t testing.TB, src string, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img.sqfs")
	cmd := exec.Command("mksquashfs", append([]string{src, img, "-noappend", "-quiet", "-no-progress"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs %v: %v\n%s", args, err, out)
	}
	return img
}

func openImage(t testing.TB, img string) *ReadCloser {
	t.Helper()
	rc, err := OpenFile(img)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// treeBuilder makes source trees; with root privileges it adds devices,
// ownership and trusted xattrs.
type treeBuilder struct {
	t      testing.TB
	dir    string
	rnd    *rand.Rand
	xattrs bool
}

func (b *treeBuilder) path(name string) string { return filepath.Join(b.dir, name) }

func (b *treeBuilder) mkdir(name string, perm os.FileMode) {
	b.t.Helper()
	if err := os.MkdirAll(b.path(name), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Chmod(b.path(name), perm); err != nil {
		b.t.Fatal(err)
	}
}

func (b *treeBuilder) file(name string, data []byte, perm os.FileMode) {
	b.t.Helper()
	if err := os.WriteFile(b.path(name), data, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Chmod(b.path(name), perm); err != nil {
		b.t.Fatal(err)
	}
}

func (b *treeBuilder) randBytes(n int, compressible bool) []byte {
	p := make([]byte, n)
	if compressible {
		words := []string{"DEPEND=", "dev-lang/go ", "SRC_URI ", "inherit ", "KEYWORDS=\"~amd64\"\n", "EAPI=8\n"}
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[b.rnd.Intn(len(words))])
		}
		copy(p, buf.Bytes())
		return p
	}
	b.rnd.Read(p)
	return p
}

func (b *treeBuilder) setXattr(name, key, val string) {
	b.t.Helper()
	if !b.xattrs {
		return
	}
	if err := unix.Lsetxattr(b.path(name), key, []byte(val), 0); err != nil {
		b.t.Fatalf("setxattr %s %s: %v", name, key, err)
	}
}

func (b *treeBuilder) chown(name string, uid, gid int) {
	b.t.Helper()
	if !isRoot() {
		return
	}
	if err := os.Lchown(b.path(name), uid, gid); err != nil {
		b.t.Fatal(err)
	}
}

// buildFullTree creates a tree exercising every inode type and layout the
// reader must handle.
func buildFullTree(t testing.TB, big bool) string {
	t.Helper()
	dir := t.TempDir()
	b := &treeBuilder{t: t, dir: dir, rnd: rand.New(rand.NewSource(1))}
	if err := unix.Lsetxattr(dir, "user.probe", []byte("x"), 0); err == nil {
		b.xattrs = true
		unix.Lremovexattr(dir, "user.probe")
	} else {
		cirequire.Unavailable(t, "no user xattrs on %s (%v): the tree has none", dir, err)
	}
	if !isRoot() {
		cirequire.Unavailable(t, "not root: the tree has no owners, device nodes or trusted xattrs")
	}
	const bs = 128 << 10
	b.mkdir("files", 0o755)
	b.file("files/empty", nil, 0o644)
	b.file("files/one", []byte("x"), 0o600)
	b.file("files/small.txt", b.randBytes(1000, true), 0o644)
	b.file("files/block4k", b.randBytes(4096, false), 0o644)
	b.file("files/block4k+1", b.randBytes(4097, true), 0o644)
	b.file("files/exact_block", b.randBytes(bs, true), 0o644)
	b.file("files/block_plus1", b.randBytes(bs+1, false), 0o644)
	b.file("files/random300k", b.randBytes(300<<10, false), 0o644)
	if big {
		mixed := append(b.randBytes(1<<20, false), b.randBytes(2<<20+123, true)...)
		b.file("files/multi_mb", mixed, 0o644)
	}
	// Sparse: holes of whole blocks in the middle and at the end.
	f, err := os.Create(b.path("files/sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 5*bs+17)
	f.Truncate(9*bs + 100)
	f.Close()
	b.file("files/zeros", make([]byte, 2*bs+5), 0o644)
	b.file("files/setuid", []byte("#!/bin/sh\n"), 0o4755|os.ModeSetuid)
	os.Chmod(b.path("files/setuid"), 0o755|os.ModeSetuid)
	b.file("files/setgid", []byte("g"), 0o755)
	os.Chmod(b.path("files/setgid"), 0o750|os.ModeSetgid)
	b.mkdir("sticky", 0o777)
	os.Chmod(b.path("sticky"), 0o777|os.ModeSticky)
	b.file("sticky/inside", []byte("s"), 0o644)

	// Hard links, including one across directories.
	b.file("files/linked", []byte("shared contents\n"), 0o644)
	for _, n := range []string{"files/linked2", "sticky/linked3"} {
		if err := os.Link(b.path("files/linked"), b.path(n)); err != nil {
			t.Fatal(err)
		}
	}

	b.mkdir("links", 0o755)
	for name, target := range map[string]string{
		"rel":      "../files/small.txt",
		"abs":      "/files/one",
		"dangling": "does/not/exist",
		"dir":      "../files",
		"self":     "self",
		"long":     strings.Repeat("abcdefgh/", 100) + "end",
	} {
		if err := os.Symlink(target, b.path("links/"+name)); err != nil {
			t.Fatal(err)
		}
	}

	b.mkdir("special", 0o755)
	if isRoot() {
		if err := unix.Mknod(b.path("special/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(b.path("special/blk"), unix.S_IFBLK|0o640, int(unix.Mkdev(259, 70000))); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(b.path("special/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := net.ListenUnix("unix", &net.UnixAddr{Name: b.path("special/sock"), Net: "unix"}); err == nil {
		l.SetUnlinkOnClose(false)
		l.Close()
	}

	b.mkdir("empty_dir", 0o700)
	b.mkdir("deep/a/b/c/d/e", 0o755)
	b.file("deep/a/b/c/d/e/leaf", []byte("leaf"), 0o644)
	b.file("files/"+strings.Repeat("n", 255), []byte("long name"), 0o644)
	b.file("files/ünïcödé name", []byte("u"), 0o644)

	b.mkdir("many", 0o755)
	n := 300
	if big {
		n = 3000
	}
	for i := 0; i < n; i++ {
		var data []byte
		if i%3 != 0 {
			data = b.randBytes(i%700, true)
		}
		b.file(fmt.Sprintf("many/entry-%05d-%s", i, strings.Repeat("x", i%40)), data, 0o644)
	}

	b.setXattr("files/small.txt", "user.comment", "hello")
	b.setXattr("files/small.txt", "user.mime_type", "text/plain")
	b.setXattr("files/one", "user.big", strings.Repeat("v", 3000))
	b.setXattr("files/block4k", "user.comment", "hello") // shared value: out-of-line candidate
	// Repeated values are stored once, the others refer to them out of line.
	for _, n := range []string{"files/block4k+1", "files/exact_block", "files/empty"} {
		b.setXattr(n, "user.same", "a value shared by several files")
	}
	b.setXattr("empty_dir", "user.dir", "d")
	if isRoot() && b.xattrs {
		b.setXattr("files/one", "trusted.secret", "t")
		b.setXattr("special/fifo", "trusted.x", "y")
		b.setXattr("links/rel", "trusted.on_link", "l") // user.* is not allowed on symlinks
	}

	b.chown("files/one", 1000, 1000)
	b.chown("files/small.txt", 1001, 2002)
	b.chown("links/rel", 4242, 4343)
	b.chown("empty_dir", 65534, 65534)
	b.chown("special/fifo", 123456, 7)
	if isRoot() {
		b.chown("special/null", 5, 6)
	}

	// Distinct mtimes, set last since creating entries touches directories.
	i := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ts := time.Unix(1_500_000_000+int64(i)*3677, 0)
		i++
		tv := []unix.Timeval{unix.NsecToTimeval(ts.UnixNano()), unix.NsecToTimeval(ts.UnixNano())}
		if err := unix.Lutimes(p, tv); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	return dir
}

type srcInfo struct {
	st     unix.Stat_t
	target string
	xattrs []Xattr
}

func lstatSource(t testing.TB, p string, withXattrs bool) srcInfo {
	t.Helper()
	var s srcInfo
	if err := unix.Lstat(p, &s.st); err != nil {
		t.Fatal(err)
	}
	if s.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		var err error
		if s.target, err = os.Readlink(p); err != nil {
			t.Fatal(err)
		}
	}
	if withXattrs {
		buf := make([]byte, 64<<10)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name == "" || !(strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")) {
				continue
			}
			v := make([]byte, 64<<10)
			m, err := unix.Lgetxattr(p, name, v)
			if err != nil {
				t.Fatal(err)
			}
			s.xattrs = append(s.xattrs, Xattr{Name: name, Value: v[:m]})
		}
		sort.Slice(s.xattrs, func(i, j int) bool { return s.xattrs[i].Name < s.xattrs[j].Name })
	}
	return s
}

type compareOpts struct {
	xattrs    bool // compare xattrs
	skipRoot  bool // do not compare the root's attributes (unsquashfs -d)
	skipOwner bool
}

// compareWithSource checks that every entry of src is in r with equal
// attributes and contents, and that r holds nothing else.
func compareWithSource(t *testing.T, r *Reader, src string, o compareOpts) {
	t.Helper()
	links := map[uint64]uint32{} // source inode -> image inode number
	numbers := map[uint32]uint64{}
	seen := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		seen++
		s := lstatSource(t, p, o.xattrs)
		fi, err := r.Lstat(rel)
		if err != nil {
			t.Errorf("%s: Lstat: %v", rel, err)
			return nil
		}
		ino := fi.Sys().(*Inode)
		wantType := modeType(typeOf(fileModeFromUnix(s.st.Mode)))
		if fi.Mode().Type() != wantType {
			t.Errorf("%s: type %v, want %v", rel, fi.Mode().Type(), wantType)
			return nil
		}
		if rel == "." && o.skipRoot {
			return nil
		}
		if got, want := unixPerm(fi.Mode()), uint16(s.st.Mode&0o7777); got != want {
			t.Errorf("%s: perm %o, want %o", rel, got, want)
		}
		if !o.skipOwner && (ino.UID != s.st.Uid || ino.GID != s.st.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, ino.UID, ino.GID, s.st.Uid, s.st.Gid)
		}
		if fi.ModTime().Unix() != s.st.Mtim.Sec {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime().Unix(), s.st.Mtim.Sec)
		}
		if ino.Nlink != uint32(s.st.Nlink) {
			t.Errorf("%s: nlink %d, want %d", rel, ino.Nlink, s.st.Nlink)
		}
		if !d.IsDir() {
			if n, ok := links[s.st.Ino]; ok {
				if n != ino.Number {
					t.Errorf("%s: hard link has inode %d, want %d", rel, ino.Number, n)
				}
			} else {
				if _, dup := numbers[ino.Number]; dup {
					t.Errorf("%s: inode number %d reused by a different file", rel, ino.Number)
				}
				links[s.st.Ino] = ino.Number
				numbers[ino.Number] = s.st.Ino
			}
		}
		if o.xattrs {
			xs, err := r.Xattrs(ino)
			if err != nil {
				t.Errorf("%s: Xattrs: %v", rel, err)
			}
			sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
			if fmt.Sprint(xs) != fmt.Sprint(s.xattrs) {
				t.Errorf("%s: xattrs %q, want %q", rel, xs, s.xattrs)
			}
		}
		switch s.st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadFile(rel)
			if err != nil {
				t.Errorf("%s: ReadFile: %v", rel, err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s: contents differ (%d bytes, want %d)", rel, len(got), len(want))
			}
			if fi.Size() != int64(len(want)) {
				t.Errorf("%s: size %d, want %d", rel, fi.Size(), len(want))
			}
		case unix.S_IFLNK:
			got, err := r.ReadLink(rel)
			if err != nil || got != s.target {
				t.Errorf("%s: ReadLink = %q, %v; want %q", rel, got, err, s.target)
			}
			if fi.Size() != int64(len(s.target)) {
				t.Errorf("%s: symlink size %d, want %d", rel, fi.Size(), len(s.target))
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			maj, mnr := DecodeDev(ino.Rdev)
			if maj != unix.Major(s.st.Rdev) || mnr != unix.Minor(s.st.Rdev) {
				t.Errorf("%s: rdev %d:%d, want %d:%d", rel, maj, mnr, unix.Major(s.st.Rdev), unix.Minor(s.st.Rdev))
			}
		case unix.S_IFDIR:
			ents, err := os.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadDir(rel)
			if err != nil {
				t.Errorf("%s: ReadDir: %v", rel, err)
				return nil
			}
			var gn, wn []string
			for _, e := range got {
				gn = append(gn, e.Name())
			}
			for _, e := range ents {
				wn = append(wn, e.Name())
			}
			if strings.Join(gn, "/") != strings.Join(wn, "/") {
				t.Errorf("%s: ReadDir names differ: %d vs %d entries", rel, len(gn), len(wn))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := fs.WalkDir(r, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		return nil
	}); err != nil {
		t.Fatalf("fs.WalkDir over image: %v", err)
	}
	if n != seen {
		t.Errorf("image holds %d entries, source %d", n, seen)
	}
}

func fileModeFromUnix(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	}
	return 0
}

func TestReadMksquashfs(t *testing.T) {
	needMksquashfs(t)
	src := buildFullTree(t, !testing.Short())
	xattrs := xattrsSupported(src)
	cases := []struct {
		name   string
		args   []string
		noXatt bool
	}{
		{"gzip", nil, false},
		{"gzip-uncompressed", []string{"-noI", "-noD", "-noF", "-noX"}, false},
		{"gzip-no-fragments", []string{"-no-fragments"}, false},
		{"gzip-always-fragments", []string{"-always-use-fragments"}, false},
		{"gzip-b4096", []string{"-b", "4096"}, false},
		{"gzip-b1M", []string{"-b", "1M"}, false},
		{"gzip-no-xattrs", []string{"-no-xattrs"}, true},
		{"gzip-exports", []string{"-exports"}, false},
		{"gzip-no-exports", []string{"-no-exports"}, false},
		{"gzip-options", []string{"-Xcompression-level", "1", "-Xwindow-size", "10"}, false},
		{"gzip-no-duplicates", []string{"-no-duplicates"}, false},
		{"xz", []string{"-comp", "xz"}, false},
		{"xz-bcj", []string{"-comp", "xz", "-Xbcj", "x86", "-Xdict-size", "50%"}, false},
		{"lz4", []string{"-comp", "lz4"}, false},
		{"lz4-hc", []string{"-comp", "lz4", "-Xhc"}, false},
		{"zstd", []string{"-comp", "zstd"}, false},
		{"zstd-19", []string{"-comp", "zstd", "-Xcompression-level", "19", "-b", "256K"}, false},
		{"lzo", []string{"-comp", "lzo"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, src, tc.args...)
			rc, err := OpenFile(img)
			if err != nil && strings.Contains(err.Error(), "not supported") {
				t.Fatalf("codec: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			compareWithSource(t, rc.Reader, src, compareOpts{xattrs: xattrs && !tc.noXatt})
			var done, total int64
			if err := rc.Verify(context.Background(), func(d, t int64) { done, total = d, t }); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if done != total || total != int64(rc.Superblock().Inodes) {
				t.Errorf("Verify progress ended at %d/%d, want %d", done, total, rc.Superblock().Inodes)
			}
			for _, n := range []int{1, 8} { // one walker, and more than directories at times
				if err := rc.VerifyWith(context.Background(), VerifyOptions{Workers: n}); err != nil {
					t.Errorf("Verify with %d workers: %v", n, err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := rc.Verify(ctx, nil); !errors.Is(err, context.Canceled) {
				t.Errorf("Verify with a cancelled context = %v", err)
			}
			checkSpecifics(t, rc.Reader)
			checkInodes(t, rc.Reader)
		})
	}
}

// checkInodes: Inodes yields every inode once, each at the reference
// that reads it back.
func checkInodes(t *testing.T, r *Reader) {
	t.Helper()
	seen := make(map[uint32]bool)
	err := r.Inodes(func(ino *Inode) error {
		if seen[ino.Number] {
			return fmt.Errorf("inode %d twice", ino.Number)
		}
		seen[ino.Number] = true
		back, err := r.InodeAt(ino.Ref)
		if err != nil {
			return err
		}
		if back.Number != ino.Number || back.Size != ino.Size || back.Type != ino.Type {
			return fmt.Errorf("inode %d at %#x reads back as %d", ino.Number, ino.Ref, back.Number)
		}
		return nil
	})
	if err != nil {
		t.Errorf("Inodes: %v", err)
	}
	if len(seen) != int(r.Superblock().Inodes) {
		t.Errorf("Inodes: %d inodes, the superblock says %d", len(seen), r.Superblock().Inodes)
	}
}

func xattrsSupported(dir string) bool {
	return unix.Lsetxattr(dir, "user.probe2", []byte("x"), 0) == nil && unix.Lremovexattr(dir, "user.probe2") == nil
}

// checkSpecifics tests API behaviour beyond plain read-back.
func checkSpecifics(t *testing.T, r *Reader) {
	t.Helper()
	// Symlink following: relative, absolute, through a directory link.
	for name, want := range map[string]string{
		"links/rel":     "files/small.txt",
		"links/abs":     "files/one",
		"links/dir/one": "files/one",
	} {
		a, err := r.ReadFile(name)
		if err != nil {
			t.Errorf("ReadFile(%s): %v", name, err)
			continue
		}
		b, _ := r.ReadFile(want)
		if !bytes.Equal(a, b) {
			t.Errorf("ReadFile(%s) differs from %s", name, want)
		}
		fi, err := r.Stat(name)
		if err != nil || fi.Mode().Type() == fs.ModeSymlink {
			t.Errorf("Stat(%s) = %v, %v", name, fi, err)
		}
	}
	if _, err := r.Stat("links/self"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("Stat(links/self) = %v, want a loop error", err)
	}
	if _, err := r.Stat("links/dangling"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(links/dangling) = %v, want ErrNotExist", err)
	}
	if _, err := r.Open("files/one/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open through a file = %v, want ErrNotExist", err)
	}
	if _, err := r.Open("/files"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Open(/files) = %v, want ErrInvalid", err)
	}
	ents, err := r.ReadDir("links/dir")
	if err != nil || len(ents) == 0 {
		t.Errorf("ReadDir through symlink: %v", err)
	}

	// fs.File extras on a regular file.
	f, err := r.Open("files/random300k")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, _ := r.ReadFile("files/random300k")
	ra := f.(io.ReaderAt)
	buf := make([]byte, 1000)
	for _, off := range []int64{0, 1, 4095, 131071, 131072, len64(want) - 500} {
		n, err := ra.ReadAt(buf, off)
		end := min(off+1000, len64(want))
		if n != int(end-off) || !bytes.Equal(buf[:n], want[off:end]) || (end == len64(want) && err != io.EOF) {
			t.Errorf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	sk := f.(io.Seeker)
	if p, err := sk.Seek(-10, io.SeekEnd); err != nil || p != len64(want)-10 {
		t.Errorf("Seek = %d, %v", p, err)
	}
	rest, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(rest, want[len(want)-10:]) {
		t.Errorf("read after Seek: %v", err)
	}

	// Low-level API.
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	list, err := r.ReadDirInode(root)
	if err != nil || len(list) == 0 {
		t.Fatalf("ReadDirInode(root): %v", err)
	}
	if r.Superblock().ExportTable != NoTable {
		for _, e := range list {
			ref, err := r.ExportRef(e.Number)
			if err != nil || ref != e.Ref {
				t.Errorf("ExportRef(%d) = %#x, %v; want %#x", e.Number, ref, err, e.Ref)
			}
		}
	}
	fi, err := r.Stat("many")
	if err != nil {
		t.Fatal(err)
	}
	if ino := fi.Sys().(*Inode); len(ino.DirIndex) == 0 && fi.Size() > 8192 {
		t.Errorf("large directory has no index (size %d)", fi.Size())
	}
	// Indexed lookups, which bypass the parsed-listing cache.
	dir := fi.Sys().(*Inode)
	names, err := r.ReadDirInode(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range names {
		if i%7 != 0 && i != len(names)-1 {
			continue
		}
		got, err := r.lookupIndexed(dir, e.Name)
		if err != nil || got == nil || *got != e {
			t.Errorf("lookupIndexed(%q) = %v, %v", e.Name, got, err)
		}
		if got, err := r.lookupIndexed(dir, e.Name+"\x01"); err != nil || got != nil {
			t.Errorf("lookupIndexed(%q+1) = %v, %v; want not found", e.Name, got, err)
		}
	}
	for _, missing := range []string{"", "a", "entry-", "zzz"} {
		if got, err := r.lookupIndexed(dir, missing); err != nil || got != nil {
			t.Errorf("lookupIndexed(%q) = %v, %v; want not found", missing, got, err)
		}
	}
	fi, err = r.Stat("files/sparse")
	if err != nil {
		t.Fatal(err)
	}
	holes := 0
	for _, w := range fi.Sys().(*Inode).BlockSizes {
		if w == 0 {
			holes++
		}
	}
	if holes == 0 && r.Superblock().BlockSize <= 128<<10 {
		t.Errorf("sparse file has no holes in its block list")
	}
}

func len64(b []byte) int64 { return int64(len(b)) }

// TestFSConformance runs the standard library's io/fs checks.
func TestFSConformance(t *testing.T) {
	needMksquashfs(t)
	src := buildFullTree(t, false)
	// fstest opens every entry, so links that cannot resolve must go.
	for _, n := range []string{"dangling", "long", "self"} {
		if err := os.Remove(filepath.Join(src, "links", n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			rc := openImage(t, buildImage(t, src, "-comp", comp))
			if err := fstest.TestFS(rc.Reader, "files/small.txt", "links/rel", "many/entry-00001-x", "deep/a/b/c/d/e/leaf"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAgainstUnsquashfs compares the reader with unsquashfs's extraction of
// the same image.
func TestAgainstUnsquashfs(t *testing.T) {
	needMksquashfs(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Fatal("unsquashfs not installed")
	}
	src := buildFullTree(t, false)
	for _, args := range [][]string{{"-comp", "xz"}, {"-comp", "lz4", "-b", "4096"}} {
		t.Run(args[1], func(t *testing.T) {
			img := buildImage(t, src, args...)
			out := filepath.Join(t.TempDir(), "x")
			cmd := exec.Command("unsquashfs", "-no-progress", "-d", out, img)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("unsquashfs: %v\n%s", err, b)
			}
			rc := openImage(t, img)
			compareWithSource(t, rc.Reader, out, compareOpts{xattrs: xattrsSupported(out), skipRoot: true, skipOwner: !isRoot()})
		})
	}
}

func TestConcurrentReads(t *testing.T) {
	needMksquashfs(t)
	src := buildFullTree(t, false)
	rc := openImage(t, buildImage(t, src, "-b", "4096"))
	var paths []string
	want := map[string][]byte{}
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(src, p)
			paths = append(paths, rel)
			want[rel], _ = os.ReadFile(p)
		}
		return nil
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range paths {
				p := paths[(i*7+g*13)%len(paths)]
				got, err := rc.ReadFile(p)
				if err != nil || !bytes.Equal(got, want[p]) {
					t.Errorf("goroutine %d: %s: %v", g, p, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestVerifyReportsCorruption(t *testing.T) {
	needMksquashfs(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	os.WriteFile(filepath.Join(dir, "big"), data, 0o644)
	img := buildImage(t, dir, "-no-fragments")
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The file's data blocks start right after the superblock; damage the
	// second one.
	rc := openImage(t, img)
	fi, err := rc.Stat("big")
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*Inode)
	pos := ino.BlocksStart + uint64(BlockSize(ino.BlockSizes[0])) + 5
	raw[pos] ^= 0xff
	raw[pos+1] ^= 0xff
	r, err := NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Verify(context.Background(), nil)
	var de *DamageError
	if !errors.As(err, &de) || len(de.Faults) != 1 || de.Faults[0].Fragment || de.Faults[0].Index != 1 ||
		!slices.Equal(de.Paths(), []string{"/big"}) || !strings.Contains(err.Error(), "data block 1 at") || !IsCorrupt(err) {
		t.Fatalf("Verify = %v, want a data block 1 fault in /big", err)
	}
	t.Logf("Verify: %v", err)
	if _, err := r.ReadFile("big"); err == nil {
		t.Errorf("ReadFile of damaged file succeeded")
	}
}

// buildPortageLikeTree makes about files small files laid out like a Portage
// tree: category/package/{*.ebuild,Manifest,metadata.xml,files/*}.
func buildPortageLikeTree(tb testing.TB, files int) (string, int) {
	tb.Helper()
	dir := tb.TempDir()
	rnd := rand.New(rand.NewSource(2))
	b := &treeBuilder{t: tb, dir: dir, rnd: rnd}
	n := 0
	for c := 0; n < files; c++ {
		cat := fmt.Sprintf("cat-%02d", c)
		for p := 0; p < 60 && n < files; p++ {
			pkg := filepath.Join(cat, fmt.Sprintf("package-name-%03d", p))
			b.mkdir(filepath.Join(pkg, "files"), 0o755)
			for v := 0; v < 1+p%5; v++ {
				b.file(filepath.Join(pkg, fmt.Sprintf("package-name-%03d-1.%d.ebuild", p, v)), b.randBytes(500+rnd.Intn(4000), true), 0o644)
				n++
			}
			b.file(filepath.Join(pkg, "Manifest"), b.randBytes(200+rnd.Intn(800), false), 0o644)
			b.file(filepath.Join(pkg, "metadata.xml"), b.randBytes(300+rnd.Intn(500), true), 0o644)
			b.file(filepath.Join(pkg, "files", "fix.patch"), b.randBytes(100+rnd.Intn(20000), true), 0o644)
			n += 3
		}
	}
	return dir, n
}

// BenchmarkWalkReadAll walks a ~20k-file image and reads every file through
// the io/fs API, with a fresh Reader (cold caches) each iteration.
func BenchmarkWalkReadAll(b *testing.B) {
	needMksquashfs(b)
	src, nfiles := buildPortageLikeTree(b, 20000)
	for _, comp := range []string{"gzip", "xz", "zstd", "lz4"} {
		b.Run(comp, func(b *testing.B) {
			img := buildImage(b, src, "-comp", comp)
			var bytesRead int64
			for b.Loop() {
				rc, err := OpenFile(img)
				if err != nil {
					b.Fatal(err)
				}
				bytesRead = 0
				err = fs.WalkDir(rc, ".", func(p string, d fs.DirEntry, err error) error {
					if err != nil || !d.Type().IsRegular() {
						return err
					}
					data, err := rc.ReadFile(p)
					bytesRead += int64(len(data))
					return err
				})
				rc.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(bytesRead)
			b.ReportMetric(float64(nfiles)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}
