package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/kmsg"
	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/squash"
)

// ErrBusy is matched (errors.Is) by the errors of Umount when processes
// still use the target, and of a persist whose freeze waited in vain for
// files open for writing.
var ErrBusy = errors.New("target busy")

type busyErr string

func (e busyErr) Error() string        { return string(e) }
func (e busyErr) Is(target error) bool { return target == ErrBusy }

// fsSource names our mounts in the mount table, so that `mount` and
// `findmnt` show who made them.
const fsSource = "squashportage"

// MountOptions tune Mount.
type MountOptions struct {
	// Root is prepended to the spec's image, target and upper directory:
	// at boot the real root is mounted at e.g. /newroot. StateDir is not
	// under Root: the init moves /run, mounts included, into the new root.
	Root string
	// StateDir holds the records, locks and private mount points
	// (default DefaultStateDir).
	StateDir string
	// Force mounts over a target that is not empty, hiding its contents.
	Force bool
	// Log reports progress; nil is quiet.
	Log func(format string, args ...any)

	// memFree stands in for MemAvailable (tests of toram).
	memFree func() int64
}

// Mount mounts spec.Image read-only and, unless spec.ReadOnly, an overlay
// with a writable upper over it at spec.Target, and records it. On failure
// it undoes every step it made.
func Mount(spec Spec, opts MountOptions) (*State, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	stateDir := opts.StateDir
	stateDir = stateDirOr(stateDir)
	unlock, err := LockWith(stateDir, spec.Target, LockOptions{Op: "mount"})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	defer unlock()
	if old, err := Load(stateDir, spec.Target); err == nil {
		return nil, fmt.Errorf("mount %s: target %s is already managed by squashportage (image %s, since %s); run `squashportage umount %s` first",
			spec, spec.Target, old.Image, old.MountedAt.Format(time.DateTime), spec.Target)
	} else if !errors.Is(err, ErrNotManaged) {
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	st := &State{
		ID: ID(spec.Target), Spec: spec, Image: spec.Image, Target: spec.Target,
		Root: opts.Root, dir: stateDir, memFree: opts.memFree,
	}
	if err := imageFree(st); err != nil {
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	if st.Spec.Upper != UpperTmpfs && !st.Spec.ReadOnly {
		// Left by a persist that died after it had swapped.
		for _, d := range []string{"upper", "work"} {
			_ = os.RemoveAll(filepath.Join(st.Path(st.Spec.Upper), d+prevSuffix))
		}
	}
	var u undo
	if err := mountLayers(st, opts.Force, logger(opts.Log), &u); err != nil {
		u.run()
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	if err := st.Save(stateDir); err != nil {
		u.run()
		return nil, fmt.Errorf("mount %s: %w", spec, err)
	}
	return st, nil
}

// imageFree refuses an image another record already mounts: two
// overlays persisting into one image would each drop the other's changes.
// Two read-only mounts of one image are harmless.
func imageFree(st *State) error {
	fi, err := os.Stat(st.ImagePath())
	if err != nil {
		return nil // checkImage says why
	}
	others, err := List(st.StateDir())
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.Target == st.Target || (o.Spec.ReadOnly && st.Spec.ReadOnly) {
			continue
		}
		o.Root = st.Root
		if ofi, err := os.Stat(o.ImagePath()); err == nil && os.SameFile(fi, ofi) {
			return fmt.Errorf("image %s is already mounted at %s (since %s): one image serves one target; umount %s first, or copy the image",
				st.Image, o.Target, o.MountedAt.Local().Format(time.DateTime), o.Target)
		}
	}
	return nil
}

func logger(f func(string, ...any)) func(string, ...any) {
	if f == nil {
		return func(string, ...any) {}
	}
	return f
}

// undo collects the reversal of each step, run last-first on failure.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }

func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// mountLayers checks the image and target of st and mounts them, filling
// in st's loop device, directories and time.
func mountLayers(st *State, force bool, log func(string, ...any), u *undo) error {
	image, target := st.ImagePath(), st.TargetPath()
	if err := checkImage(image); err != nil {
		return err
	}
	if err := checkTarget(target, force); err != nil {
		return err
	}
	if st.Spec.ReadOnly {
		dev, err := mountSquashfs(image, target, st.Spec.Exec, u)
		if err != nil {
			return err
		}
		log("mounted %s (%s) read-only at %s", image, dev, target)
		st.Loop, st.Lower, st.UpperKind = dev, st.Target, KindNone
		st.RW, st.Upper, st.Work = "", "", ""
		st.MountedAt = time.Now().UTC()
		return nil
	}

	return mountStack(st, target, log, u)
}

// mountStack mounts st's image on a loop device, its upper, and the
// overlay of both at dir (the target, or where persist stages the next
// stack), filling in st's loop device, directories and time.
func mountStack(st *State, dir string, log func(string, ...any), u *undo) error {
	base := filepath.Join(st.StateDir(), st.ID)
	lower := filepath.Join(base, genName("lower", st.Gen))
	if err := makeDirs(u, base, lower); err != nil {
		return err
	}
	if err := prepareUpper(st, base, log, u); err != nil {
		return err
	}
	lowerImage, err := lowerFor(st, log)
	if err != nil {
		return err
	}
	stack, err := readStack(lowerImage)
	if err != nil {
		return err
	}
	layerFiles, err := stack.layerPaths(lowerImage)
	if err != nil {
		return err
	}
	served := lowerImage
	if st.Spec.ToRAM {
		copies, err := copyToRAM(st, base, append([]string{lowerImage}, layerFiles...), log, u)
		if err != nil {
			return err
		}
		served, layerFiles = copies[0], copies[1:]
	}
	dev, err := mountSquashfs(served, lower, st.Spec.Exec, u)
	if err != nil {
		return err
	}
	log("mounted %s (%s) at %s", lowerImage, dev, lower)
	st.Loop, st.Lower = dev, lower
	if st.Layers, err = mountDeltaLayers(st, layerFiles, base, log, u); err != nil {
		return err
	}
	if err := recordBase(st, lowerImage); err != nil {
		return fmt.Errorf("upper %s: record base image: %w", st.Spec.Upper, err)
	}
	upper, work := st.UpperPath(), st.WorkPath()
	fresh, err := isEmptyDir(upper)
	if err != nil {
		return fmt.Errorf("upper %s: %w", upper, err)
	}
	if fresh {
		// overlayfs shows the upper root's owner, mode and times as the
		// target's: make them the image root's. A disk upper that already
		// holds changes keeps its own, which the user may have changed.
		top := lower
		if len(st.Layers) > 0 {
			top = st.Layers[0] // the upper root's, when it was written
		}
		if err := copyDirMeta(top, upper); err != nil {
			return err
		}
	}
	lowers := ovlEscape(lower)
	for i := len(st.Layers) - 1; i >= 0; i-- {
		lowers = ovlEscape(st.Layers[i]) + ":" + lowers
	}
	data := "lowerdir=" + lowers + ",upperdir=" + ovlEscape(upper) + ",workdir=" + ovlEscape(work)
	if err := mountWithLog(fsSource, dir, "overlay", mountFlags(st), data); err != nil {
		return fmt.Errorf("mount overlay at %s (%s): %w", dir, data, err)
	}
	u.push(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	log("mounted overlay at %s (upper %s)", dir, upper)
	st.MountedAt = time.Now().UTC()
	return nil
}

// mountDeltaLayers mounts the layer files (oldest first), each on a loop
// device at a private mount point, and returns them newest first.
func mountDeltaLayers(st *State, files []string, base string, log func(string, ...any), u *undo) ([]string, error) {
	var dirs []string
	for i, f := range files {
		dir := filepath.Join(base, genName(fmt.Sprintf("layer%d", i+1), st.Gen))
		if err := makeDirs(u, dir); err != nil {
			return nil, err
		}
		dev, err := mountSquashfs(f, dir, st.Spec.Exec, u)
		if err != nil {
			return nil, err
		}
		log("mounted layer %s (%s) at %s", f, dev, dir)
		dirs = append([]string{dir}, dirs...)
	}
	return dirs, nil
}

// copyToRAM copies files (the image and its layers) onto a tmpfs of
// their size, for toram, and returns the copies. A machine whose free
// memory would not hold them with room to spare is refused: better a slow
// stick than a machine thrashing or killing processes.
func copyToRAM(st *State, base string, files []string, log func(string, ...any), u *undo) ([]string, error) {
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("toram: %w", err)
		}
		total += fi.Size()
	}
	avail := st.memAvailable()
	if need := total + total/10 + ramReserve; avail < need {
		return nil, fmt.Errorf("toram: the image and its layers need %d MiB of RAM with room to spare, and %d MiB are available: drop toram from the spec, or free memory", need>>20, avail>>20)
	}
	dir := filepath.Join(base, genName("ram", st.Gen))
	if err := makeDirs(u, dir); err != nil {
		return nil, err
	}
	data := fmt.Sprintf("mode=0700,size=%d", total+total/100+(1<<20))
	if err := mountWithLog(fsSource, dir, "tmpfs", uintptr(unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC), data); err != nil {
		return nil, fmt.Errorf("toram: mount tmpfs at %s: %w", dir, err)
	}
	u.push(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	st.RAM = dir
	var out []string
	for _, f := range files {
		dst := filepath.Join(dir, filepath.Base(f))
		if err := copyFile(f, dst); err != nil {
			return nil, fmt.Errorf("toram: copy %s: %w", f, err)
		}
		out = append(out, dst)
	}
	log("copied %d MiB into RAM at %s (toram)", total>>20, dir)
	return out, nil
}

// ramReserve is what toram leaves to everything else at the least.
const ramReserve = 64 << 20

// memAvailable is MemAvailable of /proc/meminfo in bytes.
func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// prepareUpper makes the upper and work directories: on a fresh tmpfs, or
// in the spec's directory on disk.
func prepareUpper(st *State, base string, log func(string, ...any), u *undo) error {
	if st.Spec.Upper == UpperTmpfs {
		rw := filepath.Join(base, genName("rw", st.Gen))
		if err := makeDirs(u, rw); err != nil {
			return err
		}
		data := "mode=0755,size=" + st.Spec.Size
		if err := mountWithLog(fsSource, rw, "tmpfs", mountFlags(st), data); err != nil {
			return fmt.Errorf("mount tmpfs at %s (%s): %w", rw, data, err)
		}
		u.push(func() { _ = unix.Unmount(rw, unix.MNT_DETACH) })
		log("mounted tmpfs (%s) at %s", data, rw)
		st.UpperKind, st.RW = KindTmpfs, rw
		st.Upper, st.Work = filepath.Join(rw, "upper"), filepath.Join(rw, "work")
		for _, d := range []string{st.Upper, st.Work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", d, err)
			}
		}
		return nil
	}
	st.UpperKind, st.RW = KindDir, st.Spec.Upper
	st.Upper, st.Work = filepath.Join(st.Spec.Upper, "upper"), filepath.Join(st.Spec.Upper, "work")
	dir := st.Path(st.Spec.Upper)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("upper directory: %w", err)
	}
	var devs [2]uint64
	for i, d := range []string{st.UpperPath(), st.WorkPath()} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", d, err)
		}
		var s unix.Stat_t
		if err := unix.Lstat(d, &s); err != nil {
			return fmt.Errorf("upper directory: %w", err)
		}
		if s.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("upper directory: %s is not a directory", d)
		}
		devs[i] = s.Dev
	}
	if devs[0] != devs[1] {
		return fmt.Errorf("upper directory: %s and %s are on different filesystems; overlayfs needs them on one", st.UpperPath(), st.WorkPath())
	}
	log("using upper %s", st.UpperPath())
	return nil
}

