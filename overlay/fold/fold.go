// Package fold writes the merged view of a squashfs image and an overlayfs
// upper directory into a new image, the way overlayfs itself shows them:
// whiteouts delete, opaque directories hide what is below, copied-up entries
// replace. Files that the upper does not touch keep their compressed blocks,
// copied verbatim and in their old order, so that folding costs what changed
// rather than the whole tree, and a delta transfer of the new image against
// the old one stays small.
package fold

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/xattr"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

// Overlayfs keeps its bookkeeping in trusted.overlay.* xattrs of the upper.
const (
	xattrPrefix   = "trusted.overlay."
	xattrOpaque   = "trusted.overlay.opaque"
	xattrWhiteout = "trusted.overlay.whiteout"
	xattrRedirect = "trusted.overlay.redirect"
	xattrMetacopy = "trusted.overlay.metacopy"
)

// Options tune a fold. The zero value keeps the old image's compressor and
// block size, which is what lets blocks be reused.
type Options struct {
	Codec    codec.Config // ID 0: the old image's; BlockSize 0: the old image's
	Workers  int
	MkfsTime uint32
	Writer   squash.WriterOptions // other writer settings (Codec, Workers, MkfsTime are set from above)
	// Log, when set, is told when each phase ends.
	Log func(format string, args ...any)
	// Progress, when set, is told how many of the entries are written.
	Progress func(done, total int64)
}

// Stats describes a fold.
type Stats struct {
	Entries           int   `json:"entries"`            // entries in the new image
	FromUpper         int   `json:"from_upper"`         // entries taken from the upper directory
	Deleted           int   `json:"deleted"`            // old entries hidden by whiteouts or opaque directories
	ReusedFiles       int   `json:"reused_files"`       // files whose data was reused
	ReusedBytes       int64 `json:"reused_bytes"`       // compressed bytes copied verbatim
	NewBytes          int64 `json:"new_bytes"`          // uncompressed bytes compressed anew
	FragmentsKept     int   `json:"fragments_kept"`     // fragment blocks copied as they were
	FragmentsRepacked int   `json:"fragments_repacked"` // fragment blocks whose live tails were packed anew
	Reuse             bool  `json:"reuse"`              // false when the compressor or block size changed
	// ReusedEnd is where the verbatim copies end in the new image: blocks
	// before it are the old image's bytes.
	ReusedEnd uint64 `json:"reused_end"`
}

// entry is one entry of the merged view, in the order it is added.
type entry struct {
	link      linkKey // identity for hard links; zero for directories
	hdr       squash.Header
	old       *squash.Inode // data from the old image
	oldPath   string
	upperPath string // data from the upper directory
}

type folder struct {
	r       *squash.Reader
	mode    foldMode
	sink    func(*entry) error // takes each entry, in order, while writing; keeps no pointer into it
	cur     entry              // the entry being handed to sink
	workers int
	dead    []tailUse // tails of the old files deleted or replaced
	deadRun []uint64  // and the starts of their stored blocks
	stats   Stats
	xattrs  xattr.Reader
	check   *reuseCheck

	// While writing.
	runs      map[uint64]*squash.Run // copied runs by their old start
	frags     map[uint32]uint32      // kept fragment blocks: old index to new
	firstName map[linkKey]string     // hard-linked inodes' first names
}

// foldMode is what a merge of the layers over the image is for.
type foldMode uint8

const (
	// planning merges only where the layers reach, to find what they
	// delete: the reuse plan needs it before the first block is written.
	planning foldMode = iota
	// writing merges everything and hands each entry, in order, to sink.
	writing
)

// emit hands an entry of the merged view on. The sinks copy what they
// keep, so every entry passes through one place in the folder rather than
// a heap copy of its own (a quarter of a persist's allocations, and of
// its garbage collection, before).
func (f *folder) emit(e entry) error {
	if f.mode == planning {
		return nil
	}
	f.cur = e
	return f.sink(&f.cur)
}

// tailUse is a file's tail in a fragment block of the old image. Slices
// of them, sorted once, cost a fraction of maps filled per file; several
// files share a tail only as duplicates or hard links.
type tailUse struct{ frag, off, size uint32 }

// linkKey identifies an inode: by number in the old image, by device and
// inode number in the upper.
type linkKey struct {
	old  bool
	a, b uint64
}

// Fold writes the merged view of r (whose bytes are readable from data) and
// the upper directory to out.
func Fold(r *squash.Reader, data io.ReaderAt, upper string, out squash.Output, opts Options) (Stats, error) {
	return FoldLayers(r, data, []string{upper}, out, opts)
}

