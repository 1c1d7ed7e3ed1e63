package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/overlay/fold"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

// PersistOptions tune Persist.
type PersistOptions struct {
	DryRun  bool // say what would be written, write nothing
	Force   bool // persist even below the threshold or on battery
	Workers int
	Log     func(format string, args ...any)
	// Output wraps the new image's file; tests inject write failures here.
	Output func(*os.File) squash.Output
	// PowerRoot is where /etc/killpower and /sys/class/power_supply are
	// looked up ("" is /); tests point it elsewhere.
	PowerRoot string
	// Progress, when set, is told how many entries of the new image are
	// written.
	Progress func(done, total int64)
	// WriterWait is how long to wait for files open for writing in the
	// target to be closed (0: DefaultWriterWait).
	WriterWait time.Duration

	// Compact folds the delta layers (and the upper) into a new image
	// whatever the spec's limits say.
	Compact bool

	// stackOnTop swaps as on kernels without MOVE_MOUNT_BENEATH (tests).
	stackOnTop bool
	start      time.Time
}

// PersistResult says what Persist did. Its JSON names and units (bytes)
// are those of Report, status's.
type PersistResult struct {
	Target  string     `json:"target"`
	Image   string     `json:"image"`
	Written bool       `json:"written"`           // a new image replaced the old one
	Skipped string     `json:"skipped,omitempty"` // why nothing was written, when nothing was
	Stats   fold.Stats `json:"stats"`
	// PendingBytes: bytes of regular files in the upper.
	PendingBytes int64         `json:"pending_bytes"`
	OldImageSize int64         `json:"old_image_size"`
	ImageSize    int64         `json:"image_size"`
	Duration     time.Duration `json:"-"`
	// Remounted: the overlay now runs on the new image with an empty upper.
	Remounted bool `json:"remounted"`
	// Layer is the delta layer written (layers= in the spec), "" when a
	// whole image was.
	Layer string `json:"layer,omitempty"`
	// Layers is how many delta layers the image has now.
	Layers int `json:"layers"`
	// BytesWritten is what this persist wrote to storage (/proc/self/io).
	BytesWritten int64 `json:"bytes_written"`
	// Stacked: the kernel could not mount beneath (before 6.5), so the
	// replaced overlay stays hidden under the new one until unmounted.
	Stacked bool `json:"stacked,omitempty"`
}

