package sourcetree

import (
	"sort"
	"strings"
)

// treeNode is an entry in a tree of maps, where entries can be looked up
// and added by path in any order: a tar archive's entries as they are
// read, or a scanned tree that pseudo definitions add to. flatten turns
// it into Write's order.
type treeNode struct {
	e        entry
	children map[string]*treeNode
	data     *treeNode // for a hard link: the node whose file it names
	names    int       // for all but directories: how many names it has
	first    string    // the image path its contents go with (see flatten)
}

// lookupNode finds the node at an image path ("" is root).
func lookupNode(root *treeNode, name string) *treeNode {
	if name == "" {
		return root
	}
	n := root
	for _, c := range strings.Split(name, "/") {
		if n = n.children[c]; n == nil {
			return nil
		}
	}
	return n
}

// setChild makes c the child of n named c.e.name.
func (n *treeNode) setChild(c *treeNode) {
	if n.children == nil {
		n.children = make(map[string]*treeNode)
	}
	n.children[c.e.name] = c
}

// nodes turns the tree's entries into nodes and empties it, for flatten
// to fill again.
func (t *Tree) nodes() *treeNode {
	all := make([]*treeNode, len(t.entries))
	ps := paths{entries: t.entries}
	byPath := make(map[string]*treeNode)
	for i := range t.entries {
		e := t.entries[i]
		img, _ := ps.of(i)
		n := &treeNode{e: e}
		all[i] = n
		if e.parent >= 0 {
			all[e.parent].setChild(n)
		}
		switch {
		case e.isLink():
			// In a scanned tree the first name comes before the others
			// (and says how many there are).
			if n.data = byPath[e.x.link]; n.data != nil {
				n.data.names++
			}
		case !e.mode.IsDir():
			n.names = 1
			if e.nlink > 1 {
				byPath[img] = n
			}
		}
	}
	t.entries = t.entries[:0]
	t.files, t.dirs, t.bytes = 0, 0, 0
	return all[0]
}

// flatten appends n's subtree in Write's order (pre-order, names sorted).
// A file with several names keeps its contents with the first of them in
// that order; the others become hard links to it.
func (s *scanner) flatten(n *treeNode, img string, parent int32) {
	e := n.e
	e.parent = parent
	owner := n
	if n.data != nil {
		owner = n.data
	}
	if owner.names > 1 || n.data != nil {
		if owner.first != "" {
			s.tree.entries = append(s.tree.entries, entry{name: e.name, parent: parent, x: &extra{link: owner.first}})
			return
		}
		owner.first = img
		e = owner.e
		e.name, e.parent = n.e.name, parent
		e.nlink = uint32(owner.names)
	}
	s.tree.count(&e)
	s.tree.entries = append(s.tree.entries, e)
	if !e.mode.IsDir() {
		return
	}
	at := int32(len(s.tree.entries) - 1)
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s.flatten(n.children[name], joinImg(img, name), at)
	}
}