// FoldLayers writes the merged view of r and a stack of directories in
// overlayfs's upper form, newest first (an upper, then the delta layers
// below it, each mounted), to out, as overlayfs shows
// lowerdir=layers[1]:...:image under upperdir=layers[0]. Redirects and
// metacopy data are looked up in the image only. It bounds r's caches
// (Reader.SetCache).
func FoldLayers(r *squash.Reader, data io.ReaderAt, layers []string, out squash.Output, opts Options) (Stats, error) {
	old := r.Codec()
	cfg := opts.Codec
	if cfg.ID == 0 {
		cfg = old
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = old.BlockSize
	}
	f := &folder{
		r:       r,
		workers: max(1, opts.Workers),
	}
	if opts.Workers == 0 {
		f.workers = runtime.NumCPU()
	}
	f.stats.Reuse = cfg.ID == old.ID && cfg.BlockSize == old.BlockSize && cfg.Options == old.Options
	// The inode table is read whole twice (for the copy plan, then by the
	// merge): room for the tables of a Portage tree (1,400 blocks of 8
	// KiB, 186k entries) decodes each block once. 512 blocks instead: a
	// whole-image persist of the Portage-like tree 7% slower, peak RSS 10
	// MB lower (44-46 MB).
	r.SetCache(2048, 256)
	root, err := r.Root()
	if err != nil {
		return f.stats, err
	}
	start := time.Now()
	log := func(format string, args ...any) {
		if opts.Log != nil {
			opts.Log(format+" at %v", append(args, time.Since(start).Round(time.Millisecond))...)
		}
	}
	var scan <-chan *inodeScan
	if f.stats.Reuse {
		f.check = startCheck(r, f.workers)
		defer f.check.abort()
		scan = f.scanInodes()
		if err := f.mergeDir("", root, "", layers, nil); err != nil {
			return f.stats, err
		}
		f.stats.FromUpper, f.stats.Deleted = 0, 0 // counted again while writing
		log("found %d deleted tails", len(f.dead))
	}

	wopts := opts.Writer
	wopts.Codec, wopts.Workers, wopts.MkfsTime = cfg, opts.Workers, opts.MkfsTime
	wopts.BlockSums = true // for the next fold's check
	if wopts.MetadataLevel == 0 {
		wopts.MetadataLevel = fastMetadataLevel(cfg)
	}
	w, err := squash.NewWriter(out, wopts)
	if err != nil {
		return f.stats, err
	}
	fail := func(err error) (Stats, error) {
		w.Close()
		if derr := f.damaged(layers); derr != nil {
			return f.stats, derr // what made the write fail, and more
		}
		return f.stats, err
	}
	f.runs = make(map[uint64]*squash.Run)
	f.frags = make(map[uint32]uint32)
	f.firstName = make(map[linkKey]string)
	if f.stats.Reuse {
		if f.check.sums != nil {
			// Checked against them before the image counts (f.damaged).
			w.UseSourceSums(data, f.check.sums)
		}
		if err := f.copyReused(w, data, scan); err != nil {
			return fail(err)
		}
		log("reused blocks queued")
	}
	// The merged view goes to the writer entry by entry: neither it nor
	// the writer holds the tree.
	f.mode = writing
	total := int64(r.Superblock().Inodes)
	f.sink = func(e *entry) error {
		if opts.Progress != nil {
			opts.Progress(int64(f.stats.Entries), max(total, int64(f.stats.Entries)+1))
		}
		return f.put(w, data, e)
	}
	if err := f.mergeDir("", root, "", layers, nil); err != nil {
		return fail(err)
	}
	if opts.Progress != nil {
		opts.Progress(int64(f.stats.Entries), int64(f.stats.Entries))
	}
	log("merged and added %d entries", f.stats.Entries)
	if err := w.Close(); err != nil {
		return f.stats, err
	}
	log("tables written")
	if err := f.damaged(layers); err != nil {
		return f.stats, err
	}
	if f.check != nil {
		log("reused blocks checked")
	}
	f.stats.ReusedEnd = uint64(w.Stats().CopiedEnd)
	return f.stats, nil
}

// fastMetadataLevel picks the level for the metadata tables a fold writes
// anew each time, since they are on a persist's critical path: gzip 4
// makes the Portage-like bench image 0.05% larger than gzip 6 (74 KB of
// 135 MB) and compresses 8 KiB blocks about a quarter faster, 6 was
// already many times faster than 9 for as little; zstd's
// levels above 9 are likewise slow for little gain on 8 KiB blocks. Data
// blocks keep the image's own level.
func fastMetadataLevel(c codec.Config) int {
	switch c.ID {
	case codec.Gzip:
		if c.Options.Level == 0 || c.Options.Level > 4 {
			return 4
		}
	case codec.Zstd:
		if c.Options.Level == 0 || c.Options.Level > 9 {
			return 9
		}
	case codec.XZ:
		return 1 // any: xz then takes a greedy parse (Options.Fast)
	}
	return 0
}

