package squash

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Verify reads and decodes everything in the image: every table, every
// metadata block of the inode and directory tables, every inode reachable
// from the root, every directory listing, every data and fragment block,
// and the block sums our writer may have recorded after the image. It
// returns the first fault found in the tables or the tree, with its
// location; data and fragment blocks that do not decode are all collected
// into a *DamageError that names the files they belong to. progress, if not
// nil, is called with the number of inodes checked so far and the total.
func (r *Reader) Verify(ctx context.Context, progress func(done, total int64)) error {
	return r.VerifyWith(ctx, VerifyOptions{Progress: progress})
}

// VerifyOptions tune VerifyWith.
type VerifyOptions struct {
	Progress func(done, total int64)
	// TrustedBelow: data and fragment blocks that start below this position
	// are bounds-checked but not decompressed. Persist copies unchanged
	// blocks verbatim from an image the kernel has been reading, ahead of
	// all new data; decoding them again would cost as much as the copy.
	TrustedBelow uint64
	// Workers decode data and fragment blocks while as many walk the
	// tree; 0 means one per CPU.
	Workers int
}

// VerifyWith is Verify with options.
func (r *Reader) VerifyWith(ctx context.Context, opts VerifyOptions) error {
	_, err := r.verify(ctx, opts, false)
	return err
}

// verify is VerifyWith that, with collect, also returns the sums of the
// stored bytes of every data and fragment block, in position order.
func (r *Reader) verify(ctx context.Context, opts VerifyOptions, collect bool) ([]blockSum, error) {
	v := &verifier{
		r:        r,
		ctx:      ctx,
		progress: opts.Progress,
		trusted:  opts.TrustedBelow,
		numbers:  newRefTable(r.sb.Inodes, r.size),
		inodeBlk: make(map[uint64]bool),
		check:    r.NewBlockChecker(ctx, opts.Workers),
		walkers:  opts.Workers,
	}
	if v.walkers <= 0 {
		v.walkers = runtime.NumCPU()
	}
	if sums, ok := r.BlockSums(); ok {
		// A record of block sums must agree with the blocks, or the next
		// fold would take sound blocks for damaged ones.
		v.check.UseSums(sums)
		v.check.decodeAll = true
	}
	v.check.collect = collect
	err := v.run()
	faults := v.check.Close()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(faults) > 0 {
		return nil, v.damage(faults)
	}
	sums := v.check.collected
	slices.SortFunc(sums, func(a, b blockSum) int { return cmp.Compare(a.pos, b.pos) })
	return slices.CompactFunc(sums, func(a, b blockSum) bool { return a.pos == b.pos }), nil
}

type verifier struct {
	r        *Reader
	ctx      context.Context
	progress func(done, total int64)

	numbers  *refTable       // inode numbers seen, to their refs
	inodeBlk map[uint64]bool // start positions of inode table blocks
	walkers  int
	claimed  uint32     // inode numbers the walk found, once each
	progMu   sync.Mutex // progress sees done rise one by one
	done     int64
	trusted  uint64

	// Blocks decode on the checker's workers while the walk goes on;
	// the files of those that fail are found afterwards.
	check *BlockChecker
}

func (v *verifier) run() error {
	r := v.r
	sb := &r.sb
	// The tables each end where the next known structure starts.
	ends := []uint64{sb.InodeTable, sb.DirTable, sb.IDTable, r.size}
	if len(r.fragIndex) > 0 {
		ends = append(ends, r.fragIndex[0], sb.FragmentTable)
	}
	if len(r.exportIndex) > 0 {
		ends = append(ends, r.exportIndex[0], sb.ExportTable)
	}
	if sb.XattrTable != NoTable {
		ends = append(ends, r.xattrStart, sb.XattrTable)
		if len(r.xattrIndex) > 0 {
			ends = append(ends, r.xattrIndex[0])
		}
	}
	ends = append(ends, r.idIndex...)
	sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
	next := func(pos uint64) uint64 {
		for _, e := range ends {
			if e > pos {
				return e
			}
		}
		return r.size
	}
	// The two tables decode at once: with xz, decoding is most of a
	// verify, and the walk below then finds the blocks in the cache.
	dirErr := make(chan error, 1)
	go func() { dirErr <- v.metaRun("directory table", sb.DirTable, next(sb.DirTable), nil) }()
	err := v.metaRun("inode table", sb.InodeTable, next(sb.InodeTable), v.inodeBlk)
	if derr := <-dirErr; err == nil {
		err = derr
	}
	if err != nil {
		return err
	}

	for i := uint32(0); i < sb.Fragments; i++ {
		fe, err := r.Fragment(i)
		if err != nil {
			return err
		}
		if BlockSize(fe.Size) == 0 {
			return corruptf("fragment %d: empty block", i)
		}
		if fe.Start >= v.trusted {
			v.check.Fragment(i, fe)
		}
		if err := v.ctx.Err(); err != nil {
			return err
		}
	}
	// The walk checks each tail against its fragment's decoded length.
	v.check.Wait()

	root, err := r.Root()
	if err != nil {
		return err
	}
	if err := v.walk(root); err != nil {
		return err
	}
	if v.claimed != sb.Inodes {
		return corruptf("superblock counts %d inodes, the tree holds %d", sb.Inodes, v.claimed)
	}

	if r.exportIndex != nil {
		for n := uint32(1); n <= sb.Inodes; n++ {
			ref, err := r.ExportRef(n)
			if err != nil {
				return err
			}
			if want, ok := v.numbers.get(n); !ok || want != ref {
				return corruptf("export table: inode %d at %#x, the tree has it at %#x", n, ref, want)
			}
		}
	}
	return nil
}

