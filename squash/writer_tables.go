package squash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/squashportage/squashportage/squash/codec"
)

// Close finishes the data, then writes the inode, directory, fragment,
// export, id and xattr tables and the superblock. The caller still closes
// the file.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("close: writer is already closed")
	}
	defer w.tables.pk.close() // on every path: it has a goroutine
	w.flushSpan()
	w.closed = true
	if w.err() == nil {
		w.flushFragments()
	} else {
		if fb := w.frag; fb != nil {
			b := fb.data[:0]
			w.bufs.Put(&b)
		}
		w.frag = nil
	}
	close(w.work)
	close(w.queue)
	w.workWG.Wait()
	<-w.outDone
	if err := w.err(); err != nil {
		return err
	}
	if len(w.stack) == 0 && w.count == 0 {
		if err := w.implicitRoot(); err != nil {
			return err
		}
	}
	if len(w.stack) == 0 {
		return errors.New("close: the root was already written") // cannot happen: only Close pops it
	}
	root := w.stack[0]
	t := w.tables
	t.count = w.count // the root's parent is one past the last inode, as in mksquashfs
	for len(w.stack) > 0 {
		if err := w.completeTop(); err != nil {
			return err
		}
	}
	if err := w.drain(true); err != nil {
		return err
	}
	return t.finish(root)
}

// metaConfig is the compressor configuration of the metadata tables.
func (w *Writer) metaConfig() codec.Config {
	if w.opts.MetadataLevel == 0 {
		return w.cfg.Packed()
	}
	c := w.cfg
	if c.ID == codec.XZ {
		c.Options.Fast = true // xz has no levels
	} else {
		c.Options.Level = w.opts.MetadataLevel
	}
	return c
}

func primary(n *node) *node {
	if n.link != nil {
		return n.link
	}
	return n
}

type tableWriter struct {
	w      *Writer
	enc    codec.Encoder
	inodes *metaStream
	dirs   *metaStream
	pk     *metaPacker // compresses inodes and dirs
	count  uint32
	refs   chunks[uint64] // virtual inode refs by inode number - 1, for the export table
	scr    []byte
	list   []byte
}

// Inode references are virtual until the tables are compressed: block
// index << 16 | offset.
func vref(block int, off uint16) uint64 { return uint64(block)<<16 | uint64(off) }

// writeDir writes d's listing and inode, and lets go of d's entries,
// whose inodes drain wrote before (each, or its hard link's primary,
// came before d in w.ready).
func (t *tableWriter) writeDir(d *node) error {
	err := t.writeDirInode(d)
	d.children = nil
	if err != nil {
		return err
	}
	t.inodes.seal(false)
	t.dirs.seal(false)
	return nil
}

func (t *tableWriter) begin(n *node, typ uint16) []byte {
	n.typ = typ
	le := binary.LittleEndian
	b := t.scr[:0]
	b = le.AppendUint16(b, typ)
	b = le.AppendUint16(b, unixPerm(n.hdr.Mode))
	b = le.AppendUint16(b, n.uid)
	b = le.AppendUint16(b, n.gid)
	b = le.AppendUint32(b, n.hdr.Mtime)
	b = le.AppendUint32(b, n.number)
	return b
}

func (t *tableWriter) end(n *node, b []byte) error {
	n.ref = vref(t.inodes.pos())
	t.refs.grow(int(n.number))
	t.refs.set(int(n.number)-1, n.ref)
	t.scr = b
	t.inodes.write(b)
	return nil
}

// nlinkField notes where n's link count goes in the inode being built in
// b, so that a hard link added later can raise it.
func (t *tableWriter) nlinkField(n *node, b []byte) {
	n.nlinkAt = t.inodes.size() + len(b)
	if n.nlink < n.hdr.Nlink {
		t.inodes.pin(n.nlinkAt) // more names to come
	}
}

