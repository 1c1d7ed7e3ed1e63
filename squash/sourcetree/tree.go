// Package sourcetree turns mksquashfs SOURCE arguments into a sorted,
// deterministic list of image entries and feeds them to a squash.Writer.
//
// Scan walks the sources once (lstat only, symlinks are never followed;
// several directories at once, merged in order) and keeps everything it
// needs in memory; Write then reads file data with a pool of prefetching
// goroutines so that many small files (a Portage tree) are not
// bottlenecked on one open/read/close at a time.
package sourcetree

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/xattr"
	"github.com/squashportage/squashportage/squash"
)

// Options control how sources become image entries. The zero value gives
// mksquashfs's defaults.
type Options struct {
	// KeepAsDirectory makes a single source directory an entry of the root
	// instead of the root itself (mksquashfs -keep-as-directory).
	KeepAsDirectory bool

	// NoXattrs skips reading extended attributes altogether.
	NoXattrs bool

	// Excludes are the -e / -ef entries. Without Wildcards or Regex they are
	// paths: absolute or starting with ./ or ../ are taken as given, anything
	// else is relative to each source; the files they name (by device and
	// inode, as mksquashfs does) are left out. With Wildcards or Regex they
	// are patterns over image paths; see the package's exclude.go.
	Excludes  []string
	Wildcards bool
	Regex     bool

	// OmitPaths are files left out by identity whatever the exclude mode,
	// e.g. the output image when it lies inside a source. Missing paths are
	// ignored.
	OmitPaths []string

	AllRoot   bool    // every uid and gid becomes 0
	ForceUID  *uint32 // takes precedence over AllRoot
	ForceGID  *uint32 // takes precedence over AllRoot
	AllTime   *uint32 // every mtime becomes this
	ClampTime *uint32 // mtimes later than this become this (SOURCE_DATE_EPOCH)

	// FileMode and DirMode change the permissions of every non-directory
	// (symlinks too) and of every directory (the root too, from its own
	// mode: RootMode is then unused), as mksquashfs 4.6's
	// -force-file-mode and -force-dir-mode do.
	FileMode, DirMode *ModeSpec
	// IDOffset is added to every uid and gid, after the overrides above
	// (mksquashfs -uid-gid-offset).
	IDOffset uint32

	// MaxDepth, when set, is how many levels of directories the scan
	// descends (mksquashfs -max-depth): 0 stores the root alone, 1 its
	// entries (directories among them empty), and so on.
	MaxDepth *int

	// KeepXattr, when set, says which extended attributes of the sources
	// to store (mksquashfs -xattrs-include, -xattrs-exclude); AddXattrs
	// are added to every entry, user.* ones to files and directories only
	// (-xattrs-add), replacing any of the same name.
	KeepXattr func(name string) bool
	AddXattrs []squash.Xattr

	// RootMode, RootUID, RootGID and RootTime replace the root directory's
	// permission bits (07777), owner, group and mtime (mksquashfs
	// -root-mode, -root-uid, -root-gid, -root-time), whether the root is a
	// source directory or made up for several sources (or a file, or
	// KeepAsDirectory), where mksquashfs uses mode 0777, the caller's ids
	// and the current time. AllRoot, ForceUID, ForceGID, AllTime and
	// ClampTime still apply on top, as they do in mksquashfs.
	RootMode                   *fs.FileMode
	RootUID, RootGID, RootTime *uint32

	// DefaultMode, DefaultUID and DefaultGID are the permissions (a change
	// of 0755) and ids of the directories a tar archive implies without
	// listing them (0755 and the caller's otherwise), and of the root
	// where RootMode, RootUID and RootGID do not say (the change then of
	// the root's own mode), as mksquashfs 4.7.5's -default-mode,
	// -default-uid and -default-gid do.
	DefaultMode            *ModeSpec
	DefaultUID, DefaultGID *uint32

	// NumericOwner keeps a tar archive's uids and gids as they are; by
	// default the user and group names it records are looked up here
	// and their ids used, where they exist (mksquashfs -numeric-owner).
	NumericOwner bool

	// NoHardlinks stores each name of a hard-linked file as a file of its
	// own (mksquashfs -no-hardlinks); duplicate detection still lets them
	// share their data blocks.
	NoHardlinks bool

	// OneFileSystem leaves out every entry on another filesystem than the
	// directory it is in (mksquashfs -one-file-system): a mount point and
	// all below it, or a file bind-mounted there, with a warning each.
	// Each source keeps its own filesystem.
	OneFileSystem bool

	// Sort orders the files' data in the image by priority (mksquashfs
	// -sort); entries stay in directory order.
	Sort []SortRule

	// PseudoDir, when set (a d or D definition), makes the directories a
	// pseudo definition's path lacks, instead of the definition failing
	// (mksquashfs -pd); PseudoOverride keeps pseudo entries' owners and
	// permissions as defined over AllRoot, ForceUID, ForceGID, FileMode,
	// DirMode (-pseudo-override).
	PseudoDir      *Pseudo
	PseudoOverride bool

	// Pseudo are pseudo file definitions (mksquashfs -p, -pf), applied in
	// order after the scan. The files commands' output is held in are let
	// go of by Close.
	Pseudo []Pseudo

	// IgnoreZeros reads on past the end of a tar archive, for archives
	// concatenated (mksquashfs -ignore-zeros, tar --ignore-zeros).
	IgnoreZeros bool

	// StripComponents drops this many leading components of a tar
	// archive's names (tar --strip-components), and the entries that have
	// no more than that (ScanTar only).
	StripComponents int

	// Warn receives non-fatal problems (skipped xattr namespaces, renamed
	// duplicate sources). Nil discards them.
	Warn func(msg string)

	// OnAdd, if set, is called by Write just before each entry is added
	// (mksquashfs -info).
	OnAdd func(h *squash.Header)
}

