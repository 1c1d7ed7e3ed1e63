package squash

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/squashportage/squashportage/squash/codec"
)

// WriterOptions are the settings of an image being written; the zero value
// gives mksquashfs's defaults (gzip, 128 KiB blocks, fragments, duplicate
// detection, an export table).
type WriterOptions struct {
	Codec   codec.Config // ID 0 means gzip; BlockSize 0 means 128 KiB
	Workers int          // compression goroutines; 0 means runtime.NumCPU()

	NoFragments     bool // every tail is a short data block
	AlwaysFragments bool // tails of files larger than a block go to fragments too
	NoDuplicates    bool
	NoExports       bool
	NoXattrs        bool
	// NoFragmentGrouping packs tails into fragment blocks strictly in Add
	// order, as mksquashfs does, instead of grouping them by kind of file
	// within windows of a few blocks (see addTail).
	NoFragmentGrouping bool

	UncompressedInodes    bool // inode and directory tables (-noI)
	UncompressedData      bool // -noD
	UncompressedFragments bool // -noF
	UncompressedXattrs    bool // -noX

	MkfsTime uint32 // superblock creation time

	// MetadataLevel, when not 0, is the compression level (gzip, zstd) of
	// the metadata tables instead of the data's; for xz, any value asks
	// for a fast greedy parse (codec.Options.Fast). Persist rewrites all
	// metadata on every run, a few MB that gzip -9 compresses at a tenth of
	// the speed of level 6 for a fraction of a percent of the image; the
	// decoders need no level, so the image stays the same format.
	MetadataLevel int

	// BlockSums appends a record of the CRC-32C of every data and fragment
	// block after the image (see Reader.BlockSums), so that a later fold
	// can check the blocks it copies without decoding them.
	BlockSums bool

	// NoSparse stores blocks of zeros like any other (mksquashfs
	// -no-sparse) instead of as holes that take no space.
	NoSparse bool

	// NoPad ends the image at its last table (mksquashfs -nopad) instead
	// of padding it to a multiple of 4 KiB, which loop devices and the
	// kernel's block reads want; for images embedded in other files. It
	// rules out BlockSums, whose record follows the padding.
	NoPad bool
}

// Header describes one entry added to a Writer.
type Header struct {
	Name         string      // slash-separated path in the image; "" is the root
	Mode         fs.FileMode // type bits, permissions, setuid/setgid/sticky
	UID, GID     uint32
	Mtime        uint32
	Size         int64  // regular files: the exact number of bytes data yields
	Major, Minor uint32 // devices
	Target       string // symlink target
	Link         string // non-empty: a hard link to the earlier entry of that name
	// Nlink, above 1, marks an entry that later entries may name in Link;
	// the writer keeps only such entries findable, and counts the names
	// itself. Directories ignore it.
	Nlink  uint32
	Xattrs []Xattr
}

// WriteStats counts what Close wrote.
type WriteStats struct {
	Inodes, Files, Dirs, Fragments, Duplicates int
	BytesIn, BytesOut                          int64
	// CopiedEnd is the end of the blocks copied verbatim (CopyRun,
	// CopyFragment) before the first block compressed here: everything
	// below it is copied; 0 when nothing was.
	CopiedEnd int64
}

// Writer writes a SquashFS image. Entries are fed with Add in pre-order:
// the root (or nothing, for an implicit one) first, each directory before
// its entries, and all of a directory's entries before anything outside
// it; a directory's entries may come in any order. File data is
// compressed by a pool of workers and laid out in Add order, so the image
// depends only on what was added and in which order, never on scheduling.
//
// Memory stays bounded by the tree's depth and width, not its size: once
// a directory is complete and its files' blocks are placed, its inodes and
// listing go into the tables and its entries are forgotten. Close writes
// the rest of the tables and the superblock.
type Writer struct {
	out       Output
	opts      WriterOptions
	cfg       codec.Config
	blockSize int

	stack    []*node          // the directories being added to, root first
	ready    []*node          // inodes to write, in order (see drain)
	linkable map[string]*node // entries added with Nlink > 1, by name
	count    uint32           // inode numbers given so far, in Add order
	dirCount int
	tables   *tableWriter

	idMap  map[uint32]uint16
	ids    []uint32
	lastID uint16            // index in ids of the id idIndex found last
	xattrs map[string]uint32 // canonical set -> index
	xsets  [][]Xattr

	dups      map[dupKey]*fileRec
	dupSizes  map[uint64]bool // when not nil, the only sizes worth hashing
	frag      *fragBuf        // the fragment block being filled
	window    []byte          // tails waiting to be grouped (see addTail)
	pending   []pendingTail   // grouped by kind (see slot)
	kinds     map[string]int  // the window's kinds, numbered
	fragCount uint32
	span      *copySpan                         // blocks to copy, not yet submitted (see CopyRun)
	srcSums   map[io.ReaderAt]map[uint64]uint32 // see UseSourceSums

	// Pipeline: Add submits jobs to work (for the workers) and to queue (for
	// the output goroutine, which takes them in submission order).
	work  chan *job
	queue chan *job
	seq   uint64 // jobs submitted
	// placedSeq is the last job whose blocks have their place in the
	// image: the output goroutine placed it, and wrote it or is copying it.
	placedSeq atomic.Uint64
	bufs      sync.Pool
	outDone   chan struct{}
	workWG    sync.WaitGroup
	failed    atomic.Pointer[error]

	// Owned by the output goroutine until outDone closes.
	pos       int64
	fragTable []FragmentEntry
	obuf      []byte
	obufStart int64
	sums      []blockSum // with opts.BlockSums, in position order
	newData   bool       // a block was compressed here (CopiedEnd stops growing)

	zero    []byte
	sha     hash.Hash
	hash    []byte
	stats   WriteStats
	closed  bool
	progErr error
}