// resolve fills in where f's data went: its run's position, a duplicate's
// original, the index of the fragment block holding its tail.
func (f *fileRec) resolve() {
	if f.fragBuf != nil {
		f.frag = f.fragBuf.index
		f.fragBuf = nil
	}
	if f.run != nil {
		f.start, f.hasStart = f.run.start, f.run.started
	}
	if d := f.dupOf; d != nil {
		d.resolve()
		f.start, f.hasStart = d.start, d.hasStart
		f.sizes, f.frag, f.fragOff, f.sparse = d.sizes, d.frag, d.fragOff, d.sparse
	}
}

func (t *tableWriter) writeInode(n *node) error {
	le := binary.LittleEndian
	// A hard-linkable entry gets an inode with a link count even while it
	// has one name: links added later raise the count in place.
	ext := n.nlink > 1 || n.hdr.Nlink > 1 || n.xattr != NoXattr
	switch typeOf(n.hdr.Mode) {
	case TypeFile:
		f := n.file
		f.resolve()
		start := uint64(0)
		if f.hasStart {
			start = f.start
		}
		if ext || f.size > 0xffffffff || start > 0xffffffff || f.sparse > 0 {
			b := t.begin(n, TypeLFile)
			b = le.AppendUint64(b, start)
			b = le.AppendUint64(b, f.size)
			b = le.AppendUint64(b, f.sparse)
			t.nlinkField(n, b)
			b = le.AppendUint32(b, n.nlink)
			b = le.AppendUint32(b, f.frag)
			b = le.AppendUint32(b, f.fragOff)
			b = le.AppendUint32(b, n.xattr)
			for _, s := range f.sizes {
				b = le.AppendUint32(b, s)
			}
			return t.end(n, b)
		}
		b := t.begin(n, TypeFile)
		b = le.AppendUint32(b, uint32(start))
		b = le.AppendUint32(b, f.frag)
		b = le.AppendUint32(b, f.fragOff)
		b = le.AppendUint32(b, uint32(f.size))
		for _, s := range f.sizes {
			b = le.AppendUint32(b, s)
		}
		return t.end(n, b)
	case TypeSymlink:
		typ := uint16(TypeSymlink)
		if ext {
			typ = TypeLSymlink
		}
		b := t.begin(n, typ)
		t.nlinkField(n, b)
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, uint32(len(n.hdr.Target)))
		b = append(b, n.hdr.Target...)
		if ext {
			b = le.AppendUint32(b, n.xattr)
		}
		return t.end(n, b)
	case TypeBlockDev, TypeCharDev:
		typ := typeOf(n.hdr.Mode)
		if ext {
			typ += 7
		}
		b := t.begin(n, typ)
		t.nlinkField(n, b)
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, EncodeDev(n.hdr.Major, n.hdr.Minor))
		if ext {
			b = le.AppendUint32(b, n.xattr)
		}
		return t.end(n, b)
	case TypeFifo, TypeSocket:
		typ := typeOf(n.hdr.Mode)
		if ext {
			typ += 7
		}
		b := t.begin(n, typ)
		t.nlinkField(n, b)
		b = le.AppendUint32(b, n.nlink)
		if ext {
			b = le.AppendUint32(b, n.xattr)
		}
		return t.end(n, b)
	}
	return fmt.Errorf("%q: cannot write inode of mode %v", n.hdr.Name, n.hdr.Mode)
}

