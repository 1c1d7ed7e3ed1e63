// Package convert migrates an existing directory tree (typically the
// Portage tree at /var/db/repos/gentoo) into a squashfs image that
// squashportage then mounts in its place. The image is only trusted once
// the kernel itself has mounted it and every entry read back matches the
// source, because the source may be deleted right after.
package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/treecmp"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// Options tune Convert. The zero value writes a gzip image with 128 KiB
// blocks, keeps the source and refuses to replace an existing image.
type Options struct {
	// Comp is the compressor; 0 takes the spec's comp= or else gzip, which
	// every kernel with squashfs can read (the others are separate kernel
	// options).
	Comp codec.ID
	// Block is the data block size; 0 takes the spec's block= or 128 KiB.
	Block int
	// SpecOptions is the OPTIONS part of the spec to print
	// (e.g. "size=1g,keep=3"); it is validated here by the one spec parser.
	SpecOptions string
	// RemoveSource empties the source directory once the image is proven
	// and durable, keeping the directory itself as the mount point.
	RemoveSource bool
	// Replace allows replacing an existing image.
	Replace bool
	// Workers compress and compare in parallel; 0 means all CPUs.
	Workers int
	// StateDir is where squashportage records its mounts; a directory
	// recorded there is refused. "" means overlay.DefaultStateDir.
	StateDir string
	// Log, if set, receives a line as each phase starts and ends.
	Log func(format string, args ...any)
	// Progress, if set, is told how far the two long phases are: phase
	// "write" counts the file bytes handed to the writer, "verify" the
	// entries compared; total comes from the scan, and the last call of a
	// phase has done == total. It runs on the goroutine doing the work.
	Progress func(phase string, done, total int64)
}

// Result describes a finished conversion.
type Result struct {
	// Spec is IMAGE:DIR[:OPTIONS] as ParseSpec normalised it.
	Spec      overlay.Spec
	Image     string
	ImageSize int64
	// Entries counts what went into the image and was compared back.
	Entries int
	Bytes   int64 // file data read from the source
	// Removed says the source directory was emptied.
	Removed bool
	// Warnings are things the image cannot carry (e.g. ACL xattrs) and
	// layout advice (distfiles inside the tree).
	Warnings []string
	Duration time.Duration
}

// MismatchError says the mounted image did not read back as the source.
type MismatchError struct {
	Image string
	Diffs []treecmp.Diff
	More  bool // there were more differences than Diffs holds
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the image %s does not match the source (A is the source, B the mounted image); was the tree changed during the conversion?", e.Image)
	for i, d := range e.Diffs {
		if i == 10 {
			fmt.Fprintf(&b, "\n\t... %d more", len(e.Diffs)-i)
			break
		}
		b.WriteString("\n\t")
		b.WriteString(d.String())
	}
	if e.More {
		b.WriteString("\n\t... and more")
	}
	return b.String()
}

// maxWarnings keeps a tree full of unstorable xattrs from flooding the
// output: the first few explain the problem.
const maxWarnings = 10

