// Package testtree builds and compares real filesystem trees for tests: a
// tree holding every case a SquashFS writer must reproduce, a synthetic
// Gentoo Portage tree for scale tests, and a precise tree comparer.
package testtree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/cirequire"
)

// AllCasesOptions tunes BuildAllCases.
type AllCasesOptions struct {
	// Seed makes the content reproducible; 0 means 1.
	Seed int64
	// Huge adds huge/sparse-5g, a 5 GiB sparse file with data beyond 4 GiB.
	// It costs almost no disk but makes every full read slow, so only a few
	// tests should ask for it.
	Huge bool
}

// AllCasesReport says what BuildAllCases managed to create, because some
// cases depend on the filesystem (xattr sizes) or on privileges.
type AllCasesReport struct {
	// Entries counts the paths created below the root.
	Entries int
	// XattrNamespaces lists the namespaces that accepted an xattr.
	XattrNamespaces []string
	// LargeXattrSize is the size of the largest single xattr value stored.
	LargeXattrSize int
	// ManyXattrKeys is the number of keys on xattrs/many.
	ManyXattrKeys int
	// HugeFile is the slash path of the >4 GiB sparse file, if created.
	HugeFile string
	// Skipped describes cases that could not be created here.
	Skipped []string
}

// Block sizes around which file sizes cluster: the page size and the
// default SquashFS block size.
const (
	smallBlock = 4096
	bigBlock   = 131072
)

// Timestamps at the edges of what SquashFS (u32 seconds) can store.
const (
	mtimeZero = 0
	mtimeMax  = 1<<32 - 1
	mtimeBase = 1700000000
)

// BuildAllCases creates the all-cases tree in dir (which must exist and is
// normally empty) and fails the test if that is impossible.
func BuildAllCases(t testing.TB, dir string, opts AllCasesOptions) AllCasesReport {
	t.Helper()
	rep, err := BuildAllCasesErr(dir, opts)
	if err != nil {
		t.Fatalf("build all-cases tree in %s: %v", dir, err)
	}
	for _, s := range rep.Skipped {
		cirequire.Unavailable(t, "all-cases tree: skipped %s", s)
	}
	return rep
}

// BuildAllCasesErr is BuildAllCases for callers without a testing.TB.
func BuildAllCasesErr(dir string, opts AllCasesOptions) (AllCasesReport, error) {
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	copy(key[8:], "squashportage/testtree/allcases")
	b := &builder{
		root:  dir,
		rng:   rand.New(rand.NewChaCha8(key)),
		root0: os.Geteuid() == 0,
	}
	if err := b.build(opts); err != nil {
		return b.rep, err
	}
	return b.rep, nil
}

type xattr struct {
	name  string
	value []byte
}

// meta is what gets applied to an entry after its content exists.
type meta struct {
	mode     os.FileMode // permission and setuid/setgid/sticky bits only
	uid, gid int
	mtime    int64
	xattrs   []xattr
}

type dirMeta struct {
	rel string
	m   meta
}

type builder struct {
	root  string
	rng   *rand.Rand
	root0 bool
	rep   AllCasesReport
	dirs  []dirMeta
	nsOK  map[string]bool
}

func (b *builder) abs(rel string) string { return filepath.Join(b.root, rel) }

func (b *builder) skip(format string, args ...any) {
	b.rep.Skipped = append(b.rep.Skipped, fmt.Sprintf(format, args...))
}

func (b *builder) ordinaryTime() int64 { return mtimeBase - b.rng.Int64N(400000000) }

// def gives ordinary metadata; mode is spelled as the kernel spells it
// (0o4755), unlike os.FileMode.
func (b *builder) def(mode uint32) meta {
	return meta{mode: unixToGoMode(mode), mtime: b.ordinaryTime()}
}

// mkdir creates a directory now but defers its metadata: adding entries
// later would bump its mtime, and a 0000 mode would lock out a non-root
// builder.
func (b *builder) mkdir(rel string, m meta) error {
	if err := os.Mkdir(b.abs(rel), 0o700); err != nil {
		return fmt.Errorf("mkdir %s: %w", rel, err)
	}
	b.rep.Entries++
	b.dirs = append(b.dirs, dirMeta{rel, m})
	return nil
}

