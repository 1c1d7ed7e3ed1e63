package sourcetree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// xattrPrefixes are the namespaces squashfs can store.
var xattrPrefixes = [...]string{"user.", "trusted.", "security."}

func storableXattr(name string) bool {
	for _, p := range xattrPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// readXattrs returns the storable extended attributes of path (not following
// symlinks), sorted by name so images do not depend on listing order.
func (s *scanner) readXattrs(path string) ([]squash.Xattr, error) {
	if s.xattrBuf == nil {
		s.xattrBuf = make([]byte, 4096)
	}
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(path, s.xattrBuf)
		if err == nil {
			break
		}
		switch {
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.ENODATA):
			// Filesystems without xattr support simply have none.
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			size, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, fmt.Errorf("scanning: %w", &fs.PathError{Op: "llistxattr", Path: path, Err: err})
			}
			s.xattrBuf = make([]byte, size+1024)
		default:
			return nil, fmt.Errorf("scanning: %w", &fs.PathError{Op: "llistxattr", Path: path, Err: err})
		}
	}
	if n == 0 {
		return nil, nil
	}
	var xs []squash.Xattr
	for _, raw := range bytes.Split(s.xattrBuf[:n], []byte{0}) {
		if len(raw) == 0 {
			continue
		}
		name := string(raw)
		if !storableXattr(name) {
			s.warn(fmt.Sprintf("%s: skipping xattr %s (squashfs stores only user., trusted. and security. attributes)", path, name))
			continue
		}
		val, err := lgetxattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed between list and get
		}
		if err != nil {
			return nil, fmt.Errorf("scanning: %w", &fs.PathError{Op: "lgetxattr " + name, Path: path, Err: err})
		}
		xs = append(xs, squash.Xattr{Name: name, Value: val})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs, nil
}

func lgetxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if err == nil {
			return buf[:n:n], nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf = make([]byte, size+64)
	}
}
