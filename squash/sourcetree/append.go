package sourcetree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/extract"
)

// mksquashfs without -noappend adds its sources to an existing image. Here
// an append writes a new image: the old image's entries, their compressed
// blocks copied verbatim ahead of everything else, merged with the
// sources' entries. The caller writes it beside the old one and renames it
// over it, so that an append cut short leaves the old image as it was.

// base is the image a tree is appended to.
type base struct {
	r    *squash.Reader
	data io.ReaderAt // the image's bytes, for verbatim copies
	runs map[uint64]*squash.Run
	frag map[uint32]uint32          // old fragment index to new
	sums map[int]*[sha256.Size]byte // of the image's files hashOld hashed, by entry
}

// reuser is what Write needs of a squash.Writer to carry an appended
// image's files over.
type reuser interface {
	CopyRun(src io.ReaderAt, start uint64, sizes []uint32) (*squash.Run, error)
	CopyFragment(src io.ReaderAt, e squash.FragmentEntry) (uint32, error)
	AddReused(h *squash.Header, r squash.Reused) error
}

// AppendTo makes the tree an append to the image r, whose bytes data
// holds (it must stay open until Write is done). As mksquashfs appends,
// the tree's root (the source directory's, or the made-up root of several
// sources) replaces the image's root, whose entries join it; a source
// entry whose name the image's root already has is renamed NAME_1,
// NAME_2, ... with a warning. With rootBecomes, the image's root is kept
// whole as that entry of the new root instead (mksquashfs -root-becomes).
// Write then needs a *squash.Writer with r's compressor and block size.
func (t *Tree) AppendTo(r *squash.Reader, data io.ReaderAt, rootBecomes string, warn func(string)) error {
	if t.base != nil {
		return errors.New("append: the tree is already an append")
	}
	if rootBecomes != "" {
		if err := extract.CheckName(rootBecomes); err != nil {
			return fmt.Errorf("append: the old root's new name: %w", err)
		}
	}
	old, err := imageNodes(r)
	if err != nil {
		return fmt.Errorf("reading the image to append to: %w", err)
	}
	var olds []*treeNode
	if rootBecomes != "" {
		old.e.name = rootBecomes
		olds = []*treeNode{old}
	} else {
		for _, c := range old.children {
			olds = append(olds, c)
		}
	}
	// A renamed source entry's files are still where they were.
	srcOf := make(map[string]string)
	ps := paths{entries: t.entries}
	for i := range t.entries {
		if _, src := ps.of(i); t.entries[i].parent == 0 {
			srcOf[t.entries[i].name] = src
		}
	}
	root := t.nodes()
	taken := make(map[string]bool, len(olds)+len(root.children))
	for _, o := range olds {
		taken[o.e.name] = true
	}
	var clash []string
	for name := range root.children {
		if taken[name] {
			clash = append(clash, name)
		}
		taken[name] = true
	}
	sort.Strings(clash)
	for _, name := range clash {
		n := root.children[name]
		delete(root.children, name)
		renamed := name
		for i := 1; taken[renamed]; i++ {
			renamed = name + "_" + strconv.Itoa(i)
		}
		taken[renamed] = true
		if x := n.e.extra(); x.src == "" && x.from == nil {
			x.src = srcOf[name]
		}
		n.e.name = renamed
		root.setChild(n)
		if warn != nil {
			warn(fmt.Sprintf("the image already has /%s, using /%s for the source's", name, renamed))
		}
	}
	// The image's entries come first, so that the sources' files that
	// repeat one of them can be found to (see addOld); the writer sorts
	// each directory's names itself.
	sort.Slice(olds, func(i, j int) bool { return olds[i].e.name < olds[j].e.name })
	news := make([]*treeNode, 0, len(root.children))
	for _, c := range root.children {
		news = append(news, c)
	}
	sort.Slice(news, func(i, j int) bool { return news[i].e.name < news[j].e.name })
	s := &scanner{tree: t}
	root.e.parent = -1
	t.count(&root.e)
	t.entries = append(t.entries, root.e)
	for _, c := range append(olds, news...) {
		s.flatten(c, c.e.name, 0)
	}
	t.base = &base{r: r, data: data}
	return nil
}

// imageNodes reads r's whole tree. Names sharing an inode number become
// hard links of one file, as they were.
func imageNodes(r *squash.Reader) (*treeNode, error) {
	rootIno, err := r.Root()
	if err != nil {
		return nil, err
	}
	if !rootIno.Mode.IsDir() {
		return nil, errors.New("the root is not a directory")
	}
	im := &imageReader{r: r, files: make(map[uint32]*treeNode), dirs: make(map[uint64]bool)}
	root, err := im.node("", "", rootIno)
	if err != nil {
		return nil, err
	}
	return root, nil
}

type imageReader struct {
	r     *squash.Reader
	files map[uint32]*treeNode // by inode number: hard links
	dirs  map[uint64]bool      // directories read, by inode reference
}

