package squash

import "io/fs"

// OpenInode opens an inode found by lower-level calls (ReadDirInode,
// InodeAt) without resolving a path, so that names which io/fs rejects
// (invalid UTF-8, say) can still be read.
func (r *Reader) OpenInode(ino *Inode) (fs.File, error) {
	return r.openInode("", ino)
}
