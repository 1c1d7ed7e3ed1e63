package lzma2dec

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz/lzma"
)

// The throughput comparison needs the benchmark trees and xz-utils, so it
// runs only on request:
//
//	LZMA2DEC_BENCH=1 go test -run Throughput -v ./squash/codec/lzma2dec/
//	go test -run '^$' -bench . ./squash/codec/lzma2dec/  (same data)
const (
	benchEnv      = "LZMA2DEC_BENCH"
	metadataTree  = "/var/tmp/spbench/portage-1/metadata"
	linuxTree     = "/var/tmp/spbench/linux/linux-source-6.1"
	metadataBytes = 2 << 20
	linuxBytes    = 6 << 20
)

type benchSet struct {
	name    string
	dict    int
	blocks  [][]byte // plain
	streams [][]byte // xz --format=raw per block
}

// gatherText concatenates the files under root, in walk order, whose
// names end in one of exts, up to n bytes.
func gatherText(tb testing.TB, root string, exts []string, n int) []byte {
	var b []byte
	errStop := io.EOF
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || len(b) >= n {
			return err
		}
		if len(exts) > 0 && !hasAnySuffix(path, exts) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b = append(b, data...)
		if len(b) >= n {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		tb.Skipf("reading %s: %v", root, err)
	}
	return b[:min(len(b), n)]
}

func hasAnySuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

func makeBenchSet(tb testing.TB, name string, text []byte, block int) benchSet {
	s := benchSet{name: name, dict: block}
	for len(text) >= block {
		b := text[:block]
		text = text[block:]
		s.blocks = append(s.blocks, b)
		s.streams = append(s.streams, xzRaw(tb, b, "preset=6,dict="+strconv.Itoa(block)))
	}
	return s
}

func benchSets(tb testing.TB) []benchSet {
	meta := gatherText(tb, filepath.Join(metadataTree, "md5-cache"), nil, metadataBytes)
	linux := gatherText(tb, filepath.Join(linuxTree, "kernel"), []string{".c", ".h"}, linuxBytes)
	return []benchSet{
		makeBenchSet(tb, "metadata 8 KiB", meta, 8<<10),
		makeBenchSet(tb, "linux 128 KiB", linux, 128<<10),
	}
}

func decodeOurs(tb testing.TB, d *Decoder, s benchSet, dst []byte) {
	for i, st := range s.streams {
		out, _, err := d.Decode(dst[:0], st, s.dict)
		if err != nil || len(out) != len(s.blocks[i]) {
			tb.Fatalf("block %d: %v", i, err)
		}
	}
}

// decodeUlikunitz decodes as squash/codec does today.
func decodeUlikunitz(tb testing.TB, s benchSet, dst []byte) {
	for i, st := range s.streams {
		r, err := lzma.Reader2Config{DictCap: s.dict}.NewReader2(bytes.NewReader(st))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(r, dst[:len(s.blocks[i])]); err != nil {
			tb.Fatalf("block %d: %v", i, err)
		}
	}
}

func totalBytes(s benchSet) int {
	n := 0
	for _, b := range s.blocks {
		n += len(b)
	}
	return n
}

// rates measures MB/s of output for each f, alternating between them in
// short rounds and keeping each one's best round, so that load from other
// work on the machine hits both sides alike.
func rates(bytes int, fs ...func()) []float64 {
	best := make([]float64, len(fs))
	for range 8 {
		for i, f := range fs {
			start := time.Now()
			n := 0
			for time.Since(start) < 250*time.Millisecond {
				f()
				n++
			}
			best[i] = max(best[i], float64(bytes*n)/time.Since(start).Seconds()/1e6)
		}
	}
	return best
}

func TestThroughput(t *testing.T) {
	if os.Getenv(benchEnv) == "" {
		t.Skip("set " + benchEnv + "=1 to compare with ulikunitz")
	}
	d := NewDecoder()
	dst := make([]byte, 0, 1<<20)
	t.Logf("%-16s %7s %12s %12s %7s", "set", "blocks", "ours MB/s", "ulik MB/s", "ratio")
	for _, s := range benchSets(t) {
		r := rates(totalBytes(s),
			func() { decodeOurs(t, d, s, dst) },
			func() { decodeUlikunitz(t, s, dst) })
		ours, ulik := r[0], r[1]
		t.Logf("%-16s %7d %12.1f %12.1f %6.2fx", s.name, len(s.blocks), ours, ulik, ours/ulik)
	}
}

func BenchmarkDecode(b *testing.B) {
	if _, err := os.Stat(metadataTree); err != nil {
		b.Skip("benchmark trees not present")
	}
	d := NewDecoder()
	dst := make([]byte, 0, 1<<20)
	for _, s := range benchSets(b) {
		b.Run(s.name+"/ours", func(b *testing.B) {
			b.SetBytes(int64(totalBytes(s)))
			for b.Loop() {
				decodeOurs(b, d, s, dst)
			}
		})
		b.Run(s.name+"/ulikunitz", func(b *testing.B) {
			b.SetBytes(int64(totalBytes(s)))
			for b.Loop() {
				decodeUlikunitz(b, s, dst)
			}
		})
	}
}
