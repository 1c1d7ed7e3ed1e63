package fold

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/squashportage/squashportage/internal/xattr"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// ErrNotLayerable is matched by WriteLayer's error when the upper holds
// what a squashfs lower layer cannot carry faithfully: a redirect (a
// renamed directory with redirect_dir=on) or metacopy (metadata copied up
// without data): their lookups reach into the layers below, which only a
// fold resolves.
var ErrNotLayerable = errors.New("upper needs a fold")

// LayerStats describes a layer WriteLayer wrote.
type LayerStats struct {
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"` // regular files' bytes
}

// WriteLayer writes the upper directory of an overlay as a squashfs image
// in overlayfs's own on-disk form, to be stacked as a lower layer: whiteouts
// stay 0/0 character devices, opaque directories keep their
// trusted.overlay.opaque xattr, everything else as it is. Mounted as
// lowerdir=LAYER:...:IMAGE, it shows what the upper showed over them.
func WriteLayer(upper string, out squash.Output, opts Options) (LayerStats, error) {
	var st LayerStats
	var xr xattr.Reader
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names, err := xr.Names(p)
		if err != nil {
			return err
		}
		for _, n := range names {
			if n == xattrRedirect || n == xattrMetacopy {
				return fmt.Errorf("%s has %s: %w", p, n, ErrNotLayerable)
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	tree, err := sourcetree.Scan([]string{upper}, sourcetree.Options{})
	if err != nil {
		return st, err
	}
	files, dirs, bytes := tree.Stats()
	st.Entries, st.Bytes = files+dirs, bytes
	wopts := opts.Writer
	wopts.Codec, wopts.Workers, wopts.MkfsTime = opts.Codec, opts.Workers, opts.MkfsTime
	wopts.BlockSums = true
	w, err := squash.NewWriter(out, wopts)
	if err != nil {
		return st, err
	}
	var progress func(int64)
	if opts.Progress != nil {
		progress = func(done int64) { opts.Progress(done, bytes) }
	}
	if err := tree.Write(w, progress); err != nil {
		w.Close()
		return st, err
	}
	return st, w.Close()
}
