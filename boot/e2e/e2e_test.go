//go:build e2e

// Package e2e boots squashportage's initramfs under QEMU with a Debian
// kernel and a disk holding a small system, and checks from the serial
// console that the overlay is mounted at boot, persisted by the real
// init, and that a broken image or spec does not stop the machine from
// reaching its init. Run it with `make e2e` (root, qemu-system-x86,
// busybox-static, e2fsprogs, kmod).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/squashportage/squashportage/boot/initramfs"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/tools/mksquashfs"
)

const (
	busyboxPath = "/bin/busybox"
	rootUUID    = "5e1f7a2c-0b3d-4c6e-9f80-a1b2c3d4e5f6"
	rootLabel   = "e2e-root"
	imagePath   = "/var/cache/squashportage/gentoo.sqfs"
	corruptPath = "/var/cache/squashportage/corrupt.sqfs"
	targetPath  = "/var/db/repos/gentoo"
	// bootTimeout bounds one boot; a boot takes 3.5-6 s unloaded, so this
	// only catches hangs on a busy machine.
	bootTimeout = 180 * time.Second
)

// realInit is the disk's /sbin/init: a busybox script that reports what
// it sees with "E2E:" markers, does the step the kernel command line
// asks for through E2E_STEP (an environment variable, so the test also
// proves PID 1 kept the kernel's environment), and powers off.
const realInit = `#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
T=` + targetPath + `
echo "E2E: init pid=$$ args=[$*] step=[$E2E_STEP]"
line=$(grep " $T " /proc/mounts)
echo "E2E: target mount=[$line]"
upper=$(echo "$line" | sed -n 's/.*upperdir=\([^,]*\).*/\1/p')
lower=$(echo "$line" | sed -n 's/.*lowerdir=\([^,]*\).*/\1/p')
echo "E2E: upper-files=$(find "$upper" -mindepth 1 2>/dev/null | wc -l) upper=[$upper]"
[ -f $T/profiles/repo_name ] && echo "E2E: tree=[$(cat $T/profiles/repo_name)]"
case "$E2E_STEP" in
1)
	echo "written at boot 1" > $T/e2e-marker && echo "E2E: wrote marker"
	squashportage persist
	echo "E2E: persist rc=$?"
	;;
2)
	echo "E2E: marker=[$(cat $T/e2e-marker 2>&1)]"
	echo "E2E: marker-in-lower=[$(cat "$lower/e2e-marker" 2>&1)]"
	[ -e ` + imagePath + `.old ] && echo "E2E: old image present"
	ls -l /var/cache/squashportage
	;;
esac
echo "E2E: done"
sync
poweroff -f
`

// env is what every boot shares.
type env struct {
	dir       string
	kernel    kernel
	initramfs string
	rootDir   string // template of the disk's contents
}

