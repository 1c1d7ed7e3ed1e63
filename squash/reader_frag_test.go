package squash

import (
	"bytes"
	"sync"
	"testing"
)

// FragmentBlock gives every caller the same bytes as decoding the block
// directly, however many goroutines ask for the same blocks at once, and
// the cache stays within its bound (made small here, so that it evicts).
func TestFragmentBlockConcurrent(t *testing.T) {
	needMksquashfs(t)
	src, _ := buildPortageLikeTree(t, 3000)
	// 4 KiB blocks: hundreds of fragment blocks.
	rc := openImage(t, buildImage(t, src, "-b", "4096", "-comp", "gzip"))
	r := rc.Reader
	const bound = 16 * 4096
	r.frags = newFragBlocks(bound)
	n := r.Superblock().Fragments
	if n < 100 {
		t.Fatalf("only %d fragment blocks", n)
	}
	want := make([][]byte, n)
	for i := range n {
		fe, err := r.Fragment(i)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, r.Superblock().BlockSize)
		k, err := r.decodeDataBlockInto(b, fe.Start, fe.Size, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = b[:k]
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 3 * int(n) {
				// Goroutines walk the blocks at different strides so they
				// collide on some and not others.
				i := uint32((k * (g + 1) / 3)) % n
				b, err := r.FragmentBlock(i)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, want[i]) {
					t.Errorf("fragment %d: wrong contents", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.frags.lru.mu.Lock()
	cost := r.frags.lru.cost
	r.frags.lru.mu.Unlock()
	if cost > bound || cost == 0 {
		t.Errorf("fragment cache holds %d bytes, bound is %d", cost, bound)
	}
	r.frags.mu.Lock()
	left := len(r.frags.inflight)
	r.frags.mu.Unlock()
	if left != 0 {
		t.Errorf("%d decodings still marked in flight", left)
	}
	if _, err := r.FragmentBlock(n); err == nil {
		t.Error("FragmentBlock past the table succeeded")
	}
}
