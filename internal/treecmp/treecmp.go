// Package treecmp compares two directory trees entry by entry: type,
// permissions, owner, mtime, size, content, symlink target, device
// numbers, extended attributes, link counts and hard-link groups. convert
// uses it to prove that an image mounted by the kernel holds exactly the
// tree it was made from before that tree is deleted, so by default it
// reports every property a squashfs image can carry and nothing it cannot
// (access and change times, directory sizes and link counts, sub-second
// times); the tests use it with their own Ignore options.
package treecmp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/xattr"
)

// Diff is one difference between tree A and tree B.
type Diff struct {
	// Path is slash-separated and relative to the roots; "." is the root.
	Path string
	// What names the property: "type", "mode", "content", "only in A", ...
	What string
	// A and B describe the property in each tree; empty when What says it all.
	A, B string
}

func (d Diff) String() string {
	if d.A == "" && d.B == "" {
		return fmt.Sprintf("%s: %s", strconv.Quote(d.Path), d.What)
	}
	return fmt.Sprintf("%s: %s %s != %s", strconv.Quote(d.Path), d.What, d.A, d.B)
}

// Options tune a comparison. The zero value compares everything listed in
// the package comment but link counts, all xattrs, with one content
// worker per CPU.
type Options struct {
	// Xattr limits the xattrs compared to names it accepts (e.g.
	// squash.StorableXattr); nil compares all.
	Xattr func(name string) bool
	// IgnoreXattrs skips xattrs altogether; IgnoreOverlayXattrs skips
	// trusted.overlay.* and user.overlay.*, overlayfs's bookkeeping.
	IgnoreXattrs, IgnoreOverlayXattrs bool
	// IgnoreRootMeta skips mode, owner, times, xattrs and link count of the
	// roots themselves, whose metadata often belongs to a mount point.
	IgnoreRootMeta bool
	// IgnoreDirMtime skips directory mtimes.
	IgnoreDirMtime bool
	// IgnoreOwner skips uid and gid.
	IgnoreOwner bool
	// IgnoreHardlinks skips the hard-link groups (and link counts).
	IgnoreHardlinks bool
	// Nlink compares link counts too; IgnoreDirNlink then leaves out
	// directories', which some filesystems (btrfs, overlayfs) count
	// differently.
	Nlink, IgnoreDirNlink bool
	// MaxDiffs stops collecting after that many differences; 0 means 100.
	MaxDiffs int
	// Workers compare file contents in parallel; 0 means runtime.NumCPU().
	// Reading a squashfs is decompression-bound, so more than one helps.
	Workers int
	// Progress, if set, is called with the number of entries compared so
	// far, every few thousand entries and once at the end.
	Progress func(entries int)
}

// Result is what Compare found.
type Result struct {
	Diffs []Diff // sorted by path; at most Options.MaxDiffs
	// Truncated says that more differences existed than Diffs holds.
	Truncated bool
	Entries   int   // entries compared (the roots included)
	Bytes     int64 // file content bytes compared in each tree
}

// Equal reports whether the trees matched.
func (r Result) Equal() bool { return len(r.Diffs) == 0 && !r.Truncated }

// Compare walks a and b together and returns their differences. It fails
// only when a root cannot be read at all; everything below is a Diff.
func Compare(a, b string, opts Options) (Result, error) {
	for _, root := range []string{a, b} {
		fi, err := os.Lstat(root)
		if err != nil {
			return Result{}, fmt.Errorf("compare trees: %w", err)
		}
		if !fi.IsDir() {
			return Result{}, fmt.Errorf("compare trees: %s is not a directory", root)
		}
	}
	return CompareAny(a, b, opts), nil
}

// CompareAny is Compare of two paths of any type (the tests compare
// single files too); a root it cannot read is a Diff.
func CompareAny(a, b string, opts Options) Result {
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 100
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	c := &comparer{a: a, b: b, opts: opts, linksA: map[fileID][]string{}, linksB: map[fileID][]string{}}
	jobs := make(chan job, 256)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufA, bufB, zero := make([]byte, chunk), make([]byte, chunk), make([]byte, chunk)
			for j := range jobs {
				if err := sameContent(filepath.Join(a, j.rel), filepath.Join(b, j.rel), j.size, bufA, bufB, zero); err != nil {
					c.add(j.rel, err.Error(), "", "")
				}
			}
		}()
	}
	c.jobs = jobs
	c.walk(".")
	close(jobs)
	wg.Wait()
	if !opts.IgnoreHardlinks {
		c.compareLinkGroups()
	}
	if opts.Progress != nil {
		opts.Progress(c.entries)
	}
	sort.SliceStable(c.diffs, func(i, j int) bool { return c.diffs[i].Path < c.diffs[j].Path })
	return Result{Diffs: c.diffs, Truncated: c.truncated, Entries: c.entries, Bytes: c.bytes}
}

// chunk is the read size for content comparison: large enough that big
// files take few syscalls, small enough for a buffer pair per worker.
const chunk = 256 << 10

type fileID struct{ dev, ino uint64 }

// job is a file whose contents a worker compares.
type job struct {
	rel  string
	size int64
}