// Persist folds the changes of a managed mount into a new image, crash-safely:
// the new image is written beside IMAGE under a temporary name, synced,
// verified, and renamed over IMAGE, the previous generation staying as
// IMAGE.old; at every instant IMAGE is a complete image, old or new. The
// upper is left alone unless the overlay can be remounted on the new image.
func Persist(st *State, opts PersistOptions) (res PersistResult, err error) {
	start := time.Now()
	opts.start = start
	log := logger(opts.Log)
	res = PersistResult{Target: st.Target, Image: st.Image}
	switch {
	case st.Spec.ReadOnly:
		res.Skipped = "mounted read-only (ro): nothing to persist"
		return res, nil
	case st.Spec.Persist == PersistNever:
		res.Skipped = "persist=never: changes are discarded at unmount"
		return res, nil
	}
	unlock, err := LockWith(st.StateDir(), st.Target, LockOptions{Op: "persist", Wait: 10 * time.Second})
	if err != nil {
		return res, err
	}
	defer unlock()
	// The record as it is now, under the lock: another persist or a
	// remount may have changed it since the caller read it.
	cur, err := Load(st.StateDir(), st.Target)
	if err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	cur.Root = st.Root
	*st = *cur
	res.Image = st.Image
	if err := reconcile(st, log); err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}

	image := st.ImagePath()
	if _, err := os.Lstat(st.UpperPath()); err != nil {
		return res, fmt.Errorf("persist %s: the upper %s is gone (was the overlay unmounted behind squashportage's back, or a persist killed while remounting?): %w; mount it again with 'squashportage mount'", st.Target, st.UpperPath(), err)
	}
	// Fold against the image the overlay really runs on: after a persist
	// that installed IMAGE but could not swap (it failed or was killed),
	// IMAGE is newer than the mounted lower, and the upper's changes are
	// relative to the lower.
	base, baseName, err := openLower(st)
	if err != nil {
		return res, err
	}
	defer base.Close()
	r, err := squash.NewReader(base, base.size)
	if err != nil {
		return res, fmt.Errorf("persist %s: read image %s: %w", st.Target, baseName, err)
	}
	res.OldImageSize = base.size
	changed, err := upperChanged(st)
	if err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	stack, err := readStack(image)
	if err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	if opts.Compact && len(st.Layers) > 0 {
		changed = true
	}
	// The mounted lower may be an older generation than IMAGE (a persist
	// that could not swap a busy mount); the view then differs from IMAGE
	// even with an empty upper.
	if !changed && !sameImage(base.File, image) {
		changed = true
	}
	if !changed {
		res.Skipped = "no changes"
		return res, nil
	}
	if res.PendingBytes, err = pendingBytes(st.UpperPath()); err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	if !opts.Force {
		if why := unwise(opts.PowerRoot); why != "" {
			res.Skipped = why + keptOrLost(st)
			return res, nil
		}
		if st.Spec.Threshold > 0 && res.PendingBytes < st.Spec.Threshold {
			res.Skipped = fmt.Sprintf("%d bytes pending, below threshold=%d", res.PendingBytes, st.Spec.Threshold) + keptOrLost(st)
			return res, nil
		}
	}
	if u := UpperUsage(st); u.Full && !opts.Force {
		return res, fmt.Errorf("persist %s: the upper %s ran full (%s): writes may have failed with ENOSPC and files may be truncated; check the tree, then persist with --force to write it as it is", st.Target, st.UpperPath(), u)
	}
	cfg := r.Codec()
	if st.Spec.Comp != 0 && st.Spec.Comp != cfg.ID {
		cfg = codec.Config{ID: st.Spec.Comp}
	}
	if st.Spec.Block != 0 {
		cfg.BlockSize = st.Spec.Block
	}
	if opts.DryRun {
		res.Skipped = fmt.Sprintf("dry run: would write %s (%s, %d KiB blocks) with %d bytes of changes", image, cfg.ID, blockOr(cfg.BlockSize, r)>>10, res.PendingBytes)
		return res, nil
	}

	// From here until the swap, nothing may change the upper: writers
	// get EROFS, and a file open for writing is waited for.
	wait := opts.WriterWait
	if wait == 0 {
		wait = DefaultWriterWait
	}
	if err := freeze(st, wait); err != nil {
		return res, fmt.Errorf("persist %s: %w (nothing written)", st.Target, err)
	}
	log("persist %s: %s is read-only until the new image is mounted", st.Target, st.TargetPath())
	swapped := false
	defer func() {
		if !swapped {
			if err := thaw(st); err != nil {
				log("persist %s: %v", st.Target, err)
			}
		}
	}()
	// Now that nothing writes, the upper is what gets folded.
	if res.PendingBytes, err = pendingBytes(st.UpperPath()); err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}

	ioStart := ioWritten()
	defer func() { res.BytesWritten = ioWritten() - ioStart }()
	if n := st.Spec.LayerLimit(); n > 0 && !opts.Compact && len(stack.Layers) < n && len(stack.Layers) == len(st.Layers) &&
		(stack.LayerSize()+res.PendingBytes)*100 < stack.Base.Size*int64(st.Spec.compactPercent()) &&
		sameImage(base.File, image) && cfg.ID == r.Codec().ID {
		err := persistLayer(st, &res, stack, cfg, opts, log)
		if err == nil {
			swapped = res.Remounted
			return res, nil
		}
		if !errors.Is(err, fold.ErrNotLayerable) {
			return res, err
		}
		log("persist %s: %v: folding instead", st.Target, err)
	}

	tmp := image + ".new"
	_ = os.Remove(tmp) // a leftover of a persist that died
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	fail := func(err error) (PersistResult, error) {
		f.Close()
		os.Remove(tmp)
		return res, fmt.Errorf("persist %s: %w (the image and the changes are untouched)", st.Target, err)
	}
	var out squash.Output = f
	if opts.Output != nil {
		out = opts.Output(f)
	}
	log("persist %s: folding %s and %d layers into %s", st.Target, st.UpperPath(), len(st.Layers), image)
	res.Stats, err = fold.FoldLayers(r, base, append([]string{st.UpperPath()}, st.Layers...), out, fold.Options{
		Codec:    codec.Config{ID: cfg.ID, BlockSize: cfg.BlockSize, Options: cfg.Options},
		Workers:  opts.Workers,
		MkfsTime: uint32(time.Now().Unix()),
		Progress: opts.Progress,
		Log: func(format string, args ...any) {
			log("persist %s: fold: "+format, append([]any{st.Target}, args...)...)
		},
	})
	if err != nil {
		return fail(err)
	}
	log("persist %s: image written in %v", st.Target, time.Since(start).Round(time.Millisecond))
	// The disk writes the image back while our reader checks it: both
	// must succeed before the rename, and neither needs the other.
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	verr := verifyImage(f, res.Stats.ReusedEnd)
	serr := <-synced
	if serr != nil {
		return fail(fmt.Errorf("sync %s: %w", tmp, serr))
	}
	if verr != nil {
		return fail(fmt.Errorf("verify %s: %w", tmp, verr))
	}
	log("persist %s: synced and verified at %v", st.Target, time.Since(start).Round(time.Millisecond))
	if fi, err := f.Stat(); err == nil {
		res.ImageSize = fi.Size()
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	dropped, err := rotate(image, tmp, st.Spec.Keep)
	if err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("persist %s: %w", st.Target, err)
	}
	// The dropped generation's blocks are freed while the new image is
	// mounted; the persist ends when both are done.
	freed := make(chan struct{})
	go func() {
		defer close(freed)
		removeDropped(dropped)
	}()
	defer func() { <-freed }()
	// The new IMAGE holds the layers: a record still naming them names
	// the old base, so it is ignored from now on; start a fresh one.
	folded := stack.Layers
	if len(folded) > 0 {
		fresh, err := readStack(image)
		if err == nil {
			err = writeStack(image, fresh)
		}
		if err != nil {
			log("persist %s: %v", st.Target, err)
		}
	}
	res.Written = true
	res.Duration = time.Since(start)
	result := fmt.Sprintf("ok: %s, %d bytes (%d reused files, %d new bytes) in %v",
		st.Image, res.ImageSize, res.Stats.ReusedFiles, res.Stats.NewBytes, res.Duration.Round(time.Millisecond))
	err = install(st, &res, "image", result, opts, log, func() {
		for _, l := range folded {
			// Folded into IMAGE and no longer mounted.
			if err := os.Remove(filepath.Join(filepath.Dir(image), l.File)); err != nil {
				log("persist %s: remove folded layer: %v", st.Target, err)
			}
		}
	})
	swapped = res.Remounted
	return res, err
}

