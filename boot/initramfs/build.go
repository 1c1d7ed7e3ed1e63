package initramfs

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/squashportage/squashportage/boot/kmod"
)

// BaseModules are always put in an initramfs built with a module tree:
// what every spec needs.
func BaseModules() []string { return []string{"squashfs", "loop", "overlay"} }

// LoadList is the file, next to modules.dep, that names the modules PID 1
// loads (kmod.LoadList).
const LoadList = kmod.LoadList

// busyboxApplets are linked in /bin for the rescue shell: enough to look
// at devices, load modules, mount the root by hand and reboot. The
// busybox binary runs any of its other applets as "busybox NAME".
func busyboxApplets() []string {
	return []string{
		"cat", "chroot", "cp", "dmesg", "echo", "grep", "insmod", "ln", "ls",
		"lsmod", "mkdir", "mknod", "modprobe", "mount", "mv", "poweroff",
		"ps", "reboot", "rm", "sh", "sleep", "switch_root", "umount", "vi",
	}
}

// Options say what goes into the initramfs.
type Options struct {
	// Init is the squashportage binary, installed as /init.
	Init string
	// URoot, if set, is a cpio archive written by u-root's builder
	// (BuildURoot): its commands, /bbin/bb and its links, and /bin/sh
	// (gosh) are the rescue toolset. Our own entries override its.
	URoot string
	// Busybox, if set, is a statically linked busybox installed as
	// /bin/busybox with links (/bin/sh among them) for a rescue shell.
	Busybox string
	// KModules, if set, is a module tree /lib/modules/RELEASE with a
	// modules.dep; Modules are then copied from it with BaseModules and
	// every dependency. Without it the kernel must have them built in.
	KModules string
	Modules  []string
}

// Build assembles the archive.
func Build(o Options) (*Archive, error) {
	a := NewArchive()
	if o.URoot != "" {
		if err := mergeArchive(a, o.URoot); err != nil {
			return nil, err
		}
	}
	init, err := os.ReadFile(o.Init)
	if err != nil {
		return nil, fmt.Errorf("reading init binary: %w", err)
	}
	if err := checkStatic(o.Init); err != nil {
		return nil, err
	}
	a.File("init", 0o755, init)
	// The kernel opens /dev/console for PID 1's fds 0-2 before
	// devtmpfs is mounted, and the Go runtime needs them to exist.
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)
	for _, d := range []string{"proc", "sys", "run", "newroot", "tmp"} {
		a.Dir(d, 0o755)
	}
	if o.Busybox != "" {
		bb, err := os.ReadFile(o.Busybox)
		if err != nil {
			return nil, fmt.Errorf("reading busybox: %w", err)
		}
		if err := checkStatic(o.Busybox); err != nil {
			return nil, err
		}
		a.File("bin/busybox", 0o755, bb)
		for _, app := range busyboxApplets() {
			a.Symlink("bin/"+app, "busybox")
		}
	}
	if o.KModules != "" {
		if err := addModules(a, o.KModules, append(BaseModules(), o.Modules...)); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// mergeArchive adds the records of the newc archive at p.
func mergeArchive(a *Archive, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("reading u-root archive: %w", err)
	}
	defer f.Close()
	if err := a.Merge(cpio.Newc.Reader(f)); err != nil {
		return fmt.Errorf("reading u-root archive %s: %w", p, err)
	}
	return nil
}

// addModules copies the named modules and their dependencies, a pruned
// modules.dep and the load list.
func addModules(a *Archive, dir string, names []string) error {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("reading module tree (run depmod -b BASEDIR RELEASE first?): %w", err)
	}
	dep, err := kmod.ParseDep(f)
	f.Close()
	if err != nil {
		return err
	}
	files, err := dep.Order(names)
	if err != nil {
		return fmt.Errorf("module tree %s: %w", dir, err)
	}
	base := path.Join("lib/modules", filepath.Base(filepath.Clean(dir)))
	var load bytes.Buffer
	// Modules go in decompressed, under their .ko names (as WriteDep
	// names them): the archive is compressed as a whole, and PID 1 hands a
	// plain .ko to the kernel instead of decoding it first (slow under
	// emulation).
	for _, file := range files {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("copying module: %w", err)
		}
		plain, b, err := kmod.Uncompressed(file, b)
		if err != nil {
			return fmt.Errorf("copying module: %w", err)
		}
		a.File(path.Join(base, plain), 0o644, b)
		fmt.Fprintln(&load, kmod.Name(file))
	}
	var depOut bytes.Buffer
	if err := dep.WriteDep(&depOut, files); err != nil {
		return err
	}
	a.File(path.Join(base, "modules.dep"), 0o644, depOut.Bytes())
	a.File(path.Join(base, LoadList), 0o644, load.Bytes())
	return nil
}

// FindBusybox returns /bin/busybox if it is statically linked, or "".
func FindBusybox() string {
	const p = "/bin/busybox"
	if checkStatic(p) != nil {
		return ""
	}
	return p
}

// checkStatic refuses dynamically linked programs: the initramfs has no
// libc or loader, and such a binary would fail only at boot.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: not an ELF program: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the initramfs needs a static binary", p)
		}
	}
	return nil
}

// WriteGzip writes the archive gzip-compressed. The gzip header carries
// no name and mtime 0, so the bytes depend on the contents only.
func (a *Archive) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if _, err := a.WriteTo(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	return nil
}