type node struct {
	name     string // base name
	hdr      Header
	parent   *node
	children []*node // of a directory, until it is written
	file     *fileRec
	link     *node // the primary entry of a hard link
	nlink    uint32
	uid, gid uint16
	xattr    uint32
	number   uint32
	ref      uint64
	typ      uint16 // on-disk type, set when the inode is written
	subdirs  uint32
	nlinkAt  int // where the written inode's link count is, for later links
}

type fileRec struct {
	size     uint64
	start    uint64
	sizes    []uint32
	frag     uint32
	fragOff  uint32
	sparse   uint64
	dupOf    *fileRec
	fragBuf  *fragBuf // the fragment block holding the tail, until its index is known
	run      *Run
	hasStart bool
	lastSeq  uint64 // the file's blocks are placed once this job is done
	inWindow bool   // its tail waits to be grouped (see addTail)
}

type dupKey struct {
	size uint64
	sum  [sha256.Size]byte
}

type jobKind uint8

const (
	jobData     jobKind = iota // a data block of file
	jobFragment                // fragment block number index
	jobStart                   // file's blocks begin here
	jobRewind                  // file duplicated an earlier one: drop its blocks
	jobCopy                    // a span of blocks copied verbatim from another image
)

type job struct {
	kind   jobKind
	file   *fileRec
	index  uint32
	raw    []byte
	out    []byte
	stored bool // out is raw (uncompressed)
	noComp bool
	span   *copySpan // jobCopy
	seq    uint64
	err    error
	done   chan struct{}
}

// Output is where a Writer puts the image: an *os.File, or a wrapper of one
// (tests inject write failures that way). Truncate is called once, at the
// image's end, to cut off anything a reused file had after it; an output
// whose size is fixed (a block device) may do nothing.
type Output interface {
	io.WriterAt
	Truncate(size int64) error
}

