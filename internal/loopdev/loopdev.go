// Package loopdev attaches files to loop devices and asks what a loop
// device serves: the one home of the loop ioctls for the mounts, persist
// and the tests. (Not u-root's pkg/mount/loop: it uses LOOP_SET_FD only,
// with no read-only flag and no autoclear.)
package loopdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// loopMajor is the block major of loop devices.
const loopMajor = 7

// loopAttempts bounds the retries when another process grabs the device
// LOOP_CTL_GET_FREE gave us before we configure it.
const loopAttempts = 50

// Attach binds image to a free loop device with autoclear, read-only
// if readOnly, and returns the device path and an open fd of it. The
// caller must keep f open until mount(2) has returned and close it then:
// autoclear detaches the device on the last close, which is the mount's
// release once the mount holds it, but is immediate before.
func Attach(image string, readOnly bool) (dev string, f *os.File, err error) {
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	img, err := os.OpenFile(image, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("attach %s: %w", image, err)
	}
	// The loop device keeps its own reference to the file.
	defer img.Close()
	return AttachFile(img, image, readOnly)
}

// AttachFile is Attach of an open file; name is what the device reports
// as its file name (lo_file_name, 63 bytes: losetup -l shows it).
func AttachFile(img *os.File, name string, readOnly bool) (dev string, f *os.File, err error) {
	image := name
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("attach %s: %w", image, err)
	}
	defer ctl.Close()

	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
	if readOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(info.File_name[:len(info.File_name)-1], name)

	var lastErr error
	for attempt := range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("attach %s: find a free loop device: %w", image, err)
		}
		dev = fmt.Sprintf("/dev/loop%d", n)
		f, err := openLoopDevice(dev, n, mode)
		if err != nil {
			return "", nil, fmt.Errorf("attach %s: %w", image, err)
		}
		err = configureLoop(f, img, &info)
		if err == nil {
			return dev, f, nil
		}
		f.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", nil, fmt.Errorf("attach %s to %s: %w", image, dev, err)
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	return "", nil, fmt.Errorf("attach %s: no free loop device after %d tries: %w", image, loopAttempts, lastErr)
}

// configureLoop binds img in one step with LOOP_CONFIGURE (Linux 5.8+),
// or with LOOP_SET_FD + LOOP_SET_STATUS64 on kernels without it. The old
// way leaves a short window in which the device is bound but has no
// autoclear; only a crash right then would leak it.
func configureLoop(f, img *os.File, info *unix.LoopInfo64) error {
	cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Info: *info}
	err := unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
		return err
	}
	// READ_ONLY follows from img's open mode under LOOP_SET_FD;
	// SET_STATUS64 can only add AUTOCLEAR and set the name.
	old := *info
	old.Flags &^= unix.LO_FLAGS_READ_ONLY
	if err := unix.IoctlLoopSetStatus64(int(f.Fd()), &old); err != nil {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("set loop status: %w", err)
	}
	return nil
}

// openLoopDevice opens /dev/loopN, creating the node when devtmpfs has not
// (a fresh initramfs, some containers): loop-control creates the device in
// the kernel whether or not a node exists.
func openLoopDevice(dev string, n, mode int) (*os.File, error) {
	f, err := os.OpenFile(dev, mode|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		err = unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(loopMajor, uint32(n))))
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", dev, err)
		}
		f, err = os.OpenFile(dev, mode|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	return f, nil
}

// BackingFile returns the file loop device dev serves ("" if none), from
// sysfs, which needs no open of the device; deleted tells that the file
// has been unlinked (or replaced by a rename) since it was attached.
func BackingFile(dev string) (path string, deleted bool) {
	b, err := os.ReadFile("/sys/block/" + filepath.Base(dev) + "/loop/backing_file")
	if err != nil {
		return "", false
	}
	path = strings.TrimRight(string(b), "\n\x00")
	if p, ok := strings.CutSuffix(path, " (deleted)"); ok {
		return p, true
	}
	return path, false
}

// Serving returns the loop devices that serve the file at path (the same
// file, found by device and inode from each device's sysfs backing_file),
// e.g. an image mounted now; nil when none does or path cannot be
// stat'ed. A device whose file was since deleted or renamed over, or
// whose backing path is not visible here, is not found.
func Serving(path string) []string {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil
	}
	var devs []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		dev := "/dev/" + e.Name()
		backing, deleted := BackingFile(dev)
		if backing == "" || deleted {
			continue
		}
		if bi, err := os.Stat(backing); err == nil && os.SameFile(fi, bi) {
			devs = append(devs, dev)
		}
	}
	return devs
}

// Name returns the file name the device was attached with
// (lo_file_name), "" when it serves nothing.
func Name(dev string) (string, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("status of %s: %w", dev, err)
	}
	return string(bytes.TrimRight(info.File_name[:], "\x00")), nil
}

// Detach unbinds dev from its file (LOOP_CLR_FD); with autoclear it goes
// once its last user lets go.
func Detach(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
}

// OpenBacking opens the very file loop device dev serves (same device and
// inode, no offset or size limit): the same bytes as the device, but a
// regular file, which lets a writer copy unchanged blocks inside the
// kernel (copy_file_range) instead of through memory. name is its path
// (BackingFile); nil when it cannot be had (a deleted or replaced file
// fails the inode check).
func OpenBacking(dev *os.File, name string) *os.File {
	info, err := unix.IoctlLoopGetStatus64(int(dev.Fd()))
	if err != nil || info.Offset != 0 || info.Sizelimit != 0 {
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil || fst.Ino != info.Inode || fst.Dev != info.Device || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil
	}
	return f
}
