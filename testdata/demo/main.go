// Command demo is `make demo`: it builds a Portage-like SquashFS image
// with squashportage's own writer, boots it twice under QEMU with a Debian
// kernel and squashportage's initramfs, changes the tree and persists it
// in the first boot, finds the change in the second, and prints each step
// from the serial console, filtered to what matters.
//
//	go run ./testdata/demo [-bin bin/squashportage] [-dir bin/demo] [-scale 0.02]
//
// It needs qemu-system-x86, busybox-static, e2fsprogs and kmod (the
// Makefile installs them); the kernel is cached where the end-to-end test
// keeps it (E2E_CACHE, default ~/.cache/squashportage/e2e).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/squashportage/squashportage/internal/vmtest"
)

const (
	rootUUID  = "d3e0f00d-5a5b-4c1e-8e2a-0123456789ab"
	rootLabel = "demo-root"
	image     = "/var/cache/squashportage/gentoo.sqfs"
	target    = "/var/db/repos/gentoo"
	// bootTimeout only catches hangs: a boot takes 5-15 s under TCG.
	bootTimeout = 180 * time.Second
)

// guestInit is the disk's /sbin/init. It prints what a user would type
// and see, marked for the host's filter: "DEMO:== " a heading, "DEMO:$ "
// a command, "DEMO:  " its output. DEMO_BOOT comes from the kernel
// command line, through PID 1's unchanged environment.
const guestInit = `#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
T=` + target + `
I=` + image + `
h() { echo "DEMO:== $*"; }
# Output goes through a file, not a pipe, so that it reaches the console
# in one piece rather than interleaved with kernel messages.
x() {
	echo "DEMO:\$ $*"
	sh -c "$*" >/tmp/demo.out 2>&1
	rc=$?
	sed 's/^/DEMO:  /' /tmp/demo.out
	[ $rc = 0 ] || echo "DEMO:  (exit status $rc)"
}
line=$(grep " $T " /proc/mounts)
upper=$(echo "$line" | sed -n 's/.*upperdir=\([^,]*\).*/\1/p')
lower=$(echo "$line" | sed -n 's/.*lowerdir=\([^,]*\).*/\1/p')
case "$DEMO_BOOT" in
1)
	# The files to edit and remove, kept on the root disk for boot 2.
	E=$(find $T -name '*.ebuild' | sort | sed -n 1p)
	R=$(find $T -name '*.ebuild' | sort | sed -n 2p)
	printf 'E=%s\nR=%s\n' "$E" "$R" >/etc/demo-files
	h "the real init (a busybox script) finds the tree mounted"
	x "mount | grep gentoo"
	x "df -h $T"
	x "ls $T | head -n 5; find $T -type f | wc -l"
	x "squashportage status"
	h "a change: a new file, an edited ebuild, a removed ebuild"
	x "echo 'demo change' > $T/DEMO"
	x "echo '# edited by the demo' >> $E; tail -n 1 $E"
	x "rm $R"
	x "find $upper -mindepth 1 | sed 's|^$upper/||'"
	x "squashportage status"
	h "squashportage persist: a new image, crash-safely"
	x "squashportage persist"
	x "ls -l /var/cache/squashportage/"
	x "sha256sum $I"
	x "squashportage status"
	h "power off"
	sync
	;;
2)
	. /etc/demo-files
	h "the change survived the reboot"
	x "cat $T/DEMO"
	x "tail -n 1 $E"
	x "ls $R"
	h "and it is in the image, not in RAM"
	x "mount | grep gentoo"
	x "ls -l $lower/DEMO"
	x "echo upper entries: \$(find $upper -mindepth 1 | wc -l)"
	x "squashportage status"
	x "ls -l /var/cache/squashportage/"
	x "sha256sum $I"
	h "power off"
	;;
esac
poweroff -f
`

func main() {
	bin := flag.String("bin", "bin/squashportage", "the squashportage binary (static)")
	dir := flag.String("dir", "bin/demo", "work directory (emptied first)")
	scale := flag.Float64("scale", 0.02, "size of the Portage-like tree: 1 is about 150k files")
	flag.Parse()
	d := &demo{bin: *bin, dir: *dir, scale: *scale, start: time.Now(), bold: isTerminal(os.Stdout)}
	if err := d.run(); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir string
	scale    float64
	start    time.Time
	bold     bool
	kernel   vmtest.Kernel
	initrd   string
	disk     string
	built    string // the image as built on the host
	steps    []step
	checks   []check
}