// makeDirs creates dirs that do not exist yet, and on undo removes those
// it created (if empty: never anything a mount left behind).
func makeDirs(u *undo, dirs ...string) error {
	for _, d := range dirs {
		err := os.Mkdir(d, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		u.push(func() { _ = os.Remove(d) })
	}
	return nil
}

// mountSquashfs mounts image at dir read-only through a self-clearing
// loop device.
func mountSquashfs(image, dir string, exec bool, u *undo) (string, error) {
	dev, f, err := loopdev.Attach(image, true)
	if err != nil {
		return "", err
	}
	// Until mount(2) returns, f is what keeps the device attached.
	defer f.Close()
	flags := uintptr(unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID)
	if !exec {
		flags |= unix.MS_NOEXEC
	}
	if err := mountWithLog(dev, dir, "squashfs", flags, ""); err != nil {
		return "", fmt.Errorf("mount %s (%s) at %s: %w", image, dev, dir, err)
	}
	u.push(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dev, nil
}

// mountWithLog is mount(2) whose error carries what the kernel logged
// about it: EINVAL alone does not say which overlayfs option it disliked.
func mountWithLog(source, target, fstype string, flags uintptr, data string) error {
	log := kmsg.Open()
	defer log.Close()
	err := unix.Mount(source, target, fstype, flags, data)
	if err != nil {
		if lines := log.Lines(100, "overlayfs", "squashfs", "SQUASHFS", "tmpfs", "loop"); len(lines) > 0 {
			return fmt.Errorf("%w (kernel: %s)", err, strings.Join(lines, "; "))
		}
	}
	return err
}

// checkImage refuses anything our reader does not take for a squashfs
// image, before a loop device is spent on it.
func checkImage(image string) error {
	fi, err := os.Stat(image)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image %s: no such file", image)
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", image, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("image %s: not a regular file", image)
	}
	r, err := squash.OpenFile(image)
	if err != nil {
		return fmt.Errorf("image %s: not a squashfs image (%w)", image, err)
	}
	return r.Close()
}

// checkTarget wants an existing directory, empty unless force: whatever
// is in it would be hidden by the mount, which looks like data loss.
func checkTarget(target string, force bool) error {
	fi, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("target %s: no such directory (create it first)", target)
	}
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("target %s: not a directory", target)
	}
	if force {
		return nil
	}
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	defer f.Close()
	// Enough to name the first few in order, not a whole tree's worth.
	names, err := f.Readdirnames(10000)
	if err != nil && len(names) == 0 {
		return nil // io.EOF: empty
	}
	sort.Strings(names)
	list := strings.Join(names[:min(5, len(names))], ", ")
	if len(names) > 5 {
		list += ", ..."
	}
	return fmt.Errorf("target %s is not empty (%s): the mount would hide its contents; move them away or use --force", target, list)
}

