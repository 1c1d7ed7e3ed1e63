package sourcetree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/squashportage/squashportage/squash"
)

// Prefetch tuning. Small files dominate a Portage tree; reading them ahead
// on several goroutines hides open/read/close latency behind compression.
const (
	prefetchMaxFile = 1 << 20 // files up to this size are read ahead whole
	// prefetchBudget bounds the bytes of buffers holding prefetched data,
	// and apart from it those kept for reuse: 8 MiB is thousands of
	// Portage files (hundreds of kernel sources) ahead of a writer that
	// compresses far slower than they are read. Counting file sizes
	// instead of buffer sizes, with a sync.Pool per size class, let the
	// buffers grow to 44 MB of live heap on the kernel tree.
	prefetchBudget  = 8 << 20
	prefetchWorkers = 8
	prefetchAhead   = 4096 // files in flight at most (bounds empty files too)
)

// adder is what Write needs of a squash.Writer; tests supply their own.
type adder interface {
	Add(h *squash.Header, data io.Reader) error
}

// Write adds every entry to w in the order Scan produced (each directory,
// then its children recursively, children sorted by name). progress, if not
// nil, is called with the cumulative number of file bytes handed to w; it
// runs on the calling goroutine.
func (t *Tree) Write(w *squash.Writer, progress func(bytesDone int64)) error {
	w.OnlyDuplicateSizes(t.sharedSizes())
	return t.write(w, progress)
}

// sharedSizes returns the sizes that two or more regular files (not hard
// links of one) have: only those files can be duplicates.
func (t *Tree) sharedSizes() map[uint64]bool {
	seen := make(map[uint64]bool)
	shared := make(map[uint64]bool)
	for i := range t.entries {
		h := &t.entries[i].hdr
		if !h.Mode.IsRegular() || h.Link != "" || h.Size == 0 {
			continue
		}
		sz := uint64(h.Size)
		if seen[sz] {
			shared[sz] = true
		}
		seen[sz] = true
	}
	return shared
}

// job is one small file read ahead of the Add loop.
type job struct {
	e    *entry
	buf  []byte
	err  error
	done chan struct{}
}

func (t *Tree) write(w adder, progress func(int64)) error {
	if progress == nil {
		progress = func(int64) {}
	}
	p := newPrefetcher(t.entries)
	defer p.stop()

	var done int64
	for i := range t.entries {
		e := &t.entries[i]
		h := e.hdr // Add may keep the pointer; give it its own copy
		if t.onAdd != nil {
			t.onAdd(&h)
		}
		switch {
		case h.Link != "" || !h.Mode.IsRegular():
			if err := w.Add(&h, nil); err != nil {
				return fmt.Errorf("adding %s: %w", displayName(&h), err)
			}
		case isSmall(e):
			j := <-p.order
			if j.e != e {
				return fmt.Errorf("internal error: prefetch out of order at %s", e.src)
			}
			<-j.done
			if j.err != nil {
				return j.err
			}
			err := w.Add(&h, bytes.NewReader(j.buf))
			// Add has consumed the reader: the buffer is free again.
			p.release(j)
			if err != nil {
				return fmt.Errorf("adding %s: %w", e.src, err)
			}
			done += h.Size
			progress(done)
		default:
			if err := addLarge(w, &h, e.src, done, progress); err != nil {
				return err
			}
			done += h.Size
			progress(done)
		}
	}
	return nil
}

func displayName(h *squash.Header) string {
	if h.Name == "" {
		return "/"
	}
	return h.Name
}

func isSmall(e *entry) bool {
	return e.hdr.Link == "" && e.hdr.Mode.IsRegular() && e.hdr.Size <= prefetchMaxFile
}

// addLarge streams a big file straight from disk into the writer.
func addLarge(w adder, h *squash.Header, src string, base int64, progress func(int64)) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading file: %w", err)
	}
	defer f.Close()
	r := &exactReader{f: f, name: src, left: h.Size, onRead: func(n int64) { progress(base + n) }}
	if err := w.Add(h, r); err != nil {
		return fmt.Errorf("adding %s: %w", src, err)
	}
	if r.left != 0 {
		return fmt.Errorf("adding %s: writer stopped %d bytes before the end of the file", src, r.left)
	}
	return nil
}

// errSizeChanged marks files that grew or shrank between Scan and Write.
var errSizeChanged = errors.New("file size changed during mksquashfs")