// mergeDir adds the directory at name and, recursively, its merged children.
// oldDir is the lower directory (nil if none shows through), uppers the
// directories of this name in the upper layers, newest first, down to the
// first opaque one (none: the image's alone).
// top is the newest upper directory's header when the caller has read
// it already (nil: read here).
func (f *folder) mergeDir(name string, oldDir *squash.Inode, oldPath string, uppers []string, top *squash.Header) error {
	var hdr squash.Header
	var err error
	var upperNames []string
	if len(uppers) > 0 {
		switch {
		case top != nil:
			hdr = *top
		case f.mode == planning:
			// Nothing is emitted: the header would be thrown away.
		default:
			var xs []squash.Xattr
			if hdr, xs, err = f.upperHeader(name, uppers[0]); err != nil {
				return err
			}
			hdr.Xattrs = xs
		}
		seen := map[string]bool{}
		for _, u := range uppers {
			d, err := os.Open(u)
			if err != nil {
				return fmt.Errorf("upper %s: %w", u, err)
			}
			names, err := d.Readdirnames(-1)
			d.Close()
			if err != nil {
				return fmt.Errorf("upper %s: %w", u, err)
			}
			for _, n := range names {
				if !seen[n] {
					seen[n] = true
					upperNames = append(upperNames, n)
				}
			}
		}
		sort.Strings(upperNames)
	} else {
		if hdr, err = f.oldHeader(name, oldDir); err != nil {
			return err
		}
	}
	if err := f.emit(entry{hdr: hdr}); err != nil {
		return err
	}

	var oldEnts []squash.DirEntry
	if oldDir != nil {
		if oldEnts, err = f.r.ReadDirInode(oldDir); err != nil {
			return fmt.Errorf("image %s: %w", "/"+oldPath, err)
		}
	}
	// The root's children are merged in parallel; below the root, each
	// child is merged as the listings' merge reaches it.
	parallel := name == "" && f.workers > 1
	var tasks []childTask
	if parallel {
		tasks = make([]childTask, 0, len(oldEnts)+len(upperNames))
	}
	i, j := 0, 0
	for i < len(oldEnts) || j < len(upperNames) {
		var t childTask
		switch {
		case j == len(upperNames) || (i < len(oldEnts) && oldEnts[i].Name < upperNames[j]):
			t.oe = &oldEnts[i]
			i++
		case i == len(oldEnts) || upperNames[j] < oldEnts[i].Name:
			t.un = upperNames[j]
			j++
		default:
			t.oe, t.un = &oldEnts[i], upperNames[j]
			i++
			j++
		}
		t.child = join(name, firstNonEmpty(t.un, nameOf(t.oe)))
		t.oldParent, t.uppers = oldPath, uppers
		t.sameOld = name == oldPath
		if parallel {
			tasks = append(tasks, t)
		} else if err := f.run(t); err != nil {
			return err
		}
	}
	if parallel {
		return f.runParallel(tasks)
	}
	return nil
}

// childTask is one entry of a merged directory listing.
type childTask struct {
	child, un, oldParent string
	uppers               []string // the parent's upper directories, newest first
	sameOld              bool     // the lower path is child too (no redirect above)
	oe                   *squash.DirEntry
}

func (f *folder) run(t childTask) error {
	if t.un == "" {
		if t.sameOld {
			return f.addOld(t.child, t.child, t.oe) // one string for both
		}
		return f.addOld(t.child, join(t.oldParent, t.oe.Name), t.oe)
	}
	return f.addUpper(t.child, t.oldParent, t.oe, t.uppers, t.un)
}

// runParallel merges the root's children on several goroutines, each into
// a folder of its own, and passes their entries on in order: the walk
// reads and decodes the old image's whole metadata, which is most of a
// persist's work before writing. A subtree merged ahead of its turn waits
// after a few hundred entries, so memory holds those, not the tree.
//
// Entries go over in batches: handed over one at a time, the consumer
// (the writer's goroutine, a persist's critical path) was woken for
// nearly every entry and spent a quarter of a persist waiting to run
// again (a trace of the Portage-like tree's: 211 of 793 ms runnable).
func (f *folder) runParallel(tasks []childTask) error {
	type result struct {
		sub  *folder
		ents chan []entry // closed when the subtree is merged
		err  error
	}
	const (
		batchLen = 64
		buffered = 32 // batches
	)
	var batches sync.Pool
	newBatch := func() []entry {
		if b, ok := batches.Get().(*[]entry); ok {
			return (*b)[:0]
		}
		return make([]entry, 0, batchLen)
	}
	// A task's channel is made when it gets a place among the tasks in
	// flight (before the place is given): entries are large, and a
	// channel per child of the root made up front held megabytes. Four
	// tasks a worker keep the workers busy while the writer goes through
	// a large subtree; they hold at most 4*workers+1 times 32 batches of
	// 64 entries (3.3 MB at 2 workers).
	inFlight := 4*f.workers + 1
	results := make([]*result, len(tasks))
	for i := range results {
		results[i] = &result{}
	}
	for i := range min(inFlight, len(tasks)) {
		results[i].ents = make(chan []entry, buffered)
	}
	ahead := make(chan struct{}, inFlight)
	next := make(chan int)
	stop := make(chan struct{})
	errStopped := errors.New("stopped")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(next)
		for i := range tasks {
			select {
			case ahead <- struct{}{}:
			case <-stop:
				return
			}
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	for range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res := results[i]
				sub := &folder{r: f.r, mode: f.mode}
				b := newBatch()
				send := func() error {
					select {
					case res.ents <- b:
						b = newBatch()
						return nil
					case <-stop:
						return errStopped
					}
				}
				sub.sink = func(e *entry) error {
					if b = append(b, *e); len(b) < batchLen {
						return nil
					}
					return send()
				}
				res.sub, res.err = sub, sub.run(tasks[i])
				if res.err == nil && len(b) > 0 {
					res.err = send()
				}
				close(res.ents)
			}
		}()
	}
	defer wg.Wait()
	defer close(stop)
	for i, res := range results {
		for b := range res.ents {
			for k := range b {
				if err := f.emit(b[k]); err != nil {
					return err
				}
			}
			clear(b) // let go of what the entries point to
			batches.Put(&b)
		}
		results[i] = nil
		if res.err != nil {
			return res.err
		}
		sub := res.sub
		f.dead = append(f.dead, sub.dead...)
		f.deadRun = append(f.deadRun, sub.deadRun...)
		f.stats.FromUpper += sub.stats.FromUpper
		f.stats.Deleted += sub.stats.Deleted
		if j := i + inFlight; j < len(results) {
			results[j].ents = make(chan []entry, buffered)
		}
		<-ahead
	}
	return nil
}

