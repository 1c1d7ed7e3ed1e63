package fleet

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/squashportage/squashportage/squash/blockindex"
)

// PublishResult says what Publish wrote.
type PublishResult struct {
	Manifest Manifest
	Blocks   int      // pieces in the index
	Removed  []string // older generations' files pruned
}

// Publish writes image into dir as a generation a static HTTP server can
// serve as it is: NAME-HASH.sqfs (the image), NAME-HASH.idx (its block
// index) and the signed manifest naming them, replaced last and atomically,
// so a client sees the previous generation or the new one, whole. keep
// generations stay in dir (at least 1), so that a client that read the
// previous manifest can still finish.
func Publish(image, dir string, key ed25519.PrivateKey, keep int) (PublishResult, error) {
	var res PublishResult
	f, err := os.Open(image)
	if err != nil {
		return res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	ix, err := blockindex.Build(f, fi.Size())
	if err != nil {
		return res, fmt.Errorf("index %s: %w", image, err)
	}
	idx, _ := ix.MarshalBinary()
	name := strings.TrimSuffix(filepath.Base(image), filepath.Ext(image))
	gen := fmt.Sprintf("%s-%s", name, hex.EncodeToString(ix.SHA256[:8]))
	m := Manifest{
		Image:       gen + ".sqfs",
		ImageSize:   fi.Size(),
		ImageSHA256: ix.SHA256,
		Index:       gen + ".idx",
		IndexSize:   int64(len(idx)),
		IndexSHA256: sha256.Sum256(idx),
		Published:   time.Now(),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	// Clients on the previous generation fetch the index as a delta.
	var delta []byte
	if prev := previousIndex(dir, key); prev != nil && prev.SHA256 != ix.SHA256 {
		delta = blockindex.Diff(prev, ix)
		m.Delta = fmt.Sprintf("%s.from-%s.idxd", gen, hex.EncodeToString(prev.SHA256[:8]))
		m.DeltaSize, m.DeltaSHA256, m.DeltaFrom = int64(len(delta)), sha256.Sum256(delta), prev.SHA256
	}
	if err := writeFileSynced(filepath.Join(dir, m.Image), func(w io.Writer) error {
		_, err := io.Copy(w, io.NewSectionReader(f, 0, fi.Size()))
		return err
	}); err != nil {
		return res, err
	}
	if err := writeFileSynced(filepath.Join(dir, m.Index), bytesWriter(idx)); err != nil {
		return res, err
	}
	if delta != nil {
		if err := writeFileSynced(filepath.Join(dir, m.Delta), bytesWriter(delta)); err != nil {
			return res, err
		}
	}
	signed := m.Sign(key)
	if err := writeFileSynced(filepath.Join(dir, ManifestName), bytesWriter(signed)); err != nil {
		return res, err
	}
	m.Key = KeyID(key.Public().(ed25519.PublicKey))
	res.Manifest, res.Blocks = m, len(ix.Blocks)
	res.Removed, err = prune(dir, name, gen, max(keep, 1))
	return res, err
}

// previousIndex reads the index of the generation dir's manifest names
// now; nil when there is none (or it does not check out).
func previousIndex(dir string, key ed25519.PrivateKey) *blockindex.Index {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil
	}
	m, err := ParseManifest(b, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil
	}
	ib, err := os.ReadFile(filepath.Join(dir, m.Index))
	if err != nil || sha256.Sum256(ib) != m.IndexSHA256 {
		return nil
	}
	ix, err := blockindex.Parse(ib)
	if err != nil {
		return nil
	}
	return ix
}

func bytesWriter(b []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

// writeFileSynced writes path through a temporary file, synced, renamed
// into place and the directory synced.
func writeFileSynced(path string, fill func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// prune removes the generations of name in dir beyond the newest keep
// (by the images' modification times); current is never removed.
func prune(dir, name, current string, keep int) ([]string, error) {
	imgs, err := filepath.Glob(filepath.Join(dir, name+"-*.sqfs"))
	if err != nil {
		return nil, err
	}
	type gen struct {
		base string
		mod  time.Time
	}
	var gens []gen
	for _, p := range imgs {
		base := strings.TrimSuffix(filepath.Base(p), ".sqfs")
		if base == current {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			gens = append(gens, gen{base, fi.ModTime()})
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].mod.After(gens[j].mod) })
	var removed []string
	for i, g := range gens {
		if i < keep-1 {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, g.base+".from-*.idxd"))
		for _, ext := range []string{".sqfs", ".idx"} {
			files = append(files, filepath.Join(dir, g.base+ext))
		}
		for _, p := range files {
			if err := os.Remove(p); err == nil {
				removed = append(removed, p)
			}
		}
	}
	return removed, nil
}