func TestE2E(t *testing.T) {
	requireTools(t)
	root := repoRoot(t)
	cache := cacheDir(t)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{dir: t.TempDir(), kernel: debianKernel(t, cache)}
	bin := squashportageBinary(t, root, e.dir)
	e.initramfs = buildInitramfs(t, e, bin, busyboxPath)
	e.rootDir = buildRootDir(t, e.dir, bin)

	diskA := e.disk(t, "a")
	t.Run("boot1-persist", func(t *testing.T) {
		log := e.boot(t, diskA, fmt.Sprintf("root=UUID=%s rw squashportage=%s:%s E2E_STEP=1 -- e2earg", rootUUID, imagePath, targetPath))
		expect(t, log,
			`squashportage: mounted /dev/vda \(ext4\) on /newroot read-write`,
			`squashportage: squashportage=\S+ mounted in`,
			`squashportage: starting /sbin/init e2earg after \S+ in the initramfs`,
			`E2E: init pid=1 args=\[e2earg\] step=\[1\]`,
			`E2E: target mount=\[\S+ `+targetPath+` overlay `,
			`E2E: tree=\[gentoo\]`,
			`E2E: wrote marker`,
			`E2E: persist rc=0`,
			`E2E: done`)
	})
	t.Run("boot2-persisted", func(t *testing.T) {
		log := e.boot(t, diskA, fmt.Sprintf("root=LABEL=%s rw squashportage=%s:%s E2E_STEP=2", rootLabel, imagePath, targetPath))
		expect(t, log,
			`E2E: init pid=1 args=\[\] step=\[2\]`,
			`E2E: upper-files=0 `,
			`E2E: marker=\[written at boot 1\]`,
			`E2E: marker-in-lower=\[written at boot 1\]`,
			`E2E: old image present`,
			`E2E: done`)
	})
	diskB := e.disk(t, "b")
	t.Run("corrupt-image", func(t *testing.T) {
		log := e.boot(t, diskB, fmt.Sprintf("root=/dev/vda squashportage=%s:%s", corruptPath, targetPath))
		expect(t, log,
			`squashportage: error: squashportage=`+regexp.QuoteMeta(corruptPath)+`:\S+ skipped: .+`,
			`E2E: init pid=1 `,
			`E2E: target mount=\[\]`,
			`E2E: done`)
	})
	t.Run("no-root-device", func(t *testing.T) {
		// Without busybox there is no rescue shell: PID 1 must explain,
		// wait, and reboot, which -no-reboot turns into QEMU exiting.
		bare := buildInitramfs(t, e, bin, "")
		log := e.bootWith(t, bare, diskB, "root=LABEL=no-such-root squashportage.timeout=2")
		expect(t, log,
			`squashportage: waiting for root device LABEL=no-such-root \(up to 2s\)`,
			`squashportage: error: boot failed: root filesystem not available: root device LABEL=no-such-root not found: gave up after`,
			`^squashportage: error:\s+/dev/vda: ext4 UUID=`+rootUUID,
			`squashportage: error: no rescue shell in the initramfs; rebooting in`,
			`squashportage: rebooting`)
		if strings.Contains(log, "Kernel panic") {
			t.Fatalf("kernel panicked; console:\n%s", log)
		}
	})
	t.Run("rescue-shell", func(t *testing.T) {
		// With busybox, a missing root gives a shell on the console; the
		// test types into it once it is announced.
		log := e.bootTyping(t, diskB, "root=LABEL=no-such-root squashportage.timeout=1",
			"starting rescue shell /bin/sh on the console", "echo RESCUE-$((6*7)); ls /lib/modules; poweroff -f\n")
		expect(t, log,
			`squashportage: error: boot failed: root filesystem not available`,
			`squashportage: starting rescue shell /bin/sh on the console`,
			`RESCUE-42`)
	})
	t.Run("bad-spec", func(t *testing.T) {
		log := e.boot(t, diskB, fmt.Sprintf("root=UUID=%s squashportage=/no/target squashportage=%s:%s:bogus=1 squashportage=%s:%s",
			strings.ToUpper(rootUUID), imagePath, targetPath, imagePath, targetPath))
		expect(t, log,
			`squashportage: error: squashportage=/no/target skipped: .+`,
			`squashportage: error: squashportage=\S+:bogus=1 skipped: .+`,
			`squashportage: squashportage=\S+ mounted in`,
			`E2E: init pid=1 `,
			`E2E: tree=\[gentoo\]`,
			`E2E: done`)
	})
}

// expect fails the test, with the whole console, unless each pattern
// matches a line, in order.
func expect(t *testing.T, log string, patterns ...string) {
	t.Helper()
	lines := strings.Split(log, "\n")
	i := 0
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		found := false
		for ; i < len(lines); i++ {
			if re.MatchString(lines[i]) {
				found = true
				i++
				break
			}
		}
		if !found {
			t.Fatalf("console has no line matching %q (after the earlier matches); console:\n%s", p, log)
		}
	}
}

// cacheDir keeps the downloaded kernel between runs: E2E_CACHE, else the
// user's cache directory. Outside the work tree so the 100 MB of kernel
// and modules can never be committed by accident.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory (set E2E_CACHE): %v", err)
		}
		dir = filepath.Join(base, "squashportage", "e2e")
	}
	return dir
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// squashportageBinary returns E2E_BINARY (make e2e passes the one make
// build wrote) or builds one.
func squashportageBinary(t *testing.T, root, dir string) string {
	t.Helper()
	if b := os.Getenv("E2E_BINARY"); b != "" {
		abs, err := filepath.Abs(filepath.Join(root, b))
		if filepath.IsAbs(b) {
			abs = b
		}
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(dir, "squashportage")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./init")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building squashportage: %v\n%s", err, out)
	}
	return bin
}