// writeDirInode writes d's listing to the directory table, then its inode.
func (t *tableWriter) writeDirInode(d *node) error {
	le := binary.LittleEndian
	startAbs := uint64(t.dirs.size())
	patches := len(t.dirs.patches)
	l, index := t.listing(d, startAbs)
	// A listing that fits in a block but would straddle two starts the
	// next block instead: the kernel keeps 8 metadata blocks, and a
	// lookup or readdir of a straddling listing takes two of them. The
	// skipped bytes are zeros no reader looks at; compressed, they cost
	// next to nothing. Such a listing has no index entry (one needs a
	// block's worth of listing before it), so only its patches move.
	if off := startAbs % MetadataSize; off != 0 && len(l) <= MetadataSize && off+uint64(len(l)) > MetadataSize {
		var zeros [MetadataSize]byte
		pad := MetadataSize - int(off)
		t.dirs.write(zeros[:pad])
		for i := patches; i < len(t.dirs.patches); i++ {
			t.dirs.patches[i].at += pad
		}
	}
	dirBlock, dirOff := t.dirs.pos()
	t.list = l
	t.dirs.write(l)
	size := uint64(len(l)) + 3
	parent := t.count + 1
	if d.parent != nil {
		parent = d.parent.number
	}
	nlink := 2 + d.subdirs
	// Fields naming directory blocks are patched once those blocks are
	// compressed; at is their offset in the inode being built.
	base := t.inodes.size()
	dirPatch := func(at int, block int) {
		t.inodes.patches = append(t.inodes.patches, patch{at: base + at, block: block})
	}
	if len(index) > 0 || size > 0xffff || d.xattr != NoXattr {
		b := t.begin(d, TypeLDir)
		b = le.AppendUint32(b, nlink)
		b = le.AppendUint32(b, uint32(size))
		dirPatch(len(b), dirBlock)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, parent)
		b = le.AppendUint16(b, uint16(len(index)))
		b = le.AppendUint16(b, dirOff)
		b = le.AppendUint32(b, d.xattr)
		for _, ix := range index {
			b = le.AppendUint32(b, ix.index)
			dirPatch(len(b), int(ix.block))
			b = le.AppendUint32(b, 0)
			b = le.AppendUint32(b, uint32(len(ix.name)-1))
			b = append(b, ix.name...)
		}
		return t.end(d, b)
	}
	b := t.begin(d, TypeDir)
	dirPatch(len(b), dirBlock)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, nlink)
	b = le.AppendUint16(b, uint16(size))
	b = le.AppendUint16(b, dirOff)
	b = le.AppendUint32(b, parent)
	return t.end(d, b)
}