// metaRun decodes the chain of metadata blocks from start, which must end
// exactly at end.
func (v *verifier) metaRun(name string, start, end uint64, starts map[uint64]bool) error {
	pos := start
	for pos < end {
		if starts != nil {
			starts[pos-start] = true
		}
		b, err := v.r.readMetaBlock(pos)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pos = b.next
	}
	if pos != end {
		return corruptf("%s: last block ends at %#x, past the next table at %#x", name, pos, end)
	}
	return nil
}

type walkItem struct {
	ino  *Inode
	path string
}

// walk checks the tree below root on v.walkers goroutines, which take
// directories from one stack: a persist verifies the image it wrote while
// the disk syncs it, and one walker left a core idle for the walk's 60 ms
// (Portage-like tree). With one walker the order, and so the first fault
// reported, is a depth-first walk's.
func (v *verifier) walk(root *Inode) error {
	walkers := make([]*walker, v.walkers)
	for i := range walkers {
		walkers[i] = &walker{v: v}
	}
	if err := walkers[0].checkInodeLazy(root, func() string { return "/" }); err != nil {
		return err
	}
	q := &walkQueue{items: []walkItem{{root, "/"}}}
	q.cond.L = &q.mu
	var wg sync.WaitGroup
	for i := range walkers {
		wg.Add(1)
		go func(w *walker) {
			defer wg.Done()
			for {
				it, ok := q.pop()
				if !ok {
					return
				}
				w.found = w.found[:0]
				err := w.walkDir(it)
				q.done(w.found, err)
			}
		}(walkers[i])
	}
	wg.Wait()
	for _, w := range walkers {
		v.claimed += w.claimed
	}
	return q.err
}

// walker is one goroutine of the walk. What it counts stays its own until
// the walk ends: counters shared by the walkers cost more than the walk
// gained by them (one cache line passed between the cores per inode).
type walker struct {
	v *verifier
	// Each listing and each inode is looked at once: entries come straight
	// from the listing, and inodes but directories' are parsed into one
	// Inode, which spares the collector 60% of a verify's allocations.
	scratch Inode
	found   []walkItem // the subdirectories of the directory walked
	claimed uint32
}

// walkQueue is the stack of directories still to walk.
type walkQueue struct {
	mu    sync.Mutex
	cond  sync.Cond
	items []walkItem
	busy  int // directories being walked
	err   error
}

// pop takes the next directory, waiting while others may still find
// some; false when the walk is over or failed.
func (q *walkQueue) pop() (walkItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && q.busy > 0 && q.err == nil {
		q.cond.Wait()
	}
	if q.err != nil || len(q.items) == 0 {
		return walkItem{}, false
	}
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	q.busy++
	return it, true
}

// done ends the walk of a directory that found the directories found (in
// listing order) or failed with err.
func (q *walkQueue) done(found []walkItem, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, found...)
	q.busy--
	if err != nil && q.err == nil {
		q.err = err
	}
	q.cond.Broadcast()
}