// Tree is the scanned, sorted result; entries are in Add order.
type Tree struct {
	entries []entry
	files   int
	dirs    int
	bytes   int64
	onAdd   func(h *squash.Header)
	open    []*os.File // files contents are read from (see extra.from), closed by Close
	base    *base      // the image appended to (AppendTo), or nil
	sort    []SortRule // Options.Sort
	sources []string   // what Scan scanned, for relative sort rules
}

// entry is one image entry, kept small: a tree's worth of them is held
// between Scan and Write. Paths are rebuilt from the parent chain as Write
// goes.
type entry struct {
	name   string // base name; the root's is ""
	parent int32  // index of the parent directory's entry; -1 for the root
	mode   fs.FileMode
	uid    uint32
	gid    uint32
	mtime  uint32
	nlink  uint32 // names of a hard-linked file in the tree (squash.Header.Nlink)
	size   int64
	x      *extra // what few entries have
}

type extra struct {
	src string // the filesystem path, when not the parent's + "/" + name
	// from, when set, holds the contents at fromOff (src names it for
	// messages): a tar spool, the archive itself, a pseudo command's
	// output or a -pf file's data, open for as long as the Tree is
	from         *os.File
	fromOff      int64
	target       string // symlink
	link         string // hard link: the image path of the first name
	major, minor uint32
	xattrs       []squash.Xattr
	old          *squash.Inode // a file of the image appended to (AppendTo)
}

func (e *entry) extra() *extra {
	if e.x == nil {
		e.x = &extra{}
	}
	return e.x
}

func (e *entry) isLink() bool { return e.x != nil && e.x.link != "" }

// isOld says the entry is a file of the image appended to, whose data is
// already compressed there.
func (e *entry) isOld() bool { return e.x != nil && e.x.old != nil }

// header returns the entry's image header, given its image path.
func (e *entry) header(name string) squash.Header {
	h := squash.Header{Name: name, Mode: e.mode, UID: e.uid, GID: e.gid, Mtime: e.mtime, Size: e.size, Nlink: e.nlink}
	if x := e.x; x != nil {
		if x.link != "" {
			return squash.Header{Name: name, Link: x.link}
		}
		h.Target, h.Major, h.Minor, h.Xattrs = x.target, x.major, x.minor, x.xattrs
	}
	return h
}

// paths rebuilds the image and filesystem paths of entries visited in
// order, keeping those of the directories above the current one.
type paths struct {
	entries []entry
	stack   []dirPaths
}

type dirPaths struct {
	i        int32
	img, src string
}

// of returns entry i's image and filesystem paths; i must not go back
// past a directory's entries once they are left.
func (p *paths) of(i int) (img, src string) {
	e := &p.entries[i]
	if e.parent >= 0 {
		for len(p.stack) > 0 && p.stack[len(p.stack)-1].i != e.parent {
			p.stack = p.stack[:len(p.stack)-1]
		}
		if len(p.stack) > 0 { // always, in a scanned tree
			top := p.stack[len(p.stack)-1]
			img, src = e.name, top.src+"/"+e.name
			if top.img != "" {
				img = top.img + "/" + e.name
			}
		}
	}
	if e.x != nil && e.x.src != "" {
		src = e.x.src
	}
	if e.mode.IsDir() && !e.isLink() {
		p.stack = append(p.stack, dirPaths{int32(i), img, src})
	}
	return img, src
}