func (b *builder) file(rel string, data []byte, m meta) error {
	if err := os.WriteFile(b.abs(rel), data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	b.rep.Entries++
	return b.apply(rel, m, false)
}

func (b *builder) symlink(rel, target string, m meta) error {
	if err := os.Symlink(target, b.abs(rel)); err != nil {
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	b.rep.Entries++
	return b.apply(rel, m, true)
}

func (b *builder) mknod(rel string, typ uint32, major, minor uint32, m meta) error {
	if !b.root0 && typ != unix.S_IFIFO {
		b.skip("%s: device nodes need root", rel)
		return nil
	}
	if err := unix.Mknod(b.abs(rel), typ|0o600, int(unix.Mkdev(major, minor))); err != nil {
		return fmt.Errorf("mknod %s: %w", rel, err)
	}
	b.rep.Entries++
	return b.apply(rel, m, false)
}

// socket leaves a socket inode behind by binding and closing. The bind goes
// through /proc/self/fd so that long test directories do not hit the
// 108-byte sun_path limit.
func (b *builder) socket(rel string, m meta) error {
	parent, err := os.Open(filepath.Dir(b.abs(rel)))
	if err != nil {
		return fmt.Errorf("socket %s: %w", rel, err)
	}
	defer parent.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket %s: %w", rel, err)
	}
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", parent.Fd(), filepath.Base(rel))
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: addr})
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("bind socket %s: %w", rel, err)
	}
	b.rep.Entries++
	return b.apply(rel, m, false)
}

func (b *builder) hardlink(oldRel, newRel string) error {
	// Flags 0: a link to a symlink must link the symlink itself.
	if err := unix.Linkat(unix.AT_FDCWD, b.abs(oldRel), unix.AT_FDCWD, b.abs(newRel), 0); err != nil {
		return fmt.Errorf("link %s -> %s: %w", newRel, oldRel, err)
	}
	b.rep.Entries++
	return nil
}

func (b *builder) apply(rel string, m meta, isLink bool) error {
	p := b.abs(rel)
	if b.root0 {
		// Before chmod: chown clears setuid/setgid.
		if err := os.Lchown(p, m.uid, m.gid); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
	}
	if !isLink {
		if err := os.Chmod(p, m.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
	}
	for _, x := range m.xattrs {
		if err := b.setxattr(rel, x); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{{Sec: m.mtime}, {Sec: m.mtime}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes %s: %w", rel, err)
	}
	return nil
}

func (b *builder) setxattr(rel string, x xattr) error {
	ns, _, _ := strings.Cut(x.name, ".")
	if (ns == "trusted" || ns == "security") && !b.root0 {
		b.skip("%s: xattr %s needs root", rel, x.name)
		return nil
	}
	if err := unix.Lsetxattr(b.abs(rel), x.name, x.value, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			b.skip("%s: xattr %s not supported here", rel, x.name)
			return nil
		}
		return fmt.Errorf("setxattr %s %s: %w", rel, x.name, err)
	}
	if !b.nsOK[ns] {
		if b.nsOK == nil {
			b.nsOK = map[string]bool{}
		}
		b.nsOK[ns] = true
		b.rep.XattrNamespaces = append(b.rep.XattrNamespaces, ns)
		sort.Strings(b.rep.XattrNamespaces)
	}
	if len(x.value) > b.rep.LargeXattrSize {
		b.rep.LargeXattrSize = len(x.value)
	}
	return nil
}

func (b *builder) random(n int) []byte {
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], b.rng.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		p[i] = byte(b.rng.Uint32())
	}
	return p
}

var words = strings.Fields(`the of and to in is for that with on as by this are be
from or at an it not which have was can if but all use will more when one
package build install configure compile source library file system kernel
block inode fragment directory xattr table compress squash overlay portage
ebuild manifest license profile eclass version depend runtime optional`)

// text returns compressible, text-like content of exactly n bytes.
func (b *builder) text(n int) []byte {
	var buf bytes.Buffer
	buf.Grow(n + 16)
	col := 0
	for buf.Len() < n {
		w := words[b.rng.IntN(len(words))]
		buf.WriteString(w)
		col += len(w) + 1
		if col > 70 {
			buf.WriteByte('\n')
			col = 0
		} else {
			buf.WriteByte(' ')
		}
	}
	return buf.Bytes()[:n]
}

