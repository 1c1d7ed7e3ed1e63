//go:build unix

package deflate

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kzlib "github.com/klauspost/compress/zlib"
)

// TestCorpus compares sizes and CPU times on a corpus of squashfs blocks. It
// runs only when DEFLATE_CORPUS names a file of blocks, each a 4-byte
// little-endian length followed by that many bytes, e.g.
//
//	DEFLATE_CORPUS=/var/tmp/defl/linux-frag.bin \
//	  go test -run Corpus -v -timeout 1h ./squash/codec/deflate/
//
// DEFLATE_LEVELS (comma separated) picks our levels (default: all);
// DEFLATE_KP (comma separated, default "8,9", "none" to skip) picks
// klauspost zlib levels; DEFLATE_C=0 skips C zlib -9 (run through python3's
// zlib module). DEFLATE_REPS=n reports the best of n runs. CPU time is the
// process's (or the python child's) user+system time, since the host may be
// shared. Every output of ours is decoded with compress/zlib and compared.
func TestCorpus(t *testing.T) {
	path := os.Getenv("DEFLATE_CORPUS")
	if path == "" {
		t.Skip("set DEFLATE_CORPUS to run")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := splitCorpus(raw)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range blocks {
		total += len(b)
	}
	reps := 2
	if v := os.Getenv("DEFLATE_REPS"); v != "" {
		reps, _ = strconv.Atoi(v)
	}
	t.Logf("%s: %d bytes in %d blocks; best CPU of %d runs", path, total, len(blocks), reps)
	var base int
	report := func(name string, size int, cpu time.Duration) {
		rel := ""
		if base > 0 {
			rel = fmt.Sprintf("%+6.2f%%", 100*(float64(size)/float64(base)-1))
		}
		t.Logf("%-14s %11d  %7.2f s CPU  %s", name, size, cpu.Seconds(), rel)
	}
	if os.Getenv("DEFLATE_C") != "0" {
		if size, cpu, err := cZlib(path, reps); err != nil {
			t.Logf("C zlib -9: %v", err)
		} else {
			base = size
			report("C zlib -9", size, cpu)
		}
	}
	// Runners take turns within each repetition, so that load from other
	// processes on the host hits all of them alike.
	type runner struct {
		name string
		run  func() int
		enc  *Encoder
		size int
		cpu  time.Duration
	}
	var runners []*runner
	kpLevels := "8,9"
	if v := os.Getenv("DEFLATE_KP"); v != "" {
		kpLevels = v
	}
	if kpLevels != "none" {
		for _, f := range strings.Split(kpLevels, ",") {
			lvl, _ := strconv.Atoi(f)
			var out bytes.Buffer
			w, err := kzlib.NewWriterLevel(&out, lvl)
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, &runner{name: fmt.Sprintf("klauspost %d", lvl), run: func() int {
				n := 0
				for _, b := range blocks {
					out.Reset()
					w.Reset(&out)
					w.Write(b)
					w.Close()
					n += out.Len()
				}
				return n
			}})
		}
	}

	levels := []int{}
	if v := os.Getenv("DEFLATE_LEVELS"); v != "" {
		for _, f := range strings.Split(v, ",") {
			l, _ := strconv.Atoi(f)
			levels = append(levels, l)
		}
	} else {
		for l := MinLevel; l <= MaxLevel; l++ {
			levels = append(levels, l)
		}
	}
	// DEFLATE_PARAMS=depth,lazyDepth,lazy2[;...] tries settings that are
	// no level (for tuning).
	var custom []params
	if v := os.Getenv("DEFLATE_PARAMS"); v != "" {
		levels = levels[:0]
		for _, set := range strings.Split(v, ";") {
			var f [3]int
			for j, x := range strings.SplitN(set, ",", 3) {
				f[j], _ = strconv.Atoi(x)
			}
			custom = append(custom, params{depth: f[0], lazyDepth: f[1], lazy2: f[2]})
		}
	}
	addOurs := func(name string, e *Encoder) {
		var dst []byte
		runners = append(runners, &runner{name: name, enc: e, run: func() int {
			n := 0
			for _, b := range blocks {
				dst = e.Encode(dst[:0], b)
				n += len(dst)
			}
			return n
		}})
	}
	for _, lvl := range levels {
		addOurs(fmt.Sprintf("ours %d", lvl), NewEncoder(lvl))
	}
	for i, p := range custom {
		e := NewEncoder(DefaultLevel)
		e.p = p
		addOurs(fmt.Sprintf("params %d", i), e)
	}
	for _, r := range runners {
		r.cpu = 1 << 62
	}
	for range reps {
		for _, r := range runners {
			c0 := cpuTime()
			r.size = r.run()
			r.cpu = min(r.cpu, cpuTime()-c0)
		}
	}
	var dec bytes.Buffer
	for _, r := range runners {
		report(r.name, r.size, r.cpu)
		if r.enc == nil {
			continue
		}
		// Round trip every block.
		var dst []byte
		for i, b := range blocks {
			dst = r.enc.Encode(dst[:0], b)
			zr, err := zlib.NewReader(bytes.NewReader(dst))
			if err != nil {
				t.Fatalf("%s block %d: %v", r.name, i, err)
			}
			dec.Reset()
			if _, err := io.Copy(&dec, zr); err != nil {
				t.Fatalf("%s block %d: %v", r.name, i, err)
			}
			if !bytes.Equal(dec.Bytes(), b) {
				t.Fatalf("%s block %d: round trip mismatch", r.name, i)
			}
		}
	}
}

func splitCorpus(raw []byte) ([][]byte, error) {
	var blocks [][]byte
	for len(raw) > 0 {
		if len(raw) < 4 {
			return nil, fmt.Errorf("truncated length")
		}
		n := int(binary.LittleEndian.Uint32(raw))
		raw = raw[4:]
		if n > len(raw) {
			return nil, fmt.Errorf("truncated block")
		}
		blocks = append(blocks, raw[:n:n])
		raw = raw[n:]
	}
	return blocks, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cZlib compresses every block of the corpus with C zlib level 9 through
// python3 and returns the total size and the best CPU time of reps runs.
func cZlib(path string, reps int) (int, time.Duration, error) {
	const script = `
import sys, time, zlib
data = open(sys.argv[1], "rb").read()
blocks, i = [], 0
while i < len(data):
    n = int.from_bytes(data[i:i+4], "little"); i += 4
    blocks.append(data[i:i+n]); i += n
best, size = None, 0
for _ in range(int(sys.argv[2])):
    t = time.process_time()
    size = sum(len(zlib.compress(b, 9)) for b in blocks)
    t = time.process_time() - t
    best = t if best is None else min(best, t)
print(size, best)
`
	out, err := exec.Command("python3", "-c", script, path, strconv.Itoa(reps)).Output()
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("unexpected output %q", out)
	}
	size, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, 0, err
	}
	sec, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0, 0, err
	}
	return size, time.Duration(sec * 1e9), nil
}