// finish writes the tables after the data, then the superblock.
func (t *tableWriter) finish(root *node) error {
	w := t.w
	le := binary.LittleEndian
	pos := uint64(w.pos)
	put := func(b []byte) error {
		if _, err := w.out.WriteAt(b, int64(pos)); err != nil {
			return fmt.Errorf("write image tables: %w", err)
		}
		pos += uint64(len(b))
		return nil
	}
	// lookup writes a table of fixed-size entries as metadata blocks
	// followed by the list of their positions, which the superblock points to.
	lookup := func(entries []byte, uncompressed bool) (uint64, error) {
		blocks, starts, err := compressLookup(w.metaConfig(), entries, w.opts.Workers, uncompressed)
		if err != nil {
			return 0, err
		}
		base := pos
		if err := put(blocks); err != nil {
			return 0, err
		}
		idx := make([]byte, 0, 8*len(starts))
		for _, s := range starts {
			idx = le.AppendUint64(idx, base+s)
		}
		at := pos
		return at, put(idx)
	}

	sb := Superblock{
		Magic:        Magic,
		Inodes:       t.count,
		MkfsTime:     w.opts.MkfsTime,
		BlockSize:    uint32(w.blockSize),
		Fragments:    w.fragCount,
		Compression:  w.cfg.ID,
		VersionMajor: 4,
		XattrTable:   NoTable,
		ExportTable:  NoTable,
	}
	for 1<<sb.BlockLog < sb.BlockSize {
		sb.BlockLog++
	}

	t.inodes.seal(true)
	t.dirs.seal(true)
	err := t.pk.close()
	if err != nil {
		return err
	}
	sb.RootInode = t.pk.resolve(t.inodes.id, root.ref)
	sb.InodeTable = pos
	if err := t.pk.streams[t.inodes.id].out.pieces(put); err != nil {
		return err
	}
	sb.DirTable = pos
	if err := t.pk.streams[t.dirs.id].out.pieces(put); err != nil {
		return err
	}

	e := make([]byte, 0, 16*len(w.fragTable))
	for _, f := range w.fragTable {
		e = le.AppendUint64(e, f.Start)
		e = le.AppendUint32(e, f.Size)
		e = le.AppendUint32(e, 0)
	}
	if sb.FragmentTable, err = lookup(e, false); err != nil {
		return err
	}
	if !w.opts.NoExports {
		e = slices.Grow(e[:0], 8*t.refs.len()) // see chunks
		for i := range t.refs.len() {
			e = le.AppendUint64(e, t.pk.resolve(t.inodes.id, t.refs.at(i)))
		}
		if sb.ExportTable, err = lookup(e, false); err != nil {
			return err
		}
	}
	e = e[:0]
	for _, id := range w.ids {
		e = le.AppendUint32(e, id)
	}
	sb.IDs = uint16(len(w.ids)) // 65536 ids wrap to 0, as the format has it
	if sb.IDTable, err = lookup(e, false); err != nil {
		return err
	}
	if len(w.xsets) > 0 {
		if sb.XattrTable, err = t.writeXattrs(&pos, put, lookup); err != nil {
			return err
		}
	}
	sb.BytesUsed = pos

	sb.Flags = FlagDuplicates
	if w.opts.NoDuplicates {
		sb.Flags &^= FlagDuplicates
	}
	if w.opts.UncompressedInodes {
		sb.Flags |= FlagUncompressedInodes
	}
	if w.opts.UncompressedData {
		sb.Flags |= FlagUncompressedData
	}
	if w.opts.UncompressedFragments {
		sb.Flags |= FlagUncompressedFragments
	}
	if w.opts.UncompressedXattrs {
		sb.Flags |= FlagUncompressedXattrs
	}
	if w.opts.NoFragments {
		sb.Flags |= FlagNoFragments
	}
	if w.opts.AlwaysFragments {
		sb.Flags |= FlagAlwaysFragments
	}
	if !w.opts.NoExports {
		sb.Flags |= FlagExportable
	}
	if len(w.xsets) == 0 {
		sb.Flags |= FlagNoXattrs
	}
	head, _ := sb.MarshalBinary()
	if blob := w.cfg.OptionsBlob(); blob != nil {
		sb.Flags |= FlagCompressorOptions
		head, _ = sb.MarshalBinary()
		head = le.AppendUint16(head, uint16(len(blob))|metaUncompressed)
		head = append(head, blob...)
	}
	// The kernel reads the device in 1 KiB or 4 KiB units: pad to 4 KiB.
	end := (pos + 4095) &^ 4095
	if w.opts.NoPad {
		end = pos
	}
	// Zeros written, not left to Truncate: on a block device (which
	// does not truncate) the old bytes would stay.
	if end > pos {
		if _, err := w.out.WriteAt(make([]byte, end-pos), int64(pos)); err != nil {
			return fmt.Errorf("pad image: %w", err)
		}
	}
	if err := w.out.Truncate(int64(end)); err != nil {
		return fmt.Errorf("pad image: %w", err)
	}
	if w.opts.BlockSums {
		rec := appendSums(nil, head, w.sums)
		if _, err := w.out.WriteAt(rec, int64(sumsStart(pos))); err != nil {
			return fmt.Errorf("write block sums: %w", err)
		}
		end += uint64(len(rec))
	}
	if _, err := w.out.WriteAt(head, 0); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	w.stats.Inodes = int(t.count)
	w.stats.Fragments = int(w.fragCount)
	w.stats.BytesOut = int64(end)
	return nil
}

