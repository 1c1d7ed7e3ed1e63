package squash

import (
	"fmt"
	"sync"
)

// fragCacheBytes bounds the memory the Reader spends on decoded fragment
// blocks. A Portage tree keeps nearly every file in a fragment block shared
// with dozens of others, and a walk in directory order comes back to a
// handful of recently used blocks (and to a few blocks of files common to
// every package) again and again: 16 MiB holds 128 blocks of 128 KiB, far
// more than such a walk needs to decode each block about once.
const fragCacheBytes = 16 << 20

// fragCall is a fragment block being decoded; others that want the same
// block wait for it instead of decoding it again.
type fragCall struct {
	done chan struct{}
	data []byte
	err  error
}

// fragBlocks caches decoded fragment blocks by fragment index.
type fragBlocks struct {
	lru *readerLRU[uint32, []byte]

	mu       sync.Mutex
	inflight map[uint32]*fragCall
}

// newFragBlocks makes a cache of at most maxBytes of decoded blocks.
func newFragBlocks(maxBytes int) *fragBlocks {
	return &fragBlocks{lru: newReaderLRU[uint32, []byte](maxBytes), inflight: map[uint32]*fragCall{}}
}

// FragmentBlock returns the decoded contents of fragment block i. The result
// is shared with the Reader's cache and with other callers: it must not be
// modified. Concurrent calls for the same block decode it once.
func (r *Reader) FragmentBlock(i uint32) ([]byte, error) {
	fb := r.frags
	if b, ok := fb.lru.get(i); ok {
		return b, nil
	}
	fb.mu.Lock()
	if b, ok := fb.lru.get(i); ok {
		fb.mu.Unlock()
		return b, nil
	}
	if c, ok := fb.inflight[i]; ok {
		fb.mu.Unlock()
		<-c.done
		return c.data, c.err
	}
	c := &fragCall{done: make(chan struct{})}
	fb.inflight[i] = c
	fb.mu.Unlock()

	c.data, c.err = r.decodeFragment(i)
	if c.err == nil {
		fb.lru.add(i, c.data, cap(c.data))
	}
	fb.mu.Lock()
	delete(fb.inflight, i)
	fb.mu.Unlock()
	close(c.done)
	return c.data, c.err
}

func (r *Reader) decodeFragment(i uint32) ([]byte, error) {
	fe, err := r.Fragment(i)
	if err != nil {
		return nil, err
	}
	out := make([]byte, r.sb.BlockSize)
	n, err := r.decodeDataBlockInto(out, fe.Start, fe.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("fragment %d at %#x: %w", i, fe.Start, err)
	}
	return out[:n], nil
}

// ReadBlockInto decodes the data block at pos with size word word into dst,
// whose length is the most it may produce, and returns the decoded length.
// scratch, if large enough, holds the compressed bytes. A zero word is a
// hole: nothing is stored and nothing is decoded, so it is refused here.
// ReadBlockInto uses the Reader's pooled decoders and is safe for
// concurrent use.
func (r *Reader) ReadBlockInto(dst []byte, pos uint64, word uint32, scratch []byte) (int, error) {
	if BlockSize(word) == 0 {
		return 0, corruptf("block at %#x: a hole has no stored data", pos)
	}
	return r.decodeDataBlockInto(dst, pos, word, scratch)
}