// walkDir checks the entries of directory it and their inodes, and
// appends its subdirectories to w.found.
func (w *walker) walkDir(it walkItem) error {
	v := w.v
	var werr error
	err := v.r.eachEntry(it.ino, func(e DirEntry) bool {
		werr = w.walkEntry(it, e)
		return werr == nil
	})
	if err != nil {
		return fmt.Errorf("directory %s: %w", it.path, err)
	}
	if werr != nil {
		return werr
	}
	if err := v.checkDirIndex(it.ino); err != nil {
		return fmt.Errorf("directory %s: %w", it.path, err)
	}
	return nil
}

// walkEntry checks the entry e of directory it, and its inode (read into
// scratch, or a new Inode for a directory, which goes on stack).
func (w *walker) walkEntry(it walkItem, e DirEntry) error {
	v := w.v
	// Paths are only for messages and the directories still to walk:
	// joining one per entry is a fifth of a verify.
	p := func() string { return path.Join(it.path, e.Name) }
	ino := &w.scratch
	if e.Type == TypeDir {
		ino = new(Inode)
	}
	if err := v.r.readInodeInto(e.Ref, ino); err != nil {
		return fmt.Errorf("%s: inode %#x: %w", p(), e.Ref, err)
	}
	if basicType(ino.Type) != e.Type {
		return corruptf("%s: entry of type %d, inode of type %d", p(), e.Type, ino.Type)
	}
	if ino.Number != e.Number {
		return corruptf("%s: entry says inode %d, inode says %d", p(), e.Number, ino.Number)
	}
	if e.Type == TypeDir {
		// Directories cannot be hard-linked: seeing one again is a loop.
		// Its number is taken now, before another walker can reach it.
		if _, first := v.numbers.claim(ino.Number, ino.Ref); !first {
			return corruptf("%s: directory reached twice (loop or hard link)", p())
		}
		w.claimed++
		if ino.Parent != it.ino.Number {
			return corruptf("%s: parent inode %d, but it is in %d", p(), ino.Parent, it.ino.Number)
		}
		w.found = append(w.found, walkItem{ino, p()})
		return v.checkClaimed(ino, p)
	}
	return w.checkInodeLazy(ino, p)
}

func (w *walker) checkInodeLazy(ino *Inode, p func() string) error {
	v := w.v
	if ref, first := v.numbers.claim(ino.Number, ino.Ref); !first {
		if ref != ino.Ref {
			return corruptf("inode %d (%s): number also used by inode at %#x", ino.Number, p(), ref)
		}
		return nil // a hard link to an inode already checked
	}
	w.claimed++
	return v.checkClaimed(ino, p)
}

// checkClaimed checks an inode whose number a walker claimed.
func (v *verifier) checkClaimed(ino *Inode, p func() string) error {
	if ino.Number == 0 || ino.Number > v.r.sb.Inodes {
		return corruptf("inode %d (%s): number out of range 1..%d", ino.Number, p(), v.r.sb.Inodes)
	}
	if !v.inodeBlk[ino.Ref>>16] {
		return corruptf("inode %d (%s): reference %#x is not at a metadata block start", ino.Number, p(), ino.Ref)
	}
	if err := v.ctx.Err(); err != nil {
		return err
	}
	if _, err := v.r.Xattrs(ino); err != nil {
		return fmt.Errorf("inode %d (%s): %w", ino.Number, p(), err)
	}
	if basicType(ino.Type) == TypeFile {
		if err := v.checkFile(ino); err != nil {
			return fmt.Errorf("inode %d (%s): %w", ino.Number, p(), err)
		}
	}
	if v.progress != nil {
		v.progMu.Lock()
		v.done++
		v.progress(v.done, int64(v.r.sb.Inodes))
		v.progMu.Unlock()
	}
	return nil
}

// refTable maps inode numbers (1..count) to references: a slice when the
// count is plausible for the image's size, else a map (also for numbers
// past the slice), so that a hostile count cannot make Verify allocate out
// of proportion. Safe for concurrent use.
type refTable struct {
	s  []atomic.Uint64 // ref+1; 0 is unset
	mu sync.Mutex
	m  map[uint32]uint64
}

func newRefTable(count uint32, size uint64) *refTable {
	if uint64(count) <= size {
		return &refTable{s: make([]atomic.Uint64, int64(count)+1)}
	}
	return &refTable{}
}