// writeXattrs writes the key/value pairs, the id table and its header, and
// returns the header's position for the superblock.
func (t *tableWriter) writeXattrs(pos *uint64, put func([]byte) error, lookup func([]byte, bool) (uint64, error)) (uint64, error) {
	w := t.w
	le := binary.LittleEndian
	kv := newMetaWriter(t.enc, w.opts.UncompressedXattrs)
	var ids []byte
	var b []byte
	for _, set := range w.xsets {
		ref := kv.ref()
		b = b[:0]
		for _, x := range set {
			typ, rest, _ := splitXattrName(x.Name)
			b = le.AppendUint16(b, typ)
			b = le.AppendUint16(b, uint16(len(rest)))
			b = append(b, rest...)
			b = le.AppendUint32(b, uint32(len(x.Value)))
			b = append(b, x.Value...)
		}
		if err := kv.write(b); err != nil {
			return 0, err
		}
		ids = le.AppendUint64(ids, ref)
		ids = le.AppendUint32(ids, uint32(len(set)))
		ids = le.AppendUint32(ids, uint32(len(b)))
	}
	kvBytes, err := kv.finish()
	if err != nil {
		return 0, err
	}
	kvStart := *pos
	if err := put(kvBytes); err != nil {
		return 0, err
	}
	m := newMetaWriter(t.enc, w.opts.UncompressedXattrs)
	if err := m.write(ids); err != nil {
		return 0, err
	}
	blocks, err := m.finish()
	if err != nil {
		return 0, err
	}
	base := *pos
	if err := put(blocks); err != nil {
		return 0, err
	}
	head := le.AppendUint64(nil, kvStart)
	head = le.AppendUint32(head, uint32(len(w.xsets)))
	head = le.AppendUint32(head, 0)
	for _, s := range m.blockStarts {
		head = le.AppendUint64(head, base+s)
	}
	at := *pos
	return at, put(head)
}

// Stats reports what was written; valid after Close.
func (w *Writer) Stats() WriteStats {
	s := w.stats
	s.Dirs = w.dirCount
	return s
}

type pendingIndex struct {
	index uint32
	block uint64 // uncompressed block number in the directory table
	name  string
}

// listing builds d's directory listing as it goes at offset startAbs of
// the directory table, with the index entries it needs, and notes the
// patches of its inode block fields.
func (t *tableWriter) listing(d *node, startAbs uint64) ([]byte, []pendingIndex) {
	le := binary.LittleEndian
	var index []pendingIndex
	l := t.list[:0]
	var (
		hdrAt     = -1 // position in l of the current header's count
		hdrCount  uint32
		hdrBlock  uint64 // inode table block of the current header
		hdrBase   uint32
		hdrMeta   uint64 // directory table block the header is in
		indexedAt int    // listing offset of the last index entry
	)
	for _, c := range d.children {
		p := primary(c)
		iblock, ioff := p.ref>>16, uint16(p.ref&0xffff)
		delta := int64(p.number) - int64(hdrBase)
		abs := startAbs + uint64(len(l))
		meta := abs / MetadataSize
		// An index entry points a lookup at a header in a later
		// directory table block, but costs the lookup a read of the
		// directory's inode: one per MetadataSize of listing, as
		// mksquashfs does, keeps small listings index-free (a walk of the
		// Portage-like tree then misses the kernel's metadata cache 9%
		// less often than with one at every block boundary).
		indexHere := hdrAt >= 0 && meta != hdrMeta && len(l)-indexedAt >= MetadataSize
		if hdrAt < 0 || hdrCount == 256 || iblock != hdrBlock || delta < -32768 || delta > 32767 || indexHere {
			if hdrAt >= 0 {
				le.PutUint32(l[hdrAt:], hdrCount-1)
				if indexHere {
					indexedAt = len(l)
					index = append(index, pendingIndex{uint32(len(l)), meta, c.name})
				}
			}
			hdrAt, hdrCount, hdrBlock, hdrBase = len(l), 0, iblock, p.number
			hdrMeta = (startAbs + uint64(len(l))) / MetadataSize
			l = le.AppendUint32(l, 0)
			t.dirs.patches = append(t.dirs.patches, patch{at: int(startAbs) + len(l), block: int(iblock)})
			l = le.AppendUint32(l, 0) // the inode block's position, patched
			l = le.AppendUint32(l, p.number)
			delta = 0
		}
		l = le.AppendUint16(l, ioff)
		l = le.AppendUint16(l, uint16(int16(delta)))
		l = le.AppendUint16(l, basicType(p.typ))
		l = le.AppendUint16(l, uint16(len(c.name)-1))
		l = append(l, c.name...)
		hdrCount++
	}
	if hdrAt >= 0 {
		le.PutUint32(l[hdrAt:], hdrCount-1)
	}
	return l, index
}
