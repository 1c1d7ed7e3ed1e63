package mksquashfs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/squash"
)

// TestNewerOptions: options of mksquashfs 4.6 and 4.7 (Debian has 4.5.1,
// so the expectations are what 4.7.5 built from its source made of the
// same cases, by hand; sourcetree's TestModeSpec has its symbolic modes).
func TestNewerOptions(t *testing.T) {
	src := buildSource(t)
	mustDo(t, unix.Setxattr(filepath.Join(src, "alpha"), "user.keep", []byte("1"), 0))
	mustDo(t, unix.Setxattr(filepath.Join(src, "alpha"), "user.drop", []byte("2"), 0))
	mustDo(t, os.Chmod(src, 0o755))
	mustDo(t, unix.Chmod(filepath.Join(src, "zeta"), 0o4755)) // os.Chmod's 0o4000 is no set-uid bit
	tmp := t.TempDir()
	n := 0
	build := func(args ...string) (*squash.ReadCloser, string) {
		t.Helper()
		n++
		img := filepath.Join(tmp, strings.Repeat("i", n))
		var out, errb bytes.Buffer
		if code := Main(append([]string{src, img, "-quiet"}, args...), &out, &errb); code != 0 {
			t.Fatalf("mksquashfs %q = %d: %s", args, code, &errb)
		}
		r, err := squash.OpenFile(img)
		mustDo(t, err)
		t.Cleanup(func() { r.Close() })
		return r, img
	}
	inode := func(r *squash.ReadCloser, name string) *squash.Inode {
		t.Helper()
		fi, err := r.Lstat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return fi.Sys().(*squash.Inode)
	}
	perm := func(ino *squash.Inode) uint32 { return squash.UnixPerm(ino.Mode) }

	// Modes: the root's from its own mode, not -root-mode's.
	r, _ := build("-force-file-mode", "u+w,go-w", "-force-dir-mode", "g+s", "-root-mode", "0711")
	for name, want := range map[string]uint32{".": 0o2755, "dir": 0o2755, "zeta": 0o4755, "link": 0o755, "alpha": 0o644, "empty": 0o2700} {
		if got := perm(inode(r, name)); got != want {
			t.Errorf("forced modes: %s is %o, want %o", name, got, want)
		}
	}
	// Owners: the offset after -force-uid, and after -all-root's root.
	r, _ = build("-force-uid", "5", "-uid-gid-offset", "1000")
	if ino := inode(r, "alpha"); ino.UID != 1005 || ino.GID != 1000 {
		t.Errorf("-uid-gid-offset: alpha is %d:%d, want 1005:1000", ino.UID, ino.GID)
	}
	r, _ = build("-root-uid", "7", "-all-root", "-uid-gid-offset", "1000")
	if ino := inode(r, "."); ino.UID != 1000 {
		t.Errorf("-uid-gid-offset -all-root: the root's uid is %d, want 1000", ino.UID)
	}
	// Depth: directories below the limit are empty.
	r, _ = build("-max-depth", "1")
	if ents, err := r.ReadDir("dir"); err != nil || len(ents) != 0 {
		t.Errorf("-max-depth 1: dir has %d entries (%v), want none", len(ents), err)
	}
	if _, err := r.Stat("zeta"); err != nil {
		t.Errorf("-max-depth 1: %v", err)
	}
	r, _ = build("-max-depth", "0")
	if ents, err := r.ReadDir("."); err != nil || len(ents) != 0 {
		t.Errorf("-max-depth 0: the root has %d entries (%v), want none", len(ents), err)
	}
	// Xattrs filtered and added (user.* not to symlinks).
	r, _ = build("-xattrs-exclude", "^user.d", "-xattrs-add", "user.a=0x4142", "-xattrs-add", `trusted.b=0tx\101y`, "-xattrs-add", "security.c=0sQUJD")
	for name, want := range map[string]string{
		"alpha": "security.c=ABC trusted.b=xAy user.a=AB user.keep=1",
		"link":  "security.c=ABC trusted.b=xAy",
		".":     "security.c=ABC trusted.b=xAy user.a=AB",
	} {
		xs, err := r.Xattrs(inode(r, name))
		mustDo(t, err)
		var got []string
		for _, x := range xs {
			got = append(got, x.Name+"="+string(x.Value))
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("xattrs of %s: %s, want %s", name, g, want)
		}
	}
	r, _ = build("-xattrs-include", "^user.k")
	if xs, _ := r.Xattrs(inode(r, "alpha")); len(xs) != 1 || xs[0].Name != "user.keep" {
		t.Errorf("-xattrs-include ^user.k: %v", xs)
	}
	// Times: -repro sets the creation time to the latest entry's,
	// -repro-time T all of them to T, as -all-time T -mkfs-time T does.
	r, _ = build("-repro", "-all-time", "777")
	if got := r.Superblock().MkfsTime; got != 777 {
		t.Errorf("-repro: creation time %d, want 777", got)
	}
	r, _ = build("-mkfs-time", "inode")
	var latest uint32
	mustDo(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		latest = max(latest, uint32(fi.ModTime().Unix()))
		return err
	}))
	if got := r.Superblock().MkfsTime; got != latest {
		t.Errorf("-mkfs-time inode: %d, want the latest mtime %d", got, latest)
	}
	_, a := build("-repro-time", "12345")
	_, b := build("-all-time", "12345", "-mkfs-time", "12345")
	_, c := build("-inode-time", "12345", "-mkfs-time", "12345")
	_, d := build("-no-compression", "-mkfs-time", "1")
	_, e := build("-noI", "-noD", "-noF", "-noX", "-mkfs-time", "1")
	for _, p := range [][2]string{{a, b}, {b, c}, {d, e}} {
		x, err := os.ReadFile(p[0])
		mustDo(t, err)
		y, err := os.ReadFile(p[1])
		mustDo(t, err)
		if !bytes.Equal(x, y) {
			t.Errorf("%s and %s differ", p[0], p[1])
		}
	}
	// -info-file lists what is written.
	info := filepath.Join(tmp, "info")
	build("-info-file", info)
	if b, err := os.ReadFile(info); err != nil || !strings.Contains(string(b), "file /dir/sub/keep.txt, uncompressed size 8000 bytes") {
		t.Errorf("-info-file: %v\n%s", err, b)
	}
}

