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
	// fragmentBlock returns decoded fragment block i, not to be modified.
	fragmentBlock(i uint32) ([]byte, error)
	// openFragment is open for a file whose fragment block is block.
	openFragment(ino *squash.Inode, block []byte) (io.ReadCloser, error)
}

// needsFragment reports whether the file ino keeps a tail in a fragment
// block, given the image's block size.
func needsFragment(ino *squash.Inode, bs int) bool {
	return ino.Fragment != squash.NoFragment && uint64(len(ino.BlockSizes))*uint64(bs) < ino.Size
}

// fragRef is a fragment block that queued files need: decoded once by a
// decoder, held until the last of those files is written.
type fragRef struct {
	idx  uint32
	refs int // guarded by fragAhead.mu
	done chan struct{}
	data []byte
	err  error
}

// wait returns the decoded block.
func (f *fragRef) wait() ([]byte, error) {
	<-f.done
	return f.data, f.err
}

// fragAhead decodes the fragment blocks of queued files in the order the
// files were queued. At most cap(slots) blocks are held at a time, which
// bounds its memory whatever the image; the goroutine queueing files waits
// for a slot when all are taken.
type fragAhead struct {
	src   fragmentSource
	mu    sync.Mutex
	live  map[uint32]*fragRef
	slots chan struct{}
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
		live:  map[uint32]*fragRef{},
		slots: make(chan struct{}, n),
		queue: make(chan *fragRef, n),
	}
	for range decoders {
		a.wg.Add(1)
		go a.decoder()
	}
	return a
}

func (a *fragAhead) decoder() {
	defer a.wg.Done()
	for f := range a.queue {
		f.data, f.err = a.src.fragmentBlock(f.idx)
		if f.err != nil {
			f.err = fmt.Errorf("fragment %d: %w", f.idx, f.err)
		}
		close(f.done)
	}
}

// get returns fragment block idx, scheduling its decoding if no queued file
// needs it yet. Each get must be matched by a release. Only the goroutine
// that queues files calls get, so waiting for a slot cannot deadlock: every
// slot taken belongs to a file already queued.
func (a *fragAhead) get(idx uint32) *fragRef {
	a.mu.Lock()
	if f, ok := a.live[idx]; ok {
		f.refs++
		a.mu.Unlock()
		return f
	}
	a.mu.Unlock()
	a.slots <- struct{}{}
	f := &fragRef{idx: idx, refs: 1, done: make(chan struct{})}
	a.mu.Lock()
	a.live[idx] = f
	a.mu.Unlock()
	a.queue <- f // never blocks: the queue has room for every slot
	return f
}

// release drops a file's hold on f.
func (a *fragAhead) release(f *fragRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f.refs--
	if f.refs == 0 {
		delete(a.live, f.idx)
		<-a.slots
	}
}

// close stops the decoders once they have finished what is queued.
func (a *fragAhead) close() {
	close(a.queue)
	a.wg.Wait()
}
