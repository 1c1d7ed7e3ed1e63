package extract

import (
	"fmt"
	"io"
	"sync"

	"github.com/squashportage/squashportage/squash"
)

// fragmentSource is a source that keeps file tails in fragment blocks
// shared by many files. Extraction with workers decodes those blocks ahead
// of the writers, on their own goroutines: a Portage tree has nearly every
// file in a fragment block, and files in directory order share blocks with
// their neighbours, so writers that decoded blocks themselves would mostly
// wait for each other's decoding.
type fragmentSource interface {
	// decodeFragment decodes fragment block i into dst (block size long)
	// and returns its length; scratch may hold the compressed bytes.
	decodeFragment(i uint32, dst, scratch []byte) (int, error)
	// openFragment is open for a file whose fragment block is block.
	openFragment(ino *squash.Inode, block []byte) (io.ReadCloser, error)
}

// needsFragment reports whether the file ino keeps a tail in a fragment
// block, given the image's block size.
func needsFragment(ino *squash.Inode, bs int) bool {
	return ino.Fragment != squash.NoFragment && uint64(len(ino.BlockSizes))*uint64(bs) < ino.Size
}

// fragRef is a decoded fragment block: decoded once by a decoder, held
// while queued files need it (refs > 0), and kept a while after in case
// more do.
type fragRef struct {
	idx  uint32
	refs int // guarded by fragAhead.mu
	done chan struct{}
	buf  []byte // block-sized storage, recycled once the block is dropped
	data []byte
	err  error

	prev, next *fragRef // idle list (refs == 0), guarded by fragAhead.mu
}

// wait returns the decoded block.
func (f *fragRef) wait() ([]byte, error) {
	<-f.done
	return f.data, f.err
}

// fragAhead decodes the fragment blocks of queued files in the order the
// files were queued, into at most max block-sized buffers, which bounds its
// memory whatever the image. Blocks no queued file needs stay until their
// buffer is wanted for another (least recently needed first): directory
// order comes back to recent blocks, and to blocks of files common to the
// whole tree, again and again. Buffers are recycled, not left to the
// garbage collector: a scale-1 gentree image has 12k fragment blocks, 1.5 GB
// of allocations otherwise.
type fragAhead struct {
	src fragmentSource
	bs  int
	max int

	mu    sync.Mutex
	all   map[uint32]*fragRef // needed or idle
	idle  fragRef             // sentinel of the idle list; idle.next is the oldest
	freed chan struct{}       // a ref became idle (buffered, 1)

	queue chan *fragRef
	wg    sync.WaitGroup
}

// fragAheadBytes bounds the decoded blocks fragAhead holds (but it always
// has room for two). A variable so tests can squeeze it.
var fragAheadBytes = 16 << 20

func newFragAhead(src fragmentSource, decoders, blockSize int) *fragAhead {
	n := max(2, fragAheadBytes/max(blockSize, 1))
	a := &fragAhead{
		src:   src,
		bs:    blockSize,
		max:   n,
		all:   map[uint32]*fragRef{},
		freed: make(chan struct{}, 1),
		queue: make(chan *fragRef, n),
	}
	a.idle.prev, a.idle.next = &a.idle, &a.idle
	for range decoders {
		a.wg.Add(1)
		go a.decoder()
	}
	return a
}

func (a *fragAhead) decoder() {
	defer a.wg.Done()
	scratch := make([]byte, a.bs)
	for f := range a.queue {
		n, err := a.src.decodeFragment(f.idx, f.buf, scratch)
		if err != nil {
			f.err = fmt.Errorf("fragment %d: %w", f.idx, err)
		} else {
			f.data = f.buf[:n]
		}
		close(f.done)
	}
}

func (a *fragAhead) unlinkIdle(f *fragRef) {
	f.prev.next = f.next
	f.next.prev = f.prev
	f.prev, f.next = nil, nil
}

