package sourcetree

import (
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/squashportage/squashportage/internal/xattr"
	"github.com/squashportage/squashportage/squash"
)

// skipXattr says that an entry's xattr is not stored.
func (s *scanner) skipXattr(where, name string) {
	s.warn(fmt.Sprintf("%s: skipping xattr %s (squashfs stores only user., trusted. and security. attributes)", where, name))
}

// readXattrs returns the storable extended attributes of path (not following
// symlinks), sorted by name so images do not depend on listing order;
// dirfd and name as for header.
func (s *scanner) readXattrs(dirfd int, name, path string) ([]squash.Xattr, error) {
	keep := func(name string) bool {
		if !squash.StorableXattr(name) {
			s.skipXattr(path, name)
			return false
		}
		return s.opts.KeepXattr == nil || s.opts.KeepXattr(name)
	}
	var attrs []xattr.Attr
	var err error
	if dirfd == noDir {
		attrs, err = s.xattrs.All(path, keep)
	} else {
		attrs, err = s.xattrs.AllAt(dirfd, name, path, keep)
	}
	if err != nil {
		return nil, fmt.Errorf("scanning: %w", err)
	}
	var xs []squash.Xattr
	for _, a := range attrs {
		xs = append(xs, squash.Xattr{Name: a.Name, Value: a.Value})
	}
	return xs, nil
}

// addXattrs adds Options.AddXattrs to the xattrs xs of an entry of mode
// m: user.* ones only to regular files and directories, as the kernel
// allows them nowhere else.
func (s *scanner) addXattrs(m fs.FileMode, xs []squash.Xattr) []squash.Xattr {
	if len(s.opts.AddXattrs) == 0 {
		return xs
	}
	user := m.IsRegular() || m.IsDir()
	for _, a := range s.opts.AddXattrs {
		if strings.HasPrefix(a.Name, "user.") && !user {
			continue
		}
		xs = slices.DeleteFunc(xs, func(x squash.Xattr) bool { return x.Name == a.Name })
		xs = append(xs, a)
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs
}