// NewWriter starts an image on out, which should be empty; the caller
// closes out after Close.
func NewWriter(out Output, opts WriterOptions) (*Writer, error) {
	cfg := opts.Codec
	if cfg.ID == 0 {
		cfg.ID = codec.Gzip
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.BlockSize < MinBlockSize || cfg.BlockSize > MaxBlockSize || cfg.BlockSize&(cfg.BlockSize-1) != 0 {
		return nil, fmt.Errorf("block size %d: must be a power of two from 4K to 1M", cfg.BlockSize)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.NoFragments && opts.AlwaysFragments {
		return nil, errors.New("no-fragments and always-use-fragments exclude each other")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.NoPad {
		opts.BlockSums = false
	}
	w := &Writer{
		out:       out,
		opts:      opts,
		cfg:       cfg,
		blockSize: cfg.BlockSize,
		linkable:  make(map[string]*node),
		idMap:     make(map[uint32]uint16),
		xattrs:    make(map[string]uint32),
		dups:      make(map[dupKey]*fileRec),
		kinds:     make(map[string]int),
		work:      make(chan *job, 2*opts.Workers),
		queue:     make(chan *job, 4*opts.Workers+4),
		outDone:   make(chan struct{}),
		zero:      make([]byte, cfg.BlockSize),
		sha:       sha256.New(),
	}
	w.bufs.New = func() any { b := make([]byte, 0, cfg.BlockSize); return &b }
	// Each worker has an encoder for data blocks and one for fragment
	// blocks, the same one unless their settings differ (gzip's default).
	encs := make([][2]codec.Encoder, opts.Workers)
	for i := range encs {
		enc, err := cfg.NewEncoder()
		if err != nil {
			return nil, err
		}
		encs[i] = [2]codec.Encoder{enc, enc}
		if packed := cfg.Packed(); packed != cfg {
			if encs[i][1], err = packed.NewEncoder(); err != nil {
				return nil, err
			}
		}
	}
	// Data starts after the superblock and the compressor options.
	w.pos = SuperblockSize
	if blob := cfg.OptionsBlob(); blob != nil {
		w.pos += 2 + int64(len(blob))
	}
	w.obufStart = w.pos
	menc, err := w.metaConfig().NewEncoder()
	if err != nil {
		return nil, err
	}
	w.tables = &tableWriter{w: w, enc: menc}
	// The packer gets an encoder of its own: the tables' (t.enc) serves
	// the xattr and lookup tables after it is done.
	penc, err := w.metaConfig().NewEncoder()
	if err != nil {
		return nil, err
	}
	w.tables.inodes, w.tables.dirs, w.tables.pk = newMetaPair(penc, opts.UncompressedInodes)
	for _, enc := range encs {
		w.workWG.Add(1)
		go w.worker(enc)
	}
	go w.output()
	return w, nil
}

func (w *Writer) fail(err error) {
	w.failed.CompareAndSwap(nil, &err)
}

func (w *Writer) err() error {
	if p := w.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) worker(encs [2]codec.Encoder) {
	defer w.workWG.Done()
	for j := range w.work {
		if !j.noComp {
			enc := encs[0]
			if j.kind == jobFragment {
				enc = encs[1]
			}
			out, err := enc.Compress(j.out[:0], j.raw)
			j.out, j.err = out, err
		}
		if j.noComp || j.err != nil || len(j.out) >= len(j.raw) {
			j.stored = true
		}
		close(j.done)
	}
}

// output writes finished jobs in submission order.
func (w *Writer) output() {
	defer close(w.outDone)
	for j := range w.queue {
		if j.done != nil {
			<-j.done
		}
		if w.err() != nil {
			w.release(j)
			w.placedSeq.Store(j.seq)
			continue
		}
		if j.err != nil {
			w.fail(fmt.Errorf("compress: %w", j.err))
			w.release(j)
			w.placedSeq.Store(j.seq)
			continue
		}
		switch j.kind {
		case jobStart:
			j.file.start = uint64(w.pos)
			j.file.hasStart = true
		case jobRewind:
			w.rewind(int64(j.file.start))
			for len(w.sums) > 0 && w.sums[len(w.sums)-1].pos >= j.file.start {
				w.sums = w.sums[:len(w.sums)-1]
			}
		case jobCopy:
			if err := w.copySpan(j.span, j.seq); err != nil {
				w.fail(err)
			}
			if !w.newData {
				w.stats.CopiedEnd = w.pos
			}
		case jobData, jobFragment:
			w.newData = true
			data, word := j.out, uint32(len(j.out))
			if j.stored {
				data, word = j.raw, uint32(len(j.raw))|dataUncompressed
			}
			if w.opts.BlockSums && len(data) > 0 {
				w.sums = append(w.sums, blockSum{uint64(w.pos), blockCRC(data)})
			}
			if j.kind == jobData {
				j.file.sizes[j.index] = word
			} else {
				w.setFragment(j.index, FragmentEntry{Start: uint64(w.pos), Size: word})
			}
			if err := w.emit(data); err != nil {
				w.fail(err)
			}
		}
		w.release(j)
		w.placedSeq.Store(j.seq)
	}
	if err := w.flushOut(); err != nil {
		w.fail(err)
	}
}

// setFragment fills the fragment table's entry i. Indices are given when
// a block opens, and copied blocks are written when their span is, so
// entries do not come in index order.
func (w *Writer) setFragment(i uint32, e FragmentEntry) {
	if int(i) >= len(w.fragTable) {
		w.fragTable = slices.Grow(w.fragTable, int(i)+1-len(w.fragTable))[:i+1]
	}
	w.fragTable[i] = e
}

func (w *Writer) release(j *job) {
	if j.raw != nil {
		b := j.raw[:0]
		w.bufs.Put(&b)
	}
	if j.out != nil {
		b := j.out[:0]
		w.bufs.Put(&b)
	}
	j.raw, j.out = nil, nil
}

// emit appends data to the output at w.pos through a buffer, so that small
// blocks cost one system call per megabyte rather than one each.
func (w *Writer) emit(data []byte) error {
	w.obuf = append(w.obuf, data...)
	w.pos += int64(len(data))
	if len(w.obuf) >= 1<<20 {
		return w.flushOut()
	}
	return nil
}

func (w *Writer) flushOut() error {
	if len(w.obuf) == 0 {
		w.obufStart = w.pos
		return nil
	}
	if _, err := w.out.WriteAt(w.obuf, w.obufStart); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	w.obuf = w.obuf[:0]
	w.obufStart = w.pos
	return nil
}

// rewind moves the output back to p, dropping what was written after it.
func (w *Writer) rewind(p int64) {
	if p >= w.obufStart {
		w.obuf = w.obuf[:p-w.obufStart]
	} else {
		w.obuf = w.obuf[:0]
		w.obufStart = p
	}
	w.pos = p
}

func (w *Writer) getBuf() []byte {
	return (*w.bufs.Get().(*[]byte))[:0]
}

// submit hands a job to the workers (when it needs compressing) and to the
// output goroutine, in order.
func (w *Writer) submit(j *job) {
	if j.kind != jobCopy {
		// Copies queue before anything added after them.
		w.flushSpan()
	}
	w.seq++
	j.seq = w.seq
	if j.kind == jobData || j.kind == jobFragment {
		j.done = make(chan struct{})
		j.out = w.getBuf()
		w.work <- j
	}
	w.queue <- j
}

// Add adds one entry. Regular files' data is read from data now; a
// *bytes.Buffer is read without copying what the writer copies anyway.
func (w *Writer) Add(h *Header, data io.Reader) error {
	return w.addEntry(h, data, nil)
}

func (w *Writer) add(h *Header, f *fileRec) error {
	w.stats.Files++
	w.stats.BytesIn += int64(f.size)
	return w.addEntry(h, nil, f)
}

func (w *Writer) addEntry(h *Header, data io.Reader, reused *fileRec) error {
	if w.closed {
		return errors.New("add: writer is closed")
	}
	if err := w.err(); err != nil {
		return err
	}
	name, err := entryName(h.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if len(w.stack) > 0 || w.count > 0 {
			return errors.New("add the root: it must come first, and once")
		}
		if !h.Mode.IsDir() || h.Link != "" {
			return errors.New("the root entry is not a directory")
		}
	} else if len(w.stack) == 0 {
		if err := w.implicitRoot(); err != nil {
			return err
		}
	}
	// cleanName leaves no empty, . or .. component: the parent's name and
	// the base are what is either side of the last slash (path.Dir and
	// path.Base would clean it again, for every entry).
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i], name[i+1:]
	}
	var parent *node
	if name != "" {
		i := len(w.stack) - 1
		for i >= 0 && w.stack[i].hdr.Name != dir {
			i--
		}
		if i < 0 {
			if _, err := cleanName(name); err != nil {
				return err
			}
			return fmt.Errorf("add %q: directory %q is not open: add each directory before its entries, and all of a directory's entries before anything outside it", name, dir)
		}
		// The directories below the parent are complete.
		for len(w.stack) > i+1 {
			if err := w.completeTop(); err != nil {
				return err
			}
		}
		parent = w.stack[i]
	}
	n := &node{name: base, hdr: *h, nlink: 1, xattr: NoXattr, nlinkAt: -1}
	n.hdr.Name = name
	n.hdr.Xattrs = nil // indexed below; the node outlives the caller's slice otherwise
	if name == "" {
		n.name = ""
	}
	n.parent = parent
	if h.Link != "" {
		target, err := cleanName(h.Link)
		if err != nil {
			return err
		}
		p := w.linkable[target]
		if p == nil {
			return fmt.Errorf("add %q: hard link to %q, which was not added before with Nlink above 1", name, h.Link)
		}
		if p.nlink >= p.hdr.Nlink {
			return fmt.Errorf("add %q: hard link to %q makes %d names, more than its Nlink %d", name, h.Link, p.nlink+1, p.hdr.Nlink)
		}
		p.nlink++
		if p.nlinkAt >= 0 {
			// Its inode is written, in a block kept uncompressed
			// (pinned) until the last name comes.
			if !w.tables.inodes.setU32(p.nlinkAt, p.nlink) {
				return fmt.Errorf("add %q: internal error: the inode of %q is compressed already", name, h.Link)
			}
			if p.nlink == p.hdr.Nlink {
				w.tables.inodes.unpin(p.nlinkAt)
			}
		}
		n.link = p
		parent.children = append(parent.children, n)
		return nil
	}
	if n.uid, err = w.idIndex(h.UID); err != nil {
		return err
	}
	if n.gid, err = w.idIndex(h.GID); err != nil {
		return err
	}
	if len(h.Xattrs) > 0 && !w.opts.NoXattrs {
		if n.xattr, err = w.xattrIndex(h.Xattrs); err != nil {
			return fmt.Errorf("add %q: %w", name, err)
		}
	}
	switch typeOf(h.Mode) {
	case TypeFile:
		if h.Size < 0 {
			return fmt.Errorf("add %q: negative size", name)
		}
		if reused != nil {
			n.file = reused
		} else if n.file, err = w.addData(name, uint64(h.Size), data); err != nil {
			return fmt.Errorf("add %q: %w", name, err)
		}
	case TypeSymlink:
		if len(h.Target) == 0 {
			return fmt.Errorf("add %q: symlink without a target", name)
		}
	case TypeDir:
	default:
		if h.Major > 0xfff || h.Minor > 0xfffff {
			return fmt.Errorf("add %q: device %d:%d out of range", name, h.Major, h.Minor)
		}
	}
	w.count++
	n.number = w.count
	if h.Mode.IsDir() {
		w.dirCount++
		w.stack = append(w.stack, n)
		if parent != nil {
			parent.subdirs++
		}
	} else if h.Nlink > 1 {
		w.linkable[name] = n
	}
	if parent != nil {
		parent.children = append(parent.children, n)
	}
	if !h.Mode.IsDir() {
		w.ready = append(w.ready, n)
	}
	return nil
}

// Contents is a regular file's data written ahead of its entry
// (WriteContents), so that data can be laid out in another order than the
// entries (mksquashfs -sort); AddContents adds the entry.
type Contents struct {
	f    *fileRec
	size int64
	used bool
}

// WriteContents reads size bytes from data and writes them as the
// contents of the regular file that will be added as name (the name
// decides how its tail is grouped with others').
func (w *Writer) WriteContents(name string, size int64, data io.Reader) (*Contents, error) {
	if w.closed {
		return nil, errors.New("write contents: writer is closed")
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("write contents of %q: negative size", name)
	}
	f, err := w.addData(name, uint64(size), data)
	if err != nil {
		return nil, fmt.Errorf("write contents of %q: %w", name, err)
	}
	return &Contents{f: f, size: size}, nil
}

// AddContents adds the regular file whose data WriteContents wrote; h.Size
// must be the size written, and each Contents is added once.
func (w *Writer) AddContents(h *Header, c *Contents) error {
	if !h.Mode.IsRegular() || h.Link != "" {
		return fmt.Errorf("add %q: contents for what is not a regular file", h.Name)
	}
	if h.Size != c.size || c.used {
		return fmt.Errorf("add %q: contents of %d bytes for a file of %d, or added before", h.Name, c.size, h.Size)
	}
	c.used = true
	return w.addEntry(h, nil, c.f)
}

// implicitRoot opens the root mksquashfs makes up when none is given:
// 0755, root:root, the image's time.
func (w *Writer) implicitRoot() error {
	id, err := w.idIndex(0)
	if err != nil {
		return err
	}
	root := &node{hdr: Header{Mode: fs.ModeDir | 0o755, Mtime: w.opts.MkfsTime}, nlink: 1, xattr: NoXattr, uid: id, gid: id, nlinkAt: -1}
	w.count++
	root.number = w.count
	w.dirCount++
	w.stack = append(w.stack, root)
	return nil
}

// completeTop closes the innermost open directory: its listing is sorted
// and checked, and it joins w.ready behind its entries.
func (w *Writer) completeTop() error {
	d := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(d.children); i++ {
		if d.children[i].name == d.children[i-1].name {
			err := fmt.Errorf("add %q: already added", d.children[i].hdr.Name)
			w.fail(err)
			return err
		}
	}
	w.ready = append(w.ready, d)
	return w.drain(false)
}

// maxHeld bounds the entries held back for tails still waiting in the
// window: when few files have new tails (a persist copies most of its
// blocks) a window would otherwise take most of the tree to fill, and the
// entries would wait in memory all that time. Packing the window early
// costs some grouping there, nothing else.
const maxHeld = 8192

// drain writes the inodes in w.ready whose files are placed, in order:
// the other entries in the order they were added, each directory (its
// listing, then its inode) when it completed, after its subdirectories.
// That is mksquashfs's order for a tree added in listing order: an
// entry's inode lies after the subtree of the subdirectory before it, so
// a walk that stats each entry as it comes to it (find, tar) finds it in
// the metadata block it read last. Writing a directory's files only when
// it completed, after all its subdirectories' subtrees, took the Linux
// tree's cold find -ls 2,434 reads of the loop device, against 2,268 for
// mksquashfs's image. With force, it writes everything (the data is all
// written).
func (w *Writer) drain(force bool) error {
	done := 0
	for _, n := range w.ready {
		if !force && !w.placed(n) {
			if w.span != nil {
				// Waiting on copies not yet queued: queue them.
				w.flushSpan()
			}
			if len(w.ready)-done <= maxHeld || len(w.pending) == 0 {
				break
			}
			w.flushWindow()
			if !w.placed(n) {
				break // blocks still being written
			}
		}
		write := w.tables.writeInode
		if n.hdr.Mode.IsDir() {
			write = w.tables.writeDir
		}
		if err := write(n); err != nil {
			w.fail(err)
			return err
		}
		done++
	}
	// Advance past what was written rather than shift the rest down: the
	// queue holds up to maxHeld entries and drain runs at every
	// directory's end. append moves the live part when it reallocates.
	clear(w.ready[:done])
	w.ready = w.ready[done:]
	return nil
}

// placed reports whether n's blocks and tail, if it has any, are at known
// places in the image. A directory's entries come before it in w.ready.
func (w *Writer) placed(n *node) bool {
	return n.file == nil || n.file.placed(w.placedSeq.Load())
}

func (f *fileRec) placed(done uint64) bool {
	switch {
	case f.lastSeq > done:
		// A duplicate's own blocks must be dropped (jobRewind, which
		// reads its start) before resolve points it at the original.
		return false
	case f.dupOf != nil:
		return f.dupOf.placed(done)
	case f.run != nil && (f.run.seq == 0 || f.run.seq > done):
		return false
	case f.inWindow:
		return false
	}
	return true
}

func cleanName(name string) (string, error) {
	if name == "" || name == "." || name == "/" {
		return "", nil
	}
	name = strings.TrimPrefix(name, "/")
	for c := range strings.SplitSeq(name, "/") {
		if err := checkComponent(c, name); err != nil {
			return "", err
		}
	}
	return name, nil
}

// entryName is cleanName for the name of an entry, checking its last
// component only: the rest must be the name of an open directory, which
// was checked when it was added (addEntry looks it up, and asks cleanName
// what is wrong when it is not there).
func entryName(name string) (string, error) {
	if name == "" || name == "." || name == "/" {
		return "", nil
	}
	name = strings.TrimPrefix(name, "/")
	if err := checkComponent(name[strings.LastIndexByte(name, '/')+1:], name); err != nil {
		return "", err
	}
	return name, nil
}

func checkComponent(c, name string) error {
	switch {
	case c == "" || c == "." || c == "..":
		return fmt.Errorf("name %q: empty, . or .. component", name)
	case len(c) > 256:
		return fmt.Errorf("name %q: component longer than 256 bytes", name)
	case strings.IndexByte(c, 0) >= 0:
		return fmt.Errorf("name %q: NUL byte", name)
	}
	return nil
}

func (w *Writer) idIndex(id uint32) (uint16, error) {
	// Trees have a handful of ids, and runs of entries share them: the
	// last one found spares two map lookups an entry.
	if len(w.ids) > 0 && id == w.ids[w.lastID] {
		return w.lastID, nil
	}
	if i, ok := w.idMap[id]; ok {
		w.lastID = i
		return i, nil
	}
	if len(w.ids) == 1<<16 {
		return 0, fmt.Errorf("more than 65536 distinct uids and gids")
	}
	i := uint16(len(w.ids))
	w.idMap[id] = i
	w.ids = append(w.ids, id)
	w.lastID = i
	return i, nil
}

func (w *Writer) xattrIndex(xs []Xattr) (uint32, error) {
	set := make([]Xattr, 0, len(xs))
	for _, x := range xs {
		if _, _, ok := splitXattrName(x.Name); !ok {
			return 0, fmt.Errorf("xattr %q: only user., trusted. and security. names can be stored", x.Name)
		}
		set = append(set, x)
	}
	if len(set) == 0 {
		return NoXattr, nil
	}
	// Sorted, so that the same set listed in another order is stored once.
	sortXattrs(set)
	var key strings.Builder
	for _, x := range set {
		fmt.Fprintf(&key, "%d:%s=%d:", len(x.Name), x.Name, len(x.Value))
		key.Write(x.Value)
	}
	if i, ok := w.xattrs[key.String()]; ok {
		return i, nil
	}
	i := uint32(len(w.xsets))
	w.xattrs[key.String()] = i
	w.xsets = append(w.xsets, set)
	return i, nil
}

func sortXattrs(xs []Xattr) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j].Name < xs[j-1].Name; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}