// join appends a name read from a directory listing (never "", "." or
// "..", never with a slash) to a path; path.Join's cleaning is wasted here.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func nameOf(e *squash.DirEntry) string {
	if e == nil {
		return ""
	}
	return e.Name
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// addOld adds an entry that only the image has, with its whole subtree.
func (f *folder) addOld(name, oldPath string, e *squash.DirEntry) error {
	if f.mode == planning {
		return nil // all of it stays
	}
	ino, err := f.r.InodeAt(e.Ref)
	if err != nil {
		return fmt.Errorf("image /%s: %w", oldPath, err)
	}
	if ino.Mode.IsDir() {
		return f.mergeDir(name, ino, oldPath, nil, nil)
	}
	hdr, err := f.oldHeader(name, ino)
	if err != nil {
		return err
	}
	ent := entry{hdr: hdr}
	if ino.Nlink > 1 {
		ent.link = linkKey{old: true, a: uint64(ino.Number)}
		ent.hdr.Nlink = ino.Nlink // at most that many names show
	}
	if ino.Mode.IsRegular() {
		ent.old, ent.oldPath = ino, oldPath
	}
	return f.emit(ent)
}

// addUpper adds an entry that an upper layer has: base is its name in the
// parent directories parents (newest first); oe is the image's entry of
// the same name in the lower directory, if any. The newest layer holding
// the name decides, as overlayfs's lookup does: a whiteout deletes, a
// file replaces, a directory merges with the same directory in older
// layers (down to an opaque one, or one where the name is no directory)
// and in the image.
func (f *folder) addUpper(name, oldParent string, oe *squash.DirEntry, parents []string, base string) error {
	var oldIno *squash.Inode
	oldPath := ""
	if oe != nil {
		oldPath = join(oldParent, oe.Name)
		var err error
		if oldIno, err = f.r.InodeAt(oe.Ref); err != nil {
			return fmt.Errorf("image /%s: %w", oldPath, err)
		}
	}
	var dirs []string // this name's directories in the layers, newest first
	var top []squash.Xattr
	var topStat unix.Stat_t
	opaque := false
	for _, parent := range parents {
		up := filepath.Join(parent, base)
		var st unix.Stat_t
		if err := unix.Lstat(up, &st); errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return fmt.Errorf("upper %s: %w", up, err)
		}
		xs, err := f.listXattrs(up)
		if err != nil {
			return err
		}
		mode := st.Mode & unix.S_IFMT
		whiteout := (mode == unix.S_IFCHR && st.Rdev == 0) || (mode == unix.S_IFREG && hasXattr(xs, xattrWhiteout))
		if len(dirs) == 0 && (whiteout || mode != unix.S_IFDIR) {
			// The newest layer with the name has a whiteout or a file.
			if whiteout {
				if oldIno != nil {
					f.stats.Deleted++
					return f.markDead(oldIno)
				}
				return nil
			}
			return f.addUpperFile(name, oldParent, oldPath, oldIno, up, &st, xs)
		}
		if mode != unix.S_IFDIR || whiteout {
			break // below a directory: hidden by it
		}
		if len(dirs) == 0 {
			top, topStat = xs, st
		}
		dirs = append(dirs, up)
		if v, ok := xattrValue(xs, xattrOpaque); ok && v == "y" {
			opaque = true
			break
		}
	}
	if len(dirs) == 0 {
		// Only whiteouts-free misses: the name was in no layer after all.
		if oe != nil {
			return f.addOld(name, oldPath, oe)
		}
		return nil
	}
	f.stats.FromUpper++
	lower, lowerPath := (*squash.Inode)(nil), ""
	if oldIno != nil && oldIno.Mode.IsDir() {
		lower, lowerPath = oldIno, oldPath
	}
	if redirect, ok := xattrValue(top, xattrRedirect); ok {
		lowerPath = redirectPath(oldParent, redirect)
		lower = nil
		if fi, err := f.r.Lstat(lowerPath); err == nil && fi.IsDir() {
			lower = fi.Sys().(*squash.Inode)
		}
	}
	if opaque {
		if lower != nil {
			if err := f.markDead(lower); err != nil {
				return err
			}
		}
		lower = nil
	}
	if oldIno != nil && lower != oldIno {
		// The image's entry of this name is hidden by a new directory.
		if err := f.markDead(oldIno); err != nil {
			return err
		}
	}
	if f.mode == planning {
		return f.mergeDir(name, lower, lowerPath, dirs, nil)
	}
	hdr, err := headerFromStat(name, dirs[0], &topStat)
	if err != nil {
		return err
	}
	hdr.Xattrs = withoutOverlay(top)
	return f.mergeDir(name, lower, lowerPath, dirs, &hdr)
}

