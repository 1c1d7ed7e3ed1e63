package squash

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// BlockChecker decodes data and fragment blocks of an image on worker
// goroutines and collects those that do not decode: compressed blocks copied
// verbatim from an image must be read once to be trusted, and decoding is
// what costs, so it runs beside other work. Fragment, File and Wait may be
// called from several goroutines, but not once Close is called.
type BlockChecker struct {
	r       *Reader
	ctx     context.Context
	jobs    chan blockJob
	workers sync.WaitGroup
	pending sync.WaitGroup // jobs submitted and not yet done
	closed  bool

	sums      map[uint64]uint32 // see UseSums
	decodeAll bool              // decode summed blocks too
	collect   bool              // keep the sums of blocks that decode, in collected

	mu        sync.Mutex
	faults    []BlockFault
	fragLenS  []int32          // decoded length of each fragment block checked, -1 when it failed
	fragLen   map[uint32]int32 // the same, when the fragment count is too large to trust
	collected []blockSum       // with collect, unordered, a shared block once per use
}

// blockJob is a fragment block, or the stored blocks of a file from a
// position on, to decode.
type blockJob struct {
	frag  bool
	index uint32 // fragment number or inode number
	start uint64
	from  uint64   // a file's blocks before this position are skipped
	word  uint32   // a fragment's size word
	sizes []uint32 // a file's block size words
	size  uint64   // a file's size
}

// NewBlockChecker starts workers (0: one per CPU) decoding blocks of r.
// Close must be called.
func (r *Reader) NewBlockChecker(ctx context.Context, workers int) *BlockChecker {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	c := &BlockChecker{r: r, ctx: ctx, jobs: make(chan blockJob, 4*workers)}
	if uint64(r.sb.Fragments) <= r.size {
		c.fragLenS = make([]int32, r.sb.Fragments)
	} else {
		c.fragLen = make(map[uint32]int32)
	}
	for range workers {
		c.workers.Add(1)
		go c.worker()
	}
	return c
}

// UseSums makes the checker compare the blocks that have a sum in sums (a
// record from Reader.BlockSums) with it rather than decode them; their
// decoded length stays unknown. Call it before queuing anything.
func (c *BlockChecker) UseSums(sums map[uint64]uint32) { c.sums = sums }

// Fragment queues fragment block i (whose table entry is e) for decoding.
func (c *BlockChecker) Fragment(i uint32, e FragmentEntry) {
	c.submit(blockJob{frag: true, index: i, start: e.Start, word: e.Size})
}

// File queues the stored data blocks of a regular file for decoding; its
// tail is the fragment's business.
func (c *BlockChecker) File(ino *Inode) { c.file(ino, 0) }

func (c *BlockChecker) file(ino *Inode, from uint64) {
	pos, some := ino.BlocksStart, false
	for _, w := range ino.BlockSizes {
		some = some || (BlockSize(w) != 0 && pos >= from)
		pos += uint64(BlockSize(w))
	}
	if some {
		c.submit(blockJob{index: ino.Number, start: ino.BlocksStart, from: from, sizes: ino.BlockSizes, size: ino.Size})
	}
}

func (c *BlockChecker) submit(j blockJob) {
	c.pending.Add(1)
	c.jobs <- j
}

// Wait returns when every block queued so far is decoded.
func (c *BlockChecker) Wait() { c.pending.Wait() }

// FragmentLen returns the decoded length of fragment block i, once checked
// (after Wait); false when it failed or was not checked.
func (c *BlockChecker) FragmentLen(i uint32) (uint32, bool) {
	var n int32
	if c.fragLenS != nil {
		if int64(i) >= int64(len(c.fragLenS)) {
			return 0, false
		}
		n = c.fragLenS[i]
	} else {
		c.mu.Lock()
		n = c.fragLen[i]
		c.mu.Unlock()
	}
	return uint32(n - 1), n > 0
}

// Close waits for the blocks queued, stops the workers and returns the
// blocks that failed, in image order, without their Paths.
func (c *BlockChecker) Close() []BlockFault {
	if !c.closed {
		c.closed = true
		close(c.jobs)
		c.workers.Wait()
	}
	sort.Slice(c.faults, func(i, j int) bool { return c.faults[i].Pos < c.faults[j].Pos })
	return c.faults
}

func (c *BlockChecker) worker() {
	defer c.workers.Done()
	out := make([]byte, c.r.sb.BlockSize)
	raw := make([]byte, c.r.sb.BlockSize)
	for j := range c.jobs {
		if c.ctx.Err() == nil {
			c.decode(j, out, raw)
		}
		c.pending.Done()
	}
}

// summed checks a block against its recorded sum, if it has one.
func (c *BlockChecker) summed(pos uint64, word uint32, raw []byte) (bool, error) {
	want, ok := c.sums[pos]
	if !ok {
		return false, nil
	}
	b, err := c.r.ReadRawBlock(pos, word, raw)
	if err != nil {
		return true, err
	}
	if got := blockCRC(b); got != want {
		return true, corruptf("CRC-32C %08x, recorded %08x", got, want)
	}
	return true, nil
}