// TestTarOwnersAndDefaults: -numeric-owner keeps a tar archive's numbers
// over its names, and -default-mode/-uid/-gid give the directories it only
// implies, and the root, their mode and owner (the expectations are what
// mksquashfs 4.7.5 made of the same archive; -root-mode still wins).
func TestTarOwnersAndDefaults(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	mustDo(t, os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(src, "a/b/c"), []byte("c"), 0o644))
	archive, err := exec.Command("tar", "-C", src, "--owner=root:1234", "--group=root:777", "-cf", "-", "a/b/c").Output()
	mustDo(t, err)
	tmp := t.TempDir()
	for i, tc := range []struct {
		opts []string
		want map[string]string // mode uid gid
	}{
		{nil, map[string]string{".": "777", "a": "755", "a/b/c": "644 0 0"}},
		{[]string{"-numeric-owner"}, map[string]string{"a/b/c": "644 1234 777"}},
		{[]string{"-default-mode", "u=rwx,go=x", "-default-uid", "7", "-default-gid", "8"}, map[string]string{".": "711 7 8", "a": "711 7 8", "a/b": "711 7 8", "a/b/c": "644 0 0"}},
		{[]string{"-default-mode", "go-rx", "-root-uid", "3"}, map[string]string{".": "722 3", "a/b": "700"}},
		{[]string{"-default-mode", "0700", "-root-mode", "0755"}, map[string]string{".": "755", "a": "700"}},
	} {
		img := filepath.Join(tmp, strings.Repeat("i", i+1))
		var out, errb bytes.Buffer
		args := append([]string{"-", img, "-tar", "-quiet"}, tc.opts...)
		if code := mainIO(args, bytes.NewReader(archive), &out, &errb); code != 0 {
			t.Fatalf("%q = %d: %s", args, code, &errb)
		}
		checkInodes(t, img, tc.opts, tc.want)
	}
}