func buildInitramfs(t *testing.T, e *env, bin, busybox string) string {
	t.Helper()
	a, err := initramfs.Build(initramfs.Options{
		Init:     bin,
		Busybox:  busybox,
		KModules: e.kernel.Modules,
		Modules:  []string{"virtio_pci", "virtio_blk"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "initramfs.cpio.gz")
	if busybox == "" {
		p = filepath.Join(e.dir, "initramfs-bare.cpio.gz")
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs: %d bytes, kernel %s", buf.Len(), e.kernel.Release)
	return p
}

// buildRootDir lays out the disk: busybox as the system's tools, the
// init script, squashportage, a Portage-like image made by our own
// writer, and a corrupt image.
func buildRootDir(t *testing.T, dir, bin string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "etc", "var/cache/squashportage", targetPath} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, busyboxPath, filepath.Join(root, "bin/busybox"), 0o755)
	for _, app := range strings.Fields(run(t, "", busyboxPath, "--list")) {
		if app == "busybox" || app == "init" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "sbin/init"), []byte(realInit), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin, filepath.Join(root, "usr/bin/squashportage"), 0o755)

	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := testtree.GeneratePortage(tree, testtree.PortageOptions{Scale: 0.003, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if rc := mksquashfs.Main([]string{tree, filepath.Join(root, imagePath), "-noappend", "-quiet"}, &out, &out); rc != 0 {
		t.Fatalf("mksquashfs: exit %d\n%s", rc, out.String())
	}
	// A squashfs superblock magic followed by garbage: it gets past a
	// magic check and must be refused by the kernel or our checks.
	junk := append([]byte("hsqs"), bytes.Repeat([]byte{0xA5}, 128<<10)...)
	if err := os.WriteFile(filepath.Join(root, corruptPath), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// disk makes an ext4 image of the root template without mounting
// anything (mkfs.ext4 -d).
func (e *env) disk(t *testing.T, name string) string {
	t.Helper()
	img := filepath.Join(e.dir, "disk-"+name+".img")
	run(t, "", "mkfs.ext4", "-q", "-F", "-U", rootUUID, "-L", rootLabel, "-d", e.rootDir, img, "128M")
	return img
}

// boot runs QEMU until the guest powers off and returns the console.
func (e *env) boot(t *testing.T, disk, cmdline string) string {
	t.Helper()
	return e.bootWith(t, e.initramfs, disk, cmdline)
}

// bootWith boots a given initramfs. With E2E_LOGDIR set, the console is
// kept there as NAME.console.
func (e *env) bootWith(t *testing.T, initrd, disk, cmdline string) string {
	t.Helper()
	dir := os.Getenv("E2E_LOGDIR")
	if dir == "" {
		dir = e.dir
	}
	serial := filepath.Join(dir, t.Name()[strings.LastIndex(t.Name(), "/")+1:]+".console")
	os.Remove(serial)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", "512", "-smp", "1", "-accel", "tcg",
		"-kernel", e.kernel.Image, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 "+cmdline,
		"-drive", "file="+disk+",format=raw,if=virtio",
		"-serial", "file:"+serial, "-monitor", "none")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	b, _ := os.ReadFile(serial)
	log := strings.ReplaceAll(string(b), "\r\n", "\n")
	if ctx.Err() != nil {
		t.Fatalf("boot did not finish within %s; console:\n%s", bootTimeout, log)
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s\nconsole:\n%s", err, out, log)
	}
	t.Logf("boot took %s wall; handover: %s", wall.Round(100*time.Millisecond), handoverLine(log))
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "squashportage: error") {
			t.Logf("console: %s", l)
		}
	}
	return log
}

// bootTyping boots with the console on QEMU's stdio and, when a console
// line contains trigger, types input into it.
func (e *env) bootTyping(t *testing.T, disk, cmdline, trigger, input string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", "512", "-smp", "1", "-accel", "tcg",
		"-kernel", e.kernel.Image, "-initrd", e.initramfs,
		"-append", "console=ttyS0 panic=-1 "+cmdline,
		"-drive", "file="+disk+",format=raw,if=virtio",
		"-serial", "stdio", "-monitor", "none")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stdout)
	typed := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		if !typed && strings.Contains(line, trigger) {
			typed = true
			// Give the shell a moment to open the terminal.
			time.Sleep(time.Second)
			io.WriteString(stdin, input)
		}
	}
	err = cmd.Wait()
	stdin.Close()
	if dir := os.Getenv("E2E_LOGDIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "rescue-shell.console"), []byte(log.String()), 0o644)
	}
	if ctx.Err() != nil {
		t.Fatalf("boot did not finish within %s; console:\n%s", bootTimeout, log.String())
	}
	if err != nil {
		t.Fatalf("qemu: %v\nconsole:\n%s", err, log.String())
	}
	if !typed {
		t.Fatalf("console never showed %q; console:\n%s", trigger, log.String())
	}
	return log.String()
}

func handoverLine(log string) string {
	m := regexp.MustCompile(`squashportage: starting \S+.* after (\S+) in the initramfs \((\S+) since the kernel started\)`).FindStringSubmatch(log)
	if m == nil {
		return "(no handover line)"
	}
	return fmt.Sprintf("%s in the initramfs, init started %s after kernel start", m[1], m[2])
}
