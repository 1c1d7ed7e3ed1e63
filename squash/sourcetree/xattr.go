package sourcetree

import (
	"fmt"

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
		if squash.StorableXattr(name) {
			return true
		}
		s.skipXattr(path, name)
		return false
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