// addUpperFile adds a non-directory a layer has at up.
func (f *folder) addUpperFile(name, oldParent, oldPath string, oldIno *squash.Inode, up string, st *unix.Stat_t, xs []squash.Xattr) error {
	f.stats.FromUpper++
	mode := st.Mode & unix.S_IFMT
	if oldIno != nil {
		if err := f.markDead(oldIno); err != nil {
			return err
		}
	}
	if f.mode == planning {
		return nil // what it hides is marked; nothing is emitted
	}
	hdr, err := headerFromStat(name, up, st)
	if err != nil {
		return err
	}
	hdr.Xattrs = withoutOverlay(xs)
	ent := entry{hdr: hdr}
	if st.Nlink > 1 {
		ent.link = linkKey{a: st.Dev, b: st.Ino}
		ent.hdr.Nlink = uint32(st.Nlink)
	}
	if mode == unix.S_IFREG {
		if _, ok := xattrValue(xs, xattrMetacopy); ok {
			// Metadata copied up, data still in the lower file.
			lowerPath := oldPath
			if redirect, ok := xattrValue(xs, xattrRedirect); ok {
				lowerPath = redirectPath(oldParent, redirect)
			}
			fi, err := f.r.Lstat(lowerPath)
			if err != nil {
				return fmt.Errorf("upper %s: metacopy without lower data /%s: %w", up, lowerPath, err)
			}
			ent.old, ent.oldPath = fi.Sys().(*squash.Inode), lowerPath
		} else {
			ent.upperPath = up
		}
	}
	return f.emit(ent)
}

func redirectPath(parent, redirect string) string {
	if strings.HasPrefix(redirect, "/") {
		return strings.TrimPrefix(path.Clean(redirect), "/")
	}
	return path.Join(parent, redirect)
}

// markDead records the tails of an old entry (a whole subtree for a
// directory) that the new image no longer shows, to judge which fragment
// blocks are mostly dead.
func (f *folder) markDead(ino *squash.Inode) error {
	if f.mode != planning {
		return nil
	}
	if ino.Mode.IsRegular() {
		f.dead = f.noteTail(f.dead, ino)
		if len(ino.BlockSizes) > 0 {
			f.deadRun = append(f.deadRun, ino.BlocksStart)
		}
		return nil
	}
	if !ino.Mode.IsDir() {
		return nil
	}
	ents, err := f.r.ReadDirInode(ino)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type != squash.TypeDir && e.Type != squash.TypeFile {
			continue
		}
		child, err := f.r.InodeAt(e.Ref)
		if err != nil {
			return err
		}
		if err := f.markDead(child); err != nil {
			return err
		}
	}
	return nil
}

func (f *folder) noteTail(uses []tailUse, ino *squash.Inode) []tailUse {
	if ino.Fragment == squash.NoFragment {
		return uses
	}
	bs := uint64(f.r.Superblock().BlockSize)
	return append(uses, tailUse{ino.Fragment, ino.FragOffset, uint32(ino.Size % bs)})
}

// tailBytes sums the bytes of distinct tails per fragment block. uses is
// sorted and deduplicated in place and returned.
func tailBytes(uses []tailUse) ([]tailUse, map[uint32]uint64) {
	slices.SortFunc(uses, cmpTail)
	uses = slices.CompactFunc(uses, func(a, b tailUse) bool { return cmpTail(a, b) == 0 })
	by := make(map[uint32]uint64)
	for _, u := range uses {
		by[u.frag] += uint64(u.size)
	}
	return uses, by
}

func cmpTail(a, b tailUse) int {
	if a.frag != b.frag {
		return cmp.Compare(a.frag, b.frag)
	}
	return cmp.Compare(a.off, b.off)
}

func (f *folder) oldHeader(name string, ino *squash.Inode) (squash.Header, error) {
	h, err := f.r.Header(name, ino)
	if err != nil {
		return h, fmt.Errorf("image %w", err)
	}
	return h, nil
}

func (f *folder) upperHeader(name, p string) (squash.Header, []squash.Xattr, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return squash.Header{}, nil, fmt.Errorf("upper %s: %w", p, err)
	}
	h, err := headerFromStat(name, p, &st)
	if err != nil {
		return h, nil, err
	}
	xs, err := f.listXattrs(p)
	if err != nil {
		return h, nil, err
	}
	return h, withoutOverlay(xs), nil
}

// headerFromStat is the header of the upper entry at p, whose lstat is st
// (a symlink's target is read), without its xattrs.
func headerFromStat(name, p string, st *unix.Stat_t) (squash.Header, error) {
	h := squash.Header{
		Name:  name,
		Mode:  squash.FileModeFromUnix(st.Mode),
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: clampTime(st.Mtim.Sec),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		h.Size = st.Size
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return h, fmt.Errorf("upper %s: %w", p, err)
		}
		h.Target = t
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Major, h.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	return h, nil
}

