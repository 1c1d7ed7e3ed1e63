package privileged

import (
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

	"github.com/squashportage/squashportage/internal/kmsg"
	"github.com/squashportage/squashportage/internal/loopdev"
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
	loopPath, loop, err := loopdev.AttachFile(img, currentTag()+filepath.Base(image), true)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", image, err)
	}
	// The loop fd stays open until mount(2) returns: with autoclear, its
	// close would otherwise detach the device before the mount holds it.
	defer loop.Close()
	klog := kmsg.Open()
	defer klog.Close()
	if err := unix.Mount(loopPath, dir, "squashfs", flags, strings.Join(data, ",")); err != nil {
		return nil, fmt.Errorf("mount %s (%s) at %s: %w%s", image, loopPath, dir, err, kernelLog(klog))
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

// loopAttachedWithTag reports whether the loop device is bound to a file
// and carries tag in its name.
func loopAttachedWithTag(path, tag string) (bool, error) {
	name, err := loopdev.Name(path)
	return name != "" && strings.HasPrefix(name, tag), err
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

func detach(dev string) { _ = loopdev.Detach(dev) }

// kernelLog returns the kernel messages since klog was opened, or the
// dmesg tail if /dev/kmsg is not readable, formatted to append to an error.
func kernelLog(klog *kmsg.Tail) string {
	var lines []string
	if klog != nil {
		lines = klog.Lines(50)
	} else if out, err := exec.Command("dmesg").Output(); err == nil {
		all := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		lines = all[max(0, len(all)-20):]
	}
	if len(lines) == 0 {
		return " (kernel log: nothing)"
	}
	return "\nkernel log:\n\t" + strings.Join(lines, "\n\t")
}