// Stats returns totals for progress reporting: non-directory entries (hard
// links not counted twice), directories including the root, and the number
// of regular-file bytes Write will read.
func (t *Tree) Stats() (files, dirs int, bytes int64) {
	return t.files, t.dirs, t.bytes
}

// LatestMtime returns the latest modification time of the entries
// (mksquashfs -mkfs-time inode, -repro).
func (t *Tree) LatestMtime() uint32 {
	var latest uint32
	for i := range t.entries {
		if e := &t.entries[i]; !e.isLink() {
			latest = max(latest, e.mtime)
		}
	}
	return latest
}

// Len returns the number of entries Write adds, hard links included.
func (t *Tree) Len() int { return len(t.entries) }

// devIno identifies a file for hard-link detection and path excludes.
type devIno struct{ dev, ino uint64 }

// scanner holds the state of one Scan.
type scanner struct {
	opts    Options
	ex      *excluder
	links   map[devIno]firstName
	tree    *Tree
	parent  int32 // the directory being scanned
	xattrs  xattr.Reader
	linkBuf []byte
	// pending, on a walk's worker, is the directory being scanned, which
	// keeps the warnings for merge to raise in order.
	pending *dirScan
	ids     map[string]int64 // a tar archive's owner names looked up (-1: unknown)
}

// firstName is the entry, and its image path, of a hard-linked inode's
// first name.
type firstName struct {
	i   int
	img string
}

// Scan lstats the sources and everything below them and returns the entries
// in a deterministic order. Source semantics follow mksquashfs: a single
// directory becomes the root (taking its metadata) unless KeepAsDirectory;
// otherwise each source becomes a root entry named by its base name, with
// _1, _2, ... appended to repeated names in argument order. Pseudo
// definitions come last; with any, the caller must Close the tree.
func Scan(sources []string, opts Options) (*Tree, error) {
	s, err := scanSources(sources, opts)
	if err != nil {
		return nil, err
	}
	if err := s.applyPseudo(opts.Pseudo); err != nil {
		s.tree.Close()
		return nil, err
	}
	return s.tree, nil
}

