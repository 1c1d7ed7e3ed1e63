package sourcetree

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
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
// they do to sources. Excludes are not supported. Contents are spooled
// into a file in os.TempDir that Close removes.
func ScanTar(r io.Reader, opts Options) (*Tree, error) {
	if len(opts.Excludes) > 0 {
		return nil, errors.New("excludes are not supported with a tar archive")
	}
	spool, err := os.CreateTemp("", "squashportage-tar-*")
	if err != nil {
		return nil, fmt.Errorf("tar: spool: %w", err)
	}
	s := &scanner{opts: opts, tree: &Tree{onAdd: opts.OnAdd, temps: []string{spool.Name()}}, parent: -1}
	ok := false
	defer func() {
		if !ok {
			s.tree.Close()
		}
	}()
	now := time.Now().Unix()
	root := &treeNode{}
	if err := s.readTar(r, spool, root, now); err != nil {
		spool.Close()
		return nil, err
	}
	if err := spool.Close(); err != nil {
		return nil, fmt.Errorf("tar: spool: %w", err)
	}
	st := madeUpRoot(now)
	s.fixRoot(&st)
	root.e = entry{mode: squash.FileModeFromUnix(st.Mode), uid: st.Uid, gid: st.Gid, mtime: clampUnix(st.Mtim.Sec), parent: -1}
	s.fixEntry(&root.e)
	s.flatten(root, "", -1)
	if err := s.applyPseudo(opts.Pseudo); err != nil {
		return nil, err
	}
	ok = true
	return s.tree, nil
}

// readTar adds the archive's entries below root.
func (s *scanner) readTar(r io.Reader, spool *os.File, root *treeNode, now int64) error {
	tr := tar.NewReader(r)
	// One buffer for every file, and writes of a MiB: io.Copy to the file
	// itself took a new 32 KiB buffer per file (a Portage tree's worth of
	// garbage) and a system call per small file.
	bw := bufio.NewWriterSize(spool, 1<<20)
	buf := make([]byte, 64<<10)
	var spooled int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if err := bw.Flush(); err != nil {
				return spoolError(err)
			}
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
			uid:   uint32(h.Uid),
			gid:   uint32(h.Gid),
			mtime: clampUnix(h.ModTime.Unix()),
		}
		var data *treeNode
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			n, err := io.CopyBuffer(writerOnly{bw}, tr, buf)
			if errors.Is(err, syscall.ENOSPC) {
				return spoolError(err)
			}
			if err != nil {
				return fmt.Errorf("tar: %s: %w", h.Name, err)
			}
			e.size = n
			x := e.extra()
			x.src, x.spooled, x.spoolOff = spool.Name(), true, spooled
			spooled += n
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
			xs := tarXattrs(h, func(x string) {
				s.warn(fmt.Sprintf("tar: %s: skipping xattr %s (squashfs stores only user., trusted. and security. attributes)", h.Name, x))
			})
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
		return fmt.Errorf("tar: the archive's contents do not fit in TMPDIR (%s): set TMPDIR to a directory with room for them: %w", os.TempDir(), err)
	}
	return fmt.Errorf("tar: spool: %w", err)
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }

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
func tarXattrs(h *tar.Header, skip func(string)) []squash.Xattr {
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
			n = &treeNode{e: entry{name: c, mode: fs.ModeDir | 0o755, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), mtime: clampUnix(now)}}
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
