package sourcetree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// Prefetch tuning. Small files dominate a Portage tree; reading them ahead
// on several goroutines hides open/read/close latency behind compression.
const (
	prefetchMaxFile = 1 << 20 // files up to this size are read ahead whole
	// prefetchBudget bounds the bytes of prefetched data: 8 MiB is
	// thousands of Portage files (hundreds of kernel sources) ahead of a
	// writer that compresses far slower than they are read.
	prefetchBudget  = 8 << 20 // the ring; at least prefetchMaxFile+1
	prefetchWorkers = 8
	prefetchAhead   = 4096 // files in flight at most (bounds empty files too)
	// Files go to the workers and to the Add loop in batches of up to
	// prefetchBatch files or prefetchBatchBytes: handed over one by one,
	// each file woke two or three goroutines (the Portage-like tree's gzip
	// build made 33.7k futex calls, 15.1k in batches).
	prefetchBatch      = 32
	prefetchBatchBytes = 256 << 10
)

// contentAdder adds files whose data was written ahead (Options.Sort).
type contentAdder interface {
	AddContents(h *squash.Header, c *squash.Contents) error
}

// adder is what Write needs of a squash.Writer; tests supply their own.
type adder interface {
	Add(h *squash.Header, data io.Reader) error
}

// Write adds every entry to w in the order Scan produced (each directory,
// then its children recursively, children sorted by name). progress, if not
// nil, is called with the cumulative number of file bytes handed to w; it
// runs on the calling goroutine.
func (t *Tree) Write(w *squash.Writer, progress func(bytesDone int64)) error {
	shared := t.sharedSizes()
	w.OnlyDuplicateSizes(shared)
	if t.base != nil {
		if err := t.copyBase(w); err != nil {
			return err
		}
		if err := t.hashOld(shared); err != nil {
			return err
		}
	}
	var pre *ahead
	if len(t.sort) > 0 {
		if progress == nil {
			progress = func(int64) {}
		}
		var err error
		if pre, err = t.writeSorted(w, t.sortOrder(t.sort, t.sources), progress); err != nil {
			return err
		}
	}
	return t.write(w, progress, pre)
}

// ahead is the files' data written before the entries (Options.Sort): by
// entry, and how many bytes of it.
type ahead struct {
	contents map[int]*squash.Contents
	bytes    int64
}

// sharedSizes returns the sizes that two or more regular files (not hard
// links of one) have: only those files can be duplicates. For an append,
// a size that one of the sources' files and one of the image's have
// counts too.
func (t *Tree) sharedSizes() map[uint64]bool {
	seen := make(map[uint64]bool)
	shared := make(map[uint64]bool)
	var old map[uint64]bool
	for i := range t.entries {
		e := &t.entries[i]
		if !e.mode.IsRegular() || e.isLink() || e.size == 0 {
			continue
		}
		sz := uint64(e.size)
		if e.isOld() {
			if old == nil {
				old = make(map[uint64]bool)
			}
			old[sz] = true
			continue
		}
		if seen[sz] {
			shared[sz] = true
		}
		seen[sz] = true
	}
	for sz := range seen {
		if old[sz] {
			shared[sz] = true
		}
	}
	return shared
}

// job is a batch of small files, consecutive among the small ones, read
// ahead of the Add loop.
type job struct {
	files []fileJob
	done  chan struct{}
}

// fileJob is one small file of a batch.
type fileJob struct {
	i    int // the entry
	src  string
	from *os.File // with off: where the contents are, for parts of open files (extra.from)
	off  int64
	size int64
	buf  []byte // in the prefetcher's ring
	end  int64  // what to free up to once consumed
	err  error
}