// OnlyDuplicateSizes tells w the sizes that more than one of the files
// still to be added has: a file of any other size can neither be nor have
// a duplicate, so its data is not hashed (SHA-256 was an eighth of the CPU
// of an lz4 build of the kernel tree, on the goroutine that feeds the
// compressors). A wrong hint only misses duplicates; nil hashes every file.
func (w *Writer) OnlyDuplicateSizes(sizes map[uint64]bool) { w.dupSizes = sizes }

// addData reads a file's data and queues its blocks and tail.
func (w *Writer) addData(name string, size uint64, data io.Reader) (*fileRec, error) {
	f := &fileRec{size: size, frag: NoFragment}
	w.stats.Files++
	w.stats.BytesIn += int64(size)
	if size == 0 {
		return f, nil
	}
	if data == nil {
		return nil, errors.New("no data for a non-empty file")
	}
	bs := uint64(w.blockSize)
	useFrag := !w.opts.NoFragments && (size < bs || w.opts.AlwaysFragments)
	nblocks := size / bs
	tail := size % bs
	if tail != 0 && !useFrag {
		nblocks++
		tail = 0
	}
	f.sizes = make([]uint32, nblocks)
	var sum hash.Hash
	if !w.opts.NoDuplicates && (w.dupSizes == nil || w.dupSizes[size]) {
		sum = w.sha
		sum.Reset()
	}
	started := false
	for i := uint64(0); i < nblocks; i++ {
		n := min(bs, size-i*bs)
		buf := w.getBuf()[:n]
		if _, err := io.ReadFull(data, buf); err != nil {
			w.bufs.Put(&buf)
			return nil, fmt.Errorf("read block %d: %w (did the file shrink?)", i, err)
		}
		if sum != nil {
			sum.Write(buf)
		}
		if n == bs && !w.opts.NoSparse && bytes.Equal(buf, w.zero) {
			f.sparse += n
			w.bufs.Put(&buf)
			continue
		}
		if !started {
			w.submit(&job{kind: jobStart, file: f})
			started = true
		}
		w.submit(&job{kind: jobData, file: f, index: uint32(i), raw: buf, noComp: w.opts.UncompressedData})
		f.lastSeq = w.seq
	}
	var tailBuf []byte
	if tail > 0 {
		if nx, ok := data.(nexter); ok {
			// The tail is copied into the fragment window below; no need
			// to copy it out of the reader's buffer first.
			if tailBuf = nx.Next(int(tail)); uint64(len(tailBuf)) != tail {
				return nil, fmt.Errorf("read tail: %w (did the file shrink?)", io.ErrUnexpectedEOF)
			}
		} else {
			tailBuf = w.getBuf()[:tail]
			defer func() { w.bufs.Put(&tailBuf) }()
			if _, err := io.ReadFull(data, tailBuf); err != nil {
				return nil, fmt.Errorf("read tail: %w (did the file shrink?)", err)
			}
		}
		if sum != nil {
			sum.Write(tailBuf)
		}
	}
	if sum != nil {
		k := dupKey{size: size}
		w.hash = sum.Sum(w.hash[:0])
		copy(k.sum[:], w.hash)
		if orig, ok := w.dups[k]; ok {
			f.dupOf = orig
			w.stats.Duplicates++
			if started {
				w.submit(&job{kind: jobRewind, file: f})
				f.lastSeq = w.seq
			}
			return f, nil
		}
		w.dups[k] = f
	}
	if tail > 0 {
		w.addTail(f, name, tailBuf)
	}
	return f, nil
}