// ovlEscape escapes a path for overlayfs's options, where ',' separates
// options, ':' lower layers, and '\' escapes both (and itself): the state
// directory names carry systemd's \x escapes.
func ovlEscape(p string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(p)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0, nil
}

// copyDirMeta gives dst the owner, permission bits and times of src.
func copyDirMeta(src, dst string) error {
	var s unix.Stat_t
	if err := unix.Stat(src, &s); err != nil {
		return fmt.Errorf("stat image root %s: %w", src, err)
	}
	if err := os.Lchown(dst, int(s.Uid), int(s.Gid)); err != nil {
		return fmt.Errorf("upper root: %w", err)
	}
	// After chown, which clears set-id bits.
	if err := unix.Chmod(dst, s.Mode&0o7777); err != nil {
		return fmt.Errorf("upper root: chmod %s: %w", dst, err)
	}
	ts := []unix.Timespec{s.Atim, s.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("upper root: set times of %s: %w", dst, err)
	}
	return nil
}

// UmountOptions tune Umount.
type UmountOptions struct {
	// Lazy detaches busy mounts (MNT_DETACH) instead of refusing.
	Lazy bool
	// Discard drops the unpersisted changes of a tmpfs upper, which
	// Umount otherwise refuses to do.
	Discard  bool
	StateDir string
}

