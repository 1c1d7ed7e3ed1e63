package extract

import (
	"fmt"
	"path"
	"regexp"
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

// Selection is which entries of an image an extraction or a listing takes:
// unsquashfs's extract and exclude names and -max-depth. The zero value
// takes every entry.
type Selection struct {
	// Paths limits the selection to the entries these image paths name
	// and their subtrees, with their parent directories. A path that
	// matches nothing is an error.
	Paths []string
	// Excludes leaves out the entries these image paths name, with their
	// subtrees; one that matches nothing is no error.
	Excludes []string
	// Each component of Paths and Excludes is a shell pattern (path.Match:
	// *, ?, [...]) unless Literal, or Regex: a regular expression the
	// entry's name must contain a match of (anchor it with ^ and $), as
	// unsquashfs -regex does with POSIX regexec.
	Literal, Regex bool
	// With LimitDepth, entries more than MaxDepth levels below the root
	// are left out: 0 keeps only the root, 1 its entries too.
	LimitDepth bool
	MaxDepth   int
}

// pattern is one Paths or Excludes entry split into components.
type pattern struct {
	idx   int
	comps []component
}

// component matches one level of a pattern.
type component struct {
	text string
	glob bool
	re   *regexp.Regexp
}

func (c *component) match(name string) bool {
	switch {
	case c.re != nil:
		return c.re.MatchString(name)
	case c.glob:
		ok, _ := path.Match(c.text, name)
		return ok
	}
	return c.text == name
}

// rest is the pattern below its first component.
func (p pattern) rest() pattern { return pattern{idx: p.idx, comps: p.comps[1:]} }

// planner walks the image and validates it before anything is written, so a
// hostile listing is refused without leaving a half-extracted tree behind
// for the parts it can see, and so progress has a total.
type planner struct {
	src     source
	sel     *Selection
	nodes   []*node
	dirs    map[uint32]string // directory inode number -> first path, to catch loops
	matched []bool
	total   int64
	seenIno map[uint32]bool // non-directory inodes already counted (hard links)
}

// parsePaths turns Selection paths into patterns; nil means everything.
func parsePaths(paths []string, sel *Selection) ([]pattern, error) {
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
		pt := pattern{idx: i}
		for _, c := range strings.Split(clean[1:], "/") {
			comp := component{text: c}
			switch {
			case sel.Regex:
				re, err := regexp.Compile(c)
				if err != nil {
					return nil, fmt.Errorf("path %q: bad regular expression %q: %w", p, c, err)
				}
				comp.re = re
			case !sel.Literal:
				if _, err := path.Match(c, ""); err != nil {
					return nil, fmt.Errorf("path %q: bad pattern %q: %w", p, c, err)
				}
				comp.glob = true
			}
			pt.comps = append(pt.comps, comp)
		}
		pats = append(pats, pt)
	}
	return pats, nil
}

// plan lists the nodes to create for a selection.
func plan(src source, sel Selection) ([]*node, int64, error) {
	pats, err := parsePaths(sel.Paths, &sel)
	if err != nil {
		return nil, 0, err
	}
	excl, err := parsePaths(sel.Excludes, &sel)
	if err != nil {
		return nil, 0, err
	}
	if excl == nil && len(sel.Excludes) > 0 {
		return nil, 0, fmt.Errorf("exclude %q names the root", sel.Excludes[0])
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
		sel:     &sel,
		dirs:    map[uint32]string{root.Number: "."},
		matched: make([]bool, len(sel.Paths)),
		seenIno: map[uint32]bool{},
	}
	rn := &node{ino: root}
	p.nodes = append(p.nodes, rn)
	p.total++
	if err := p.walk(rn, pats, pats == nil, excl); err != nil {
		return nil, 0, err
	}
	for _, pt := range pats {
		// Below the depth limit a path is not looked for.
		if !p.matched[pt.idx] && (!sel.LimitDepth || len(pt.comps) <= sel.MaxDepth) {
			return nil, 0, fmt.Errorf("%q: not found in image", sel.Paths[pt.idx])
		}
	}
	return p.nodes, p.total, nil
}

// walk plans dir's entries: all of them when full, else those pats (its
// entries' patterns) reach; none that excl (likewise) names.
func (p *planner) walk(dir *node, pats []pattern, full bool, excl []pattern) error {
	if p.sel.LimitDepth && dir.depth >= p.sel.MaxDepth {
		return nil
	}
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

		// Patterns go on below a subtree taken whole too: a name nested
		// in another one (a/b and a/b/c) is found there.
		childFull := full
		var sub []pattern
		for _, pt := range pats {
			if !pt.comps[0].match(e.name) {
				continue
			}
			if len(pt.comps) == 1 {
				childFull = true
				p.matched[pt.idx] = true
			} else {
				sub = append(sub, pt.rest())
			}
		}
		if !childFull && len(sub) == 0 {
			continue
		}
		// An extract name that an exclude takes counts as found.
		excluded := false
		var subEx []pattern
		for _, ex := range excl {
			if ex.comps[0].match(e.name) {
				if len(ex.comps) == 1 {
					excluded = true
					break
				}
				subEx = append(subEx, ex.rest())
			}
		}
		if excluded {
			continue
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
			if err := p.walk(n, sub, childFull, subEx); err != nil {
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
