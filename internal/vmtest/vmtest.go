// Package vmtest is what the end-to-end test (boot/e2e) and the demo
// (testdata/demo) share to boot squashportage's initramfs under QEMU: a
// cached Debian kernel, the initramfs, an ext4 root disk made without
// mounting anything, and a boot that streams the serial console.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/squashportage/squashportage/boot/initramfs"
)

// Busybox is where Debian's busybox-static puts its static binary; the
// guest's tools and the rescue shell both come from it.
const Busybox = "/bin/busybox"

// Kernel is a Debian kernel unpacked in the cache: its image and module
// tree.
type Kernel struct {
	Release string // e.g. 6.1.0-NN-cloud-amd64
	Image   string // boot/vmlinuz-RELEASE
	Modules string // lib/modules/RELEASE, with modules.dep
}

// CacheDir is where the kernel is kept between runs: E2E_CACHE, else the
// user's cache directory. It lies outside the work tree so that 100 MB
// of kernel and modules can never be committed by accident.
func CacheDir() (string, error) {
	if dir := os.Getenv("E2E_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set E2E_CACHE): %w", err)
	}
	return filepath.Join(base, "squashportage", "e2e"), nil
}

// Missing lists the tools a boot needs that are not installed, each with
// the Debian package that provides it.
func Missing() []string {
	var missing []string
	for _, tp := range [][2]string{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"mkfs.ext4", "e2fsprogs"},
		{"depmod", "kmod"},
		{"apt-get", "apt"},
		{"dpkg-deb", "dpkg"},
	} {
		if _, err := exec.LookPath(tp[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tp[0], tp[1]))
		}
	}
	if _, err := os.Stat(Busybox); err != nil {
		missing = append(missing, Busybox+" (apt-get install busybox-static)")
	}
	return missing
}

// kernelDep matches the metapackage's dependency on the versioned kernel:
// bookworm's 6.1.0-NN-cloud-amd64 as well as trixie's 6.12.NN+deb13-cloud-amd64.
var kernelDep = regexp.MustCompile(`Depends: (linux-image-(\d+\.\d+\S*-cloud-amd64))\s`)

// kernelPackage reads `apt-cache depends linux-image-cloud-amd64`.
func kernelPackage(out string) (pkg, release string, ok bool) {
	m := kernelDep.FindStringSubmatch(out + "\n")
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// DebianKernel fetches the distribution's cloud kernel into cache once:
// the metapackage names the current ABI (never hard-coded, it moves with
// security updates), apt-get download fetches the .deb, dpkg-deb -x
// unpacks it without installing, and depmod writes the modules.dep the
// package leaves out. logf, if not nil, hears about a download.
func DebianKernel(cache string, logf func(format string, args ...any)) (Kernel, error) {
	out, err := Run("", "apt-cache", "depends", "linux-image-cloud-amd64")
	if err != nil {
		return Kernel{}, err
	}
	pkg, release, ok := kernelPackage(out)
	if !ok {
		return Kernel{}, fmt.Errorf("apt-cache depends linux-image-cloud-amd64 names no kernel (is apt-get update done?):\n%s", out)
	}
	dir := filepath.Join(cache, pkg)
	k := Kernel{
		Release: release,
		Image:   filepath.Join(dir, "boot", "vmlinuz-"+release),
		Modules: filepath.Join(dir, "lib", "modules", release),
	}
	// Written last, so an interrupted download is redone, not trusted.
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return k, nil
	}
	if logf != nil {
		logf("fetching %s into %s", pkg, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return Kernel{}, err
	}
	dl := filepath.Join(cache, "download")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return Kernel{}, err
	}
	if _, err := Run(dl, "apt-get", "download", pkg); err != nil {
		return Kernel{}, err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("apt-get download %s left %v", pkg, debs)
	}
	if _, err := Run("", "dpkg-deb", "-x", debs[0], dir); err != nil {
		return Kernel{}, err
	}
	if _, err := Run("", "depmod", "-b", dir, release); err != nil {
		return Kernel{}, err
	}
	for _, p := range []string{k.Image, filepath.Join(k.Modules, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return Kernel{}, fmt.Errorf("kernel package %s: %w", pkg, err)
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return Kernel{}, err
	}
	os.Remove(debs[0])
	return k, nil
}

// DiskModules are the modules the guests' virtio disk needs besides the
// initramfs's base modules.
func DiskModules() []string { return []string{"virtio_pci", "virtio_blk"} }

// WriteInitramfs writes the initramfs for k to path: init as /init,
// u-root's commands from the archive uroot (initramfs.BuildURoot) and
// busybox as the rescue toolset (either or both may be empty), and the
// modules a virtio disk needs, since without udev nothing would load
// them. It returns the archive's size.
func WriteInitramfs(path string, k Kernel, init, uroot, busybox string) (int, error) {
	a, err := initramfs.Build(initramfs.Options{
		Init:     init,
		URoot:    uroot,
		Busybox:  busybox,
		KModules: k.Modules,
		Modules:  DiskModules(),
	})
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		return 0, err
	}
	return buf.Len(), os.WriteFile(path, buf.Bytes(), 0o644)
}

// LayoutRoot fills root with a minimal system: busybox and its applet
// links as the tools, initScript as /sbin/init, bin as
// /usr/bin/squashportage, and the directories dirs (relative) besides
// the usual mount points.
func LayoutRoot(root, bin, initScript string, dirs ...string) error {
	for _, d := range append([]string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "etc"}, dirs...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := CopyFile(Busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return err
	}
	list, err := Run("", Busybox, "--list")
	if err != nil {
		return err
	}
	for _, app := range strings.Fields(list) {
		// init is the script's place; busybox is the binary itself.
		if app == "busybox" || app == "init" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "sbin/init"), []byte(initScript), 0o755); err != nil {
		return err
	}
	return CopyFile(bin, filepath.Join(root, "usr/bin/squashportage"), 0o755)
}