// ErrPending is matched by Umount's error when a tmpfs upper holds
// changes that no persist has written.
var ErrPending = errors.New("unpersisted changes")

type pendingErr string

func (e pendingErr) Error() string        { return string(e) }
func (e pendingErr) Is(target error) bool { return target == ErrPending }

// pendingInRAM describes the changes an unmount would lose: those of a
// tmpfs upper whose spec persists (persist=never means to drop them).
func pendingInRAM(st *State) string {
	if st.UpperKind != KindTmpfs || st.Spec.Persist == PersistNever {
		return ""
	}
	empty, err := isEmptyDir(st.UpperPath())
	if err != nil || empty {
		return ""
	}
	c, err := CountChanges(st.UpperPath(), st.lowerDirs()...)
	if err != nil {
		return "changes in RAM"
	}
	return fmt.Sprintf("%d changed, %d new, %d deleted entries, %d bytes in RAM", c.Changed, c.New, c.Deleted, c.Bytes)
}

// Umount takes down the mounts of target and forgets it. A busy target is
// refused, listing the processes that use it, unless opts.Lazy. The loop
// device detaches itself when the squashfs is finally released.
func Umount(target string, opts UmountOptions) error {
	stateDir := opts.StateDir
	stateDir = stateDirOr(stateDir)
	target = filepath.Clean(target)
	unlock, err := LockWith(stateDir, target, LockOptions{Op: "umount"})
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	defer unlock()
	st, err := Load(stateDir, target)
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	st.dir = stateDir
	if err := reconcile(st, func(string, ...any) {}); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	if !opts.Discard {
		if p := pendingInRAM(st); p != "" {
			return pendingErr(fmt.Sprintf("umount %s: the tmpfs upper holds changes no persist has written (%s); run `squashportage persist %s` first, or umount with --discard to drop them", target, p, target))
		}
	}
	if err := unmountLayers(st, opts.Lazy); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	if err := removeState(stateDir, target); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}