type comparer struct {
	a, b string
	opts Options
	jobs chan<- job

	mu        sync.Mutex // guards diffs and truncated: workers add too
	diffs     []Diff
	truncated bool

	entries int
	bytes   int64
	xattrs  xattr.Reader // the walk's only: workers compare contents
	// linksA/B group the paths of non-directories by inode, so that hard
	// links can be matched as groups (link counts may include links
	// outside the tree, so they cannot be compared directly).
	linksA, linksB map[fileID][]string
}

func (c *comparer) add(path, what, a, b string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.diffs) >= c.opts.MaxDiffs {
		c.truncated = true
		return
	}
	c.diffs = append(c.diffs, Diff{Path: path, What: what, A: a, B: b})
}

func (c *comparer) full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.truncated
}

func (c *comparer) walk(rel string) {
	if c.full() {
		return
	}
	c.entries++
	if c.opts.Progress != nil && c.entries%4096 == 0 {
		c.opts.Progress(c.entries)
	}
	pa, pb := filepath.Join(c.a, rel), filepath.Join(c.b, rel)
	var sa, sb unix.Stat_t
	errA, errB := unix.Lstat(pa, &sa), unix.Lstat(pb, &sb)
	if errA != nil || errB != nil {
		c.add(rel, "lstat", errString(errA), errString(errB))
		return
	}
	ta, tb := sa.Mode&unix.S_IFMT, sb.Mode&unix.S_IFMT
	if ta != tb {
		c.add(rel, "type", typeName(ta), typeName(tb))
		return
	}
	if !(rel == "." && c.opts.IgnoreRootMeta) {
		c.compareMeta(rel, pa, pb, &sa, &sb)
	}
	switch ta {
	case unix.S_IFDIR:
		c.walkDir(rel, pa, pb)
		return
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			c.add(rel, "size", strconv.FormatInt(sa.Size, 10), strconv.FormatInt(sb.Size, 10))
		} else if sa.Size > 0 {
			c.bytes += sa.Size
			c.jobs <- job{rel, sa.Size}
		}
	case unix.S_IFLNK:
		la, errA := os.Readlink(pa)
		lb, errB := os.Readlink(pb)
		switch {
		case errA != nil || errB != nil:
			c.add(rel, "readlink", errString(errA), errString(errB))
		case la != lb:
			c.add(rel, "symlink target", strconv.Quote(la), strconv.Quote(lb))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			c.add(rel, "device", devString(sa.Rdev), devString(sb.Rdev))
		}
	}
	if !c.opts.IgnoreHardlinks {
		ia, ib := fileID{sa.Dev, sa.Ino}, fileID{sb.Dev, sb.Ino}
		c.linksA[ia] = append(c.linksA[ia], rel)
		c.linksB[ib] = append(c.linksB[ib], rel)
	}
}

func (c *comparer) compareMeta(rel, pa, pb string, sa, sb *unix.Stat_t) {
	if ma, mb := sa.Mode&^unix.S_IFMT, sb.Mode&^unix.S_IFMT; ma != mb {
		c.add(rel, "mode", fmt.Sprintf("%04o", ma), fmt.Sprintf("%04o", mb))
	}
	if !c.opts.IgnoreOwner {
		if sa.Uid != sb.Uid {
			c.add(rel, "uid", strconv.FormatUint(uint64(sa.Uid), 10), strconv.FormatUint(uint64(sb.Uid), 10))
		}
		if sa.Gid != sb.Gid {
			c.add(rel, "gid", strconv.FormatUint(uint64(sa.Gid), 10), strconv.FormatUint(uint64(sb.Gid), 10))
		}
	}
	isDir := sa.Mode&unix.S_IFMT == unix.S_IFDIR
	// Whole seconds only: squashfs stores no fractions.
	if !(isDir && c.opts.IgnoreDirMtime) && sa.Mtim.Sec != sb.Mtim.Sec {
		c.add(rel, "mtime", strconv.FormatInt(sa.Mtim.Sec, 10), strconv.FormatInt(sb.Mtim.Sec, 10))
	}
	if c.opts.Nlink && !(isDir && c.opts.IgnoreDirNlink) && !(!isDir && c.opts.IgnoreHardlinks) && sa.Nlink != sb.Nlink {
		c.add(rel, "nlink", strconv.FormatUint(uint64(sa.Nlink), 10), strconv.FormatUint(uint64(sb.Nlink), 10))
	}
	if !c.opts.IgnoreXattrs {
		c.compareXattrs(rel, pa, pb)
	}
}