func clampTime(s int64) uint32 {
	switch {
	case s < 0:
		return 0
	case s > 0xffffffff:
		return 0xffffffff
	}
	return uint32(s)
}

// listXattrs reads every storable xattr of p, overlayfs's own included.
func (f *folder) listXattrs(p string) ([]squash.Xattr, error) {
	attrs, err := f.xattrs.All(p, squash.StorableXattr)
	if err != nil {
		return nil, fmt.Errorf("upper: %w", err)
	}
	var xs []squash.Xattr
	for _, a := range attrs {
		xs = append(xs, squash.Xattr{Name: a.Name, Value: a.Value})
	}
	return xs, nil
}

func hasXattr(xs []squash.Xattr, name string) bool {
	_, ok := xattrValue(xs, name)
	return ok
}

func xattrValue(xs []squash.Xattr, name string) (string, bool) {
	for _, x := range xs {
		if x.Name == name {
			return string(x.Value), true
		}
	}
	return "", false
}

func withoutOverlay(xs []squash.Xattr) []squash.Xattr {
	out := xs[:0:0]
	for _, x := range xs {
		if !strings.HasPrefix(x.Name, xattrPrefix) {
			out = append(out, x)
		}
	}
	return out
}

// inodeScan is what copyReused needs of the old inode table, read on a
// goroutine of its own while the layers are merged for what they delete:
// each distinct run of stored blocks (from its first inode, in table
// order) and every tail.
type inodeScan struct {
	runs  []oldRun
	sizes [][]uint32 // the runs' size words
	tails []tailUse  // sorted, distinct
	// tailBytes sums the bytes of the distinct tails per fragment block.
	// The scan does this while the layers are merged for the plan: after
	// the plan, the copy plan took 34 ms of a persist of the Portage-like
	// tree (160k tails), now 4-5 ms (persist -v).
	tailBytes map[uint32]uint64
	err       error
}

// oldRun is a file's run of stored blocks in the old image, with what the
// reuse check needs of its inode. It holds no pointer (its size words are
// sizes[blk][at:at+n] of its scan), so the collector never scans the runs.
type oldRun struct {
	start, size uint64
	number      uint32
	blk, at, n  uint32
}

func (s *inodeScan) sizesOf(o *oldRun) []uint32 { return s.sizes[o.blk][o.at : o.at+o.n] }

// inode is the part of a squash.Inode the block checker reads.
func (s *inodeScan) inode(o *oldRun) *squash.Inode {
	return &squash.Inode{Number: o.number, BlocksStart: o.start, BlockSizes: s.sizesOf(o), Size: o.size}
}

// scanInodes starts the scan; its result comes once on the channel. Its
// slices are sized for the image's inode count up front: growing them by
// append would touch several times their size in fresh memory (see
// squash's chunks), and capacity never written costs nothing, as nothing
// in them is a pointer for the collector to scan. Past a million inodes
// (five Portage trees; a damaged superblock may claim four billion)
// they grow.
func (f *folder) scanInodes() <-chan *inodeScan {
	out := make(chan *inodeScan, 1)
	go func() {
		count := int(min(f.r.Superblock().Inodes, 1<<20))
		s := &inodeScan{runs: make([]oldRun, 0, count), tails: make([]tailUse, 0, count)}
		seen := make(map[uint64]bool)
		var sizes []uint32
		s.err = f.r.Inodes(func(ino *squash.Inode) error {
			if !ino.Mode.IsRegular() {
				return nil
			}
			s.tails = f.noteTail(s.tails, ino)
			if !ino.HasStoredBlocks() || seen[ino.BlocksStart] {
				return nil // no stored blocks, or a duplicate's or a hard link's
			}
			seen[ino.BlocksStart] = true
			if len(s.sizes) == 0 || len(ino.BlockSizes) > cap(sizes)-len(sizes) {
				sizes = make([]uint32, 0, max(64<<10, len(ino.BlockSizes)))
				s.sizes = append(s.sizes, sizes)
			}
			r := oldRun{start: ino.BlocksStart, size: ino.Size, number: ino.Number,
				blk: uint32(len(s.sizes) - 1), at: uint32(len(sizes)), n: uint32(len(ino.BlockSizes))}
			sizes = append(sizes, ino.BlockSizes...)
			s.sizes[r.blk] = sizes
			s.runs = append(s.runs, r)
			return nil
		})
		s.tails, s.tailBytes = tailBytes(s.tails)
		out <- s
	}()
	return out
}