// Convert writes the tree at dir into image, proves the image by mounting
// it and comparing, and with RemoveSource empties dir. Until the final
// rename nothing but IMAGE.new is written; on any failure IMAGE.new is
// removed and dir is untouched.
func Convert(dir, image string, opts Options) (Result, error) {
	start := time.Now()
	log := opts.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	var res Result
	spec, err := checkArgs(dir, image, opts)
	if err != nil {
		return res, err
	}
	res.Spec, res.Image = spec, spec.Image
	dir, image = spec.Target, spec.Image
	res.Warnings = layoutWarnings(dir)

	cfg := codec.Config{ID: opts.Comp, BlockSize: opts.Block}
	if cfg.ID == 0 {
		cfg.ID = spec.Comp
	}
	if cfg.ID == 0 {
		cfg.ID = codec.Gzip
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = spec.Block
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = squash.DefaultBlockSize
	}
	if err := cfg.Validate(); err != nil {
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}

	tmp := image + ".new"
	log("scanning %s", dir)
	skipped := 0
	tree, err := sourcetree.Scan([]string{dir}, sourcetree.Options{
		OmitPaths: []string{image, tmp},
		Warn: func(msg string) {
			if len(res.Warnings) < maxWarnings {
				res.Warnings = append(res.Warnings, msg)
			} else {
				skipped++
			}
		},
	})
	if err != nil {
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}
	files, dirs, bytes := tree.Stats()
	res.Bytes = bytes
	log("writing %s: %d files, %d directories, %.1f MB, %s, block %d", tmp, files, dirs, float64(bytes)/1e6, cfg.ID, cfg.BlockSize)
	var writeProgress func(int64)
	if opts.Progress != nil {
		writeProgress = func(done int64) { opts.Progress("write", min(done, bytes), bytes) }
	}
	size, err := writeImage(tree, tmp, cfg, opts.Workers, writeProgress)
	if err == nil && opts.Progress != nil {
		opts.Progress("write", bytes, bytes)
	}
	if err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}
	res.ImageSize = size
	if skipped > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("... and %d more warnings like these", skipped))
	}

	log("verifying: mounting %s and comparing it with %s", tmp, dir)
	var verifyProgress func(int)
	entries := int64(tree.Len())
	if opts.Progress != nil {
		verifyProgress = func(n int) { opts.Progress("verify", min(int64(n), entries), entries) }
	}
	cmp, err := verifyMounted(tmp, dir, cfg.ID, opts.Workers, verifyProgress)
	if err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}
	if opts.Progress != nil {
		opts.Progress("verify", entries, entries)
	}
	res.Entries = cmp.Entries

	if err := os.Rename(tmp, image); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}
	// The rename must be on disk before the source goes.
	if err := syncDir(filepath.Dir(image)); err != nil {
		return res, fmt.Errorf("convert %s: %w", dir, err)
	}
	log("wrote %s (%d bytes)", image, size)

	if opts.RemoveSource {
		log("emptying %s", dir)
		if err := emptyDir(dir); err != nil {
			return res, fmt.Errorf("convert %s: image %s is complete, but emptying the source failed: %w", dir, image, err)
		}
		res.Removed = true
	}
	res.Duration = time.Since(start)
	return res, nil
}

// checkArgs validates the paths through the spec parser (so that the line
// printed at the end is one mount will accept) and refuses sources that
// are squashportage mounts or images that exist.
func checkArgs(dir, image string, opts Options) (overlay.Spec, error) {
	var err error
	if dir, err = filepath.Abs(dir); err != nil {
		return overlay.Spec{}, fmt.Errorf("convert: %w", err)
	}
	if image, err = filepath.Abs(image); err != nil {
		return overlay.Spec{}, fmt.Errorf("convert: %w", err)
	}
	s := image + ":" + dir
	if opts.SpecOptions != "" {
		s += ":" + opts.SpecOptions
	}
	spec, err := overlay.ParseSpec(s)
	if err != nil {
		return overlay.Spec{}, fmt.Errorf("convert: %w", err)
	}
	fi, err := os.Lstat(spec.Target)
	if err != nil {
		return overlay.Spec{}, fmt.Errorf("convert: source: %w", err)
	}
	if !fi.IsDir() {
		return overlay.Spec{}, fmt.Errorf("convert: source %s is not a directory", spec.Target)
	}
	if _, err := overlay.Load(opts.StateDir, spec.Target); err == nil {
		return overlay.Spec{}, fmt.Errorf("convert: %s is already mounted by squashportage; it is an image already", spec.Target)
	} else if !errors.Is(err, overlay.ErrNotManaged) {
		return overlay.Spec{}, fmt.Errorf("convert: %w", err)
	}
	if m, ok, err := topMount(spec.Target); err != nil {
		return overlay.Spec{}, fmt.Errorf("convert: %w", err)
	} else if ok && (m.FSType == "squashfs" || m.FSType == "overlay") {
		return overlay.Spec{}, fmt.Errorf("convert: %s is a %s mount, not a plain directory: unmount it first", spec.Target, m.FSType)
	}
	if _, err := os.Lstat(spec.Image); err == nil && !opts.Replace {
		return overlay.Spec{}, fmt.Errorf("convert: image %s exists; remove it or allow replacing it", spec.Image)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return overlay.Spec{}, fmt.Errorf("convert: image: %w", err)
	}
	if fi, err := os.Stat(filepath.Dir(spec.Image)); err != nil || !fi.IsDir() {
		return overlay.Spec{}, fmt.Errorf("convert: the directory of image %s must exist", spec.Image)
	}
	if opts.RemoveSource {
		below, err := mountsBelow(spec.Target)
		if err != nil {
			return overlay.Spec{}, fmt.Errorf("convert: %w", err)
		}
		if len(below) > 0 {
			return overlay.Spec{}, fmt.Errorf("convert: will not empty %s: filesystems are mounted below it (%s)", spec.Target, strings.Join(below, ", "))
		}
	}
	return spec, nil
}