func (im *imageReader) node(name, img string, ino *squash.Inode) (*treeNode, error) {
	if !ino.Mode.IsDir() {
		if first := im.files[ino.Number]; first != nil {
			first.names++
			return &treeNode{e: entry{name: name}, data: first}, nil
		}
	}
	h, err := im.r.Header(img, ino)
	if err != nil {
		return nil, err
	}
	n := &treeNode{e: newEntry(h, -1)}
	n.e.name = name
	if ino.Mode.IsRegular() {
		n.e.extra().old = ino.Clone()
	}
	if !ino.Mode.IsDir() {
		n.names = 1
		im.files[ino.Number] = n
		return n, nil
	}
	if im.dirs[ino.Ref] {
		return nil, fmt.Errorf("/%s: the directory appears twice in the image (damaged)", img)
	}
	im.dirs[ino.Ref] = true
	ents, err := im.r.ReadDirInode(ino)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", img, err)
	}
	for _, de := range ents {
		if n.children[de.Name] != nil {
			return nil, fmt.Errorf("/%s: %q appears twice in the image", img, de.Name)
		}
		ci, err := im.r.InodeAt(de.Ref)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", joinImg(img, de.Name), err)
		}
		c, err := im.node(de.Name, joinImg(img, de.Name), ci)
		if err != nil {
			return nil, err
		}
		n.setChild(c)
	}
	return n, nil
}

// copyBase copies the compressed blocks of the appended image's files
// that the tree holds, in their old order, before anything else is
// written.
func (t *Tree) copyBase(w reuser) error {
	b := t.base
	type piece struct {
		pos  uint64
		ino  *squash.Inode // a run of stored blocks, or
		frag uint32        // a fragment block
		fe   squash.FragmentEntry
	}
	var pieces []piece
	seenRun := make(map[uint64]bool)
	seenFrag := make(map[uint32]bool)
	for i := range t.entries {
		e := &t.entries[i]
		if e.x == nil || e.x.old == nil {
			continue
		}
		ino := e.x.old
		if ino.HasStoredBlocks() && !seenRun[ino.BlocksStart] {
			seenRun[ino.BlocksStart] = true
			pieces = append(pieces, piece{pos: ino.BlocksStart, ino: ino})
		}
		if f := ino.Fragment; f != squash.NoFragment && !seenFrag[f] {
			seenFrag[f] = true
			fe, err := b.r.Fragment(f)
			if err != nil {
				return fmt.Errorf("appended image: %w", err)
			}
			pieces = append(pieces, piece{pos: fe.Start, frag: f, fe: fe})
		}
	}
	sort.SliceStable(pieces, func(i, j int) bool { return pieces[i].pos < pieces[j].pos })
	b.runs = make(map[uint64]*squash.Run, len(seenRun))
	b.frag = make(map[uint32]uint32, len(seenFrag))
	for _, p := range pieces {
		if p.ino != nil {
			run, err := w.CopyRun(b.data, p.ino.BlocksStart, p.ino.BlockSizes)
			if err != nil {
				return fmt.Errorf("appended image: %w", err)
			}
			b.runs[p.pos] = run
			continue
		}
		idx, err := w.CopyFragment(b.data, p.fe)
		if err != nil {
			return fmt.Errorf("appended image: %w", err)
		}
		b.frag[p.frag] = idx
	}
	return nil
}

// addOld adds a file of the appended image whose blocks copyBase copied.
func (t *Tree) addOld(w reuser, i int, h *squash.Header, ino *squash.Inode) error {
	b := t.base
	r := squash.Reused{Size: ino.Size, Sizes: ino.BlockSizes, Sparse: ino.Sparse, Fragment: squash.NoFragment}
	if ino.HasStoredBlocks() {
		r.Run = b.runs[ino.BlocksStart]
	}
	if ino.Fragment != squash.NoFragment {
		r.Fragment, r.FragOffset = b.frag[ino.Fragment], ino.FragOffset
	}
	r.Sum = b.sums[i]
	if err := w.AddReused(h, r); err != nil {
		return fmt.Errorf("adding %s (from the appended image): %w", displayName(h), err)
	}
	return nil
}

// hashOld hashes the contents of the image's files of the sizes that can
// have duplicates (sharedSizes: those a source's file has too), on a
// goroutine per CPU: a source's file that repeats one of them then takes
// no room again, as when mksquashfs appends (a new version of a tree next
// to the old one).
func (t *Tree) hashOld(shared map[uint64]bool) error {
	b := t.base
	var todo []int
	for i := range t.entries {
		if e := &t.entries[i]; e.isOld() && shared[e.x.old.Size] {
			todo = append(todo, i)
		}
	}
	b.sums = make(map[int]*[sha256.Size]byte, len(todo))
	if len(todo) == 0 {
		return nil
	}
	sums := make([][sha256.Size]byte, len(todo))
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			buf := make([]byte, 128<<10)
			for {
				k := int(next.Add(1)) - 1
				if k >= len(todo) {
					return
				}
				ino := t.entries[todo[k]].x.old
				if err := b.sum(ino, h, buf, &sums[k]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("reading the appended image: %w", first)
	}
	for k, i := range todo {
		b.sums[i] = &sums[k]
	}
	return nil
}

// sum puts the SHA-256 of an image file's contents in out.
func (b *base) sum(ino *squash.Inode, h hash.Hash, buf []byte, out *[sha256.Size]byte) error {
	f, err := b.r.OpenInode(ino)
	if err != nil {
		return err
	}
	defer f.Close()
	h.Reset()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return fmt.Errorf("inode %d: %w", ino.Number, err)
	}
	if uint64(n) != ino.Size {
		return fmt.Errorf("inode %d: read %d bytes of %d", ino.Number, n, ino.Size)
	}
	h.Sum(out[:0])
	return nil
}