// copyReused copies, in their old order and ahead of all new data, the
// blocks of the old files that the layers leave alone: every file's runs
// (from the inode table, without walking the tree: scan) but the deleted
// ones', and the fragment blocks still mostly alive.
func (f *folder) copyReused(w *squash.Writer, data io.ReaderAt, scan <-chan *inodeScan) error {
	type item struct {
		pos   uint64
		frag  uint32
		isRun bool
		run   int // in live
	}
	s := <-scan
	if s.err != nil {
		return fmt.Errorf("image: %w", s.err)
	}
	dead := make(map[uint64]bool, len(f.deadRun))
	for _, p := range f.deadRun {
		dead[p] = true
	}
	live := s.runs[:0]
	for i := range s.runs {
		if !dead[s.runs[i].start] {
			f.runs[s.runs[i].start] = nil
			live = append(live, s.runs[i])
		}
	}
	f.check.files(s, live)

	// A fragment block stays while at least half of what it holds is
	// alive: repacking costs compression, keeping costs space. A tail the
	// layers delete counts as dead even when a duplicate of it lives on.
	// Every dead tail is one of the scan's: what lives is the rest.
	var deadBy map[uint32]uint64
	f.dead, deadBy = tailBytes(f.dead)
	liveBy := s.tailBytes
	for frag, n := range deadBy {
		liveBy[frag] -= min(n, liveBy[frag])
	}
	items := make([]item, 0, len(live)+len(liveBy))
	for i := range live {
		items = append(items, item{pos: live[i].start, isRun: true, run: i})
	}
	for frag, n := range liveBy {
		if n == 0 || n < deadBy[frag] {
			continue
		}
		e, err := f.r.Fragment(frag)
		if err != nil {
			return err
		}
		items = append(items, item{pos: e.Start, frag: frag})
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.pos, b.pos) })
	kept := 0
	for _, it := range items {
		if it.isRun {
			sizes := s.sizesOf(&live[it.run])
			run, err := w.CopyRun(data, it.pos, sizes)
			if err != nil {
				return err
			}
			f.runs[it.pos] = run
			for _, word := range sizes {
				f.stats.ReusedBytes += int64(squash.BlockSize(word))
			}
			continue
		}
		e, err := f.r.Fragment(it.frag)
		if err != nil {
			return err
		}
		idx, err := w.CopyFragment(data, e)
		if err != nil {
			return err
		}
		f.frags[it.frag] = idx
		f.stats.ReusedBytes += int64(squash.BlockSize(e.Size))
		kept++
	}
	f.stats.FragmentsKept = kept
	for frag, n := range liveBy {
		if _, ok := f.frags[frag]; !ok && n > 0 {
			f.stats.FragmentsRepacked++
		}
	}
	return nil
}

// put adds one entry of the merged view to w.
func (f *folder) put(w *squash.Writer, data io.ReaderAt, e *entry) error {
	f.stats.Entries++
	if e.link != (linkKey{}) {
		if first, ok := f.firstName[e.link]; ok {
			return w.Add(&squash.Header{Name: e.hdr.Name, Link: first}, nil)
		}
		f.firstName[e.link] = e.hdr.Name
	}
	switch {
	case e.old != nil && f.stats.Reuse:
		ino := e.old
		r := squash.Reused{
			Size:     ino.Size,
			Sizes:    ino.BlockSizes,
			Sparse:   ino.Sparse,
			Fragment: squash.NoFragment,
		}
		if ino.HasStoredBlocks() {
			run, ok := f.runs[ino.BlocksStart]
			if !ok || run == nil {
				// A run the plan took for deleted (one name of a hard
				// link, or a duplicate, went): copied now, after new
				// data, where verification decodes it.
				var err error
				if run, err = w.CopyRun(data, ino.BlocksStart, ino.BlockSizes); err != nil {
					return err
				}
				f.runs[ino.BlocksStart] = run
				f.check.file(ino)
				for _, s := range ino.BlockSizes {
					f.stats.ReusedBytes += int64(squash.BlockSize(s))
				}
			}
			r.Run = run
		}
		if ino.Fragment != squash.NoFragment {
			if idx, ok := f.frags[ino.Fragment]; ok {
				r.Fragment, r.FragOffset = idx, ino.FragOffset
			} else {
				tail, err := f.readTail(e.oldPath, ino)
				if err != nil {
					return err
				}
				r.Tail = tail
				f.stats.NewBytes += int64(len(tail))
			}
		}
		f.stats.ReusedFiles++
		return w.AddReused(&e.hdr, r)
	case e.old != nil:
		file, err := f.r.OpenInode(e.old)
		if err != nil {
			return fmt.Errorf("image /%s: %w", e.oldPath, err)
		}
		f.stats.NewBytes += e.hdr.Size
		err = w.Add(&e.hdr, file)
		file.Close()
		return err
	case e.upperPath != "":
		file, err := os.Open(e.upperPath)
		if err != nil {
			return fmt.Errorf("upper: %w", err)
		}
		f.stats.NewBytes += e.hdr.Size
		err = w.Add(&e.hdr, file)
		file.Close()
		if err != nil {
			return fmt.Errorf("upper %s: %w", e.upperPath, err)
		}
		return nil
	}
	return w.Add(&e.hdr, nil)
}

// readTail reads the part of an old file that lives in a fragment block
// being repacked.
func (f *folder) readTail(oldPath string, ino *squash.Inode) ([]byte, error) {
	bs := uint64(f.r.Superblock().BlockSize)
	n := ino.Size % bs
	file, err := f.r.OpenInode(ino)
	if err != nil {
		return nil, fmt.Errorf("image /%s: %w", oldPath, err)
	}
	defer file.Close()
	ra, ok := file.(io.ReaderAt)
	if !ok {
		return nil, fmt.Errorf("image /%s: file is not an io.ReaderAt", oldPath)
	}
	tail := make([]byte, n)
	if got, err := ra.ReadAt(tail, int64(ino.Size-n)); got < len(tail) {
		return nil, fmt.Errorf("image /%s: read tail: %w", oldPath, err)
	}
	return tail, nil
}

