package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A persist must not lose a write made while it runs, nor let one land
// beneath the mount point. So it freezes the overlay (its mount made
// read-only: writers get EROFS) while it folds the upper, and then puts a
// new overlay on the new image in its place without a moment when the
// target shows the bare directory: mounted beneath the old one and the old
// one detached (MOVE_MOUNT_BENEATH, Linux 6.5), or on older kernels mounted
// over the old one, which stays hidden until the target is unmounted.

// moveMountBeneath is MOVE_MOUNT_BENEATH of linux/mount.h (6.5).
const moveMountBeneath = 0x200

// DefaultWriterWait is how long a persist waits for files open for
// writing in the target to be closed before it gives up.
const DefaultWriterWait = 30 * time.Second

// mountFlags are the per-mount flags of st's target mounts.
func mountFlags(st *State) uintptr {
	flags := uintptr(unix.MS_NODEV | unix.MS_NOSUID)
	if !st.Spec.Exec {
		flags |= unix.MS_NOEXEC
	}
	return flags
}

// freeze makes the overlay at st's target read-only, so that nothing
// changes its upper while persist reads it. The kernel refuses (EBUSY)
// while a file is open for writing; freeze retries until wait has passed,
// then names the processes holding files in the target.
func freeze(st *State, wait time.Duration) error {
	target := st.TargetPath()
	m, mounted, err := mountAt(target)
	if err != nil {
		return err
	}
	if !mounted || m.FSType != "overlay" || m.Source != fsSource {
		what := "nothing"
		if mounted {
			what = "a " + m.FSType + " (" + m.Source + ")"
		}
		return fmt.Errorf("%s shows %s, not squashportage's overlay (unmounted or mounted over behind squashportage's back?); mount it again with 'squashportage mount'", target, what)
	}
	flags := mountFlags(st) | unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY
	deadline := time.Now().Add(wait)
	pause := time.Millisecond
	for {
		err := unix.Mount("", target, "", flags, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
		if !time.Now().Before(deadline) {
			return busyErr(fmt.Sprintf("files in %s stayed open for writing for %v; close them (or stop the program) and persist again; %s",
				target, wait, describeHolders(target)))
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// thaw makes the target writable again after a persist that did not swap.
func thaw(st *State) error {
	err := unix.Mount("", st.TargetPath(), "", mountFlags(st)|unix.MS_REMOUNT|unix.MS_BIND, "")
	if err != nil {
		return fmt.Errorf("make %s writable again: %w", st.TargetPath(), err)
	}
	return nil
}

// genName names the private mount points of a generation of st's mounts:
// a persist mounts the new stack before the old one is gone.
func genName(name string, gen int) string {
	if gen == 0 {
		return name
	}
	return name + "." + strconv.Itoa(gen)
}

// swapTo replaces the (frozen) overlay at st's target by one on image
// with an empty upper, and updates st. On failure the old overlay is left
// as it was (still frozen: the caller thaws it). stacked reports that the
// kernel could not mount beneath, so the old overlay stays mounted under
// the new one, its upper emptied, until the target is unmounted.
func swapTo(st *State, image string, beneath bool, log func(string, ...any)) (stacked bool, err error) {
	next := *st
	next.Image = image
	next.Gen = st.Gen + 1
	base := filepath.Join(st.StateDir(), st.ID)
	staged := filepath.Join(base, "next")
	var u undo
	fail := func(err error) (bool, error) {
		u.run()
		return false, err
	}
	// Left mounted by a persist that died before it recorded them.
	junk, _ := filepath.Glob(filepath.Join(base, "layer*."+strconv.Itoa(next.Gen)))
	for _, d := range append(junk, staged, filepath.Join(base, genName("ram", next.Gen)), filepath.Join(base, genName("lower", next.Gen)), filepath.Join(base, genName("rw", next.Gen))) {
		_ = unmountAll(d)
	}
	if err := makeDirs(&u, base, staged); err != nil {
		return fail(err)
	}
	if st.UpperKind == KindDir {
		if err := retireDiskUpper(st, image, &u); err != nil {
			return fail(err)
		}
	}
	if err := mountStack(&next, staged, log, &u); err != nil {
		return fail(err)
	}
	// A persist killed from here on left a record that says which stack
	// may be live; reconcile sorts it out under the next lock.
	pending := *st
	pending.Next = &next
	if err := pending.Save(st.StateDir()); err != nil {
		return fail(err)
	}
	u.push(func() { _ = st.Save(st.StateDir()) })
	if stacked, err = moveInto(staged, st.TargetPath(), beneath); err != nil {
		return fail(err)
	}
	// The target shows the new stack: nothing below is undone any more.
	_ = unix.Unmount(staged, unix.MNT_DETACH)
	_ = os.Remove(staged)
	if err := retire(st, stacked); err != nil {
		log("persist %s: clean up the old stack: %v", st.Target, err)
	}
	next.LastPersist, next.LastPersistResult = st.LastPersist, st.LastPersistResult
	*st = next
	return stacked, nil
}

// retire lets go of the stack st that a new one has replaced at the
// target; the old overlay (detached, or hidden beneath) keeps what it
// still uses.
func retire(st *State, stacked bool) error {
	var errs []error
	switch st.UpperKind {
	case KindTmpfs:
		if stacked {
			// Hidden under the new stack, the old upper is only RAM.
			errs = append(errs, emptyDir(st.UpperPath()))
		}
		errs = append(errs, unmountPrivate(st.RW))
	case KindDir:
		for _, d := range []string{st.UpperPath() + prevSuffix, st.WorkPath() + prevSuffix} {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	for _, l := range st.Layers {
		errs = append(errs, unmountPrivate(l))
	}
	errs = append(errs, unmountPrivate(st.Lower), unmountPrivate(st.RAM))
	return errors.Join(errs...)
}

// reconcile, under the target's lock, repairs what a persist killed
// between its freeze and its last record left: a read-only target, or a
// new stack mounted or half mounted. It makes st describe the live stack
// and saves it.
func reconcile(st *State, log func(string, ...any)) error {
	target := st.TargetPath()
	ms, err := Mounts()
	if err != nil {
		return err
	}
	var tops []MountEntry // ours at target, bottom first
	for _, m := range ms {
		if m.MountPoint == target && m.FSType == "overlay" && m.Source == fsSource {
			tops = append(tops, m)
		}
	}
	upperOf := func(m MountEntry) string {
		for o := range strings.SplitSeq(m.SuperOpts, ",") {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				return v
			}
		}
		return ""
	}
	if next := st.Next; next != nil {
		next.dir, next.Root = st.dir, st.Root
		at := func(s *State) int {
			for i, m := range tops {
				if upperOf(m) == s.UpperPath() {
					return i
				}
			}
			return -1
		}
		// A disk upper keeps its path from stack to stack: tell the two
		// apart by which one is read-only (the old one, frozen).
		iOld, iNext := at(st), at(next)
		if st.UpperKind == KindDir && iNext >= 0 {
			iOld = -1
			for i, m := range tops {
				if hasOption(m.Options, "ro") {
					iOld = i
				}
			}
			if iOld == iNext {
				iNext = -1
			}
		}
		base := filepath.Join(st.StateDir(), st.ID)
		if iNext < 0 {
			// Killed before the move: the staged stack is junk.
			log("%s: a persist died before it swapped; dropping its staged stack", st.Target)
			_ = unmountAll(filepath.Join(base, "next"))
			if next.UpperKind == KindTmpfs {
				_ = unmountPrivate(next.RW)
			}
			for _, l := range next.Layers {
				_ = unmountPrivate(l)
			}
			_ = unmountPrivate(next.Lower)
			_ = unmountPrivate(next.RAM)
			if st.UpperKind == KindDir {
				for _, d := range []string{st.UpperPath(), st.WorkPath()} {
					if _, err := os.Stat(d + prevSuffix); err == nil {
						_ = os.RemoveAll(d)
						_ = os.Rename(d+prevSuffix, d)
					}
				}
			}
			st.Next = nil
		} else {
			log("%s: a persist died while it swapped; finishing the swap", st.Target)
			if iOld > iNext {
				// The old stack is still on top: detach it.
				if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
					return fmt.Errorf("detach the replaced overlay at %s: %w", target, err)
				}
			}
			_ = unmountAll(filepath.Join(base, "next"))
			if err := retire(st, iOld >= 0 && iOld < iNext); err != nil {
				log("%s: clean up the old stack: %v", st.Target, err)
			}
			next.LastPersist, next.LastPersistResult = st.LastPersist, st.LastPersistResult
			*st = *next
		}
		if err := st.Save(st.StateDir()); err != nil {
			return err
		}
	}
	// Frozen by a persist that died before it could thaw or swap.
	if m, ok, err := mountAt(target); err == nil && ok && m.FSType == "overlay" && m.Source == fsSource && hasOption(m.Options, "ro") {
		log("%s: read-only since a persist died; making it writable", st.Target)
		return thaw(st)
	}
	return nil
}

func hasOption(opts, o string) bool {
	for x := range strings.SplitSeq(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// unmountAll detaches every mount stacked at dir.
func unmountAll(dir string) error {
	for range 100 {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				return nil // not a mount point (any more)
			}
			return err
		}
	}
	return nil
}

// prevSuffix names a disk upper's directories while a persist retires them.
const prevSuffix = ".prev"

// retireDiskUpper makes room for a fresh disk upper: the upper's base
// becomes the new image first (the upper over the image it was folded
// into shows the same view), then upper and work are renamed aside. A
// crash at any point leaves DIR mountable with the right view.
func retireDiskUpper(st *State, image string, u *undo) error {
	dir := st.Path(st.Spec.Upper)
	basePath := filepath.Join(dir, baseFile)
	oldBase, err := os.ReadFile(basePath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upper %s: %w", dir, err)
	}
	id, err := imageID(st.Path(image))
	if err != nil {
		return err
	}
	if err := writeAtomic(basePath, []byte(id+"\n")); err != nil {
		return fmt.Errorf("upper %s: record base image: %w", dir, err)
	}
	u.push(func() {
		if oldBase != nil {
			_ = writeAtomic(basePath, oldBase)
		}
	})
	for _, d := range []string{st.UpperPath(), st.WorkPath()} {
		_ = os.RemoveAll(d + prevSuffix) // left by a crash after the swap
		if err := os.Rename(d, d+prevSuffix); err != nil {
			return fmt.Errorf("upper %s: %w", dir, err)
		}
		u.push(func() {
			_ = os.RemoveAll(d) // the fresh one, if made
			_ = os.Rename(d+prevSuffix, d)
		})
	}
	return syncDir(dir)
}

// moveInto puts a copy of the mount at staged in place of the top mount
// at target. Beneath it and the old one detached where the kernel can
// (processes inside the old one keep it, read-only, until they leave);
// else on top of it.
func moveInto(staged, target string, beneath bool) (stacked bool, err error) {
	// A detached copy: moving it is allowed even where the state dir's
	// mount is shared, which forbids moving the original.
	fd, err := unix.OpenTree(unix.AT_FDCWD, staged, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return false, fmt.Errorf("clone the new overlay at %s: %w", staged, err)
	}
	defer unix.Close(fd)
	if beneath {
		err = unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH|moveMountBeneath)
		if err == nil {
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				return false, fmt.Errorf("detach the old overlay at %s: %w", target, err)
			}
			return false, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return false, fmt.Errorf("mount the new overlay beneath %s: %w", target, err)
		}
		// EINVAL: a kernel before 6.5.
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return false, fmt.Errorf("mount the new overlay at %s: %w", target, err)
	}
	return true, nil
}