func (c *comparer) compareXattrs(rel, pa, pb string) {
	xa, errA := c.readXattrs(pa)
	xb, errB := c.readXattrs(pb)
	if errA != nil || errB != nil {
		c.add(rel, "xattrs", errString(errA), errString(errB))
		return
	}
	names := make([]string, 0, len(xa)+len(xb))
	for k := range xa {
		names = append(names, k)
	}
	for k := range xb {
		if _, ok := xa[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		va, okA := xa[k]
		vb, okB := xb[k]
		switch {
		case !okA:
			c.add(rel, "xattr "+k, "missing", "present")
		case !okB:
			c.add(rel, "xattr "+k, "present", "missing")
		case va != vb:
			c.add(rel, "xattr "+k, quoteShort(va), quoteShort(vb))
		}
	}
}

func (c *comparer) wantXattr(name string) bool {
	if c.opts.IgnoreOverlayXattrs && (strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")) {
		return false
	}
	return c.opts.Xattr == nil || c.opts.Xattr(name)
}

// readXattrs returns the wanted xattrs of path, not following symlinks.
func (c *comparer) readXattrs(path string) (map[string]string, error) {
	attrs, err := c.xattrs.All(path, c.wantXattr)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(attrs))
	for _, a := range attrs {
		out[a.Name] = string(a.Value)
	}
	return out, nil
}

func (c *comparer) walkDir(rel, pa, pb string) {
	na, errA := readNames(pa)
	nb, errB := readNames(pb)
	if errA != nil || errB != nil {
		c.add(rel, "readdir", errString(errA), errString(errB))
		return
	}
	inB := make(map[string]bool, len(nb))
	for _, n := range nb {
		inB[n] = true
	}
	inA := make(map[string]bool, len(na))
	for _, n := range na {
		inA[n] = true
		if !inB[n] {
			c.add(joinRel(rel, n), "only in A", "", "")
		}
	}
	for _, n := range nb {
		if !inA[n] {
			c.add(joinRel(rel, n), "only in B", "", "")
		}
	}
	for _, n := range na {
		if inB[n] {
			c.walk(joinRel(rel, n))
		}
	}
}

// compareLinkGroups checks that the paths sharing an inode in one tree
// share one in the other: the partitions into inode groups must match.
func (c *comparer) compareLinkGroups() {
	groupOfB := make(map[string]string, len(c.linksB))
	for _, g := range c.linksB {
		k := groupKey(g)
		for _, p := range g {
			groupOfB[p] = k
		}
	}
	keys := make([]string, 0)
	byKey := map[string][]string{}
	for _, g := range c.linksA {
		k := groupKey(g)
		keys = append(keys, k)
		byKey[k] = g
	}
	sort.Strings(keys)
	reported := map[string]bool{}
	for _, ka := range keys {
		for _, p := range byKey[ka] {
			kb, ok := groupOfB[p]
			if !ok || kb == ka || reported[ka+"\x00"+kb] {
				continue // paths missing from B are already reported
			}
			reported[ka+"\x00"+kb] = true
			c.add(p, "hard-link group", ka, kb)
		}
	}
}

func groupKey(g []string) string {
	s := append([]string(nil), g...)
	sort.Strings(s)
	for i, p := range s {
		s[i] = strconv.Quote(p)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("readdir %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

// sameContent compares two files whose sizes matched at lstat, skipping
// ranges that are holes in both (a 5 GiB sparse file costs only its
// data), and notices when either has shrunk since.
func sameContent(pa, pb string, size int64, bufA, bufB, zero []byte) error {
	fa, err := os.Open(pa)
	if err != nil {
		return fmt.Errorf("content: %w", err)
	}
	defer fa.Close()
	fb, err := os.Open(pb)
	if err != nil {
		return fmt.Errorf("content: %w", err)
	}
	defer fb.Close()
	for off := int64(0); off < size; {
		ha, hb := holeEnd(fa, off, size), holeEnd(fb, off, size)
		if ha > off && hb > off {
			off = min(ha, hb)
			continue
		}
		n := min(int64(len(bufA)), size-off)
		if ha > off {
			n = min(n, ha-off)
		}
		if hb > off {
			n = min(n, hb-off)
		}
		a, b := bufA[:n], bufB[:n]
		if ha > off {
			a = zero[:n]
		} else if err := readFull(fa, a, off); err != nil {
			return fmt.Errorf("content: read A: %w", err)
		}
		if hb > off {
			b = zero[:n]
		} else if err := readFull(fb, b, off); err != nil {
			return fmt.Errorf("content: read B: %w", err)
		}
		if !bytes.Equal(a, b) {
			for i := range a {
				if a[i] != b[i] {
					return fmt.Errorf("content differs at offset %d", off+int64(i))
				}
			}
		}
		off += n
	}
	return nil
}

// readFull reads len(b) bytes at off; a file that shrank says so.
func readFull(f *os.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if errors.Is(err, io.EOF) && n < len(b) {
		return fmt.Errorf("content length differs after offset %d", off+int64(n))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// holeEnd returns where the hole at off ends, or off itself if off holds
// data. Filesystems without SEEK_DATA report everything as data.
func holeEnd(f *os.File, off, size int64) int64 {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size
	}
	if err != nil || next < off {
		return off
	}
	return min(next, size)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char-device"
	case unix.S_IFBLK:
		return "block-device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type-%o", t)
}

func devString(d uint64) string { return fmt.Sprintf("%d:%d", unix.Major(d), unix.Minor(d)) }

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func quoteShort(v string) string {
	if len(v) > 64 {
		return fmt.Sprintf("%q...(%d bytes)", v[:64], len(v))
	}
	return strconv.Quote(v)
}