// checkInodes checks entries of img against "MODE UID GID [MTIME]" (mode
// in octal; a prefix of the fields is enough).
func checkInodes(t *testing.T, img string, opts []string, want map[string]string) {
	t.Helper()
	r, err := squash.OpenFile(img)
	mustDo(t, err)
	defer r.Close()
	for name, w := range want {
		fi, err := r.Lstat(name)
		mustDo(t, err)
		ino := fi.Sys().(*squash.Inode)
		got := fmt.Sprintf("%o %d %d %d", squash.UnixPerm(ino.Mode), ino.UID, ino.GID, ino.Mtime)
		if !strings.HasPrefix(got+" ", w+" ") {
			t.Errorf("%q: %s is %s, want %s", opts, name, got, w)
		}
	}
}

// TestCpioStyleAndNoStrip: a list of names on standard input (find's
// output, or NUL-terminated) and -no-strip sources keep their whole paths;
// the image reads back through the kernel.
func TestCpioStyleAndNoStrip(t *testing.T) {
	src := buildSource(t)
	t.Chdir(filepath.Dir(src))
	base := filepath.Base(src)
	tmp := t.TempDir()
	find, err := exec.Command("find", base+"/dir", base+"/alpha").Output()
	mustDo(t, err)
	find0, err := exec.Command("find", base+"/dir", base+"/alpha", "-print0").Output()
	mustDo(t, err)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin []byte
	}{
		{"cpiostyle", []string{"-", "-cpiostyle"}, find},
		{"cpiostyle0", []string{"-", "-cpiostyle0"}, find0},
		{"no-strip", []string{base + "/dir", base + "/alpha", "-no-strip"}, nil},
	} {
		img := filepath.Join(tmp, tc.name)
		var out, errb bytes.Buffer
		args := append(append([]string{}, tc.args[:len(tc.args)-1]...), img, tc.args[len(tc.args)-1], "-quiet")
		if code := mainIO(args, bytes.NewReader(tc.stdin), &out, &errb); code != 0 {
			t.Fatalf("%q = %d: %s", args, code, &errb)
		}
		mnt := filepath.Join(tmp, tc.name+".mnt")
		mustDo(t, os.Mkdir(mnt, 0o755))
		privileged.MountSquashfs(t, img, mnt)
		var got []string
		mustDo(t, filepath.Walk(mnt, func(p string, _ os.FileInfo, err error) error {
			if p != mnt {
				got = append(got, strings.TrimPrefix(p, mnt+"/"))
			}
			return err
		}))
		want := base + " " + base + "/alpha " + base + "/dir " + base + "/dir/b.gz " + base + "/dir/hard " + base + "/dir/sub " + base + "/dir/sub/c.gz " + base + "/dir/sub/keep.txt"
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s: %s, want %s", tc.name, g, want)
		}
		if b, err := os.ReadFile(filepath.Join(mnt, base, "dir/sub/keep.txt")); err != nil || string(b) != strings.Repeat("keep me ", 1000) {
			t.Errorf("%s: keep.txt reads %d bytes, %v", tc.name, len(b), err)
		}
		var a, h unix.Stat_t
		mustDo(t, unix.Stat(filepath.Join(mnt, base, "alpha"), &a))
		mustDo(t, unix.Stat(filepath.Join(mnt, base, "dir/hard"), &h))
		if a.Ino != h.Ino || a.Nlink != 2 {
			t.Errorf("%s: alpha and dir/hard are not one file", tc.name)
		}
	}
	var out, errb bytes.Buffer
	if code := mainIO([]string{"-", filepath.Join(tmp, "x"), "-cpiostyle"}, strings.NewReader("\n"), &out, &errb); code == 0 || !strings.Contains(errb.String(), "no file names") {
		t.Errorf("an empty list: %d %s", code, &errb)
	}
}

