package testtree

import (
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"sort"

	"github.com/squashportage/squashportage/squash"
)

// Text returns at least n bytes of distinct ebuild-like lines, the seed-th
// such text: compressible, yet every block of it different.
func Text(seed, n int) []byte {
	var b []byte
	for i := seed * 100000; len(b) < n; i++ {
		b = fmt.Appendf(b, "line %d of some ebuild-like text %x\n", i, i*i*7919)
	}
	return b
}

// DamageBlocks writes garbage, as a failing disk would, over the middle of
// the first data block of the file dataFile and of the fragment block that
// holds the tail of fragFile, in the image at img (paths in the image,
// without a leading slash). It returns the files whose data the damaged
// blocks held, with a leading slash and sorted: dataFile and its hard
// links, and every file whose tail lives in that fragment block.
func DamageBlocks(img, dataFile, fragFile string) ([]string, error) {
	rc, err := squash.OpenFile(img)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	bs := uint64(rc.Superblock().BlockSize)
	inode := func(name string) (*squash.Inode, error) {
		fi, err := rc.Lstat(name)
		if err != nil {
			return nil, err
		}
		return fi.Sys().(*squash.Inode), nil
	}
	data, err := inode(dataFile)
	if err != nil {
		return nil, err
	}
	if len(data.BlockSizes) == 0 || squash.BlockSize(data.BlockSizes[0]) == 0 {
		return nil, fmt.Errorf("%s has no stored data block", dataFile)
	}
	tail, err := inode(fragFile)
	if err != nil {
		return nil, err
	}
	if tail.Fragment == squash.NoFragment {
		return nil, fmt.Errorf("%s has no tail in a fragment", fragFile)
	}
	frag, err := rc.Fragment(tail.Fragment)
	if err != nil {
		return nil, err
	}
	hit := map[string]bool{"/" + dataFile: true}
	err = fs.WalkDir(rc, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		ino, err := inode(p)
		if err == nil && (ino.Number == data.Number || ino.Fragment == tail.Fragment && uint64(len(ino.BlockSizes))*bs < ino.Size) {
			hit["/"+p] = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rnd := rand.New(rand.NewSource(9))
	for _, b := range []struct {
		pos  uint64
		size uint32
	}{{data.BlocksStart, squash.BlockSize(data.BlockSizes[0])}, {frag.Start, squash.BlockSize(frag.Size)}} {
		junk := make([]byte, max(1, b.size/2))
		rnd.Read(junk)
		if _, err := f.WriteAt(junk, int64(b.pos)+int64(b.size/4)); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	var paths []string
	for p := range hit {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}
