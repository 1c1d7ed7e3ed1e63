package privileged

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is a squashfs image mounted by MountSquashfs.
type Mount struct {
	Image string
	Dir   string
	// Loop is the loop device path, e.g. /dev/loop3.
	Loop string

	once sync.Once
	err  error
}

// MountSquashfs mounts image read-only at dir (which must exist) through a
// self-clearing loop device and unmounts it when the test ends. opts are
// mount options: the flags ro, nodev, nosuid, noexec, noatime are always
// or optionally applied as flags; anything else goes to squashfs as data.
// A failed mount fails the test with the kernel's log lines.
func MountSquashfs(t testing.TB, image, dir string, opts ...string) *Mount {
	t.Helper()
	m, err := mountSquashfs(image, dir, opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return m
}

// TryMountSquashfs is MountSquashfs for tests that expect a mount to fail
// (corrupt images): it returns the error, with the kernel log, instead of
// failing the test.
func TryMountSquashfs(t testing.TB, image, dir string, opts ...string) (*Mount, error) {
	t.Helper()
	m, err := mountSquashfs(image, dir, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return m, nil
}

func mountSquashfs(image, dir string, opts []string) (*Mount, error) {
	flags := uintptr(unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID)
	var data []string
	for _, o := range opts {
		switch o {
		case "ro", "nodev", "nosuid", "":
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		default:
			data = append(data, o)
		}
	}
	img, err := os.Open(image)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", image, err)
	}
	defer img.Close()
	loop, loopPath, err := attachLoop(img, currentTag()+filepath.Base(image))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", image, err)
	}
	// The loop fd stays open until mount(2) returns: with autoclear, its
	// close would otherwise detach the device before the mount holds it.
	defer loop.Close()
	kmsg := openKmsg()
	if kmsg != nil {
		defer kmsg.Close()
	}
	if err := unix.Mount(loopPath, dir, "squashfs", flags, strings.Join(data, ",")); err != nil {
		return nil, fmt.Errorf("mount %s (%s) at %s: %w%s", image, loopPath, dir, err, kernelLog(kmsg))
	}
	return &Mount{Image: image, Dir: dir, Loop: loopPath}, nil
}

// Unmount unmounts and waits until the loop device has detached, so tests
// can rely on it being free. It is idempotent.
func (m *Mount) Unmount() error {
	m.once.Do(func() { m.err = m.unmount() })
	return m.err
}

func (m *Mount) unmount() error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Unmount(m.Dir, 0)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		// A file from a test may still be closing in another goroutine.
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, unix.EBUSY) {
		_ = unix.Unmount(m.Dir, unix.MNT_DETACH)
		return fmt.Errorf("unmount %s: still busy after 5s, detached lazily: %w", m.Dir, err)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", m.Dir, err)
	}
	deadline := time.Now().Add(leakWait)
	for {
		attached, err := loopAttachedWithTag(m.Loop, currentTag())
		if err != nil || !attached {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unmount %s: loop device %s still attached after %v", m.Dir, m.Loop, leakWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// attachLoop binds img to a free loop device, read-only and autoclear.
// Another process can take the same free device between
// LOOP_CTL_GET_FREE and LOOP_CONFIGURE, hence the retries on EBUSY.
func attachLoop(img *os.File, name string) (*os.File, string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open loop control: %w", err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
	var lastErr error
	for attempt := 0; attempt < 100; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, "", fmt.Errorf("find free loop device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		loop, err := openLoop(path, n)
		if err != nil {
			return nil, "", err
		}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if err == nil {
			return loop, path, nil
		}
		loop.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, "", fmt.Errorf("configure %s: %w", path, err)
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	return nil, "", fmt.Errorf("no free loop device after 100 tries: %w", lastErr)
}

// openLoop opens a loop device, creating its node if devtmpfs has not
// (yet) done so, as in some containers.
func openLoop(path string, n int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// loopAttachedWithTag reports whether the loop device is bound to a file
// and carries tag in its name.
func loopAttachedWithTag(path, tag string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("status of %s: %w", path, err)
	}
	name := string(bytes.TrimRight(info.File_name[:], "\x00"))
	return strings.HasPrefix(name, tag), nil
}

// taggedLoops lists the attached loop devices carrying tag. Only devices
// with a backing_file in sysfs are opened: opening an unbound one is
// harmless, but needless.
func taggedLoops(tag string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, bf := range files {
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(bf)))
		if ok, err := loopAttachedWithTag(dev, tag); err == nil && ok {
			out = append(out, dev)
		}
	}
	return out
}

func waitLoopsDetached(tag string, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		leaks := taggedLoops(tag)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func detach(dev string) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
}

// openKmsg opens /dev/kmsg positioned at its end, so that reading it after
// a failed mount yields only what the kernel logged since.
func openKmsg() *os.File {
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_END); err != nil {
		f.Close()
		return nil
	}
	return f
}

// kernelLog returns the kernel messages since kmsg was opened, or the
// dmesg tail if /dev/kmsg is not readable, formatted to append to an error.
func kernelLog(kmsg *os.File) string {
	var lines []string
	if kmsg != nil {
		buf := make([]byte, 8192)
		for len(lines) < 50 {
			n, err := unix.Read(int(kmsg.Fd()), buf)
			if errors.Is(err, unix.EPIPE) {
				continue // records were overwritten; keep reading
			}
			if err != nil || n <= 0 {
				break
			}
			rec := string(buf[:n])
			// Records are "prio,seq,usec,flags;message\n continuation".
			if _, msg, ok := strings.Cut(rec, ";"); ok {
				rec = msg
			}
			lines = append(lines, strings.TrimRight(strings.SplitN(rec, "\n", 2)[0], "\n"))
		}
	} else if out, err := exec.Command("dmesg").Output(); err == nil {
		all := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		lines = all[max(0, len(all)-20):]
	}
	if len(lines) == 0 {
		return " (kernel log: nothing)"
	}
	return "\nkernel log:\n\t" + strings.Join(lines, "\n\t")
}
