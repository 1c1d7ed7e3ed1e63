package pid1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/boot/cmdline"
	"github.com/squashportage/squashportage/boot/klog"
	"github.com/squashportage/squashportage/boot/kmod"
	"github.com/squashportage/squashportage/boot/rootdev"
)

// earlyMounts gives PID 1 the kernel's interfaces. devtmpfs is not
// mounted by the kernel in an initramfs, and /run is a tmpfs of its own
// so it can be moved, uppers and all, into the real root. (Not u-root's
// libinit: it also mounts cgroup-v1 hierarchies and swallows errors.)
func earlyMounts(log *klog.Logger) error {
	mounts := []struct {
		fstype, target, data string
		flags                uintptr
	}{
		{"proc", "/proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devtmpfs", "/dev", "mode=0755", unix.MS_NOSUID},
		{"tmpfs", "/run", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.target, err)
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data)
		if errors.Is(err, unix.EBUSY) {
			continue // mounted by an earlier attempt
		}
		if err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// specModules are the modules only the specs need: they load in the
// background while the root device's drivers load and the root is found
// and mounted.
var specModules = map[string]bool{"squashfs": true, "loop": true, "overlay": true}

// loadModules loads what the initramfs builder listed, and returns the
// loader (nil without modules) so later steps can load the root
// filesystem's driver, and a function that waits for the specs' modules.
func loadModules(log *klog.Logger, cfg cmdline.Config) (*kmod.Loader, func()) {
	noWait := func() {}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		log.Errorf("uname: %v", err)
		return nil, noWait
	}
	release := unix.ByteSliceToString(uts.Release[:])
	dir := filepath.Join("/lib/modules", release)
	l, err := kmod.NewLoader(dir, log.Printf)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Printf("no modules for kernel %s in the initramfs: assuming squashfs, loop, overlay and the root device's drivers are built in", release)
			if others, _ := filepath.Glob("/lib/modules/*"); len(others) > 0 {
				log.Errorf("the initramfs has modules for %v only: rebuild it for %s", others, release)
			}
		} else {
			log.Errorf("modules: %v", err)
		}
		return nil, noWait
	}
	names, err := readLines(filepath.Join(dir, kmod.LoadList))
	if err != nil {
		log.Errorf("modules: %v", err)
	}
	var now, later []string
	for _, n := range names {
		if specModules[n] {
			later = append(later, n)
		} else {
			now = append(now, n)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				log.Errorf("loading modules: internal error: %v", r)
			}
		}()
		t := time.Now()
		if err := l.Load(later...); err != nil {
			log.Errorf("loading modules: %v", err)
		}
		log.Printf("modules for the specs (%s) loaded in %s", strings.Join(later, " "), time.Since(t).Round(time.Millisecond))
	}()
	t := time.Now()
	if err := l.Load(now...); err != nil {
		log.Errorf("loading modules: %v", err)
	}
	log.Printf("modules for the root device loaded in %s", time.Since(t).Round(time.Millisecond))
	for _, fs := range strings.Split(cfg.RootFSType, ",") {
		loadIfPresent(log, l, fs)
	}
	return l, func() { <-done }
}

// loadIfPresent loads a filesystem driver by name when the initramfs has
// it; a name it lacks is built in or simply not needed.
func loadIfPresent(log *klog.Logger, l *kmod.Loader, name string) {
	if l == nil || name == "" || !l.Dep.Has(name) {
		return
	}
	if err := l.Load(name); err != nil {
		log.Errorf("loading module %s: %v", name, err)
	}
}

func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading load list: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading load list: %w", err)
	}
	return lines, nil
}