// reuseCheck checks the old image's blocks that a fold copies verbatim, on
// workers beside the fold: an image damaged on disk must not be carried
// forward, block for block, into the next one. Blocks are compared with the
// block sums a fold records after its image when there are some, else
// decoded. Fragment blocks are queued at once (they are known before the
// merge, and in a Portage tree they hold most of the data), the runs of
// files once the merge has found them.
type reuseCheck struct {
	c        *squash.BlockChecker
	cancel   context.CancelFunc
	frags    chan struct{} // closed when the fragments are queued
	runs     chan struct{} // closed when the runs are queued
	runStart map[uint32]uint64
	sums     map[uint64]uint32 // the old image's record, if it has one
	closed   bool
	faults   []squash.BlockFault
}

func startCheck(r *squash.Reader, workers int) *reuseCheck {
	ctx, cancel := context.WithCancel(context.Background())
	k := &reuseCheck{c: r.NewBlockChecker(ctx, workers), cancel: cancel, frags: make(chan struct{})}
	if sums, ok := r.BlockSums(); ok {
		k.c.UseSums(sums) // written by a fold: a read of each block, no decoding
		k.sums = sums
	}
	go func() {
		defer close(k.frags)
		for i := range r.Superblock().Fragments {
			e, err := r.Fragment(i)
			if err != nil {
				return // the fold reads the table too, and fails
			}
			k.c.Fragment(i, e)
		}
	}()
	return k
}

// files queues the stored blocks of the files whose runs are copied.
func (k *reuseCheck) files(s *inodeScan, runs []oldRun) {
	if k == nil {
		return
	}
	k.runStart = make(map[uint32]uint64, len(runs))
	for _, r := range runs {
		k.runStart[r.number] = r.start
	}
	k.runs = make(chan struct{})
	go func() {
		defer close(k.runs)
		for i := range runs {
			k.c.File(s.inode(&runs[i]))
		}
	}()
}

// file queues the stored blocks of one more file whose run is copied.
func (k *reuseCheck) file(ino *squash.Inode) {
	if k == nil {
		return
	}
	k.runStart[ino.Number] = ino.BlocksStart
	k.c.File(ino)
}

// close waits for every queued block and returns the faults.
func (k *reuseCheck) close() []squash.BlockFault {
	if k == nil {
		return nil
	}
	if !k.closed {
		k.closed = true
		<-k.frags
		if k.runs != nil {
			<-k.runs
		}
		k.faults = k.c.Close()
		k.cancel()
	}
	return k.faults
}

// abort stops the check of a fold that failed.
func (k *reuseCheck) abort() {
	if k != nil {
		k.cancel()
		k.close()
	}
}

// damaged waits for the check and names the files of the new image whose
// data lives in an old block that does not decode; nil when none does.
// Damaged blocks that no file of the new image uses (their files were
// deleted or replaced) do not matter: that is how a damaged image heals.
// The names come from merging the layers once more, which only a damaged
// image costs.
func (f *folder) damaged(layers []string) error {
	faults := f.check.close()
	if len(faults) == 0 {
		return nil
	}
	byRun := make(map[uint64][]int)
	byFrag := make(map[uint32][]int)
	for i, bf := range faults {
		if bf.Fragment {
			byFrag[bf.Index] = append(byFrag[bf.Index], i)
		} else if start, ok := f.check.runStart[bf.Inode]; ok {
			byRun[start] = append(byRun[start], i)
		}
	}
	bs := uint64(f.r.Superblock().BlockSize)
	named := make([]squash.BlockFault, len(faults))
	copy(named, faults)
	namer := &folder{r: f.r, workers: f.workers, mode: writing}
	namer.sink = func(e *entry) error {
		ino := e.old
		if ino == nil {
			return nil
		}
		p := "/" + e.hdr.Name
		if len(ino.BlockSizes) > 0 {
			for _, j := range byRun[ino.BlocksStart] {
				named[j].Paths = append(named[j].Paths, p)
			}
		}
		if ino.Fragment != squash.NoFragment && uint64(len(ino.BlockSizes))*bs < ino.Size {
			for _, j := range byFrag[ino.Fragment] {
				named[j].Paths = append(named[j].Paths, p)
			}
		}
		return nil
	}
	root, err := f.r.Root()
	if err == nil {
		err = namer.mergeDir("", root, "", layers, nil)
	}
	if err != nil {
		return fmt.Errorf("the old image is damaged (%w), and naming its files failed: %v", &squash.DamageError{Faults: faults}, err)
	}
	var used []squash.BlockFault
	for _, bf := range named {
		if len(bf.Paths) > 0 {
			slices.Sort(bf.Paths)
			used = append(used, bf)
		}
	}
	if len(used) == 0 {
		return nil
	}
	return fmt.Errorf("the old image is damaged, and its blocks are not copied forward: %w; delete or replace these files through the overlay, then persist again",
		&squash.DamageError{Faults: used})
}