func (c *BlockChecker) decode(j blockJob, out, raw []byte) {
	if j.frag {
		if ok, err := c.summed(j.start, j.word, raw); ok && (err != nil || !c.decodeAll) {
			if err != nil {
				c.fault(BlockFault{Fragment: true, Index: j.index, Pos: j.start, Err: err})
			}
			return
		}
		n, err := c.decodeBlock(out, j.start, j.word, raw)
		if err != nil {
			c.fault(BlockFault{Fragment: true, Index: j.index, Pos: j.start, Err: err})
			c.setFragLen(j.index, -1)
			return
		}
		c.setFragLen(j.index, int32(n)+1)
		return
	}
	bs := uint64(c.r.sb.BlockSize)
	pos := j.start
	for i, w := range j.sizes {
		if BlockSize(w) != 0 && pos >= j.from {
			ok, err := c.summed(pos, w, raw)
			if err == nil && (!ok || c.decodeAll) {
				want := min(bs, j.size-uint64(i)*bs)
				var n int
				n, err = c.decodeBlock(out[:want], pos, w, raw)
				if err == nil && uint64(n) != want {
					err = corruptf("decoded %d bytes, want %d", n, want)
				}
			}
			if err != nil {
				c.fault(BlockFault{Index: uint32(i), Pos: pos, Err: err, Inode: j.index})
			}
		}
		pos += uint64(BlockSize(w))
	}
}

// decodeBlock decodes a block into out (as long as it may decode to) and,
// when collecting, keeps the sum of its stored bytes if it decodes.
func (c *BlockChecker) decodeBlock(out []byte, pos uint64, word uint32, raw []byte) (int, error) {
	if !c.collect {
		return c.r.decodeDataBlockInto(out, pos, word, raw)
	}
	b, err := c.r.ReadRawBlock(pos, word, raw)
	if err != nil {
		return 0, err
	}
	n := len(b)
	switch {
	case BlockCompressed(word):
		n, err = c.r.decompress(out, b)
	case n > len(out):
		err = corruptf("uncompressed block: %d bytes, expected at most %d", n, len(out))
	default:
		copy(out, b)
	}
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.collected = append(c.collected, blockSum{pos: pos, crc: blockCRC(b)})
	c.mu.Unlock()
	return n, nil
}

func (c *BlockChecker) fault(f BlockFault) {
	c.mu.Lock()
	c.faults = append(c.faults, f)
	c.mu.Unlock()
}

// setFragLen stores n+1 (0 is unknown, -1 failed); each fragment is set
// by one worker, and read after Wait.
func (c *BlockChecker) setFragLen(i uint32, n int32) {
	if c.fragLenS != nil {
		if int64(i) < int64(len(c.fragLenS)) {
			c.fragLenS[i] = n
		}
		return
	}
	c.mu.Lock()
	c.fragLen[i] = n
	c.mu.Unlock()
}

// BlockFault is a data or fragment block that does not decode to what its
// files need.
type BlockFault struct {
	Fragment bool   // a fragment block, Index being its number; else a data block, Index its number in the file
	Index    uint32 //
	Pos      uint64 // where the block starts in the image
	Err      error
	// Paths are the files (paths in the image, sorted) whose contents the
	// block holds: the file of a data block with all its hard links, every
	// file whose tail lives in a fragment block.
	Paths []string
	Inode uint32 // a data block's file (its inode number)
}

func (f *BlockFault) String() string {
	if f.Fragment {
		return fmt.Sprintf("fragment %d at %#x (tails of %s): %v", f.Index, f.Pos, listPaths(f.Paths, 5), f.Err)
	}
	return fmt.Sprintf("data block %d at %#x of %s: %v", f.Index, f.Pos, listPaths(f.Paths, 5), f.Err)
}

// DamageError is what Verify returns when the tables and the tree are sound
// but data or fragment blocks are not: every damaged block, and the files
// whose contents are lost with it.
type DamageError struct {
	Faults []BlockFault
}

// Paths returns every file damaged, sorted, each once.
func (e *DamageError) Paths() []string {
	var all []string
	for _, f := range e.Faults {
		all = append(all, f.Paths...)
	}
	sort.Strings(all)
	return compactStrings(all)
}

func (e *DamageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s damaged (", plural(len(e.Faults), "block"))
	for i, f := range e.Faults {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Faults)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		if f.Fragment {
			fmt.Fprintf(&b, "fragment %d at %#x: %v", f.Index, f.Pos, f.Err)
		} else {
			fmt.Fprintf(&b, "data block %d at %#x: %v", f.Index, f.Pos, f.Err)
		}
	}
	paths := e.Paths()
	fmt.Fprintf(&b, "), %s lost: %s", plural(len(paths), "file"), listPaths(paths, 200))
	return b.String()
}

// Is makes a DamageError a corruption for IsCorrupt.
func (e *DamageError) Is(target error) bool { return target == errCorrupt }

func listPaths(paths []string, max int) string {
	switch {
	case len(paths) == 0:
		return "no file"
	case len(paths) > max:
		return strings.Join(paths[:max], ", ") + fmt.Sprintf(" and %d more", len(paths)-max)
	}
	return strings.Join(paths, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