// install records a persist that wrote an image or a layer (what) and
// swaps the target onto the stack with it; after runs once it is in place.
func install(st *State, res *PersistResult, what, result string, opts PersistOptions, log func(string, ...any), after func()) error {
	st.LastPersist, st.LastPersistResult = time.Now(), result
	if err := st.Save(st.StateDir()); err != nil {
		log("persist %s: record state: %v", st.Target, err)
	}
	if err := recordLastPersist(st.ImagePath(), st.LastPersist, st.LastPersistResult); err != nil {
		log("persist %s: record last persist beside the image: %v", st.Target, err)
	}
	log("persist %s: %s installed at %v", st.Target, what, time.Since(opts.start).Round(time.Millisecond))
	var err error
	if res.Stacked, err = swapTo(st, st.Image, !opts.stackOnTop, log); err != nil {
		// The old overlay, thawed, still shows the same view: its upper
		// holds what the new image or layer holds, relative to the stack
		// it runs on, and the next persist starts from that one again.
		return fmt.Errorf("persist %s: %s written, but the overlay still runs without it: %w", st.Target, what, err)
	}
	res.Remounted = true
	if after != nil {
		after()
	}
	if err := st.Save(st.StateDir()); err != nil {
		return fmt.Errorf("persist %s: %s written and mounted, but %w", st.Target, what, err)
	}
	log("persist %s: new overlay in place at %v", st.Target, time.Since(opts.start).Round(time.Millisecond))
	return nil
}