// TestSortAgainstMksquashfs: -sort lays the files' data out in the order
// Debian's mksquashfs -sort does (by priority, higher first; within one
// priority the reverse of the directory order), the listing is the same,
// and the files read back through the kernel.
func TestSortAgainstMksquashfs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	names := []string{"a", "b", "c", "d/e", "d/f", "d/g/h", "z"}
	for _, n := range names {
		mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(src, n)), 0o755))
		data := make([]byte, 9000)
		rand.Read(data)
		mustDo(t, os.WriteFile(filepath.Join(src, n), data, 0o644))
	}
	sortFile := filepath.Join(dir, "sort")
	mustDo(t, os.WriteFile(sortFile, []byte("c 10\nb -5\nd 3\nd/g/h 20\n"+filepath.Join(src, "z")+" 7\n"), 0o644))
	ours, ref := filepath.Join(dir, "ours"), filepath.Join(dir, "ref")
	opts := []string{"-quiet", "-no-progress", "-no-fragments", "-b", "4K", "-sort", sortFile, "-mkfs-time", "1"}
	if out, err := exec.Command("mksquashfs", append([]string{src, ref}, opts...)...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	var out, errb bytes.Buffer
	if code := Main(append([]string{src, ours}, opts...), &out, &errb); code != 0 {
		t.Fatalf("-sort = %d: %s", code, &errb)
	}
	order := func(img string) string {
		r, err := squash.OpenFile(img)
		mustDo(t, err)
		defer r.Close()
		byStart := map[uint64]string{}
		var starts []uint64
		for _, n := range names {
			fi, err := r.Lstat(n)
			mustDo(t, err)
			s := fi.Sys().(*squash.Inode).BlocksStart
			byStart[s] = n
			starts = append(starts, s)
		}
		slices.Sort(starts)
		var o []string
		for _, s := range starts {
			o = append(o, byStart[s])
		}
		return strings.Join(o, " ")
	}
	if got, want := order(ours), order(ref); got != want || want != "d/g/h c z d/f d/e a b" {
		t.Errorf("data order %s, mksquashfs's %s", got, want)
	}
	if got, want := listing(t, ours), listing(t, ref); got != want {
		t.Errorf("listing differs:\n%s\nmksquashfs:\n%s", got, want)
	}
	mnt := filepath.Join(dir, "mnt")
	mustDo(t, os.Mkdir(mnt, 0o755))
	privileged.MountSquashfs(t, ours, mnt)
	for _, n := range names {
		a, _ := os.ReadFile(filepath.Join(src, n))
		b, err := os.ReadFile(filepath.Join(mnt, n))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s through the kernel: %d bytes, %v", n, len(b), err)
		}
	}
}

// TestPseudoDirAndOverride: -pd makes the directories a pseudo definition
// lacks, and -pseudo-override keeps pseudo entries' owners and modes over
// -all-root, -force-uid and -force-file-mode (not over -uid-gid-offset or
// -all-time): what 4.7.5 made of the same cases, compared by hand.
func TestPseudoDirAndOverride(t *testing.T) {
	src := filepath.Join(t.TempDir(), "s")
	mustDo(t, os.Mkdir(src, 0o755))
	mustDo(t, os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644))
	tmp := t.TempDir()
	for i, tc := range []struct {
		opts []string
		want map[string]string // mode uid gid [mtime]
	}{
		{[]string{"-all-root", "-p", "q f 755 3 4 echo hi", "-p", "a m 700 5 6", "-pseudo-override", "-all-time", "9"},
			map[string]string{"a": "700 5 6 9", "q": "755 3 4 9", ".": "755 0 0"}},
		{[]string{"-uid-gid-offset", "100", "-p", "q f 755 3 4 echo hi", "-pseudo-override", "-force-file-mode", "0600"},
			map[string]string{"a": "600 100 100", "q": "755 103 104"}},
		{[]string{"-pd", "d 711 8 9", "-p", "x/y/z f 644 1 1 echo z", "-p", "x/w d 700 2 2"},
			map[string]string{"x": "711 8 9", "x/y": "711 8 9", "x/y/z": "644 1 1", "x/w": "700 2 2"}},
		{[]string{"-pd", "D 1234 711 8 9", "-p", "x/y/z f 644 1 1 echo z", "-force-dir-mode", "0700", "-uid-gid-offset", "100"},
			map[string]string{"x": "700 108 109 1234", "x/y": "700 108 109 1234", "x/y/z": "644 101 101"}},
		{[]string{"-all-root", "-pd", "d 711 8 9", "-p", "x/y/z f 644 1 1 echo z", "-pseudo-override"},
			map[string]string{"x": "711 8 9", "a": "644 0 0"}},
	} {
		img := filepath.Join(tmp, strings.Repeat("i", i+1))
		var out, errb bytes.Buffer
		if code := Main(append([]string{src, img, "-quiet"}, tc.opts...), &out, &errb); code != 0 {
			t.Fatalf("%q = %d: %s", tc.opts, code, &errb)
		}
		checkInodes(t, img, tc.opts, tc.want)
	}
	var out, errb bytes.Buffer
	if code := Main([]string{src, filepath.Join(tmp, "x"), "-p", "x/y/z f 644 1 1 echo z"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "define it first") {
		t.Errorf("without -pd: %d %s", code, &errb)
	}
}