func (t *refTable) get(n uint32) (uint64, bool) {
	if int64(n) < int64(len(t.s)) {
		v := t.s[n].Load()
		return v - 1, v != 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ref, ok := t.m[n]
	return ref, ok
}

// claim records ref for n unless n has one already; it returns the ref
// recorded and whether it was this one.
func (t *refTable) claim(n uint32, ref uint64) (uint64, bool) {
	if int64(n) < int64(len(t.s)) {
		if t.s[n].CompareAndSwap(0, ref+1) {
			return ref, true
		}
		return t.s[n].Load() - 1, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[n]; ok {
		return old, false
	}
	if t.m == nil {
		t.m = make(map[uint32]uint64)
	}
	t.m[n] = ref
	return ref, true
}

// checkFile bounds-checks a file's blocks and its tail here, and leaves
// decoding its blocks to the workers.
func (v *verifier) checkFile(ino *Inode) error {
	bs := uint64(v.r.sb.BlockSize)
	pos := ino.BlocksStart
	for i, w := range ino.BlockSizes {
		if BlockSize(w) != 0 {
			if err := v.r.checkBlock(pos, w); err != nil {
				return fmt.Errorf("data block %d at %#x: %w", i, pos, err)
			}
		}
		pos += uint64(BlockSize(w))
	}
	if pos > v.trusted && len(ino.BlockSizes) > 0 {
		// Queued for decoding: the walk reuses ino's block list.
		c := *ino
		c.BlockSizes = slices.Clone(ino.BlockSizes)
		ino = &c
	}
	v.check.file(ino, v.trusted)
	if uint64(len(ino.BlockSizes))*bs >= ino.Size {
		return nil
	}
	if ino.Fragment == NoFragment {
		return corruptf("file of %d bytes has too few blocks and no fragment", ino.Size)
	}
	fe, err := v.r.Fragment(ino.Fragment)
	if err != nil {
		return err
	}
	if fe.Start < v.trusted {
		return nil
	}
	n, ok := v.check.FragmentLen(ino.Fragment)
	if !ok {
		return nil // a damaged block: a fault already, its files are named at the end
	}
	tail := ino.Size % bs
	if uint64(ino.FragOffset) > uint64(n) || tail > uint64(n-ino.FragOffset) {
		return corruptf("fragment %d of %d bytes has no %d bytes at %d", ino.Fragment, n, tail, ino.FragOffset)
	}
	return nil
}

// damage names the files of the blocks that did not decode: a second walk,
// only when there is something to report.
func (v *verifier) damage(faults []BlockFault) error {
	byInode := make(map[uint32][]int)
	byFrag := make(map[uint32][]int)
	for i, f := range faults {
		if f.Fragment {
			byFrag[f.Index] = append(byFrag[f.Index], i)
		} else {
			byInode[f.Inode] = append(byInode[f.Inode], i)
		}
	}
	root, err := v.r.Root()
	if err != nil {
		return err
	}
	bs := uint64(v.r.sb.BlockSize)
	stack := []walkItem{{root, "/"}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := v.r.readDir(it.ino)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Type != TypeDir && e.Type != TypeFile {
				continue
			}
			ino, err := v.r.InodeAt(e.Ref)
			if err != nil {
				return err
			}
			p := path.Join(it.path, e.Name)
			if e.Type == TypeDir {
				stack = append(stack, walkItem{ino, p})
				continue
			}
			for _, i := range byInode[ino.Number] {
				faults[i].Paths = append(faults[i].Paths, p)
			}
			if ino.Fragment != NoFragment && uint64(len(ino.BlockSizes))*bs < ino.Size {
				for _, i := range byFrag[ino.Fragment] {
					faults[i].Paths = append(faults[i].Paths, p)
				}
			}
		}
	}
	for i := range faults {
		sort.Strings(faults[i].Paths)
	}
	return &DamageError{Faults: faults}
}

// checkDirIndex makes sure each index point of an extended directory lands
// on a header whose first name is the one the index records, since lookups
// trust the index to skip the rest of the listing.
func (v *verifier) checkDirIndex(dir *Inode) error {
	for i, x := range dir.DirIndex {
		if i > 0 {
			p := dir.DirIndex[i-1]
			if x.Index <= p.Index || x.Start < p.Start || x.Name <= p.Name {
				return corruptf("directory index %d (%q at %d) not after %q at %d", i, x.Name, x.Index, p.Name, p.Index)
			}
		}
		var first string
		err := v.r.scanDir(dir, x.Index, x.Start, func(e DirEntry) bool {
			first = e.Name
			return false
		})
		if err != nil {
			return fmt.Errorf("directory index %d: %w", i, err)
		}
		if first != x.Name {
			return corruptf("directory index %d names %q, the listing has %q there", i, x.Name, first)
		}
	}
	return nil
}