func (t *Tree) write(w adder, progress func(int64), pre *ahead) error {
	if progress == nil {
		progress = func(int64) {}
	}
	var p *prefetcher
	var done int64
	if pre == nil {
		p = newPrefetcher(entryJobs(t.entries))
		defer p.stop()
	} else {
		done = pre.bytes
	}

	ps := paths{entries: t.entries}
	for i := range t.entries {
		e := &t.entries[i]
		name, src := ps.of(i)
		h := e.header(name) // Add may keep the pointer; each has its own
		if t.onAdd != nil && !e.isOld() {
			t.onAdd(&h)
		}
		switch {
		case pre != nil && pre.contents[i] != nil:
			ca, ok := w.(contentAdder)
			if !ok {
				return errors.New("internal error: -sort needs a squash.Writer")
			}
			if err := ca.AddContents(&h, pre.contents[i]); err != nil {
				return fmt.Errorf("adding %s: %w", displayName(&h), err)
			}
		case e.isOld():
			ru, ok := w.(reuser)
			if !ok {
				return errors.New("internal error: appending needs a squash.Writer")
			}
			if err := t.addOld(ru, i, &h, e.x.old); err != nil {
				return err
			}
			done += h.Size
			progress(done)
		case h.Link != "" || !h.Mode.IsRegular():
			if err := w.Add(&h, nil); err != nil {
				return fmt.Errorf("adding %s: %w", displayName(&h), err)
			}
		case isSmall(e):
			j, err := p.take(i, src)
			if err != nil {
				return err
			}
			err = w.Add(&h, bytes.NewBuffer(j.buf))
			// Add has consumed the reader: the buffer is free again.
			p.release(j)
			if err != nil {
				return fmt.Errorf("adding %s: %w", src, err)
			}
			done += h.Size
			progress(done)
		default:
			base := done
			err := readLarge(e.x, src, h.Size, func(n int64) { progress(base + n) }, func(r io.Reader) error { return w.Add(&h, r) })
			if err != nil {
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
	return !e.isLink() && !e.isOld() && e.mode.IsRegular() && e.size <= prefetchMaxFile
}

// readLarge streams a big file straight from disk to use (the writer):
// the file src, or the part of an open file x.from holds it in, size
// bytes exactly.
func readLarge(x *extra, src string, size int64, onRead func(int64), use func(io.Reader) error) error {
	r := &exactReader{name: src, left: size, onRead: onRead}
	if x != nil && x.from != nil {
		r.r = io.NewSectionReader(x.from, x.fromOff, size)
	} else {
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("reading file: %w", err)
		}
		defer f.Close()
		r.r, r.f = f, f
	}
	if err := use(r); err != nil {
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
	r      io.Reader
	f      *os.File // r when it is a whole file, which may grow; nil for a part of one
	name   string
	left   int64
	read   int64
	onRead func(n int64)
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		var one [1]byte
		if r.f != nil {
			if n, _ := r.f.Read(one[:]); n > 0 {
				return 0, fmt.Errorf("%s: %w (it grew)", r.name, errSizeChanged)
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
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
// entries in order, reserves room in a ring buffer, and hands each file to
// a worker; order delivers the jobs to the Add loop in entry order. The
// Add loop frees them in the same order, so the ring is all the memory
// prefetching takes, with no buffer per file to recycle or collect.
type prefetcher struct {
	order chan *job
	batch *job // the batch take takes from, on the consuming goroutine
	jobs  chan *job
	quit  chan struct{}
	wg    sync.WaitGroup

	mu         sync.Mutex
	cond       *sync.Cond
	ring       []byte
	head, tail int64 // bytes handed out and freed, ever: ring[head%len] is next
	closed     bool
}

// entryJobs hands the prefetcher the small files in entry order.
func entryJobs(entries []entry) func() (fileJob, bool) {
	ps := paths{entries: entries}
	i := 0
	return func() (fileJob, bool) {
		for ; i < len(entries); i++ {
			e := &entries[i]
			_, src := ps.of(i)
			if !isSmall(e) {
				continue
			}
			i++
			return smallJob(i-1, e, src), true
		}
		return fileJob{}, false
	}
}

// smallJob is entry i's (at src) to read ahead.
func smallJob(i int, e *entry, src string) fileJob {
	f := fileJob{i: i, src: src, size: e.size}
	if e.x != nil && e.x.from != nil {
		f.from, f.off = e.x.from, e.x.fromOff
	}
	return f
}

// newPrefetcher starts reading ahead the files next hands out, in that
// order.
func newPrefetcher(next func() (fileJob, bool)) *prefetcher {
	p := &prefetcher{
		order: make(chan *job, prefetchAhead/prefetchBatch),
		jobs:  make(chan *job, prefetchAhead/prefetchBatch),
		quit:  make(chan struct{}),
		ring:  make([]byte, prefetchBudget),
	}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1 + prefetchWorkers)
	go p.dispatch(next)
	for range prefetchWorkers {
		go p.work()
	}
	return p
}

func (p *prefetcher) dispatch(next func() (fileJob, bool)) {
	defer p.wg.Done()
	defer close(p.jobs)
	var b *job     // the batch being filled; nil or not empty
	var held int64 // bytes of the files in b
	send := func() bool {
		j := b
		b, held = nil, 0
		select {
		case p.jobs <- j:
		case <-p.quit:
			return false
		}
		select {
		case p.order <- j:
		case <-p.quit:
			return false
		}
		return true
	}
	for f, more := next(); more; f, more = next() {
		// One byte more than expected so a grown file is noticed in the
		// same read.
		n := int(f.size) + 1
		var ok bool
		if f.buf, f.end, ok = p.acquire(n, false); !ok {
			// The ring is full until the Add loop frees what it holds,
			// and it may be waiting for this batch: send it first.
			if b != nil && !send() {
				return
			}
			if f.buf, f.end, ok = p.acquire(n, true); !ok {
				return
			}
		}
		if b == nil {
			b = &job{files: make([]fileJob, 0, prefetchBatch), done: make(chan struct{})}
		}
		b.files = append(b.files, f)
		held += f.size
		if len(b.files) == prefetchBatch || held >= prefetchBatchBytes {
			if !send() {
				return
			}
		}
	}
	if b != nil {
		send()
	}
}

func (p *prefetcher) work() {
	defer p.wg.Done()
	for j := range p.jobs {
		for k := range j.files {
			f := &j.files[k]
			select {
			case <-p.quit:
				f.err = errors.New("prefetch stopped")
			default:
				if f.from != nil {
					f.buf, f.err = readPart(f.from, f.off, f.size, f.buf)
				} else {
					f.buf, f.err = readSmall(f.src, f.size, f.buf)
				}
			}
		}
		close(j.done)
	}
}

// readSmall reads a whole file that Scan found to be size bytes long into
// buf, which has room for one byte more. Plain system calls: os.File
// would add a poller registration per file, refused for regular files
// after a system call of its own.
func readSmall(name string, size int64, buf []byte) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("reading file: %w", &fs.PathError{Op: "open", Path: name, Err: err})
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		if m == 0 {
			break
		}
		n += m
		if int64(n) == size {
			// A regular file reads short only at its end: the byte
			// asked for beyond size is not there, so no read for EOF.
			break
		}
	}
	switch {
	case int64(n) > size:
		return nil, fmt.Errorf("%s: %w (it grew)", name, errSizeChanged)
	case int64(n) < size:
		return nil, fmt.Errorf("%s: %w (it shrank)", name, errSizeChanged)
	}
	return buf[:size], nil
}

// readPart reads the size bytes at off of an open file (see extra.from)
// into buf.
func readPart(f *os.File, off, size int64, buf []byte) ([]byte, error) {
	buf = buf[:size]
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return buf, nil
}

// acquire returns n contiguous free bytes of the ring, with the count to
// free up to, waiting for them if wait is set; false once stopped, or
// without wait when they are not free.
func (p *prefetcher) acquire(n int, wait bool) ([]byte, int64, bool) {
	size := int64(len(p.ring))
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed {
			return nil, 0, false
		}
		at := p.head % size
		skip := int64(0)
		if at+int64(n) > size {
			skip = size - at // a file never wraps: start again at 0
		}
		if p.head+skip+int64(n)-p.tail <= size {
			p.head += skip
			at = p.head % size
			p.head += int64(n)
			return p.ring[at : at+int64(n) : at+int64(n)], p.head, true
		}
		if !wait {
			return nil, 0, false
		}
		p.cond.Wait()
	}
}

// take returns the next file read ahead, which must be entry i's (at src),
// once read; release frees it when used.
func (p *prefetcher) take(i int, src string) (*fileJob, error) {
	if p.batch == nil || len(p.batch.files) == 0 {
		p.batch = <-p.order
		<-p.batch.done
	}
	j := &p.batch.files[0]
	p.batch.files = p.batch.files[1:]
	if j.i != i {
		return nil, fmt.Errorf("internal error: prefetch out of order at %s", src)
	}
	return j, j.err
}

// release frees a consumed file's bytes, and those of every file before
// it.
func (p *prefetcher) release(j *fileJob) {
	j.buf = nil
	p.mu.Lock()
	p.tail = j.end
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