// nexter is a reader that hands out its next n bytes without copying them
// (bytes.Buffer): for data already in memory, Add takes a tail from it
// directly.
type nexter interface {
	Next(n int) []byte
}

// fragBuf is a fragment block being filled.
type fragBuf struct {
	data  []byte
	index uint32 // given when the block opens, so its tails' inodes need not wait
}

// fragmentWindow is how many fragment blocks a window of tails grouped by
// kind may touch, counting the block the window before left partly
// filled: the kernel keeps three decoded fragment blocks
// (CONFIG_SQUASHFS_FRAGMENT_CACHE_SIZE), so a read in directory order
// decodes each block once.
const fragmentWindow = 3

// pendingTail is a tail waiting in the window.
type pendingTail struct {
	f    *fileRec
	kind int // see kindOf
	off  int // in Writer.window
	n    int
}

// addTail packs a file's tail into a fragment block. Tails come in Add
// order and are grouped by kind within windows of fragmentWindow blocks:
// tails of alike files (ebuilds with ebuilds, Manifests with Manifests, C
// with C) compress better together than interleaved in directory order,
// and within a window a read in directory order still finds every block
// in the kernel's fragment cache. Grouping by kind across the whole tree
// made the gzip Portage-like image 8% smaller than directory order but
// its whole-tree cold read 1.8x slower than mksquashfs 4.7.5's image
// (make bench). The order stays a function of the Add order, so images
// stay reproducible.
func (w *Writer) addTail(f *fileRec, name string, tail []byte) {
	if w.opts.NoFragmentGrouping {
		w.packTail(f, tail)
		return
	}
	class := fragmentClass(name)
	p := pendingTail{f: f, kind: w.kindOf(class), off: len(w.window), n: len(tail)}
	// Near the window's end, a dry run of the packing says whether the
	// tail still fits in it (a tail never straddles blocks, so bytes
	// alone cannot tell).
	room := fragmentWindow * w.blockSize
	if w.frag != nil {
		room -= len(w.frag.data)
	}
	if len(w.window)+len(tail) > room-w.blockSize && w.blocksWith(p) > fragmentWindow {
		w.flushWindow()
		p.kind, p.off = w.kindOf(class), 0
	}
	f.inWindow = true
	w.pending = slices.Insert(w.pending, w.slot(p.kind), p)
	w.window = append(w.window, tail...)
}