// persistLayer writes the frozen upper as the next delta layer of the
// stack, records it, and swaps in the stack with it and an empty upper.
func persistLayer(st *State, res *PersistResult, stack Stack, cfg codec.Config, opts PersistOptions, log func(string, ...any)) error {
	image := st.ImagePath()
	name := layerName(image, stack.Next)
	tmp := name + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("persist %s: %w", st.Target, err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		if errors.Is(err, fold.ErrNotLayerable) {
			return err
		}
		return fmt.Errorf("persist %s: %w (the image, its layers and the changes are untouched)", st.Target, err)
	}
	log("persist %s: writing %s as layer %s", st.Target, st.UpperPath(), name)
	if _, err := fold.WriteLayer(st.UpperPath(), f, fold.Options{
		Codec: codec.Config{ID: cfg.ID, BlockSize: cfg.BlockSize, Options: cfg.Options}, Workers: opts.Workers,
		MkfsTime: uint32(time.Now().Unix()), Progress: opts.Progress,
	}); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := verifyImage(f, 0); err != nil {
		return fail(fmt.Errorf("verify %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("persist %s: %w", st.Target, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("persist %s: %w", st.Target, err)
	}
	if err := syncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("persist %s: %w", st.Target, err)
	}
	sum, size, err := fileSum(name)
	if err == nil {
		var id string
		if id, err = imageID(name); err == nil {
			stack.Layers = append(stack.Layers, StackFile{File: filepath.Base(name), Size: size, ID: id, SHA256: sum})
			stack.Next++
			err = writeStack(image, stack)
		}
	}
	if err != nil {
		// Not named by the record: the layer file is junk, nothing else changed.
		os.Remove(name)
		return fmt.Errorf("persist %s: %w (the image, its layers and the changes are untouched)", st.Target, err)
	}
	res.Written, res.Layer, res.Layers, res.ImageSize = true, name, len(stack.Layers), size
	res.Duration = time.Since(opts.start)
	return install(st, res, "layer", fmt.Sprintf("ok: layer %s, %d bytes, %d layers, in %v", name, size, len(stack.Layers), res.Duration.Round(time.Millisecond)), opts, log, nil)
}

// upperChanged reports whether the upper holds an entry, or a root whose
// metadata differs from the stack's top (overlayfs shows the upper
// root's as the target's).
func upperChanged(st *State) (bool, error) {
	empty, err := isEmptyDir(st.UpperPath())
	if err != nil || !empty {
		return !empty, err
	}
	top := st.Lower
	if len(st.Layers) > 0 {
		top = st.Layers[0]
	}
	var u, l unix.Stat_t
	if err := unix.Lstat(st.UpperPath(), &u); err != nil {
		return false, err
	}
	if err := unix.Lstat(top, &l); err != nil {
		return false, err
	}
	return u.Mode != l.Mode || u.Uid != l.Uid || u.Gid != l.Gid || u.Mtim.Sec != l.Mtim.Sec, nil
}

// ioWritten is what this process has had written to storage so far.
func ioWritten() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func blockOr(bs int, r *squash.Reader) int {
	if bs != 0 {
		return bs
	}
	return int(r.Superblock().BlockSize)
}

func keptOrLost(st *State) string {
	if st.UpperKind == KindDir {
		return "; the changes stay in " + st.UpperPath()
	}
	return "; WARNING: the changes live in RAM (tmpfs) and are lost at shutdown unless persisted with --force"
}

// lowerFile is the mounted image, read through its loop device when there
// is one, so that persist folds against exactly what the overlay shows.
type lowerFile struct {
	*os.File
	size int64
}

func openLower(st *State) (*lowerFile, string, error) {
	if st.Loop != "" {
		if f, err := os.Open(st.Loop); err == nil {
			backing, ok := loopBacking(st)
			if size, err := deviceSize(f); err == nil && size > 0 && ok {
				if bf := loopdev.OpenBacking(f, backing); bf != nil {
					if fi, err := bf.Stat(); err == nil {
						f.Close()
						return &lowerFile{bf, fi.Size()}, backing, nil
					}
					bf.Close()
				}
				return &lowerFile{f, size}, st.Loop, nil
			}
			f.Close()
		}
	}
	f, err := os.Open(st.ImagePath())
	if err != nil {
		return nil, "", fmt.Errorf("persist %s: %w", st.Target, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("persist %s: %w", st.Target, err)
	}
	return &lowerFile{f, fi.Size()}, st.ImagePath(), nil
}

// loopBacking returns the file the loop device serves, and whether it is
// still this mount's image or one of its older generations (a reused loop
// number after a crash would serve another file).
func loopBacking(st *State) (string, bool) {
	backing, _ := loopdev.BackingFile(st.Loop)
	if backing == "" {
		return "", false
	}
	img := st.ImagePath()
	return backing, backing == img || backing == img+".old" || strings.HasPrefix(backing, img+".old.")
}

func deviceSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode()&fs.ModeDevice == 0 {
		return fi.Size(), nil
	}
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKGETSIZE64)
	return int64(n), err
}

// pendingBytes sums the sizes of the regular files in the upper.
func pendingBytes(upper string) (int64, error) {
	var n int64
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// unwise says why squashing now would be unwise: the UPS has asked for a
// power-off (NUT's killpower flag), or the machine runs on battery.
func unwise(root string) string {
	for _, p := range []string{"/etc/killpower", "/etc/nut/killpower"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			return p + " exists (the UPS is about to cut power): not persisting"
		}
	}
	supplies, _ := filepath.Glob(filepath.Join(root, "/sys/class/power_supply/*"))
	onMains, onBattery := false, false
	for _, s := range supplies {
		typ := readTrim(filepath.Join(s, "type"))
		switch typ {
		case "Mains", "USB":
			if readTrim(filepath.Join(s, "online")) == "1" {
				onMains = true
			}
		case "Battery":
			if readTrim(filepath.Join(s, "status")) == "Discharging" {
				onBattery = true
			}
		}
	}
	if onBattery && !onMains {
		return "running on battery: not persisting"
	}
	return ""
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// verifyImage reads the new image back with our reader: every table,
// inode, directory and new block (blocks copied verbatim from the mounted
// image, below reusedEnd, are only bounds-checked). A persist must never
// rename a bad image over a good one.
func verifyImage(f *os.File, reusedEnd uint64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r, err := squash.NewReader(f, fi.Size())
	if err != nil {
		return err
	}
	return r.VerifyWith(context.Background(), squash.VerifyOptions{TrustedBelow: reusedEnd})
}
