//go:build unix

package zstdenc

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/squashportage/squashportage/squash/codec/internal/corpus"
)

// TestKernelCorpus compares sizes and speeds on real data. It runs only when
// ZSTDENC_CORPUS names a directory, e.g.
//
//	ZSTDENC_CORPUS=/var/tmp/spbench/linux/linux-source-6.1 ZSTDENC_MB=128 \
//	  go test -run KernelCorpus -v -timeout 1h ./squash/codec/zstdenc/
//
// Files are concatenated in WalkDir order, cut to ZSTDENC_MB MiB, and split
// into independent 128 KiB blocks (one frame each, as squashfs does).
// ZSTDENC_LEVELS (comma separated) picks our levels; ZSTDENC_C=0 skips the
// C zstd -15 run and ZSTDENC_KP=0 skips klauspost. ZSTDENC_REPS=n reports
// the best of n runs for C and for ours. Speeds are input bytes per CPU
// second (the C zstd child's user+system time), since the host is shared.
func TestKernelCorpus(t *testing.T) {
	root := os.Getenv("ZSTDENC_CORPUS")
	if root == "" {
		t.Skip("set ZSTDENC_CORPUS to run")
	}
	const bs = 128 << 10
	blocks, total := corpus.Blocks(root, corpus.EnvInt("ZSTDENC_MB", 128)<<20, bs)
	report := func(name string, size int, d time.Duration, base int) {
		rel := ""
		if base > 0 {
			rel = fmt.Sprintf("%+6.2f%%", 100*(float64(size)/float64(base)-1))
		}
		t.Logf("%-22s %11d  %7.2f MB/s  %s", name, size, float64(total)/d.Seconds()/1e6, rel)
	}
	t.Logf("input %d bytes, %d blocks (speeds are per CPU second)", total, len(blocks))
	cSize := 0
	reps := 1
	if v := os.Getenv("ZSTDENC_REPS"); v != "" {
		reps, _ = strconv.Atoi(v)
	}
	if os.Getenv("ZSTDENC_C") != "0" {
		// One file per block, compressed by one zstd process: each block is
		// its own frame with its size known, as mksquashfs does it, and the
		// child's CPU time is the compression time.
		dir := t.TempDir()
		var names []string
		for i, b := range blocks {
			name := filepath.Join(dir, fmt.Sprintf("b%06d", i))
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		}
		var best time.Duration
		for r := 0; r < reps; r++ {
			size, cpu := 0, time.Duration(0)
			for i := 0; i < len(names); i += 1000 {
				args := append([]string{"-15", "--single-thread", "--no-check", "-q", "-c"}, names[i:min(i+1000, len(names))]...)
				cmd := exec.Command("zstd", args...)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("zstd: %v", err)
				}
				size += len(out)
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			cSize = size
			if r == 0 || cpu < best {
				best = cpu
			}
		}
		report("C zstd -15", cSize, best, 0)
	}
	if os.Getenv("ZSTDENC_KP") != "0" {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderCRC(false), zstd.WithSingleSegment(true), zstd.WithWindowSize(bs),
			zstd.WithEncoderConcurrency(1))
		var buf []byte
		size := 0
		start := cpuTime()
		for _, b := range blocks {
			buf = enc.EncodeAll(b, buf[:0])
			size += len(buf)
		}
		report("klauspost best", size, cpuTime()-start, cSize)
	}
	levels := "1,2,3,4,5,6"
	if v := os.Getenv("ZSTDENC_LEVELS"); v != "" {
		levels = v
	}
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	for _, ls := range strings.Split(levels, ",") {
		lvl, _ := strconv.Atoi(ls)
		e := NewEncoder(lvl)
		var buf []byte
		size := 0
		var el time.Duration
		// The host is shared: report the best of ZSTDENC_REPS runs.
		for r := 0; r < reps; r++ {
			size = 0
			start := cpuTime()
			for _, b := range blocks {
				buf = e.Encode(buf[:0], b)
				size += len(buf)
			}
			if d := cpuTime() - start; r == 0 || d < el {
				el = d
			}
		}
		report(fmt.Sprintf("zstdenc level %d", lvl), size, el, cSize)
		// Verify a sample so a speedup cannot hide a broken stream.
		for i := 0; i < len(blocks); i += 16 {
			buf = e.Encode(buf[:0], blocks[i])
			got, err := dec.DecodeAll(buf, nil)
			if err != nil || string(got) != string(blocks[i]) {
				t.Fatalf("level %d block %d: round trip failed: %v", lvl, i, err)
			}
		}
	}
}

// BenchmarkKernel encodes ZSTDENC_MB (default 8) MiB of ZSTDENC_CORPUS in
// 128 KiB blocks at ZSTDENC_LEVEL (default DefaultLevel); for profiling.
func BenchmarkKernel(b *testing.B) {
	root := os.Getenv("ZSTDENC_CORPUS")
	if root == "" {
		b.Skip("set ZSTDENC_CORPUS to run")
	}
	mb := 8
	if v := os.Getenv("ZSTDENC_MB"); v != "" {
		mb, _ = strconv.Atoi(v)
	}
	lvl := DefaultLevel
	if v := os.Getenv("ZSTDENC_LEVEL"); v != "" {
		lvl, _ = strconv.Atoi(v)
	}
	var data []byte
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(data) >= mb<<20 || !d.Type().IsRegular() {
			return nil
		}
		if buf, err := os.ReadFile(p); err == nil {
			data = append(data, buf...)
		}
		return nil
	})
	data = data[:min(len(data), mb<<20)]
	e := NewEncoder(lvl)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var buf []byte
	size := 0
	for range b.N {
		size = 0
		for i := 0; i < len(data); i += 128 << 10 {
			buf = e.Encode(buf[:0], data[i:min(i+128<<10, len(data))])
			size += len(buf)
		}
	}
	b.ReportMetric(float64(size), "bytes")
}

// cpuTime is this process's user+system time; the benchmark host is shared,
// so wall time would measure the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