// get returns fragment block idx, scheduling its decoding if it is not
// held. Each get must be matched by a release. Only the goroutine that
// queues files calls get, so waiting for a buffer cannot deadlock: every
// buffer in use belongs to a file already queued.
func (a *fragAhead) get(idx uint32) *fragRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f, ok := a.all[idx]; ok {
		if f.refs == 0 {
			a.unlinkIdle(f)
		}
		f.refs++
		return f
	}
	var buf []byte
	for buf == nil {
		switch {
		case len(a.all) < a.max:
			buf = make([]byte, a.bs)
		case a.idle.next != &a.idle:
			old := a.idle.next
			a.unlinkIdle(old)
			delete(a.all, old.idx)
			buf = old.buf
		default:
			a.mu.Unlock()
			<-a.freed
			a.mu.Lock()
		}
	}
	f := &fragRef{idx: idx, refs: 1, done: make(chan struct{}), buf: buf}
	a.all[idx] = f
	a.queue <- f // never blocks: at most max refs exist, each sent once
	return f
}

// release drops a file's hold on f. A block that failed to decode is
// dropped at once; others become idle, the newest at the list's end.
func (a *fragAhead) release(f *fragRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return
	}
	select {
	case <-f.done:
	default:
		// Released unread (extraction failed): its decoder still owns
		// the buffer, so it is never reused.
		delete(a.all, f.idx)
		a.signal()
		return
	}
	if f.err != nil {
		delete(a.all, f.idx)
	} else {
		f.prev, f.next = a.idle.prev, &a.idle
		a.idle.prev.next = f
		a.idle.prev = f
	}
	a.signal()
}

// signal wakes get if it waits for a buffer.
func (a *fragAhead) signal() {
	select {
	case a.freed <- struct{}{}:
	default:
	}
}

// close stops the decoders once they have finished what is queued.
func (a *fragAhead) close() {
	close(a.queue)
	a.wg.Wait()
}

// Contents calls fn, in Walk's order, with the contents of each planned
// regular file but the further names of one before (hard links), for
// tools that stream them one after another (unsquashfs -pf). With
// workers above 1 the fragment blocks they need are decoded ahead, as
// Extract does.
func (p *Plan) Contents(workers int, fn func(ino *squash.Inode, r io.Reader) error) (err error) {
	type job struct {
		n    *node
		frag *fragRef
	}
	bs := p.src.blockSize()
	fsrc, _ := p.src.(fragmentSource)
	var ahead *fragAhead
	queue := 0
	if fsrc != nil && workers > 1 {
		ahead = newFragAhead(fsrc, workers, bs)
		// Every queued job holds a block, and get waits for a free one:
		// one job being sent and one being read need two more.
		queue = ahead.max - 2
	}
	jobs := make(chan job, queue)
	stop := make(chan struct{})
	go func() {
		defer close(jobs)
		seen := make(map[uint32]bool)
		for _, n := range p.nodes {
			if squash.BasicType(n.ino.Type) != squash.TypeFile || seen[n.ino.Number] {
				continue
			}
			seen[n.ino.Number] = true
			j := job{n: n}
			if ahead != nil && n.ino.Size > 0 && needsFragment(n.ino, bs) {
				j.frag = ahead.get(n.ino.Fragment)
			}
			select {
			case jobs <- j:
			case <-stop:
				if j.frag != nil {
					ahead.release(j.frag)
				}
				return
			}
		}
	}()
	defer func() {
		close(stop)
		for j := range jobs { // until the queuer is gone
			if j.frag != nil {
				ahead.release(j.frag)
			}
		}
		if ahead != nil {
			ahead.close()
		}
	}()
	for j := range jobs {
		err = p.content(fsrc, j.n, j.frag, fn)
		if j.frag != nil {
			ahead.release(j.frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// content opens one file's contents, from its decoded fragment block when
// frag holds it, and hands them to fn.
func (p *Plan) content(fsrc fragmentSource, n *node, frag *fragRef, fn func(*squash.Inode, io.Reader) error) error {
	var rc io.ReadCloser
	var err error
	if frag != nil {
		block, werr := frag.wait()
		if werr != nil {
			return werr
		}
		rc, err = fsrc.openFragment(n.ino, block)
	} else {
		rc, err = p.src.open(n.imagePath(), n.ino)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", n.imagePath(), err)
	}
	defer rc.Close()
	return fn(n.ino, rc)
}
