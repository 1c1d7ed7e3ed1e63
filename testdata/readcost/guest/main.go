// Command guest is /init of the initramfs that testdata/readcost boots:
// it loads the modules /readcost.list names, mounts the squashfs image
// that is the guest's /dev/vda, copied into RAM, reads it three ways with the page cache
// dropped before each, prints a READCOST line for each and powers off.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/vmtest"
)

func main() {
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("proc", "/proc", "proc", 0, "")
	_ = unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	if err := run(); err != nil {
		fmt.Printf("READCOST error: %v\n", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	list, err := os.ReadFile("/readcost.list")
	if err != nil {
		return err
	}
	for _, m := range strings.Fields(string(list)) {
		if err := load(m); err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", m, err)
		}
	}
	// /dev/vda appears once virtio_blk has probed the disk.
	for i := 0; ; i++ {
		if _, err := os.Stat("/dev/vda"); err == nil {
			break
		}
		if i == 500 {
			return fmt.Errorf("no /dev/vda")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.MkdirAll("/mnt", 0o755); err != nil {
		return err
	}
	// The image is read from RAM, through a loop device as squashportage
	// mounts it: a read of the disk would leave the processor idle, and
	// the instruction clock jumps over idle time by as much as the next
	// timer is away, which would make the figures the timers' and not
	// the reads'.
	if err := vmtest.CopyFile("/dev/vda", "/image.sqfs", 0o644); err != nil {
		return fmt.Errorf("copy /dev/vda: %w", err)
	}
	dev, f, err := loopdev.Attach("/image.sqfs", true)
	if err != nil {
		return err
	}
	defer f.Close()
	blockStat = "/sys/block/" + filepath.Base(dev) + "/stat"
	if err := unix.Mount(dev, "/mnt", "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	buf := make([]byte, 128<<10)
	tests := []struct {
		name string
		fn   func() error
	}{
		{"tree", func() error { return walk("/mnt", true, buf) }},
		{"md5", func() error {
			if _, err := os.Stat("/mnt/metadata/md5-cache"); err != nil {
				return nil
			}
			return walk("/mnt/metadata/md5-cache", true, buf)
		}},
		{"walk", func() error { return walk("/mnt", false, buf) }},
	}
	for _, t := range tests {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			return err
		}
		r0 := reads()
		start := time.Now()
		if err := t.fn(); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		d := time.Since(start)
		fmt.Printf("READCOST %s %d %d\n", t.name, d.Microseconds(), reads()-r0)
	}
	return nil
}

// walk visits every entry under root in directory order, as tar and
// find do: an lstat of each, and with data, every regular file read to
// its end and every symlink read.
func walk(root string, data bool, buf []byte) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if !data {
			return nil
		}
		switch {
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			for err == nil {
				_, err = f.Read(buf)
			}
			f.Close()
			if err != io.EOF {
				return err
			}
			return nil
		case d.Type()&os.ModeSymlink != 0:
			_, err := os.Readlink(p)
			return err
		}
		return nil
	})
}

// blockStat is the loop device's stat file in sysfs.
var blockStat string

// reads is the completed reads of the loop device (the first field of
// its stat).
func reads() int64 {
	b, err := os.ReadFile(blockStat)
	if err != nil {
		return -1
	}
	var n int64
	fmt.Sscan(string(bytes.TrimSpace(b)), &n)
	return n
}

func load(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}