func (b *builder) build(opts AllCasesOptions) error {
	steps := []func() error{
		b.buildFiles, b.buildModes, b.buildOwners, b.buildTimes,
		b.buildSymlinks, b.buildSpecial, b.buildHardlinks, b.buildXattrs,
		b.buildSparse, b.buildEmpty, b.buildNames, b.buildBigDir, b.buildDeep,
	}
	if opts.Huge {
		steps = append(steps, b.buildHuge)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	// The root's metadata is part of the image too.
	b.dirs = append(b.dirs, dirMeta{".", meta{mode: 0o755, mtime: mtimeBase,
		xattrs: []xattr{{"user.root", []byte("root-of-all-cases")}}}})
	// Deepest first, so setting a child's times cannot disturb its parent.
	sort.SliceStable(b.dirs, func(i, j int) bool {
		return strings.Count(b.dirs[i].rel, "/") > strings.Count(b.dirs[j].rel, "/")
	})
	for _, d := range b.dirs {
		if err := b.apply(d.rel, d.m, false); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildFiles() error {
	if err := b.mkdir("files", b.def(0o755)); err != nil {
		return err
	}
	sizes := []int{0, 1, 2, 511, 4095, 4096, 4097, 8192, 131071, 131072, 131073,
		2 * bigBlock, 3*bigBlock + 1, 1 << 20, 1<<20 + 1}
	for _, n := range sizes {
		if err := b.file(fmt.Sprintf("files/random-%d", n), b.random(n), b.def(0o644)); err != nil {
			return err
		}
		if err := b.file(fmt.Sprintf("files/text-%d", n), b.text(n), b.def(0o644)); err != nil {
			return err
		}
	}
	big := []struct {
		name string
		data []byte
	}{
		{"files/random-3m", b.random(3<<20 + 12345)},
		{"files/text-3m", b.text(3<<20 + 54321)},
		// Zeros written for real, not a hole: a writer may store them sparse,
		// but must read them back identically.
		{"files/zeros-1m", make([]byte, 1<<20)},
	}
	for _, f := range big {
		if err := b.file(f.name, f.data, b.def(0o644)); err != nil {
			return err
		}
	}
	// Identical contents, for deduplicating writers: whole blocks and tails.
	dupBig := b.random(2*bigBlock + 777)
	dupSmall := b.text(1000)
	for _, name := range []string{"dup-big-a", "dup-big-b", "dup-big-c"} {
		if err := b.file("files/"+name, dupBig, b.def(0o644)); err != nil {
			return err
		}
	}
	for _, name := range []string{"dup-small-a", "dup-small-b"} {
		if err := b.file("files/"+name, dupSmall, b.def(0o644)); err != nil {
			return err
		}
	}
	// Many small files: fragment packing across several fragment blocks.
	if err := b.mkdir("files/small", b.def(0o755)); err != nil {
		return err
	}
	for i := range 300 {
		n := 1 + b.rng.IntN(9000)
		data := b.text(n)
		if i%3 == 0 {
			data = b.random(n)
		}
		if err := b.file(fmt.Sprintf("files/small/f%03d", i), data, b.def(0o644)); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildModes() error {
	if err := b.mkdir("modes", b.def(0o755)); err != nil {
		return err
	}
	fileModes := []uint32{0, 0o400, 0o444, 0o600, 0o644, 0o700, 0o755, 0o777, 0o001, 0o070,
		0o4755, 0o2711, 0o6755, 0o1755, 0o7777, 0o4000, 0o2000, 0o1000, 0o6711, 0o4711}
	for _, m := range fileModes {
		if err := b.file(fmt.Sprintf("modes/f%04o", m), b.text(10+int(m)%50), b.def(m)); err != nil {
			return err
		}
	}
	dirModes := []uint32{0o1777, 0o2775, 0o0700, 0o0555, 0o0000, 0o3777, 0o0711}
	for _, m := range dirModes {
		rel := fmt.Sprintf("modes/d%04o", m)
		if err := b.mkdir(rel, b.def(m)); err != nil {
			return err
		}
		if m != 0 {
			if err := b.file(rel+"/inside", []byte("x\n"), b.def(0o644)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unixToGoMode converts permission plus setuid/setgid/sticky bits as the
// kernel spells them into os.FileMode, whose special bits live elsewhere.
func unixToGoMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func (b *builder) buildOwners() error {
	if !b.root0 {
		b.skip("owners/: chown needs root")
		return b.mkdir("owners", b.def(0o755))
	}
	if err := b.mkdir("owners", b.def(0o755)); err != nil {
		return err
	}
	// ~300 distinct ids spread over the whole u32 range, so an id table
	// spans several metadata blocks; uid and gid differ so a swap shows.
	for i := range 300 {
		m := b.def(0o644)
		m.uid = 1000 + i*14327%1000003
		m.gid = 2000 + i*7919
		if i%50 == 0 {
			m.uid = int(b.rng.Uint32N(1<<31)) + 1<<31 - 2
		}
		if err := b.file(fmt.Sprintf("owners/u%03d", i), []byte{byte(i)}, m); err != nil {
			return err
		}
	}
	edge := []struct {
		name     string
		uid, gid int
	}{
		{"root", 0, 0},
		{"max", 4294967294, 4294967294},
		{"max-root", 4294967294, 0},
		{"root-max", 0, 4294967294},
		{"nobody", 65534, 65534},
		{"sixteen-bit-edge", 65535, 65536},
	}
	for _, e := range edge {
		m := b.def(0o640)
		m.uid, m.gid = e.uid, e.gid
		if err := b.file("owners/"+e.name, []byte(e.name), m); err != nil {
			return err
		}
	}
	dm := b.def(0o750)
	dm.uid, dm.gid = 123456, 654321
	if err := b.mkdir("owners/dir-owned", dm); err != nil {
		return err
	}
	lm := b.def(0o777)
	lm.uid, lm.gid = 4242, 2424
	if err := b.symlink("owners/link-owned", "dir-owned", lm); err != nil {
		return err
	}
	return nil
}

func (b *builder) buildTimes() error {
	if err := b.mkdir("times", b.def(0o755)); err != nil {
		return err
	}
	for _, tc := range []struct {
		name string
		t    int64
	}{{"zero", mtimeZero}, {"max", mtimeMax}, {"ordinary", mtimeBase}, {"one", 1}, {"y2038", 1<<31 - 1}, {"after-y2038", 1 << 31}} {
		m := b.def(0o644)
		m.mtime = tc.t
		if err := b.file("times/file-"+tc.name, []byte(tc.name), m); err != nil {
			return err
		}
		dm := b.def(0o755)
		dm.mtime = tc.t
		if err := b.mkdir("times/dir-"+tc.name, dm); err != nil {
			return err
		}
		lm := b.def(0o777)
		lm.mtime = tc.t
		if err := b.symlink("times/link-"+tc.name, "file-"+tc.name, lm); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildSymlinks() error {
	if err := b.mkdir("symlinks", b.def(0o755)); err != nil {
		return err
	}
	long := strings.Repeat("0123456789abcdef/", 4000/17+1)[:4000]
	odd := "sp ace/new\nline/\x01\xff/ü"
	targets := []struct{ name, target string }{
		{"short", "a"},
		{"dot", "."},
		{"dotdot", ".."},
		{"abs", "/etc/passwd"},
		{"dangling", "does/not/exist"},
		{"to-file", "../files/text-1"},
		{"to-dir", "../files"},
		{"loop-a", "loop-b"},
		{"loop-b", "loop-a"},
		{"len-255", strings.Repeat("t", 255)},
		{"len-256", strings.Repeat("u", 256)},
		{"long-4000", long},
		{"max-4095", strings.Repeat("m", 4095)},
		{"odd-bytes", odd},
	}
	for _, tg := range targets {
		if err := b.symlink("symlinks/"+tg.name, tg.target, b.def(0o777)); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildSpecial() error {
	if err := b.mkdir("special", b.def(0o755)); err != nil {
		return err
	}
	// Linux dev_t holds a 12-bit major and 20-bit minor; SquashFS stores
	// exactly that in its 32-bit rdev, so the edges must survive.
	devs := []struct {
		name         string
		typ          uint32
		major, minor uint32
		mode         uint32
	}{
		{"chr-whiteout-0-0", unix.S_IFCHR, 0, 0, 0},
		{"chr-null-1-3", unix.S_IFCHR, 1, 3, 0o666},
		{"chr-4095-1048575", unix.S_IFCHR, 4095, 1048575, 0o620},
		{"chr-255-255", unix.S_IFCHR, 255, 255, 0o600},
		{"chr-256-256", unix.S_IFCHR, 256, 256, 0o600},
		{"blk-7-0", unix.S_IFBLK, 7, 0, 0o660},
		{"blk-259-65536", unix.S_IFBLK, 259, 65536, 0o660},
		{"blk-4095-1048575", unix.S_IFBLK, 4095, 1048575, 0o640},
		{"fifo", unix.S_IFIFO, 0, 0, 0o644},
		{"fifo-setgid", unix.S_IFIFO, 0, 0, 0o2600},
	}
	for _, d := range devs {
		if err := b.mknod("special/"+d.name, d.typ, d.major, d.minor, b.def(d.mode)); err != nil {
			return err
		}
	}
	if err := b.socket("special/socket", b.def(0o755)); err != nil {
		return err
	}
	return nil
}

func (b *builder) buildHardlinks() error {
	if err := b.mkdir("hardlinks", b.def(0o755)); err != nil {
		return err
	}
	if err := b.mkdir("hardlinks/sub", b.def(0o755)); err != nil {
		return err
	}
	m := b.def(0o640)
	m.uid, m.gid = 1234, 5678
	if b.root0 {
		m.xattrs = []xattr{{"user.linked", []byte("shared inode")}}
	}
	if err := b.file("hardlinks/pair-a", b.text(5000), m); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/pair-a", "hardlinks/pair-b"); err != nil {
		return err
	}
	if err := b.file("hardlinks/triple-a", b.random(bigBlock+10), b.def(0o4755)); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/triple-a", "hardlinks/sub/triple-b"); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/triple-a", "hardlinks/triple-c"); err != nil {
		return err
	}
	if err := b.file("hardlinks/empty-a", nil, b.def(0o644)); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/empty-a", "hardlinks/sub/empty-b"); err != nil {
		return err
	}
	if err := b.symlink("hardlinks/symlink-a", "pair-a", b.def(0o777)); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/symlink-a", "hardlinks/symlink-b"); err != nil {
		return err
	}
	if err := b.mknod("hardlinks/fifo-a", unix.S_IFIFO, 0, 0, b.def(0o600)); err != nil {
		return err
	}
	if err := b.hardlink("hardlinks/fifo-a", "hardlinks/sub/fifo-b"); err != nil {
		return err
	}
	if b.root0 {
		if err := b.mknod("hardlinks/chr-a", unix.S_IFCHR, 10, 200, b.def(0o600)); err != nil {
			return err
		}
		if err := b.hardlink("hardlinks/chr-a", "hardlinks/chr-b"); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildXattrs() error {
	if err := b.mkdir("xattrs", b.def(0o755)); err != nil {
		return err
	}
	shared := []xattr{
		{"user.mime_type", []byte("text/plain")},
		{"user.empty", nil},
		{"user.binary", []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}},
	}
	if b.root0 {
		shared = append(shared,
			xattr{"trusted.shared", []byte("same on many inodes")},
			xattr{"security.label", []byte("system_u:object_r:etc_t:s0")},
		)
	}
	for i := range 6 {
		m := b.def(0o644)
		m.xattrs = shared
		if err := b.file(fmt.Sprintf("xattrs/same-%d", i), b.text(100+i), m); err != nil {
			return err
		}
	}
	// A file-capability xattr: the kernel checks its layout, and SquashFS
	// writers often special-case it.
	if b.root0 {
		capv := make([]byte, 20)
		binary.LittleEndian.PutUint32(capv[0:], 0x02000001) // VFS_CAP_REVISION_2 | effective
		binary.LittleEndian.PutUint32(capv[4:], 1<<10)      // CAP_NET_BIND_SERVICE
		m := b.def(0o755)
		m.xattrs = []xattr{{"security.capability", capv}}
		if err := b.file("xattrs/capability", []byte("#!/bin/sh\n"), m); err != nil {
			return err
		}
	}
	if err := b.file("xattrs/big", b.text(10), b.def(0o644)); err != nil {
		return err
	}
	// ext4 without ea_inode caps a value near the block size; tmpfs and
	// btrfs take more, so try the large size first.
	stored := false
	for _, n := range []int{60 << 10, 16 << 10, 3 << 10} {
		err := unix.Lsetxattr(b.abs("xattrs/big"), "user.big", b.text(n), 0)
		if err == nil {
			// A smaller value is the same case at this filesystem's
			// limit, not a missing one: LargeXattrSize says which, and
			// callers that need 60 KiB (a value spanning metadata blocks)
			// check it and build on tmpfs.
			if n > b.rep.LargeXattrSize {
				b.rep.LargeXattrSize = n
			}
			stored = true
			break
		}
		if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.E2BIG) && !errors.Is(err, unix.ERANGE) {
			return fmt.Errorf("setxattr xattrs/big: %w", err)
		}
	}
	if !stored {
		b.skip("xattrs/big: no large value accepted")
	}
	if err := b.file("xattrs/many", nil, b.def(0o644)); err != nil {
		return err
	}
	for i := range 200 {
		name := fmt.Sprintf("user.key-%03d", i)
		err := unix.Lsetxattr(b.abs("xattrs/many"), name, []byte(fmt.Sprintf("v%d", i*i)), 0)
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) {
			break // this filesystem's limit, as for xattrs/big: see ManyXattrKeys
		}
		if err != nil {
			return fmt.Errorf("setxattr xattrs/many %s: %w", name, err)
		}
		b.rep.ManyXattrKeys = i + 1
	}
	dm := b.def(0o755)
	dm.xattrs = []xattr{{"user.dir", []byte("on a directory")}}
	if b.root0 {
		dm.xattrs = append(dm.xattrs, xattr{"trusted.overlay.opaque", []byte("y")})
	}
	if err := b.mkdir("xattrs/dir", dm); err != nil {
		return err
	}
	if b.root0 {
		// user.* is refused on symlinks and devices; trusted.* is not.
		lm := b.def(0o777)
		lm.xattrs = []xattr{{"trusted.link", []byte("on a symlink")}}
		if err := b.symlink("xattrs/link", "big", lm); err != nil {
			return err
		}
		fm := b.def(0o600)
		fm.xattrs = []xattr{{"trusted.fifo", []byte("on a fifo")}}
		if err := b.mknod("xattrs/fifo", unix.S_IFIFO, 0, 0, fm); err != nil {
			return err
		}
		om := b.def(0o644)
		om.xattrs = []xattr{{"trusted.overlay.redirect", []byte("/elsewhere")}, {"user.kept", []byte("1")}}
		if err := b.file("xattrs/overlay", nil, om); err != nil {
			return err
		}
	}
	return nil
}

// writeSparse makes a file of size bytes whose only data are the given
// chunks; everything else stays a hole.
func (b *builder) writeSparse(rel string, size int64, chunks map[int64][]byte) error {
	f, err := os.OpenFile(b.abs(rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	offs := make([]int64, 0, len(chunks))
	for off := range chunks {
		offs = append(offs, off)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for _, off := range offs {
		if _, err := f.WriteAt(chunks[off], off); err != nil {
			f.Close()
			return fmt.Errorf("write %s at %d: %w", rel, off, err)
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("truncate %s: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", rel, err)
	}
	b.rep.Entries++
	return b.apply(rel, b.def(0o644), false)
}

func (b *builder) buildSparse() error {
	if err := b.mkdir("sparse", b.def(0o755)); err != nil {
		return err
	}
	B := int64(bigBlock)
	cases := []struct {
		name   string
		size   int64
		chunks map[int64][]byte
	}{
		{"hole-start", 4 * B, map[int64][]byte{3 * B: b.random(bigBlock)}},
		{"hole-end", 5 * B, map[int64][]byte{0: b.random(bigBlock)}},
		{"hole-middle", 5 * B, map[int64][]byte{0: b.random(bigBlock), 4 * B: b.text(bigBlock)}},
		{"hole-all", 8 * B, nil},
		{"hole-unaligned-tail", 3*B + 777, map[int64][]byte{B: b.random(bigBlock)}},
		{"hole-then-tail", 2*B + 100, map[int64][]byte{2 * B: b.text(100)}},
		{"hole-4k-pages", 16 * smallBlock, map[int64][]byte{
			3 * smallBlock: b.random(smallBlock), 9 * smallBlock: b.random(100)}},
		{"hole-partial-block", 4 * B, map[int64][]byte{B + 5000: b.random(3000)}},
	}
	for _, c := range cases {
		if err := b.writeSparse("sparse/"+c.name, c.size, c.chunks); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildHuge() error {
	if err := b.mkdir("huge", b.def(0o755)); err != nil {
		return err
	}
	const gib = int64(1) << 30
	B := int64(bigBlock)
	chunks := map[int64][]byte{
		0:                 b.random(1000),
		4 * gib:           b.random(bigBlock),     // first byte past 2^32
		4*gib + 3*B + 100: b.text(5000),           // unaligned, past 2^32
		5*gib - 4096:      b.random(4096),         // the very tail
		4*gib - B:         b.random(bigBlock + 1), // straddles 2^32
	}
	if err := b.writeSparse("huge/sparse-5g", 5*gib, chunks); err != nil {
		return err
	}
	b.rep.HugeFile = "huge/sparse-5g"
	return nil
}

func (b *builder) buildEmpty() error {
	if err := b.mkdir("empty", b.def(0o755)); err != nil {
		return err
	}
	if err := b.mkdir("empty/dir", b.def(0o755)); err != nil {
		return err
	}
	if err := b.mkdir("empty/dir-nested", b.def(0o755)); err != nil {
		return err
	}
	if err := b.mkdir("empty/dir-nested/inner", b.def(0o700)); err != nil {
		return err
	}
	return b.file("empty/file", nil, b.def(0o644))
}

// oddNames are byte strings a writer must store verbatim; they also test
// that directory entries are sorted bytewise.
var oddNames = []string{
	"with space", "trailing ", " leading", "new\nline", "tab\there", "\x01ctl",
	"\x7fdel", "\xffhigh", "\xc3(bad-utf8", "ünïcødé-日本語-🙂", "-leading-dash",
	"#hash", "a", "A", "ab", "a.b", "a-b", "a_b", "...", ".hidden", "quote\"'",
	"back\\slash", "*?[glob]", "%s%n", "$HOME", "~tilde", "=", "Z", "z",
}

func (b *builder) buildNames() error {
	if err := b.mkdir("names", b.def(0o755)); err != nil {
		return err
	}
	for i, n := range oddNames {
		if err := b.file("names/"+n, []byte(fmt.Sprintf("%d\n", i)), b.def(0o644)); err != nil {
			return err
		}
	}
	if err := b.file("names/"+strings.Repeat("f", 255), []byte("255\n"), b.def(0o644)); err != nil {
		return err
	}
	if err := b.mkdir("names/"+strings.Repeat("d", 255), b.def(0o755)); err != nil {
		return err
	}
	if err := b.symlink("names/"+strings.Repeat("l", 254)+"\xff", strings.Repeat("d", 255), b.def(0o777)); err != nil {
		return err
	}
	return nil
}

// buildBigDir makes a directory large enough to need many directory
// headers and a directory index, with entries of every type.
func (b *builder) buildBigDir() error {
	if err := b.mkdir("bigdir", b.def(0o755)); err != nil {
		return err
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@"
	seen := map[string]bool{}
	for i := 0; i < 5000; i++ {
		var n int
		switch {
		case i%100 == 0:
			n = 200 + b.rng.IntN(56)
		case i%10 == 0:
			n = 30 + b.rng.IntN(100)
		default:
			n = 1 + b.rng.IntN(24)
		}
		name := make([]byte, n)
		for j := range name {
			name[j] = alphabet[b.rng.IntN(len(alphabet))]
		}
		s := string(name)
		if seen[s] || s == "." || s == ".." {
			i--
			continue
		}
		seen[s] = true
		rel := "bigdir/" + s
		var err error
		switch i % 97 {
		case 1:
			err = b.mkdir(rel, b.def(0o755))
		case 2:
			err = b.symlink(rel, "target-"+s, b.def(0o777))
		case 3:
			err = b.file(rel, b.text(1+b.rng.IntN(3000)), b.def(0o644))
		default:
			err = b.file(rel, nil, b.def(0o644))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) buildDeep() error {
	rel := "deep"
	if err := b.mkdir(rel, b.def(0o755)); err != nil {
		return err
	}
	for i := 1; i <= 30; i++ {
		rel = fmt.Sprintf("%s/level-%02d", rel, i)
		if err := b.mkdir(rel, b.def(0o755)); err != nil {
			return err
		}
	}
	return b.file(rel+"/bottom", []byte("bottom\n"), b.def(0o644))
}