// unmountLayers unmounts the target, then what it was built of. Only the
// target can be busy with users; once it is gone, the private mounts below
// the state dir are detached whatever holds them.
func unmountLayers(st *State, lazy bool) error {
	target := st.TargetPath()
	m, mounted, err := mountAt(target)
	if err != nil {
		return err
	}
	want := "overlay"
	if st.UpperKind == KindNone {
		want = "squashfs"
	}
	if mounted && m.FSType != want {
		return fmt.Errorf("%s has a %s mounted over it, not squashportage's %s: unmount that first", target, m.FSType, want)
	}
	if mounted {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		err := unix.Unmount(target, flags)
		if errors.Is(err, unix.EBUSY) {
			return busyErr(fmt.Sprintf("%s is busy (use --lazy to detach it anyway); %s", target, describeHolders(target)))
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		// On kernels without MOVE_MOUNT_BENEATH, persist leaves the
		// stacks it replaced mounted beneath the new one, hidden.
		for range 1000 {
			m, mounted, err := mountAt(target)
			if err != nil || !mounted || m.FSType != want || m.Source != fsSource {
				break
			}
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s (a replaced stack): %w", target, err)
			}
		}
	}
	if st.UpperKind == KindNone {
		return nil
	}
	var errs []error
	if st.UpperKind == KindTmpfs {
		errs = append(errs, unmountPrivate(st.RW))
	}
	for _, l := range st.Layers {
		errs = append(errs, unmountPrivate(l))
	}
	errs = append(errs, unmountPrivate(st.Lower), unmountPrivate(st.RAM))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Mounts a killed persist made for a stack it never recorded.
	if ms, err := Mounts(); err == nil {
		base := filepath.Dir(st.Lower)
		for i := len(ms) - 1; i >= 0; i-- {
			if m := ms[i].MountPoint; m != base && within(m, base) {
				_ = unix.Unmount(m, unix.MNT_DETACH)
				_ = os.Remove(m)
			}
		}
	}
	_ = os.Remove(filepath.Dir(st.Lower)) // STATEDIR/ID, now empty
	return nil
}

// unmountPrivate detaches and removes one of our mount points under the
// state dir; a mount point that is not mounted any more is just removed.
func unmountPrivate(dir string) error {
	if dir == "" {
		return nil
	}
	if _, mounted, err := mountAt(dir); err != nil {
		return err
	} else if mounted {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("empty %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty %s: %w", dir, err)
		}
	}
	return nil
}
