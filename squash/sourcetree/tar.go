package sourcetree

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/squashportage/squashportage/squash"
)

// A tar archive lists entries in any order, and a squashfs image is
// written directory by directory: ScanTar reads the whole archive first,
// spooling file contents into one temporary file that Write reads them
// back from, so that making an image from a Portage snapshot writes one
// file, not 200,000.

// ScanTar reads an uncompressed tar archive (mksquashfs -tar) into a Tree
// sorted as Scan sorts. As in mksquashfs, the root, and directories the
// archive implies but does not list, get mode 0777 (the root) or 0755,
// the caller's ids and the current time, and a "./" entry is ignored;
// opts's root and every-entry overrides and pseudo definitions apply as
// they do to sources. Excludes are not supported. When r is a regular
// file (standard input redirected from the archive), files' contents are
// read from it where they lie, and it must stay open until Write is
// done; from a pipe they are spooled into an unlinked file in os.TempDir
// that Close closes (sparse files always are).
func ScanTar(r io.Reader, opts Options) (*Tree, error) {
	if len(opts.Excludes) > 0 {
		return nil, errors.New("excludes are not supported with a tar archive")
	}
	s := &scanner{opts: opts, tree: &Tree{onAdd: opts.OnAdd, sort: opts.Sort}, parent: -1}
	ok := false
	defer func() {
		if !ok {
			s.tree.Close()
		}
	}()
	now := time.Now().Unix()
	root := &treeNode{}
	sp := &spool{}
	err := s.readTar(r, sp, root, now)
	if cerr := sp.flush(); err == nil && cerr != nil {
		err = fmt.Errorf("tar: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	st := madeUpRoot(now)
	s.fixRoot(&st)
	root.e = entry{mode: squash.FileModeFromUnix(st.Mode), uid: st.Uid, gid: st.Gid, mtime: clampUnix(st.Mtim.Sec), parent: -1}
	s.fixEntry(&root.e)
	if err := s.applyPseudoTo(root, opts.Pseudo); err != nil {
		return nil, err
	}
	s.flatten(root, "", -1)
	ok = true
	return s.tree, nil
}

// spool holds the contents of a piped archive's files, in one temporary
// file made at the first.
type spool struct {
	f   *os.File
	bw  *bufio.Writer
	buf []byte
	n   int64
}

// add copies a file's contents from r and returns where they are; t
// keeps the spool open for Write.
func (sp *spool) add(t *Tree, r io.Reader) (f *os.File, off, n int64, err error) {
	if sp.f == nil {
		if sp.f, err = t.tempFile("squashportage-tar-*"); err != nil {
			return nil, 0, 0, spoolError(err)
		}
		// One buffer for every file, and writes of a MiB: io.Copy to
		// the file itself took a new 32 KiB buffer per file (a Portage
		// tree's worth of garbage) and a system call per small file.
		sp.bw = bufio.NewWriterSize(sp.f, 1<<20)
		sp.buf = make([]byte, 64<<10)
	}
	off = sp.n
	// (The struct hides bufio.Writer.ReadFrom, which would bypass buf.)
	n, err = io.CopyBuffer(struct{ io.Writer }{sp.bw}, r, sp.buf)
	sp.n += n
	if errors.Is(err, syscall.ENOSPC) {
		err = spoolError(err)
	}
	return sp.f, off, n, err
}

// flush writes out what is buffered; the file stays open for Write (and
// the Tree closes it).
func (sp *spool) flush() error {
	if sp.f == nil {
		return nil
	}
	if err := sp.bw.Flush(); err != nil {
		return spoolError(err)
	}
	return nil
}

// inPlace returns the archive when it is a regular file (stdin
// redirected from one) that contents can be read from where they lie;
// nil for a pipe.
func inPlace(r io.Reader) *os.File {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if _, err := f.Seek(0, io.SeekCurrent); err != nil {
		return nil
	}
	return f
}

// nextArchive skips the zero blocks after the end of an archive and
// returns a reader of the archive that follows them, if one does (tar
// --ignore-zeros: archives concatenated). When the archive is read in
// place (file), the file is left at that archive's first header.
func nextArchive(r io.Reader, file *os.File) (*tar.Reader, bool, error) {
	var block [512]byte
	for {
		if _, err := io.ReadFull(r, block[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, false, io.EOF
			}
			return nil, false, fmt.Errorf("tar: %w", err)
		}
		if block != [512]byte{} {
			break
		}
	}
	if file != nil {
		if _, err := file.Seek(-512, io.SeekCurrent); err != nil {
			return nil, false, fmt.Errorf("tar: %w", err)
		}
		return tar.NewReader(file), true, nil
	}
	return tar.NewReader(io.MultiReader(bytes.NewReader(block[:]), r)), true, nil
}

// readTar adds the archive's entries below root. A regular file's
// contents are read from the archive file itself when it is one (tar
// skips them by seeking), else spooled.
func (s *scanner) readTar(r io.Reader, sp *spool, root *treeNode, now int64) error {
	tr := tar.NewReader(r)
	file := inPlace(r)
	for {
		h, err := tr.Next()
		if err == io.EOF && s.opts.IgnoreZeros {
			// Another archive may follow the end of this one.
			var more bool
			if tr, more, err = nextArchive(r, file); err == nil && more {
				continue
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		name := s.tarName(h.Name)
		if name == "" {
			continue // "./" or "/": the root is made up, as mksquashfs does
		}
		e := entry{
			mode:  squash.FileModeFromUnix(uint32(h.Mode) & 0o7777),
			uid:   s.tarID(h.Uname, h.Uid, false),
			gid:   s.tarID(h.Gname, h.Gid, true),
			mtime: clampUnix(h.ModTime.Unix()),
		}
		var data *treeNode
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			x := e.extra()
			// A sparse file's stored bytes are not its contents.
			sparse := h.Typeflag == tar.TypeGNUSparse || h.PAXRecords["GNU.sparse.major"] != "" || h.PAXRecords["GNU.sparse.map"] != ""
			var err error
			if file != nil && !sparse {
				// tar.Reader has read the header and nothing more.
				x.from, e.size = file, h.Size
				x.fromOff, err = file.Seek(0, io.SeekCurrent)
			} else {
				x.from, x.fromOff, e.size, err = sp.add(s.tree, tr)
			}
			if err != nil {
				return fmt.Errorf("tar: %s: %w", h.Name, err)
			}
			x.src = x.from.Name()
		case tar.TypeLink:
			target := lookupNode(root, s.tarName(h.Linkname))
			if target == nil || target.e.mode.IsDir() {
				return fmt.Errorf("tar: %s: hard link to %s, which is not a file earlier in the archive", h.Name, h.Linkname)
			}
			if target.data != nil {
				target = target.data
			}
			data = target
		case tar.TypeSymlink:
			e.mode = fs.ModeSymlink | 0o777
			e.extra().target = h.Linkname
			if h.Linkname == "" {
				return fmt.Errorf("tar: %s: symbolic link without a target", h.Name)
			}
		case tar.TypeChar, tar.TypeBlock:
			e.mode |= fs.ModeDevice
			if h.Typeflag == tar.TypeChar {
				e.mode |= fs.ModeCharDevice
			}
			x := e.extra()
			x.major, x.minor = uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeFifo:
			e.mode |= fs.ModeNamedPipe
		case tar.TypeDir:
			e.mode |= fs.ModeDir
		case tar.TypeXGlobalHeader:
			continue
		default:
			s.warn(fmt.Sprintf("tar: %s: entry type %q skipped", h.Name, h.Typeflag))
			continue
		}
		if !s.opts.NoXattrs && data == nil {
			xs := tarXattrs(h, func(x string) { s.skipXattr("tar: "+h.Name, x) }, s.opts.KeepXattr)
			if len(xs) > 0 {
				e.extra().xattrs = xs
			}
		}
		s.fixEntry(&e)
		if err := addTar(root, name, e, data, now, s); err != nil {
			return fmt.Errorf("tar: %s: %w", h.Name, err)
		}
	}
}

// spoolError says what to do when the spool cannot be written: /tmp is
// often a small tmpfs.
func spoolError(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("the archive's contents do not fit in TMPDIR (%s): set TMPDIR to a directory with room for them: %w", os.TempDir(), err)
	}
	return fmt.Errorf("spool: %w", err)
}

// tarName is the image path of an archive name: leading /, ./ and ../
// dropped, as mksquashfs does, nothing that climbs out, and
// StripComponents leading components removed ("" when that is all).
func (s *scanner) tarName(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for range s.opts.StripComponents {
		i := strings.IndexByte(name, '/')
		if i < 0 {
			return ""
		}
		name = name[i+1:]
	}
	return name
}

// tarXattrs returns the storable extended attributes PAX records carry,
// sorted by name.
func tarXattrs(h *tar.Header, skip func(string), keep func(string) bool) []squash.Xattr {
	var xs []squash.Xattr
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if !squash.StorableXattr(name) {
			skip(name)
			continue
		}
		if keep != nil && !keep(name) {
			continue
		}
		xs = append(xs, squash.Xattr{Name: name, Value: []byte(v)})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs
}

// addTar puts an entry at name, making the directories above it as
// needed. A later entry of the same name replaces an earlier one, as tar
// extracts them, but a directory keeps what lies below it.
func addTar(root *treeNode, name string, e entry, data *treeNode, now int64, s *scanner) error {
	dir := root
	comps := strings.Split(name, "/")
	for _, c := range comps[:len(comps)-1] {
		n := dir.children[c]
		if n == nil {
			n = &treeNode{e: s.impliedDir(c, now)}
			s.fixEntry(&n.e)
			if dir.children == nil {
				dir.children = make(map[string]*treeNode)
			}
			dir.children[c] = n
		} else if !n.e.mode.IsDir() {
			return fmt.Errorf("%s is not a directory in the archive", c)
		}
		dir = n
	}
	base := comps[len(comps)-1]
	e.name = base
	old := dir.children[base]
	if old != nil && old.e.mode.IsDir() {
		if !e.mode.IsDir() {
			return errors.New("replaces a directory")
		}
		old.e = e
		return nil
	}
	if old != nil && old.data != nil {
		old.data.names--
	} else if old != nil && old.names > 1 {
		return errors.New("replaces a file other names link to")
	}
	n := &treeNode{e: e, data: data}
	if data != nil {
		data.names++
	} else if !e.mode.IsDir() {
		n.names = 1
	}
	if dir.children == nil {
		dir.children = make(map[string]*treeNode)
	}
	dir.children[base] = n
	return nil
}

// impliedDir is a directory the archive implies by what lies below it.
func (s *scanner) impliedDir(name string, now int64) entry {
	e := entry{name: name, mode: fs.ModeDir | 0o755, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), mtime: clampUnix(now)}
	o := &s.opts
	if o.DefaultMode != nil {
		e.mode = fs.ModeDir | squash.FileModeFromUnix(o.DefaultMode.Apply(0o755, true))
	}
	if o.DefaultUID != nil {
		e.uid = *o.DefaultUID
	}
	if o.DefaultGID != nil {
		e.gid = *o.DefaultGID
	}
	return e
}

// tarID is the id an entry's owner or group gets: that of its name here,
// if it has one and the name is known, else the archive's number.
func (s *scanner) tarID(name string, id int, group bool) uint32 {
	if name == "" || s.opts.NumericOwner {
		return uint32(id)
	}
	key := name
	if group {
		key = ":" + name // user and group names apart
	}
	if s.ids == nil {
		s.ids = make(map[string]int64)
	}
	local, ok := s.ids[key]
	if !ok {
		local = -1
		if _, err := strconv.ParseUint(name, 10, 32); err != nil {
			if n, err := LookupID(name, group); err == nil {
				local = int64(n)
			}
		}
		s.ids[key] = local
	}
	if local < 0 {
		return uint32(id)
	}
	return uint32(local)
}