func scanSources(sources []string, opts Options) (*scanner, error) {
	if len(sources) == 0 {
		return nil, errors.New("no source given")
	}
	ex, err := newExcluder(sources, opts)
	if err != nil {
		return nil, err
	}
	s := &scanner{
		opts:   opts,
		ex:     ex,
		links:  make(map[devIno]firstName),
		parent: -1,
		tree:   &Tree{onAdd: opts.OnAdd, sort: opts.Sort, sources: sources},
	}

	var st unix.Stat_t
	if len(sources) == 1 && !opts.KeepAsDirectory {
		if err := unix.Lstat(sources[0], &st); err != nil {
			return nil, fmt.Errorf("source: %w", &fs.PathError{Op: "lstat", Path: sources[0], Err: err})
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			s.fixRoot(&st)
			hdr, err := s.header(noDir, "", sources[0], "", &st)
			if err != nil {
				return nil, err
			}
			s.add(hdr, sources[0], true)
			s.parent = 0
			if !s.descends("") {
				return s, nil
			}
			if err := s.scanDir(sources[0], "", rootMatch(ex), uint64(st.Dev)); err != nil {
				return nil, err
			}
			return s, nil
		}
	}

	st = madeUpRoot(time.Now().Unix())
	s.fixRoot(&st)
	root := squash.Header{
		Mode:  squash.FileModeFromUnix(st.Mode),
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: clampUnix(st.Mtim.Sec),
	}
	s.fixOwnerTime(&root)
	root.Xattrs = s.addXattrs(root.Mode, nil)
	s.add(root, "", false)
	s.parent = 0

	type top struct{ name, src string }
	tops := make([]top, 0, len(sources))
	used := make(map[string]bool, len(sources))
	for _, src := range sources {
		name := sourceName(src)
		if used[name] {
			// mksquashfs keeps counting until it finds a free name.
			base := name
			for i := 1; used[name]; i++ {
				name = base + "_" + strconv.Itoa(i)
			}
			s.warn(fmt.Sprintf("source directory entry %s already used, using %s for %s", base, name, src))
		}
		used[name] = true
		tops = append(tops, top{name, src})
	}
	sort.Slice(tops, func(i, j int) bool { return tops[i].name < tops[j].name })

	rm := rootMatch(ex)
	for _, tp := range tops {
		if err := unix.Lstat(tp.src, &st); err != nil {
			return nil, fmt.Errorf("source: %w", &fs.PathError{Op: "lstat", Path: tp.src, Err: err})
		}
		if err := s.child(tp.src, tp.name, tp.name, &st, rm, true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sourceName is the root entry name mksquashfs gives a source: its base
// name, resolving "." and ".." so that they still get a real name.
func sourceName(src string) string {
	name := filepath.Base(src)
	if name == "." || name == ".." || name == "/" {
		if abs, err := filepath.Abs(src); err == nil {
			name = filepath.Base(abs)
		}
	}
	if name == "/" || name == "." {
		name = "root"
	}
	return name
}

func (s *scanner) warn(msg string) {
	if d := s.pending; d != nil {
		d.warns = append(d.warns, warning{len(d.entries), msg})
		return
	}
	if s.opts.Warn != nil {
		s.opts.Warn(msg)
	}
}

// scanDir adds the sorted children of the directory at fsPath (image path
// imgPath, on filesystem dev) and, after each subdirectory's own entry,
// its children.
func (s *scanner) scanDir(fsPath, imgPath string, m matchState, dev uint64) error {
	return s.merge(s.walk(fsPath, imgPath, m, dev), s.parent)
}

// child adds one entry below a directory (unless excluded) and recurses
// into it if it is a directory. A top entry is a source itself: its path
// is kept, not rebuilt from its parent's.
func (s *scanner) child(fsPath, imgPath, name string, st *unix.Stat_t, m matchState, top bool) error {
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if s.ex.excludedID(devIno{uint64(st.Dev), st.Ino}) {
		return nil
	}
	excluded, sub := s.ex.match(m, name, isDir)
	if excluded {
		return nil
	}
	var key devIno
	if !isDir && st.Nlink > 1 && !s.opts.NoHardlinks {
		key = devIno{uint64(st.Dev), st.Ino}
		if first, ok := s.links[key]; ok {
			// The writer finds the first name only if it was told how
			// many names to expect (Nlink).
			s.tree.entries[first.i].nlink++
			s.tree.entries = append(s.tree.entries, entry{name: name, parent: s.parent, x: &extra{link: first.img}})
			return nil
		}
		s.links[key] = firstName{len(s.tree.entries), imgPath}
	}
	hdr, err := s.header(noDir, "", fsPath, imgPath, st)
	if err != nil {
		return err
	}
	if key != (devIno{}) {
		hdr.Nlink = 1
	}
	s.add(hdr, fsPath, top)
	if isDir && s.descends(imgPath) {
		parent := s.parent
		s.parent = int32(len(s.tree.entries) - 1)
		err := s.scanDir(fsPath, imgPath, sub, uint64(st.Dev))
		s.parent = parent
		return err
	}
	return nil
}

// descends says whether the scan lists the directory at image path img
// (MaxDepth).
func (s *scanner) descends(img string) bool {
	if s.opts.MaxDepth == nil {
		return true
	}
	depth := 0
	if img != "" {
		depth = strings.Count(img, "/") + 1
	}
	return depth < *s.opts.MaxDepth
}

// add appends an entry; src is kept when the path cannot be rebuilt from
// the parent's (a source itself).
func (s *scanner) add(hdr squash.Header, src string, keepSrc bool) {
	e := newEntry(hdr, s.parent)
	if keepSrc {
		e.extra().src = src
	}
	s.tree.count(&e)
	s.tree.entries = append(s.tree.entries, e)
}

// newEntry keeps what the image needs of hdr.
func newEntry(hdr squash.Header, parent int32) entry {
	e := entry{
		name:   path.Base("/" + hdr.Name),
		parent: parent,
		mode:   hdr.Mode,
		uid:    hdr.UID,
		gid:    hdr.GID,
		mtime:  hdr.Mtime,
		nlink:  hdr.Nlink,
		size:   hdr.Size,
	}
	if hdr.Name == "" {
		e.name = ""
	}
	if hdr.Target != "" {
		e.extra().target = hdr.Target
	}
	if hdr.Major != 0 || hdr.Minor != 0 {
		x := e.extra()
		x.major, x.minor = hdr.Major, hdr.Minor
	}
	if len(hdr.Xattrs) > 0 {
		e.extra().xattrs = hdr.Xattrs
	}
	return e
}

// count adds an entry to the totals of Stats.
func (t *Tree) count(e *entry) {
	switch {
	case e.mode.IsDir():
		t.dirs++
	case e.mode.IsRegular():
		t.files++
		t.bytes += e.size
	default:
		t.files++
	}
}

// noDir is header's dirfd for a file known by its path only.
const noDir = -1

// header builds the image header of the file at fsPath from its lstat
// data. When the file's directory is open as dirfd (else noDir), name
// (its entry there) spares the kernel walking fsPath again.
func (s *scanner) header(dirfd int, name, fsPath, imgPath string, st *unix.Stat_t) (squash.Header, error) {
	h := squash.Header{
		Name:  imgPath,
		Mode:  squash.FileModeFromUnix(st.Mode),
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: clampUnix(st.Mtim.Sec),
	}
	s.fixOwnerTime(&h)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		h.Size = st.Size
	case unix.S_IFLNK:
		target, err := s.readlink(dirfd, name, fsPath, st.Size)
		if err != nil {
			return h, err
		}
		h.Target = target
	case unix.S_IFBLK, unix.S_IFCHR:
		h.Major = unix.Major(uint64(st.Rdev))
		h.Minor = unix.Minor(uint64(st.Rdev))
	}
	if !s.opts.NoXattrs {
		xs, err := s.readXattrs(dirfd, name, fsPath)
		if err != nil {
			return h, err
		}
		h.Xattrs = xs
	}
	h.Xattrs = s.addXattrs(h.Mode, h.Xattrs)
	return h, nil
}

// madeUpRoot is the lstat data mksquashfs gives a root it makes up (for
// several sources, or a tar archive): mode 0777, the caller's ids, now.
func madeUpRoot(now int64) unix.Stat_t {
	return unix.Stat_t{
		Mode: unix.S_IFDIR | 0o777,
		Uid:  uint32(os.Getuid()),
		Gid:  uint32(os.Getgid()),
		Mtim: unix.Timespec{Sec: now},
	}
}

// fixRoot applies the root directory's overrides to its lstat data, before
// the overrides of every entry (fixOwnerTime), as mksquashfs does.
func (s *scanner) fixRoot(st *unix.Stat_t) {
	o := &s.opts
	switch {
	case o.DirMode != nil:
	case o.RootMode != nil:
		st.Mode = st.Mode&unix.S_IFMT | squash.UnixPerm(*o.RootMode)
	case o.DefaultMode != nil:
		st.Mode = st.Mode&unix.S_IFMT | o.DefaultMode.Apply(st.Mode&0o7777, true)
	}
	if id := cmp.Or(o.RootUID, o.DefaultUID); id != nil {
		st.Uid = *id
	}
	if id := cmp.Or(o.RootGID, o.DefaultGID); id != nil {
		st.Gid = *id
	}
	if o.RootTime != nil {
		st.Mtim = unix.Timespec{Sec: int64(*o.RootTime)}
	}
}

// fixOwnerTime applies the ownership and time overrides.
func (s *scanner) fixOwnerTime(h *squash.Header) {
	o := &s.opts
	if o.AllRoot {
		h.UID, h.GID = 0, 0
	}
	if o.ForceUID != nil {
		h.UID = *o.ForceUID
	}
	if o.ForceGID != nil {
		h.GID = *o.ForceGID
	}
	h.UID += o.IDOffset
	h.GID += o.IDOffset
	if o.AllTime != nil {
		h.Mtime = *o.AllTime
	} else if o.ClampTime != nil && h.Mtime > *o.ClampTime {
		h.Mtime = *o.ClampTime
	}
	if m := o.FileMode; h.Mode.IsDir() {
		m = o.DirMode
		if m != nil {
			h.Mode = h.Mode.Type() | squash.FileModeFromUnix(m.Apply(squash.UnixPerm(h.Mode), true))
		}
	} else if m != nil {
		h.Mode = h.Mode.Type() | squash.FileModeFromUnix(m.Apply(squash.UnixPerm(h.Mode), false))
	}
}

func (s *scanner) readlink(dirfd int, name, path string, size int64) (string, error) {
	n := int(size) + 1
	if n < 256 {
		n = 256
	}
	for {
		if len(s.linkBuf) < n {
			s.linkBuf = make([]byte, n)
		}
		var got int
		var err error
		if dirfd == noDir {
			got, err = unix.Readlink(path, s.linkBuf[:n])
		} else {
			got, err = unix.Readlinkat(dirfd, name, s.linkBuf[:n])
		}
		if err != nil {
			return "", fmt.Errorf("scanning: %w", &fs.PathError{Op: "readlink", Path: path, Err: err})
		}
		// A full buffer may mean truncation (the target changed or the
		// filesystem reports st_size 0); retry bigger.
		if got < n {
			return string(s.linkBuf[:got]), nil
		}
		n *= 2
	}
}

// clampUnix converts seconds since the epoch to the 32-bit unsigned field.
func clampUnix(sec int64) uint32 {
	if sec < 0 {
		return 0
	}
	if sec > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(sec)
}
