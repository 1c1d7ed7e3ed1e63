package extract

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// memSource is a hand-built image: whatever listings a test wants, including
// ones no honest writer would produce.
type memSource struct {
	rootIno *squash.Inode
	dirs    map[uint32][]dirent // by directory inode number
	data    map[uint32][]byte   // by file inode number
	xa      map[uint32][]squash.Xattr
}

func newMem() *memSource {
	m := &memSource{dirs: map[uint32][]dirent{}, data: map[uint32][]byte{}, xa: map[uint32][]squash.Xattr{}}
	m.rootIno = m.dir(1, 0o755)
	return m
}

func (m *memSource) dir(num uint32, perm fs.FileMode) *squash.Inode {
	return &squash.Inode{Type: squash.TypeDir, Mode: fs.ModeDir | perm, Number: num, Mtime: 1600000000, XattrIndex: squash.NoXattr}
}

func (m *memSource) file(num uint32, data string) *squash.Inode {
	m.data[num] = []byte(data)
	return &squash.Inode{Type: squash.TypeFile, Mode: 0o644, Number: num, Size: uint64(len(data)), Mtime: 1600000000, XattrIndex: squash.NoXattr}
}

func (m *memSource) symlink(num uint32, target string) *squash.Inode {
	return &squash.Inode{Type: squash.TypeSymlink, Mode: fs.ModeSymlink | 0o777, Number: num, Target: target, Mtime: 1600000000, XattrIndex: squash.NoXattr}
}

// add lists name -> ino in directory dir (by inode number).
func (m *memSource) add(dir uint32, name string, ino *squash.Inode) {
	m.dirs[dir] = append(m.dirs[dir], dirent{name: name, ino: ino})
}

func (m *memSource) root() (*squash.Inode, error) { return m.rootIno, nil }

func (m *memSource) readDir(dir *squash.Inode) ([]dirent, error) {
	return m.dirs[dir.Number], nil
}

func (m *memSource) open(_ string, ino *squash.Inode) (io.ReadCloser, error) {
	d, ok := m.data[ino.Number]
	if !ok {
		return nil, fmt.Errorf("no data for inode %d", ino.Number)
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (m *memSource) xattrs(ino *squash.Inode) ([]squash.Xattr, error) { return m.xa[ino.Number], nil }

func (m *memSource) blockSize() int { return 4096 }

// osSource presents a real directory tree as an image, so the writer can be
// checked against the tree it came from with every kind of metadata.
type osSource struct {
	base  string
	paths map[uint32]string // inode number -> absolute path
}

func newOSSource(base string) *osSource { return &osSource{base: base, paths: map[uint32]string{}} }

func (s *osSource) inode(p string) (*squash.Inode, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, fmt.Errorf("lstat %s: %w", p, err)
	}
	ino := &squash.Inode{
		Mode:       fs.FileMode(st.Mode & 0o777),
		UID:        st.Uid,
		GID:        st.Gid,
		Mtime:      uint32(st.Mtim.Sec),
		Number:     uint32(st.Ino),
		Nlink:      uint32(st.Nlink),
		XattrIndex: squash.NoXattr,
	}
	if st.Mode&unix.S_ISUID != 0 {
		ino.Mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		ino.Mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		ino.Mode |= fs.ModeSticky
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		ino.Type = squash.TypeDir
	case unix.S_IFREG:
		ino.Type, ino.Size = squash.TypeFile, uint64(st.Size)
	case unix.S_IFLNK:
		ino.Type = squash.TypeSymlink
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		ino.Target = t
	case unix.S_IFBLK:
		ino.Type = squash.TypeBlockDev
	case unix.S_IFCHR:
		ino.Type = squash.TypeCharDev
	case unix.S_IFIFO:
		ino.Type = squash.TypeFifo
	case unix.S_IFSOCK:
		ino.Type = squash.TypeSocket
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK || st.Mode&unix.S_IFMT == unix.S_IFCHR {
		ino.Rdev = squash.EncodeDev(unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
		ino.XattrIndex = 0
	}
	s.paths[ino.Number] = p
	return ino, nil
}

func (s *osSource) root() (*squash.Inode, error) { return s.inode(s.base) }

func (s *osSource) readDir(dir *squash.Inode) ([]dirent, error) {
	p := s.paths[dir.Number]
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []dirent
	for _, e := range ents {
		ino, err := s.inode(filepath.Join(p, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, dirent{name: e.Name(), ino: ino})
	}
	return out, nil
}

func (s *osSource) open(_ string, ino *squash.Inode) (io.ReadCloser, error) {
	return os.Open(s.paths[ino.Number])
}

func (s *osSource) xattrs(ino *squash.Inode) ([]squash.Xattr, error) {
	p := s.paths[ino.Number]
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []squash.Xattr
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 1<<16)
		k, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		out = append(out, squash.Xattr{Name: name, Value: v[:k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *osSource) blockSize() int { return 4096 }
