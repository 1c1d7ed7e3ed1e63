package testtree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Diff is one difference between two trees.
type Diff struct {
	// Path is slash-separated and relative to the roots; "." is the root.
	Path string
	// What names the property: "type", "mode", "uid", "content", ...
	What string
	// A and B describe the property in each tree.
	A, B string
}

func (d Diff) String() string {
	if d.A == "" && d.B == "" {
		return fmt.Sprintf("%s: %s", strconv.Quote(d.Path), d.What)
	}
	return fmt.Sprintf("%s: %s %s != %s", strconv.Quote(d.Path), d.What, d.A, d.B)
}

// CompareOptions says what Compare may ignore. Access and change times are
// never compared: reading a tree changes the former, copying the latter.
type CompareOptions struct {
	// IgnoreRootMeta skips mode, owner, times, xattrs and nlink of the roots
	// themselves, whose metadata often belongs to a mount point.
	IgnoreRootMeta bool
	// IgnoreDirMtime skips directory mtimes, which copying tools and
	// overlayfs do not always keep.
	IgnoreDirMtime bool
	// IgnoreDirNlink skips directory link counts, which some filesystems
	// (btrfs, overlayfs) report differently.
	IgnoreDirNlink bool
	// IgnoreOverlayXattrs skips trusted.overlay.* and user.overlay.*,
	// which overlayfs uses internally.
	IgnoreOverlayXattrs bool
	// IgnoreXattrs skips xattrs altogether.
	IgnoreXattrs bool
	// IgnoreOwner skips uid and gid.
	IgnoreOwner bool
	// IgnoreHardlinks skips nlink of non-directories and the inode-group
	// check.
	IgnoreHardlinks bool
	// MaxDiffs stops the walk after that many differences; 0 means 1000.
	MaxDiffs int
}

// Compare compares two trees fully, ignoring only access and change times.
func Compare(a, b string) []Diff {
	return CompareWith(a, b, CompareOptions{})
}

// AssertEqual fails t with every difference between the trees.
func AssertEqual(t testing.TB, a, b string, opts CompareOptions) {
	t.Helper()
	diffs := CompareWith(a, b, opts)
	if len(diffs) == 0 {
		return
	}
	var sb strings.Builder
	for _, d := range diffs {
		sb.WriteString("\n\t")
		sb.WriteString(d.String())
	}
	t.Errorf("trees %s and %s differ in %d ways:%s", a, b, len(diffs), sb.String())
}

// CompareWith compares the trees below a and b, entry by entry, and
// returns the differences in walk order.
func CompareWith(a, b string, opts CompareOptions) []Diff {
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 1000
	}
	c := &comparer{a: a, b: b, opts: opts,
		inoA: map[fileID][]string{}, inoB: map[fileID][]string{}}
	c.walk(".")
	if !opts.IgnoreHardlinks && !c.full() {
		c.compareLinkGroups()
	}
	return c.diffs
}

type fileID struct{ dev, ino uint64 }

type comparer struct {
	a, b       string
	opts       CompareOptions
	diffs      []Diff
	inoA, inoB map[fileID][]string
	pathsA     map[string]fileID
	pathsB     map[string]fileID
	// Reused across files: per-file buffers dominated the cost of
	// comparing thousands of small files.
	bufA, bufB, zero []byte
}

func (c *comparer) full() bool { return len(c.diffs) >= c.opts.MaxDiffs }

func (c *comparer) add(path, what, a, b string) {
	if !c.full() {
		c.diffs = append(c.diffs, Diff{Path: path, What: what, A: a, B: b})
	}
}

func (c *comparer) walk(rel string) {
	if c.full() {
		return
	}
	pa, pb := filepath.Join(c.a, rel), filepath.Join(c.b, rel)
	var sa, sb unix.Stat_t
	errA := unix.Lstat(pa, &sa)
	errB := unix.Lstat(pb, &sb)
	if errA != nil || errB != nil {
		c.add(rel, "lstat", errString(errA), errString(errB))
		return
	}
	ta, tb := sa.Mode&unix.S_IFMT, sb.Mode&unix.S_IFMT
	if ta != tb {
		c.add(rel, "type", typeName(ta), typeName(tb))
		return
	}
	isRoot := rel == "."
	isDir := ta == unix.S_IFDIR
	if !(isRoot && c.opts.IgnoreRootMeta) {
		c.compareMeta(rel, pa, pb, &sa, &sb, isDir)
	}
	if !isDir && !c.opts.IgnoreHardlinks {
		c.noteInode(rel, &sa, &sb)
	}
	switch ta {
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			c.add(rel, "size", strconv.FormatInt(sa.Size, 10), strconv.FormatInt(sb.Size, 10))
		} else if err := c.compareContent(pa, pb, sa.Size); err != nil {
			c.add(rel, err.Error(), "", "")
		}
	case unix.S_IFLNK:
		la, errA := os.Readlink(pa)
		lb, errB := os.Readlink(pb)
		if errA != nil || errB != nil {
			c.add(rel, "readlink", errString(errA), errString(errB))
		} else if la != lb {
			c.add(rel, "symlink target", strconv.Quote(la), strconv.Quote(lb))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			c.add(rel, "rdev", devString(sa.Rdev), devString(sb.Rdev))
		}
	case unix.S_IFDIR:
		c.walkDir(rel, pa, pb)
	}
}