// kindOf numbers a window's kinds in the order they first appear.
func (w *Writer) kindOf(class string) int {
	k, ok := w.kinds[class]
	if !ok {
		k = len(w.kinds)
		w.kinds[class] = k
	}
	return k
}

// slot is where a tail of kind k goes in the pending tails, which are
// kept grouped: after every tail of its kind and of the kinds before.
func (w *Writer) slot(k int) int {
	return sort.Search(len(w.pending), func(i int) bool { return w.pending[i].kind > k })
}

// blocksWith counts the fragment blocks the window would touch, the open
// one included, with p in its slot.
func (w *Writer) blocksWith(p pendingTail) int {
	blocks, used := 1, 0
	if w.frag != nil {
		used = len(w.frag.data)
	}
	add := func(n int) {
		if used+n > w.blockSize {
			blocks++
			used = 0
		}
		used += n
	}
	at := w.slot(p.kind)
	for i, q := range w.pending {
		if i == at {
			add(p.n)
		}
		add(q.n)
	}
	if at == len(w.pending) {
		add(p.n)
	}
	return blocks
}

// flushWindow packs the window's tails, grouped by kind.
func (w *Writer) flushWindow() {
	for _, p := range w.pending {
		w.packTail(p.f, w.window[p.off:p.off+p.n])
	}
	w.pending = w.pending[:0]
	w.window = w.window[:0]
	clear(w.kinds)
}

