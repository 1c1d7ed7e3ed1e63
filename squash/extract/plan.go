package extract

import (
	"fmt"
	"path"
	"strings"

	"github.com/squashportage/squashportage/squash"
)

// node is one entry to create. Nodes are kept in pre-order so that a
// directory is always followed by its whole subtree.
type node struct {
	rel   string // slash path below the destination; "" is the root
	name  string // last component of rel
	depth int    // 0 for the root
	ino   *squash.Inode
}

// imagePath is the fs.FS name of the node in the image.
func (n *node) imagePath() string {
	if n.rel == "" {
		return "."
	}
	return n.rel
}

// pattern is one Options.Paths entry split into components.
type pattern struct {
	idx   int
	comps []string
}

// planner walks the image and validates it before anything is written, so a
// hostile listing is refused without leaving a half-extracted tree behind
// for the parts it can see, and so progress has a total.
type planner struct {
	src     source
	nodes   []*node
	dirs    map[uint32]string // directory inode number -> first path, to catch loops
	matched []bool
	total   int64
	seenIno map[uint32]bool // non-directory inodes already counted (hard links)
}

// parsePaths turns Options.Paths into patterns; nil means everything.
func parsePaths(paths []string) ([]pattern, error) {
	var pats []pattern
	for i, p := range paths {
		clean := path.Clean("/" + strings.TrimSpace(p))
		if strings.Contains(p, "\x00") {
			return nil, fmt.Errorf("extract path %q contains NUL", p)
		}
		for _, c := range strings.Split(p, "/") {
			if c == ".." {
				return nil, fmt.Errorf("extract path %q contains \"..\"", p)
			}
		}
		if clean == "/" {
			// The whole image was asked for.
			return nil, nil
		}
		comps := strings.Split(clean[1:], "/")
		for _, c := range comps {
			if _, err := path.Match(c, ""); err != nil {
				return nil, fmt.Errorf("extract path %q: bad pattern %q: %w", p, c, err)
			}
		}
		pats = append(pats, pattern{idx: i, comps: comps})
	}
	return pats, nil
}

// plan lists the nodes to create for opts.Paths.
func plan(src source, paths []string) ([]*node, int64, error) {
	pats, err := parsePaths(paths)
	if err != nil {
		return nil, 0, err
	}
	root, err := src.root()
	if err != nil {
		return nil, 0, fmt.Errorf("read root inode: %w", err)
	}
	if squash.BasicType(root.Type) != squash.TypeDir {
		return nil, 0, fmt.Errorf("root inode is not a directory (type %d)", root.Type)
	}
	p := &planner{
		src:     src,
		dirs:    map[uint32]string{root.Number: "."},
		matched: make([]bool, len(paths)),
		seenIno: map[uint32]bool{},
	}
	rn := &node{ino: root}
	p.nodes = append(p.nodes, rn)
	p.total++
	if err := p.walk(rn, pats, pats == nil); err != nil {
		return nil, 0, err
	}
	if pats != nil {
		for _, pt := range pats {
			if !p.matched[pt.idx] {
				return nil, 0, fmt.Errorf("%q: not found in image", paths[pt.idx])
			}
		}
	}
	return p.nodes, p.total, nil
}

func (p *planner) walk(dir *node, pats []pattern, full bool) error {
	ents, err := p.src.readDir(dir.ino)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir.imagePath(), err)
	}
	seen := make(map[string]bool, len(ents))
	for _, e := range ents {
		rel := e.name
		if dir.rel != "" {
			rel = dir.rel + "/" + e.name
		}
		// Quote what we print: the name is attacker-controlled.
		if err := CheckName(e.name); err != nil {
			return fmt.Errorf("directory %q: %w", dir.imagePath(), err)
		}
		if seen[e.name] {
			return fmt.Errorf("directory %q lists %q twice", dir.imagePath(), e.name)
		}
		seen[e.name] = true
		if e.ino == nil {
			return fmt.Errorf("%q: no inode", rel)
		}

		childFull := full
		var sub []pattern
		if !full {
			for _, pt := range pats {
				if ok, _ := path.Match(pt.comps[0], e.name); !ok {
					continue
				}
				if len(pt.comps) == 1 {
					childFull = true
					p.matched[pt.idx] = true
				} else {
					sub = append(sub, pattern{idx: pt.idx, comps: pt.comps[1:]})
				}
			}
			if !childFull && len(sub) == 0 {
				continue
			}
		}

		isDir := squash.BasicType(e.ino.Type) == squash.TypeDir
		if !isDir && !childFull {
			// A pattern wanted to descend into a non-directory.
			continue
		}
		n := &node{rel: rel, name: e.name, depth: dir.depth + 1, ino: e.ino}
		p.nodes = append(p.nodes, n)
		p.total++
		switch squash.BasicType(e.ino.Type) {
		case squash.TypeDir:
			if first, dup := p.dirs[e.ino.Number]; dup {
				return fmt.Errorf("%q: directory inode %d already seen at %q (loop)", rel, e.ino.Number, first)
			}
			p.dirs[e.ino.Number] = rel
			if err := p.walk(n, sub, childFull); err != nil {
				return err
			}
		case squash.TypeFile:
			if !p.seenIno[e.ino.Number] {
				p.total += int64(e.ino.Size)
			}
		case squash.TypeSymlink, squash.TypeBlockDev, squash.TypeCharDev, squash.TypeFifo, squash.TypeSocket:
		default:
			return fmt.Errorf("%q: unknown inode type %d", rel, e.ino.Type)
		}
		p.seenIno[e.ino.Number] = true
	}
	return nil
}