type step struct {
	name string
	took time.Duration
}

type check struct {
	what string
	ok   bool
}

func (d *demo) heading(format string, args ...any) {
	s := "==> " + fmt.Sprintf(format, args...)
	if d.bold {
		s = "\033[1m" + s + "\033[0m"
	}
	fmt.Println("\n" + s)
}

func (d *demo) timed(name string, f func() error) error {
	t := time.Now()
	err := f()
	d.steps = append(d.steps, step{name, time.Since(t)})
	return err
}

func (d *demo) check(what string, ok bool) {
	d.checks = append(d.checks, check{what, ok})
	if !ok {
		fmt.Printf("    !! expected: %s\n", what)
	}
}

// sh runs a host command, showing it and its output indented.
func (d *demo) sh(name string, args ...string) (string, error) {
	fmt.Printf("    $ %s %s\n", name, strings.Join(args, " "))
	out, err := exec.Command(name, args...).CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			fmt.Println("      " + l)
		}
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

func (d *demo) run() error {
	d.heading("squashportage demo: a Portage tree as a SquashFS image under a RAM overlay, persisted across a reboot")
	fmt.Println("    (QEMU without KVM, so the guest runs slowly; every step below is real)")
	if missing := vmtest.Missing(); len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}

	cache, err := vmtest.CacheDir()
	if err != nil {
		return err
	}
	d.heading("kernel: Debian's cloud kernel, cached in %s", cache)
	err = d.timed("kernel", func() error {
		var err error
		d.kernel, err = vmtest.DebianKernel(cache, func(format string, args ...any) {
			fmt.Printf("    "+format+" (apt-get download, dpkg-deb -x, depmod; once)\n", args...)
		})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("    %s\n", d.kernel.Image)

	d.heading("initramfs: squashportage as /init, busybox as the rescue shell, the modules it needs")
	d.initrd = filepath.Join(d.dir, "initramfs.cpio.gz")
	err = d.timed("initramfs", func() error {
		n, err := vmtest.WriteInitramfs(d.initrd, d.kernel, d.bin, "", vmtest.Busybox)
		if err == nil {
			fmt.Printf("    %s: %s (squashfs, loop, overlay, virtio_pci, virtio_blk from %s)\n", d.initrd, mb(int64(n)), d.kernel.Release)
		}
		return err
	})
	if err != nil {
		return err
	}

	root := filepath.Join(d.dir, "root")
	tree := filepath.Join(d.dir, "tree")
	d.built = filepath.Join(d.dir, "gentoo.sqfs")
	d.heading("a Portage-like tree, and its image made by squashportage's own writer")
	err = d.timed("tree and image", func() error {
		if _, err := d.sh("go", "run", "./testdata/gentree", "-o", tree, "-scale", fmt.Sprint(d.scale)); err != nil {
			return err
		}
		if _, err := d.sh(d.bin, "mksquashfs", tree, d.built, "-noappend", "-quiet"); err != nil {
			return err
		}
		return os.RemoveAll(tree)
	})
	if err != nil {
		return err
	}
	fmt.Printf("    image: %s\n", mb(size(d.built)))

	d.heading("root disk: ext4 with busybox, /sbin/init (a shell script), squashportage, the image")
	d.disk = filepath.Join(d.dir, "disk.img")
	err = d.timed("root disk", func() error {
		if err := vmtest.LayoutRoot(root, d.bin, guestInit, filepath.Dir(image[1:]), target[1:]); err != nil {
			return err
		}
		if err := vmtest.CopyFile(d.built, filepath.Join(root, image), 0o644); err != nil {
			return err
		}
		if _, err := d.sh("mkfs.ext4", "-q", "-F", "-U", rootUUID, "-L", rootLabel, "-d", root, d.disk, "128M"); err != nil {
			return err
		}
		return os.RemoveAll(root)
	})
	if err != nil {
		return err
	}

	// layers=0: the demo shows the whole image persisted and swapped (its
	// disk inspection compares IMAGE and IMAGE.old); the default stacks
	// a delta layer instead, which make test boots (boot/e2e).
	spec := "squashportage=" + image + ":" + target + ":layers=0"
	log1, err := d.boot(1, "root=LABEL="+rootLabel+" rw "+spec+" DEMO_BOOT=1")
	if err != nil {
		return err
	}
	d.expect(log1, "boot 1: the overlay is mounted at "+target, `^squashportage: mounted overlay at /newroot`+target)
	d.expect(log1, "boot 1: the real init runs", `^squashportage: starting /sbin/init after`)
	d.expect(log1, "boot 1: persist wrote a new image", `^DEMO:  `+target+`: wrote `+image)
	d.expect(log1, "boot 1: IMAGE.old is kept", `^DEMO:  .* gentoo\.sqfs\.old$`)

	newSum, err := d.inspectDisk()
	if err != nil {
		return err
	}

	log2, err := d.boot(2, "root=UUID="+rootUUID+" rw "+spec+" DEMO_BOOT=2")
	if err != nil {
		return err
	}
	d.expect(log2, "boot 2: DEMO is there", `^DEMO:  demo change$`)
	d.expect(log2, "boot 2: the edit is there", `^DEMO:  # edited by the demo$`)
	d.expect(log2, "boot 2: the removed ebuild stays removed", `^DEMO:  ls: .*: No such file or directory$`)
	d.expect(log2, "boot 2: the upper is empty", `^DEMO:  upper entries: 0$`)
	d.expect(log2, "boot 2: the image mounted is the one persisted in boot 1", `^DEMO:  `+newSum+`  `+image+`$`)

	d.summary(log1, log2)
	for _, c := range d.checks {
		if !c.ok {
			return errors.New("some checks failed; the consoles are in " + d.dir)
		}
	}
	return nil
}

// boot runs one boot, printing the console lines worth reading as they
// arrive and the whole console to bootN.console.
func (d *demo) boot(n int, cmdline string) (string, error) {
	d.heading("boot %d: QEMU (TCG, 1 CPU, 512 MB), console on the serial port", n)
	fmt.Printf("    $ qemu-system-x86_64 -kernel vmlinuz-%s -initrd %s \\\n        -drive file=%s,if=virtio -append 'console=ttyS0 panic=-1 %s'\n",
		d.kernel.Release, filepath.Base(d.initrd), filepath.Base(d.disk), cmdline)
	d.heading("boot %d: the initramfs (squashportage as PID 1) mounts the overlay", n)
	f := &filter{d: d, boot: n}
	console := filepath.Join(d.dir, fmt.Sprintf("boot%d.console", n))
	var res vmtest.Result
	err := d.timed(fmt.Sprintf("boot %d", n), func() error {
		var err error
		res, err = vmtest.Boot{Kernel: d.kernel, Initrd: d.initrd, Disk: d.disk, Cmdline: cmdline,
			Timeout: bootTimeout, Console: console, OnLine: f.line}.Run(context.Background())
		return err
	})
	if err != nil {
		return res.Log, fmt.Errorf("boot %d: %w; the whole console is in %s", n, err, console)
	}
	fmt.Printf("    (QEMU exited after %s; the whole console is in %s)\n", res.Wall.Round(100*time.Millisecond), console)
	return res.Log, nil
}

// filter turns console lines into the demo's display.
type filter struct {
	d    *demo
	boot int
}

// kernelLines are the kernel's messages worth showing: trouble, and the
// power-off that ends each boot.
var kernelLines = regexp.MustCompile(`Kernel panic|Power down|squashfs error|overlayfs: |EXT4-fs error|I/O error|Out of memory`)

// kernelTail is a kernel message that landed in the middle of a line of
// ours: the console has one writer per line, not per message.
var kernelTail = regexp.MustCompile(`\[\s*\d+\.\d+\] .*$`)

func (f *filter) line(l string) {
	switch {
	case strings.HasPrefix(l, "DEMO:== "):
		f.d.heading("boot %d: %s", f.boot, l[len("DEMO:== "):])
	case strings.HasPrefix(l, "DEMO:$ "):
		fmt.Println("    guest# " + l[len("DEMO:$ "):])
	case strings.HasPrefix(l, "DEMO:  "):
		fmt.Println("      " + l[len("DEMO:  "):])
	case strings.HasPrefix(l, "squashportage: "):
		// One line per module is noise; "modules loaded in" sums them up.
		if strings.HasPrefix(l, "squashportage: loaded module ") {
			return
		}
		fmt.Println("    " + kernelTail.ReplaceAllString(l, ""))
	case kernelLines.MatchString(l):
		fmt.Println("    [kernel] " + strings.TrimSpace(l[strings.Index(l, "]")+1:]))
	}
}

// expect records whether a line of log matches re.
func (d *demo) expect(log, what, re string) {
	ok := regexp.MustCompile("(?m)" + re).MatchString(log)
	d.check(what, ok)
}

// inspectDisk reads the images off the powered-off disk with debugfs,
// mounting nothing, and returns the new image's sha256.
func (d *demo) inspectDisk() (string, error) {
	d.heading("host: the disk after boot 1, read with debugfs (nothing mounted)")
	newImg := filepath.Join(d.dir, "after-boot1.sqfs")
	oldImg := filepath.Join(d.dir, "after-boot1.sqfs.old")
	for _, p := range [][2]string{{image, newImg}, {image + ".old", oldImg}} {
		if out, err := exec.Command("debugfs", "-R", "dump "+p[0]+" "+p[1], d.disk).CombinedOutput(); err != nil {
			return "", fmt.Errorf("debugfs dump %s: %v\n%s", p[0], err, out)
		}
	}
	builtSum, newSum, oldSum := sum(d.built), sum(newImg), sum(oldImg)
	fmt.Printf("    %-40s %9s  sha256 %.16s…\n", "image built on the host", mb(size(d.built)), builtSum)
	fmt.Printf("    %-40s %9s  sha256 %.16s…\n", image, mb(size(newImg)), newSum)
	fmt.Printf("    %-40s %9s  sha256 %.16s…\n", image+".old", mb(size(oldImg)), oldSum)
	d.check("IMAGE.old is the image built on the host", oldSum == builtSum && builtSum != "")
	d.check("IMAGE is a new image", newSum != builtSum && newSum != "")
	if _, err := exec.LookPath("unsquashfs"); err == nil {
		fmt.Println("    squashfs-tools reads the persisted image too:")
		out, err := d.sh("unsquashfs", "-cat", newImg, "DEMO")
		d.check("unsquashfs -cat finds DEMO in the new image", err == nil && strings.Contains(out, "demo change"))
	}
	return newSum, nil
}

func (d *demo) summary(log1, log2 string) {
	d.heading("summary")
	total := time.Since(d.start)
	var parts []string
	for _, s := range d.steps {
		parts = append(parts, fmt.Sprintf("%s %s", s.name, s.took.Round(100*time.Millisecond)))
	}
	fmt.Printf("    took %s after compiling: %s\n", total.Round(time.Second), strings.Join(parts, ", "))
	for i, log := range []string{log1, log2} {
		if h, ok := vmtest.ReadHandover(log); ok {
			fmt.Printf("    boot %d: %s in the initramfs, real init started %s after the kernel\n", i+1, h.FromExec, h.SinceKernel)
		}
	}
	if m := regexp.MustCompile(`(?m)^DEMO:  (` + target + `: wrote .*)$`).FindStringSubmatch(log1); m != nil {
		fmt.Printf("    persist: %s\n", m[1])
	}
	fmt.Printf("    image: %s as built, %s after persist\n", mb(size(d.built)), mb(size(filepath.Join(d.dir, "after-boot1.sqfs"))))
	passed := 0
	for _, c := range d.checks {
		if c.ok {
			passed++
		}
	}
	fmt.Printf("    checks: %d of %d passed\n", passed, len(d.checks))
	for _, c := range d.checks {
		mark := "ok  "
		if !c.ok {
			mark = "FAIL"
		}
		fmt.Printf("      %s %s\n", mark, c.what)
	}
	fmt.Printf("    consoles: %s, %s\n", filepath.Join(d.dir, "boot1.console"), filepath.Join(d.dir, "boot2.console"))
}

func size(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func sum(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