// packTail appends a tail to the open fragment block, flushing it first
// when the tail does not fit.
func (w *Writer) packTail(f *fileRec, tail []byte) {
	fb := w.frag
	if fb != nil && len(fb.data)+len(tail) > w.blockSize {
		w.flushFragment(fb)
		fb = nil
	}
	if fb == nil {
		fb = &fragBuf{data: w.getBuf(), index: w.fragCount}
		w.fragCount++
		w.frag = fb
	}
	f.fragBuf = fb
	f.inWindow = false
	f.fragOff = uint32(len(fb.data))
	fb.data = append(fb.data, tail...)
}

// fragmentClass names the kind of a file for fragment grouping: its
// extension, or for names without one, the name itself when it has no
// digits (Manifest, Makefile, README), else one class for the rest.
//
// C headers go with C sources: foo.h beside foo.c shares their names and
// types within deflate's 32 KiB window. Kernel tree, gzip: 0.23% smaller
// (222.05 MB against 222.55 MB); .dtsi with .dts made it 12 KB larger.
func fragmentClass(name string) string {
	base := path.Base(name)
	if i := strings.LastIndexByte(base, '.'); i > 0 && i < len(base)-1 {
		ext := base[i+1:]
		if len(ext) <= 8 && strings.IndexFunc(ext, isLetter) >= 0 {
			ext = strings.ToLower(ext)
			if ext == "h" {
				ext = "c"
			}
			return "." + ext
		}
	}
	if strings.IndexAny(base, "0123456789") < 0 && len(base) <= 16 {
		return base
	}
	return ""
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func (w *Writer) flushFragment(fb *fragBuf) {
	if w.frag == fb {
		w.frag = nil
	}
	w.submit(&job{kind: jobFragment, index: fb.index, raw: fb.data, noComp: w.opts.UncompressedFragments})
	fb.data = nil
}

// flushFragments packs the window and flushes the open fragment block.
func (w *Writer) flushFragments() {
	w.flushWindow()
	if w.frag != nil {
		w.flushFragment(w.frag)
	}
}