// TestPercentage: -percentage prints the percentage done on standard
// output, one a line, rising to 100 (as 4.7.5 does, for dialog --gauge).
func TestPercentage(t *testing.T) {
	src := buildSource(t)
	img := filepath.Join(t.TempDir(), "img")
	sortFile := filepath.Join(t.TempDir(), "sort")
	mustDo(t, os.WriteFile(sortFile, []byte("big.bin 5\n"), 0o644))
	// The second run appends, with its data sorted: the image's files
	// and the sorted ones count towards one rising percentage.
	for _, extra := range [][]string{nil, {"-keep-as-directory", "-sort", sortFile}} {
		var out, errb bytes.Buffer
		if code := Main(append([]string{src, img, "-percentage", "-quiet"}, extra...), &out, &errb); code != 0 {
			t.Fatalf("-percentage %q = %d: %s", extra, code, &errb)
		}
		last := -1
		for _, l := range strings.Fields(out.String()) {
			n, err := strconv.Atoi(l)
			if err != nil || n <= last || n > 100 {
				t.Fatalf("-percentage %q printed %q", extra, out.String())
			}
			last = n
		}
		if last != 100 {
			t.Errorf("-percentage %q ended at %d: %q", extra, last, out.String())
		}
	}
}

// TestTarIgnoreZeros: with -ignore-zeros, archives concatenated all go in,
// read in place from a file or from a pipe; without it, the first alone
// (as 4.7.5 does).
func TestTarIgnoreZeros(t *testing.T) {
	dir := t.TempDir()
	var all []byte
	for i, name := range []string{"one", "two", "three"} {
		d := filepath.Join(dir, name)
		mustDo(t, os.Mkdir(d, 0o755))
		mustDo(t, os.WriteFile(filepath.Join(d, name), bytes.Repeat([]byte(name), 1000*(i+1)), 0o644))
		a, err := exec.Command("tar", "-C", d, "-cf", "-", name).Output()
		mustDo(t, err)
		all = append(all, a...)
	}
	cat := filepath.Join(dir, "all.tar")
	mustDo(t, os.WriteFile(cat, all, 0o644))
	for _, tc := range []struct {
		name string
		opts []string
		file bool
		want []string
	}{
		{"pipe", []string{"-ignore-zeros"}, false, []string{"one", "two", "three"}},
		{"file", []string{"-ignore-zeros"}, true, []string{"one", "two", "three"}},
		{"without", nil, true, []string{"one"}},
	} {
		var stdin io.Reader = bytes.NewReader(all)
		if tc.file {
			f, err := os.Open(cat)
			mustDo(t, err)
			defer f.Close()
			stdin = f
		}
		img := filepath.Join(dir, tc.name+".img")
		var out, errb bytes.Buffer
		if code := mainIO(append([]string{"-", img, "-tar", "-quiet"}, tc.opts...), stdin, &out, &errb); code != 0 {
			t.Fatalf("%s: %d %s", tc.name, code, &errb)
		}
		r, err := squash.OpenFile(img)
		mustDo(t, err)
		ents, err := r.ReadDir(".")
		mustDo(t, err)
		if len(ents) != len(tc.want) {
			t.Errorf("%s: %d entries, want %q", tc.name, len(ents), tc.want)
		}
		for i, name := range tc.want {
			b, err := r.ReadFile(name)
			if err != nil || !bytes.Equal(b, bytes.Repeat([]byte(name), 1000*(i+1))) {
				t.Errorf("%s: %s: %d bytes, %v", tc.name, name, len(b), err)
			}
		}
		r.Close()
	}
}
