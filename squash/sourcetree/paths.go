package sourcetree

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// ScanPaths makes a tree of the files at paths, each kept at its whole
// path in the image rather than stripped to its base name, as mksquashfs
// 4.6's -no-strip (recursive: a directory brings what is below it) and
// -cpiostyle (a list of files, find(1)'s output: a directory brings itself
// alone) take them. The directories above each path are stored too, with
// their own metadata; the root is the current directory's when the paths
// are relative, /'s when they are absolute, and made up (mode 0777, your
// ids, now) when they are both. A path with . or .. in it, or given twice,
// is refused, as mksquashfs refuses them. Excludes are not supported;
// pseudo definitions apply.
func ScanPaths(paths []string, recursive bool, opts Options) (*Tree, error) {
	if len(opts.Excludes) > 0 {
		return nil, errors.New("excludes are not supported with paths kept whole (-no-strip, -cpiostyle)")
	}
	if len(paths) == 0 {
		return nil, errors.New("no source given")
	}
	ex, err := newExcluder(nil, opts) // OmitPaths: the image being written
	if err != nil {
		return nil, err
	}
	s := &scanner{opts: opts, ex: ex, tree: &Tree{onAdd: opts.OnAdd, sort: opts.Sort, sources: []string{"."}}, parent: -1, links: make(map[devIno]firstName)}
	ok := false
	defer func() {
		if !ok {
			s.tree.Close()
		}
	}()
	b := &pathBuilder{s: s, root: &treeNode{}, explicit: make(map[*treeNode]bool), links: make(map[devIno]*treeNode)}
	abs, rel := false, false
	for _, p := range paths {
		if strings.HasPrefix(p, "/") {
			abs = true
		} else {
			rel = true
		}
	}
	var root squash.Header
	if abs && rel {
		st := madeUpRoot(time.Now().Unix())
		s.fixRoot(&st)
		root = squash.Header{Mode: squash.FileModeFromUnix(st.Mode), UID: st.Uid, GID: st.Gid, Mtime: clampUnix(st.Mtim.Sec)}
		s.fixOwnerTime(&root)
		root.Xattrs = s.addXattrs(root.Mode, nil)
	} else {
		top := "."
		if abs {
			top = "/"
		}
		var st unix.Stat_t
		if err := unix.Stat(top, &st); err != nil {
			return nil, fmt.Errorf("source: %w", &fs.PathError{Op: "stat", Path: top, Err: err})
		}
		s.fixRoot(&st)
		if root, err = s.header(noDir, "", top, "", &st); err != nil {
			return nil, err
		}
	}
	b.root.e = newEntry(root, -1)
	for _, p := range paths {
		if err := b.add(p, recursive); err != nil {
			return nil, err
		}
	}
	if err = s.applyPseudoTo(b.root, opts.Pseudo); err != nil {
		return nil, err
	}
	s.flatten(b.root, "", -1)
	ok = true
	return s.tree, nil
}

// pathBuilder puts whole paths into a tree of nodes.
type pathBuilder struct {
	s        *scanner
	root     *treeNode
	explicit map[*treeNode]bool   // nodes of paths given, not only passed through
	links    map[devIno]*treeNode // the first name of each hard-linked file
}

func (b *pathBuilder) add(p string, recursive bool) error {
	fsPrefix := ""
	name := strings.TrimLeft(p, "/")
	if name != p {
		fsPrefix = "/"
	}
	for strings.HasPrefix(name, "./") {
		name = strings.TrimLeft(name[2:], "/")
	}
	name = strings.TrimRight(name, "/")
	if name == "" || name == "." {
		return nil // the root itself
	}
	comps := strings.Split(name, "/")
	for _, c := range comps {
		if c == "." || c == ".." || c == "" {
			return fmt.Errorf("source %q: a path kept whole (-no-strip, -cpiostyle) cannot have . or .. or // in it", p)
		}
	}
	dir := b.root
	for i, c := range comps {
		img := strings.Join(comps[:i+1], "/")
		fsPath := fsPrefix + img
		last := i == len(comps)-1
		n := dir.children[c]
		if n != nil && !last {
			if !n.e.mode.IsDir() {
				return fmt.Errorf("source %q: %s is not a directory", p, fsPath)
			}
			dir = n
			continue
		}
		if n != nil && b.explicit[n] {
			return fmt.Errorf("source %q: given twice", p)
		}
		var st unix.Stat_t
		if err := unix.Lstat(fsPath, &st); err != nil {
			return fmt.Errorf("source: %w", &fs.PathError{Op: "lstat", Path: fsPath, Err: err})
		}
		if b.s.ex.excludedID(devIno{uint64(st.Dev), st.Ino}) {
			return nil
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !last && !isDir {
			return fmt.Errorf("source %q: %s is not a directory", p, fsPath)
		}
		n, err := b.entry(fsPath, img, c, &st)
		if err != nil {
			return err
		}
		if last && isDir && recursive {
			if err := b.walk(n, fsPath, img, uint64(st.Dev)); err != nil {
				return err
			}
		}
		if old := dir.children[c]; old != nil && n.e.mode.IsDir() {
			// A directory passed through before and given now: what was
			// put below it stays.
			for k, v := range old.children {
				if n.children[k] == nil {
					n.setChild(v)
				}
			}
		}
		dir.setChild(n)
		if last {
			b.explicit[n] = true
		}
		dir = n
	}
	return nil
}

// entry is one file's node, a hard link's to the first name of its file.
func (b *pathBuilder) entry(fsPath, img, name string, st *unix.Stat_t) (*treeNode, error) {
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	var key devIno
	if !isDir && st.Nlink > 1 && !b.s.opts.NoHardlinks {
		key = devIno{uint64(st.Dev), st.Ino}
		if first := b.links[key]; first != nil {
			first.names++
			return &treeNode{e: entry{name: name}, data: first}, nil
		}
	}
	h, err := b.s.header(noDir, "", fsPath, img, st)
	if err != nil {
		return nil, err
	}
	n := &treeNode{e: newEntry(h, -1)}
	n.e.name = name
	n.e.extra().src = fsPath
	if !isDir {
		n.names = 1
	}
	if key != (devIno{}) {
		b.links[key] = n
	}
	return n, nil
}

// walk adds what is below the directory n (at fsPath, on filesystem dev)
// given with -no-strip, in name order as a scan goes, hard links found
// across all the paths given.
func (b *pathBuilder) walk(n *treeNode, fsPath, img string, dev uint64) error {
	if !b.s.descends(img) {
		return nil
	}
	fd, names, err := readDir(fsPath)
	if err != nil {
		return fmt.Errorf("reading directory: %w", err)
	}
	unix.Close(fd)
	sort.Strings(names)
	for _, name := range names {
		childFS, childImg := fsPath+"/"+name, img+"/"+name
		var st unix.Stat_t
		if err := unix.Lstat(childFS, &st); err != nil {
			return fmt.Errorf("scanning: %w", &fs.PathError{Op: "lstat", Path: childFS, Err: err})
		}
		if b.s.leaveOut(childFS, &st, dev) {
			continue
		}
		c, err := b.entry(childFS, childImg, name, &st)
		if err != nil {
			return err
		}
		n.setChild(c)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := b.walk(c, childFS, childImg, uint64(st.Dev)); err != nil {
				return err
			}
		}
	}
	return nil
}
