package lzma2

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz/lzma"
)

// TestFastSpeed compares fast mode with ulikunitz's Writer2 (the encoder
// it replaces for metadata) and with normal mode, on blocks cut from the
// concatenated files of a tree. It only runs when LZMA2_FAST_DIR names
// the tree, e.g.
//
//	LZMA2_FAST_DIR=/var/tmp/spbench/portage-1/metadata \
//	  go test -run TestFastSpeed -v ./squash/codec/lzma2/
//
// LZMA2_FAST_MB sets the sample size (default 10) and LZMA2_FAST_REPS how
// often each timing is repeated, the best run counting (default 3).
func TestFastSpeed(t *testing.T) {
	dir := os.Getenv("LZMA2_FAST_DIR")
	if dir == "" {
		t.Skip("LZMA2_FAST_DIR not set")
	}
	limit := envInt("LZMA2_FAST_MB", 10) << 20
	reps := envInt("LZMA2_FAST_REPS", 3)
	var sample []byte
	errStop := fs.SkipAll
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			sample = append(sample, b...)
		}
		if len(sample) >= limit {
			return errStop
		}
		return nil
	})
	sample = sample[:min(len(sample), limit)]
	mb := float64(len(sample)) / 1e6
	t.Logf("sample %.1f MB", mb)

	// Speeds are from the process's CPU time (which includes the garbage
	// collection ulikunitz's per-block allocations cause), so they hold
	// up on a machine shared with other work; wall time is logged too.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	best := func(f func() int) (int, float64) {
		var size int
		d, w := time.Duration(1<<62), time.Duration(1<<62)
		for i := 0; i < reps; i++ {
			runtime.GC()
			t0, c0 := time.Now(), cpu()
			size = f()
			d = min(d, cpu()-c0)
			w = min(w, time.Since(t0))
		}
		t.Logf("  %9d bytes  cpu %6.2f MB/s  wall %6.2f MB/s", size, mb/d.Seconds(), mb/w.Seconds())
		return size, mb / d.Seconds()
	}
	for _, cfg := range []struct{ block, dict int }{{8 << 10, 8 << 10}, {8 << 10, 128 << 10}, {128 << 10, 128 << 10}} {
		blocks := func(f func([]byte) int) func() int {
			return func() int {
				n := 0
				for p := 0; p < len(sample); p += cfg.block {
					n += f(sample[p:min(p+cfg.block, len(sample))])
				}
				return n
			}
		}
		var w bytes.Buffer
		uSize, uSpeed := 1, 1.0
		if os.Getenv("LZMA2_FAST_ONLY") == "" {
			uSize, uSpeed = best(blocks(func(b []byte) int {
				w.Reset()
				zw, err := lzma.Writer2Config{DictCap: cfg.dict}.NewWriter2(&w)
				if err != nil {
					t.Fatal(err)
				}
				zw.Write(b)
				zw.Close()
				return w.Len()
			}))
		}
		var buf []byte
		mode := func(fast bool) (int, float64) {
			e := NewEncoder(cfg.dict)
			e.SetFast(fast)
			return best(blocks(func(b []byte) int {
				buf = e.Encode(buf[:0], b)
				return len(buf)
			}))
		}
		fSize, fSpeed := mode(true)
		var nSize int
		var nSpeed float64
		if os.Getenv("LZMA2_FAST_ONLY") == "" {
			nSize, nSpeed = mode(false)
		}
		// Spot-check that what was measured decodes.
		e := NewEncoder(cfg.dict)
		e.SetFast(true)
		for p := 0; p < len(sample); p += 97 * cfg.block {
			b := sample[p:min(p+cfg.block, len(sample))]
			if got := decodeUlikunitz(t, e.Encode(nil, b), cfg.dict); !bytes.Equal(got, b) {
				t.Fatalf("block at %d does not round-trip", p)
			}
		}
		t.Logf("block %3d KiB dict %3d KiB: ulikunitz %9d %6.2f MB/s | fast %9d (%.4fx) %6.2f MB/s (%.2fx) | normal %9d (%.4fx) %6.2f MB/s",
			cfg.block>>10, cfg.dict>>10, uSize, uSpeed,
			fSize, float64(fSize)/float64(uSize), fSpeed, fSpeed/uSpeed,
			nSize, float64(nSize)/float64(uSize), nSpeed)
	}
}

func BenchmarkFastMeta8K(b *testing.B) {
	dir := os.Getenv("LZMA2_FAST_DIR")
	if dir == "" {
		b.Skip("LZMA2_FAST_DIR not set")
	}
	var sample []byte
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		bb, _ := os.ReadFile(p)
		sample = append(sample, bb...)
		if len(sample) >= 4<<20 {
			return fs.SkipAll
		}
		return nil
	})
	e := NewEncoder(8 << 10)
	e.SetFast(true)
	b.SetBytes(int64(len(sample)))
	var buf []byte
	for b.Loop() {
		for p := 0; p+8192 <= len(sample); p += 8192 {
			buf = e.Encode(buf[:0], sample[p:p+8192])
		}
	}
}
