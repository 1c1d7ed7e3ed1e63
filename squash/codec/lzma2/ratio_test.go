package lzma2

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz/lzma"
)

// TestRatio compares compressed sizes and speed against liblzma -6 and
// ulikunitz on 128 KiB blocks of a source tree. It only runs when
// LZMA2_RATIO_DIR names the tree, e.g.
//
//	LZMA2_RATIO_DIR=/var/tmp/spbench/linux/linux-source-6.1 LZMA2_RATIO_BLOCKS=1000 \
//	  go test -run TestRatio -v -timeout 60m ./squash/codec/lzma2/
//
// The tree's files are concatenated in walk order and cut into 128 KiB
// blocks; every LZMA2_RATIO_STRIDE-th block (default 8) is kept, so the
// sample spans the tree.
func TestRatio(t *testing.T) {
	dir := os.Getenv("LZMA2_RATIO_DIR")
	if dir == "" {
		t.Skip("LZMA2_RATIO_DIR not set")
	}
	const bs = 128 << 10
	nblocks := envInt("LZMA2_RATIO_BLOCKS", 500)
	stride := envInt("LZMA2_RATIO_STRIDE", 8)
	sample := make([]byte, 0, nblocks*bs)
	var cur []byte
	idx := 0
	errStop := fmt.Errorf("enough")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		cur = append(cur, b...)
		for len(cur) >= bs {
			if idx%stride == 0 {
				sample = append(sample, cur[:bs]...)
			}
			idx++
			cur = cur[bs:]
			if len(sample) == nblocks*bs {
				return errStop
			}
		}
		cur = append([]byte(nil), cur...)
		return nil
	})
	if err != nil && err != errStop {
		t.Fatal(err)
	}
	nb := len(sample) / bs
	mb := float64(len(sample)) / 1e6
	t.Logf("%d blocks of 128 KiB (%.1f MB)", nb, mb)

	e := NewEncoder(bs)
	if n := envInt("LZMA2_RATIO_NICE", 0); n > 0 {
		e.SetNiceLen(n)
	}
	if d := envInt("LZMA2_RATIO_DEPTH", 0); d > 0 {
		e.depth = d
	}
	var ours int
	var buf []byte
	t0 := time.Now()
	for i := 0; i < nb; i++ {
		buf = e.Encode(buf[:0], sample[i*bs:(i+1)*bs])
		ours += len(buf)
	}
	oursDur := time.Since(t0)
	// Spot-check that the measured output decodes.
	for i := 0; i < nb; i += max(1, nb/20) {
		blk := sample[i*bs : (i+1)*bs]
		if got := decodeUlikunitz(t, e.Encode(nil, blk), bs); !bytes.Equal(got, blk) {
			t.Fatalf("block %d does not round-trip", i)
		}
	}

	xzTotal, xzDur := liblzmaBlocks(t, sample, bs)

	uli := 0
	if os.Getenv("LZMA2_RATIO_NOULI") == "" {
		var w bytes.Buffer
		for i := 0; i < nb; i++ {
			w.Reset()
			zw, err := lzma.Writer2Config{DictCap: bs}.NewWriter2(&w)
			if err != nil {
				t.Fatal(err)
			}
			zw.Write(sample[i*bs : (i+1)*bs])
			zw.Close()
			uli += w.Len()
		}
	}
	t.Logf("ours      %10d  %.4f x liblzma  %.2f MB/s", ours, float64(ours)/float64(xzTotal), mb/oursDur.Seconds())
	t.Logf("liblzma-6 %10d  1.0000 x liblzma  %.2f MB/s", xzTotal, mb/xzDur.Seconds())
	if uli > 0 {
		t.Logf("ulikunitz %10d  %.4f x liblzma", uli, float64(uli)/float64(xzTotal))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// liblzmaBlocks compresses the sample with one single-threaded xz run
// whose blocks are the 128 KiB blocks (each block restarts LZMA2 with a
// fresh dictionary, as separate raw runs would) and returns the sum of the
// blocks' LZMA2 data sizes, read from xz --list.
func liblzmaBlocks(t *testing.T, sample []byte, bs int) (int, time.Duration) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "sample")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(sample)
	f.Close()
	t0 := time.Now()
	cmd := exec.Command("xz", "-T1", "--format=xz", "--check=none", "--block-size="+strconv.Itoa(bs),
		"--lzma2=preset=6,dict=128KiB", "-k", "-c", f.Name())
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dur := time.Since(t0)
	xzName := f.Name() + ".xz"
	os.WriteFile(xzName, out.Bytes(), 0o644)
	list, err := exec.Command("xz", "--robot", "-lvv", xzName).Output()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		fl := strings.Split(sc.Text(), "\t")
		if fl[0] != "block" {
			continue
		}
		// block stream block comp_off uncomp_off total uncomp ratio check check_value hdr flags comp ...
		n, err := strconv.Atoi(fl[13])
		if err != nil {
			t.Fatalf("xz --list: %q", sc.Text())
		}
		total += n
	}
	if total == 0 {
		t.Fatal("no blocks listed")
	}
	return total, dur
}