// layoutWarnings points out the pre-2019 layout, where downloads and
// binary packages lived inside the tree: they would fill the image (and,
// once mounted, the RAM of the upper).
func layoutWarnings(dir string) []string {
	var out []string
	for _, sub := range []struct{ name, moveTo, variable string }{
		{"distfiles", "/var/cache/distfiles", "DISTDIR"},
		{"packages", "/var/cache/binpkgs", "PKGDIR"},
	} {
		p := filepath.Join(dir, sub.name)
		ents, err := os.ReadDir(p)
		if err != nil || len(ents) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s holds %d entries and goes into the image; move it out (e.g. to %s, %s=%s in /etc/portage/make.conf) and convert again",
			p, len(ents), sub.moveTo, sub.variable, sub.moveTo))
	}
	return out
}

// writeImage writes tree into path, synced to disk, and returns its size.
func writeImage(tree *sourcetree.Tree, path string, cfg codec.Config, workers int, progress func(int64)) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create image: %w", err)
	}
	defer f.Close()
	// With block sums, the first persist checks the blocks it copies by
	// their sums instead of decoding them.
	w, err := squash.NewWriter(f, squash.WriterOptions{Codec: cfg, Workers: workers, MkfsTime: uint32(time.Now().Unix()), BlockSums: true})
	if err != nil {
		return 0, fmt.Errorf("create image %s: %w", path, err)
	}
	if err := tree.Write(w, progress); err != nil {
		w.Close()
		return 0, fmt.Errorf("write image %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("write image %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync image %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("image %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close image %s: %w", path, err)
	}
	return fi.Size(), nil
}

// verifyMounted mounts image read-only in a private temporary directory
// and compares it with dir. Mounting proves what unsquashfs-style readers
// cannot: that this kernel accepts the image.
func verifyMounted(image, dir string, comp codec.ID, workers int, progress func(int)) (treecmp.Result, error) {
	mnt, err := os.MkdirTemp("", "squashportage-convert-")
	if err != nil {
		return treecmp.Result{}, fmt.Errorf("verify: %w", err)
	}
	defer os.Remove(mnt)
	dev, f, err := loopdev.Attach(image, true)
	if err != nil {
		return treecmp.Result{}, fmt.Errorf("verify: %w", err)
	}
	err = unix.Mount(dev, mnt, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "")
	// Autoclear: from here the mount (or nothing) holds the device.
	f.Close()
	if err != nil {
		return treecmp.Result{}, fmt.Errorf("verify: mount %s (%s) read-only: %w (does this kernel have squashfs with %s support? see dmesg)", image, dev, err, comp)
	}
	defer func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	res, err := treecmp.Compare(dir, mnt, treecmp.Options{Xattr: squash.StorableXattr, Workers: workers, MaxDiffs: 50, Progress: progress})
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	if !res.Equal() {
		return res, &MismatchError{Image: image, Diffs: res.Diffs, More: res.Truncated}
	}
	return res, nil
}

// emptyDir removes everything inside dir but dir itself, which becomes the
// mount point. A lost+found at the root of a filesystem is kept: fsck
// wants it there.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("empty %s: %w", dir, err)
	}
	_, isMount, err := topMount(dir)
	if err != nil {
		return fmt.Errorf("empty %s: %w", dir, err)
	}
	for _, e := range ents {
		if isMount && e.Name() == "lost+found" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty %s: %w", dir, err)
		}
	}
	return nil
}

// topMount returns the topmost mount whose mount point is dir.
func topMount(dir string) (overlay.MountEntry, bool, error) {
	ms, err := overlay.Mounts()
	if err != nil {
		return overlay.MountEntry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == dir {
			return ms[i], true, nil
		}
	}
	return overlay.MountEntry{}, false, nil
}

// mountsBelow lists mount points strictly below dir: emptying dir would
// reach into those filesystems.
func mountsBelow(dir string) ([]string, error) {
	ms, err := overlay.Mounts()
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.MountPoint, prefix) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// KernelParam is the kernel command line parameter that mounts spec from
// the initramfs.
func KernelParam(spec overlay.Spec) string { return "squashportage=" + spec.String() }