// waitRoot waits for the root device as rootwait/rootdelay and
// squashportage.timeout say.
func waitRoot(log *klog.Logger, cfg cmdline.Config) (rootdev.Device, error) {
	spec, err := rootdev.ParseSpec(cfg.Root)
	if err != nil {
		return rootdev.Device{}, err
	}
	if cfg.RootDelay > 0 {
		log.Printf("rootdelay: waiting %s", cfg.RootDelay)
		time.Sleep(cfg.RootDelay)
	}
	limit := "no time limit"
	if cfg.Timeout > 0 {
		limit = "up to " + cfg.Timeout.String()
	}
	log.Printf("waiting for root device %s (%s)", spec, limit)
	t := time.Now()
	f := rootdev.SystemFinder()
	dev, err := f.Wait(context.Background(), spec, cfg.Timeout, func(waited time.Duration) {
		log.Printf("still waiting for %s after %s", spec, waited.Round(time.Second))
	})
	if err != nil {
		return rootdev.Device{}, fmt.Errorf("root device %s not found: %w\n%s", spec, err, describeDevices(f))
	}
	log.Printf("root device %s is %s (%s) after %s", spec, dev.Path, fsDesc(dev.FS), time.Since(t).Round(time.Millisecond))
	return dev, nil
}

func fsDesc(fs rootdev.FS) string {
	if fs.Type == "" {
		return "unknown filesystem"
	}
	return fmt.Sprintf("%s UUID=%s LABEL=%q", fs.Type, fs.UUID, fs.Label)
}

// describeDevices lists what is there, so a typo in root= can be spotted
// on the console.
func describeDevices(f rootdev.Finder) string {
	devs, err := f.Scan()
	if err != nil {
		return "block devices: " + err.Error()
	}
	var b strings.Builder
	b.WriteString("block devices present:")
	n := 0
	for _, d := range devs {
		if d.Sectors == 0 {
			continue // unbound loop devices, empty drives
		}
		n++
		fmt.Fprintf(&b, "\n  %s: %s", d.Path, fsDesc(d.FS))
		if d.Part.UUID != "" {
			fmt.Fprintf(&b, " PARTUUID=%s", d.Part.UUID)
		}
		if d.Part.Label != "" {
			fmt.Fprintf(&b, " PARTLABEL=%q", d.Part.Label)
		}
	}
	if n == 0 {
		return "no block devices at all: is the disk driver missing from the initramfs (make initramfs MODULES=...)?"
	}
	return b.String()
}

// mountRoot mounts the root device on NewRoot, trying rootfstype's types,
// else the probed type, else every block filesystem the kernel knows, as
// the kernel itself would.
func mountRoot(log *klog.Logger, cfg cmdline.Config, dev rootdev.Device, l *kmod.Loader) error {
	if err := os.MkdirAll(NewRoot, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", NewRoot, err)
	}
	var types []string
	switch {
	case cfg.RootFSType != "":
		types = strings.Split(cfg.RootFSType, ",")
	case dev.FS.Type != "":
		loadIfPresent(log, l, dev.FS.Type)
		types = []string{dev.FS.Type}
		// ext2/ext3 filesystems are served by ext4 where the kernel
		// lacks separate drivers.
		if strings.HasPrefix(dev.FS.Type, "ext") && dev.FS.Type != "ext4" {
			types = append(types, "ext4")
		}
	default:
		types = blockFilesystems()
	}
	var flags uintptr
	mode := "read-write"
	if cfg.ReadOnly {
		flags |= unix.MS_RDONLY
		mode = "read-only"
	}
	var errs []error
	for _, t := range types {
		err := unix.Mount(dev.Path, NewRoot, t, flags, cfg.RootFlags)
		if err == nil {
			log.Printf("mounted %s (%s) on %s %s", dev.Path, t, NewRoot, mode)
			return nil
		}
		errs = append(errs, fmt.Errorf("as %s: %w", t, err))
	}
	return fmt.Errorf("mounting %s: %w", dev.Path, errors.Join(errs...))
}

// blockFilesystems lists the kernel's filesystems that need a device.
func blockFilesystems() []string {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return nil
	}
	var types []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 {
			types = append(types, f[0])
		}
	}
	return types
}