func (c *comparer) compareMeta(rel, pa, pb string, sa, sb *unix.Stat_t, isDir bool) {
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
	if !(isDir && c.opts.IgnoreDirMtime) && sa.Mtim.Sec != sb.Mtim.Sec {
		c.add(rel, "mtime", strconv.FormatInt(sa.Mtim.Sec, 10), strconv.FormatInt(sb.Mtim.Sec, 10))
	}
	checkNlink := !c.opts.IgnoreHardlinks
	if isDir {
		checkNlink = !c.opts.IgnoreDirNlink
	}
	if checkNlink && sa.Nlink != sb.Nlink {
		c.add(rel, "nlink", strconv.FormatUint(sa.Nlink, 10), strconv.FormatUint(sb.Nlink, 10))
	}
	if !c.opts.IgnoreXattrs {
		c.compareXattrs(rel, pa, pb)
	}
}

func (c *comparer) compareXattrs(rel, pa, pb string) {
	xa, errA := readXattrs(pa)
	xb, errB := readXattrs(pb)
	if errA != nil || errB != nil {
		c.add(rel, "xattrs", errString(errA), errString(errB))
		return
	}
	names := map[string]bool{}
	for k := range xa {
		names[k] = true
	}
	for k := range xb {
		names[k] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		if c.opts.IgnoreOverlayXattrs && (strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.")) {
			continue
		}
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
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

func (c *comparer) noteInode(rel string, sa, sb *unix.Stat_t) {
	if c.pathsA == nil {
		c.pathsA, c.pathsB = map[string]fileID{}, map[string]fileID{}
	}
	ia := fileID{sa.Dev, sa.Ino}
	ib := fileID{sb.Dev, sb.Ino}
	c.inoA[ia] = append(c.inoA[ia], rel)
	c.inoB[ib] = append(c.inoB[ib], rel)
	c.pathsA[rel] = ia
	c.pathsB[rel] = ib
}

// compareLinkGroups checks that paths sharing an inode in one tree share
// one in the other: the partition into inode groups must match.
func (c *comparer) compareLinkGroups() {
	paths := make([]string, 0, len(c.pathsA))
	for p := range c.pathsA {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	reported := map[string]bool{}
	for _, p := range paths {
		ga := c.inoA[c.pathsA[p]]
		gb := c.inoB[c.pathsB[p]]
		if len(ga) == 1 && len(gb) == 1 {
			continue
		}
		ka, kb := groupKey(ga), groupKey(gb)
		if ka == kb || reported[ka+"\x00"+kb] {
			continue
		}
		reported[ka+"\x00"+kb] = true
		c.add(p, "hard-link group", ka, kb)
	}
}

func groupKey(g []string) string {
	s := append([]string(nil), g...)
	sort.Strings(s)
	q := make([]string, len(s))
	for i, p := range s {
		q[i] = strconv.Quote(p)
	}
	return "[" + strings.Join(q, " ") + "]"
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

// readXattrs reads every xattr of path without following a symlink.
func readXattrs(path string) (map[string]string, error) {
	var names []byte
	for size := 4096; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return map[string]string{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr %s: %w", path, err)
		}
		names = buf[:n]
		break
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(names), "\x00") {
		if name == "" {
			continue
		}
		v, err := getXattr(path, name)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func getXattr(path, name string) (string, error) {
	for size := 256; size <= 1<<20; size *= 8 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("getxattr %s %s: %w", path, name, err)
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("getxattr %s %s: value over 1 MiB", path, name)
}

const chunkSize = 1 << 20

// compareContent compares two files of equal size, skipping ranges that
// are holes in both so that a 5 GiB sparse file costs only its data.
func (c *comparer) compareContent(pa, pb string, size int64) error {
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
	if c.bufA == nil {
		c.bufA, c.bufB, c.zero = make([]byte, chunkSize), make([]byte, chunkSize), make([]byte, chunkSize)
	}
	bufA, bufB, zero := c.bufA, c.bufB, c.zero
	for off := int64(0); off < size; {
		ha := holeEnd(fa, off, size)
		hb := holeEnd(fb, off, size)
		if ha > off && hb > off {
			off = min(ha, hb)
			continue
		}
		n := min(int64(chunkSize), size-off)
		if ha > off {
			n = min(n, ha-off)
		}
		if hb > off {
			n = min(n, hb-off)
		}
		a, b := bufA[:n], bufB[:n]
		if ha > off {
			a = zero[:n]
		} else if _, err := fa.ReadAt(a, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("content: read A at %d: %w", off, err)
		}
		if hb > off {
			b = zero[:n]
		} else if _, err := fb.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("content: read B at %d: %w", off, err)
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
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type%o", t)
}

func devString(d uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(d), unix.Minor(d))
}

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