// exactReader yields exactly the size Scan saw, failing if the file now has
// fewer or more bytes: the inode size is fixed when the header is added.
type exactReader struct {
	f      *os.File
	name   string
	left   int64
	read   int64
	onRead func(n int64)
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		var one [1]byte
		if n, _ := r.f.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%s: %w (it grew)", r.name, errSizeChanged)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.f.Read(p)
	r.left -= int64(n)
	r.read += int64(n)
	if n > 0 && r.onRead != nil {
		r.onRead(r.read)
	}
	if err == io.EOF {
		if r.left > 0 {
			return n, fmt.Errorf("%s: %w (it shrank)", r.name, errSizeChanged)
		}
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", r.name, err)
	}
	return n, nil
}

// prefetcher reads small files ahead of the Add loop. A dispatcher walks the
// entries in order, reserves buffer budget, and hands each file to a worker;
// order delivers the jobs to the Add loop in entry order.
type prefetcher struct {
	order chan *job
	jobs  chan *job
	quit  chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	cond      *sync.Cond
	budget    int64                      // buffer bytes that may still be handed out
	free      [22 - minBufClass][][]byte // by class, up to prefetchMaxFile+1
	freeBytes int64
	closed    bool
}

func newPrefetcher(entries []entry) *prefetcher {
	p := &prefetcher{
		order:  make(chan *job, prefetchAhead),
		jobs:   make(chan *job, prefetchAhead),
		quit:   make(chan struct{}),
		budget: prefetchBudget,
	}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1 + prefetchWorkers)
	go p.dispatch(entries)
	for range prefetchWorkers {
		go p.work()
	}
	return p
}

func (p *prefetcher) dispatch(entries []entry) {
	defer p.wg.Done()
	defer close(p.jobs)
	for i := range entries {
		e := &entries[i]
		if !isSmall(e) {
			continue
		}
		if !p.acquire(bufSize(e.hdr.Size)) {
			return
		}
		j := &job{e: e, done: make(chan struct{})}
		select {
		case p.jobs <- j:
		case <-p.quit:
			return
		}
		select {
		case p.order <- j:
		case <-p.quit:
			return
		}
	}
}

func (p *prefetcher) work() {
	defer p.wg.Done()
	for j := range p.jobs {
		select {
		case <-p.quit:
			j.err = errors.New("prefetch stopped")
		default:
			j.buf, j.err = p.readSmall(j.e.src, j.e.hdr.Size)
		}
		close(j.done)
	}
}

// readSmall reads a whole file that Scan found to be size bytes long.
func (p *prefetcher) readSmall(name string, size int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading file: %w", err)
	}
	defer f.Close()
	buf := p.getBuf(int(size) + 1)
	// One byte more than expected so a grown file is noticed in the same read.
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		p.putBuf(buf)
		return nil, fmt.Errorf("%s: %w (it grew)", name, errSizeChanged)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) != size {
			p.putBuf(buf)
			return nil, fmt.Errorf("%s: %w (it shrank)", name, errSizeChanged)
		}
		return buf[:size], nil
	default:
		p.putBuf(buf)
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
}

// Buffers are recycled by power-of-two size class: a tree's worth of small
// files read into fresh buffers is a tree's worth of garbage, and the
// collector lets the heap grow to twice what is live before it runs.
const minBufClass = 9 // 512 bytes

func bufClass(n int) int {
	c := minBufClass
	for 1<<c < n {
		c++
	}
	return c
}

// bufSize is the size of the buffer a file of size bytes is read into:
// one byte more, so that a grown file is noticed.
func bufSize(size int64) int64 { return 1 << bufClass(int(size)+1) }

func (p *prefetcher) getBuf(n int) []byte {
	c := bufClass(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.free[c-minBufClass]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[c-minBufClass] = l[:len(l)-1]
		p.freeBytes -= int64(cap(b))
		return b[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBuf keeps b for reuse while the buffers kept stay within the budget.
func (p *prefetcher) putBuf(b []byte) {
	c := bufClass(cap(b))
	if 1<<c != cap(b) { // nil, or not from getBuf
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freeBytes+int64(cap(b)) > prefetchBudget {
		return
	}
	p.free[c-minBufClass] = append(p.free[c-minBufClass], b[:0])
	p.freeBytes += int64(cap(b))
}

// acquire blocks until size bytes of budget are free; false once stopped.
func (p *prefetcher) acquire(size int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.budget < size && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return false
	}
	p.budget -= size
	return true
}

// release returns a consumed job's budget.
func (p *prefetcher) release(j *job) {
	p.putBuf(j.buf)
	j.buf = nil
	p.mu.Lock()
	p.budget += bufSize(j.e.hdr.Size)
	p.mu.Unlock()
	p.cond.Signal()
}

// stop ends the dispatcher and workers, whether or not all jobs were used.
func (p *prefetcher) stop() {
	close(p.quit)
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	// Drain so a dispatcher blocked on a full channel can see quit; workers
	// finish their current file and exit when jobs closes.
	go func() {
		for range p.order {
		}
	}()
	p.wg.Wait()
	close(p.order)
}
