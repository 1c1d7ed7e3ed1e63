// Package corpus gathers real data for the encoders' opt-in size and speed
// comparisons (TestKernelCorpus in zstdenc, TestCorpus in lz4enc): the
// files of a tree as squashfs would see them, cut into blocks.
package corpus

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Blocks concatenates the regular files under root in WalkDir order, cuts
// the result to limit bytes and splits it into independent blocks of bs
// bytes (the last may be shorter). It returns the blocks and their total.
func Blocks(root string, limit, bs int) ([][]byte, int) {
	var data []byte
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(data) >= limit || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			data = append(data, b...)
		}
		return nil
	})
	data = data[:min(len(data), limit)]
	var blocks [][]byte
	for i := 0; i < len(data); i += bs {
		blocks = append(blocks, data[i:min(i+bs, len(data))])
	}
	return blocks, len(data)
}

// EnvInt is the integer in the environment variable name, or def when it
// is unset or not a number.
func EnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}