// CopyFile copies src to dst, creating or truncating it with perm.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// MakeDisk makes an ext4 image of root's contents, size like "128M",
// with mkfs.ext4 -d: no loop device, no mount.
func MakeDisk(img, root, uuid, label, size string) error {
	_, err := Run("", "mkfs.ext4", "-q", "-F", "-U", uuid, "-L", label, "-d", root, img, size)
	return err
}

// Boot describes one run of QEMU (TCG, 1 CPU) until the guest powers
// off; -no-reboot makes a reboot end it too.
type Boot struct {
	Kernel  Kernel
	Initrd  string
	Disk    string // raw image, the guest's /dev/vda
	Cmdline string // after "console=ttyS0 panic=-1"
	MemMB   int    // default 512; -m 64 prints nothing at all
	Timeout time.Duration
	// Console, if set, receives the whole console as it arrives, \r
	// stripped.
	Console string
	// OnLine, if set, sees each console line (without \r\n) as it
	// arrives.
	OnLine func(line string)
	// InstructionClock runs the guest's clock on its instruction count
	// (-icount shift=0: 1 ns per instruction, a 1 GHz CPU doing one
	// instruction per cycle) instead of the host's: guest time then
	// measures the guest's own work, not TCG's translation of it.
	InstructionClock bool
	// CPU, if set, is QEMU's -cpu model (default: QEMU's qemu64).
	CPU string
	// When a console line contains Trigger, Input is typed into the
	// console once.
	Trigger, Input string
}

// Result is what a boot left.
type Result struct {
	Log   string // the console, lines ending in \n
	Wall  time.Duration
	Typed bool // Input was typed
}

// ErrTimeout is returned (wrapped) when a boot outlives Boot.Timeout.
var ErrTimeout = errors.New("boot did not finish in time")

// Run boots and returns the console. On an error the Result still holds
// what the console showed.
func (b Boot) Run(ctx context.Context) (Result, error) {
	mem := b.MemMB
	if mem == 0 {
		mem = 512
	}
	if b.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.Timeout)
		defer cancel()
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", fmt.Sprint(mem), "-smp", "1", "-accel", "tcg",
		"-kernel", b.Kernel.Image, "-initrd", b.Initrd,
		"-append", "console=ttyS0 panic=-1 " + b.Cmdline,
		"-drive", "file=" + b.Disk + ",format=raw,if=virtio",
		"-serial", "stdio", "-monitor", "none"}
	if b.CPU != "" {
		args = append(args, "-cpu", b.CPU)
	}
	if b.InstructionClock {
		// sleep=off: an idle guest's clock jumps to its next timer
		// instead of following the host's.
		args = append(args, "-icount", "shift=0,sleep=off")
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	// A pipe, never the user's terminal: QEMU puts a terminal on stdin
	// into raw mode, and the console must only be typed into on purpose.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var console io.Writer = io.Discard
	if b.Console != "" {
		f, err := os.Create(b.Console)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		console = f
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("qemu: %w", err)
	}
	var log strings.Builder
	var res Result
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		io.WriteString(console, line+"\n")
		if b.OnLine != nil {
			b.OnLine(line)
		}
		if !res.Typed && b.Trigger != "" && strings.Contains(line, b.Trigger) {
			res.Typed = true
			// Give the shell a moment to open the terminal.
			time.Sleep(time.Second)
			io.WriteString(stdin, b.Input)
		}
	}
	err = cmd.Wait()
	res.Wall = time.Since(start)
	res.Log = log.String()
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w (%s)", ErrTimeout, b.Timeout)
	}
	if err != nil {
		return res, fmt.Errorf("qemu: %v\n%s", err, stderr.String())
	}
	return res, nil
}

var (
	handoverRE = regexp.MustCompile(`squashportage: handover: (\S+) from the start of /init to the exec of \S+ \((\S+) in main(?:: (\S+) loading (\d+) modules, (\S+) waiting for the root device, (\S+) of our own)?\)`)
	startingRE = regexp.MustCompile(`squashportage: starting \S+.* after \S+ in the initramfs \((\S+) since the kernel started\)`)
)

// Handover is what PID 1 logs as it hands over to the real init.
type Handover struct {
	FromExec    string // since the kernel started /init (10 ms resolution)
	FromMain    string // since squashportage's main started
	SinceKernel string // since the kernel started
	// Of FromMain: blocked on the kernel loading Modules modules, waiting
	// for the root device, and the rest (mounts, PID 1's own work).
	Loading, Modules, RootDevice, Own string
}

func (h Handover) String() string {
	s := fmt.Sprintf("%s from the start of /init to the exec of the real init (%s of it in squashportage's main", h.FromExec, h.FromMain)
	if h.Own != "" {
		s += fmt.Sprintf(": %s loading %s modules, %s waiting for the root device, %s of its own", h.Loading, h.Modules, h.RootDevice, h.Own)
	}
	return s + "), init started " + h.SinceKernel + " after kernel start"
}

// ReadHandover reads PID 1's last lines before the real init.
func ReadHandover(log string) (Handover, bool) {
	m, s := handoverRE.FindStringSubmatch(log), startingRE.FindStringSubmatch(log)
	if m == nil || s == nil {
		return Handover{}, false
	}
	return Handover{FromExec: m[1], FromMain: m[2], SinceKernel: s[1],
		Loading: m[3], Modules: m[4], RootDevice: m[5], Own: m[6]}, true
}

// Run runs a command and returns its output, or an error that holds it.
func Run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
