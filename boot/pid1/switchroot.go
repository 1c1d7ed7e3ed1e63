package pid1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/boot/cmdline"
	"github.com/squashportage/squashportage/boot/klog"
)

// switchRoot moves the API filesystems into NewRoot, frees the
// initramfs, makes NewRoot the root and execs the real init. It returns
// only if no init could be executed.
//
// It differs from u-root's mount.SwitchRoot on purpose: that one deletes
// the old root without checking that it is an initramfs, and execs init
// with an empty environment and no arguments; the real init must get the
// kernel's argv and environment (e.g. "single", or variables the kernel
// passed on).
func switchRoot(log *klog.Logger, cfg cmdline.Config, h handover, restoreKmsg func()) error {
	// Under a shared parent MS_MOVE fails with EINVAL; the initramfs
	// root is private unless something changed it, so errors are moot.
	_ = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	// Put the kmsg limit back while /proc is still where restore looks.
	restoreKmsg()
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(NewRoot, m)
		if st, err := os.Stat(target); err != nil || !st.IsDir() {
			// A read-only root without the directory cannot get it;
			// init must mount its own. Uppers under /run survive
			// (the mount stays alive), but persist will not find them.
			log.Errorf("%s has no %s directory: not moving %s there", NewRoot, m, m)
			continue
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			log.Errorf("moving %s to %s: %v", m, target, err)
		}
	}
	freed, err := freeInitramfs()
	if err != nil {
		log.Errorf("freeing the initramfs: %v", err)
	} else {
		log.Printf("freed the initramfs (%d entries deleted)", freed)
	}
	if err := os.Chdir(NewRoot); err != nil {
		return fmt.Errorf("entering %s: %w", NewRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", NewRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the new root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("chdir / in the new root: %w", err)
	}
	return execInit(log, cfg, h)
}

// freeInitramfs deletes the initramfs's files so their memory returns to
// the system, but only after checking that / really is the kernel's
// ramfs or tmpfs rootfs: on any other filesystem this would wipe a disk.
// It does not cross into other filesystems (NewRoot and the moved
// mounts).
func freeInitramfs() (int, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return 0, fmt.Errorf("statfs /: %w", err)
	}
	if sfs.Type != unix.RAMFS_MAGIC && sfs.Type != unix.TMPFS_MAGIC {
		return 0, fmt.Errorf("/ is not an initramfs (filesystem type %#x): deleting nothing", sfs.Type)
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return 0, fmt.Errorf("stat /: %w", err)
	}
	return removeTree("/", st.Dev)
}

// removeTree deletes what is inside dir on device dev, depth first.
func removeTree(dir string, dev uint64) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Dev != dev {
			continue // a mount point: not ours to empty
		}
		if e.IsDir() {
			m, err := removeTree(p, dev)
			n += m
			if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := os.Remove(p); err != nil {
			// Mount points on the same device (NewRoot itself, the
			// moved /proc and friends) are busy and stay.
			if !errors.Is(err, unix.EBUSY) {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// initCandidates is the kernel's own fallback list when init= is absent.
func initCandidates(cfg cmdline.Config) []string {
	if cfg.Init != cmdline.DefaultInit {
		return []string{cfg.Init}
	}
	return []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}
}

// execInit replaces this process with the real init, passing on the
// arguments and environment the kernel gave PID 1.
func execInit(log *klog.Logger, cfg cmdline.Config, h handover) error {
	var errs []error
	for _, p := range initCandidates(cfg) {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, err)
			continue
		}
		argv := append([]string{p}, os.Args[1:]...)
		inMain := time.Since(h.start)
		log.Printf("%s", h.line(p, inMain))
		log.Printf("starting %s after %s in the initramfs (%s since the kernel started)",
			strings.Join(argv, " "), inMain.Round(time.Millisecond), uptime())
		err := unix.Exec(p, argv, os.Environ())
		errs = append(errs, fmt.Errorf("exec %s: %w", p, err))
	}
	return fmt.Errorf("no init to start: %w", errors.Join(errs...))
}

// uptime reads the time since boot, for the log.
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "?"
	}
	return time.Duration(ts.Nano()).Round(time.Millisecond).String()
}
