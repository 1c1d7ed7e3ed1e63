//go:build e2e

// Package e2e boots squashportage's initramfs under QEMU with a Debian
// kernel and a disk holding a small system, and checks from the serial
// console that the overlay is mounted at boot, persisted by the real
// init, and that a broken image or spec does not stop the machine from
// reaching its init. Run it with `make e2e` (root, qemu-system-x86,
// busybox-static, e2fsprogs, kmod).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/squashportage/squashportage/boot/initramfs"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/internal/vmtest"
	"github.com/squashportage/squashportage/tools/mksquashfs"
)

const (
	rootUUID    = "5e1f7a2c-0b3d-4c6e-9f80-a1b2c3d4e5f6"
	rootLabel   = "e2e-root"
	imagePath   = "/var/cache/squashportage/gentoo.sqfs"
	corruptPath = "/var/cache/squashportage/corrupt.sqfs"
	targetPath  = "/var/db/repos/gentoo"
	// A stack: an image with three delta layers, made on the host by
	// persists; the guest persists a fourth.
	layeredImage  = "/var/cache/squashportage/layered.sqfs"
	layeredTarget = "/var/db/repos/layered"
	// A second image and target, for the handover with two specs.
	image2Path  = "/var/cache/squashportage/linux.sqfs"
	target2Path = "/usr/src/linux"
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
echo "E2E: second mount=[$(grep " ` + target2Path + ` " /proc/mounts)]"
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
3|4)
	L=` + layeredTarget + `
	lowers=$(grep " $L " /proc/mounts | sed -n 's/.*lowerdir=\([^,]*\).*/\1/p' | tr ':' '\n' | wc -l)
	echo "E2E: layered lowers=$lowers markers=[$(cat $L/layer-* 2>&1 | tr '\n' ' ')]"
	if [ "$E2E_STEP" = 3 ]; then
		echo 4 > $L/layer-4
		squashportage persist $L
		echo "E2E: persist4 rc=$?"
	fi
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
	// The initramfs of make initramfs: u-root's commands, built by
	// u-root's builder, as the rescue toolset; no busybox.
	uroot := buildURoot(t, root, e.dir)
	e.initramfs = buildInitramfs(t, e, bin, uroot, "")
	e.rootDir = buildRootDir(t, e.dir, bin)

	diskA := e.disk(t, "a")
	t.Run("boot1-persist", func(t *testing.T) {
		log := e.boot(t, diskA, fmt.Sprintf("root=UUID=%s rw squashportage=%s:%s:layers=0 E2E_STEP=1 -- e2earg", rootUUID, imagePath, targetPath))
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
		log := e.boot(t, diskA, fmt.Sprintf("root=LABEL=%s rw squashportage=%s:%s:layers=0 E2E_STEP=2", rootLabel, imagePath, targetPath))
		expect(t, log,
			`E2E: init pid=1 args=\[\] step=\[2\]`,
			`E2E: upper-files=0 `,
			`E2E: marker=\[written at boot 1\]`,
			`E2E: marker-in-lower=\[written at boot 1\]`,
			`E2E: old image present`,
			`E2E: done`)
	})
	diskC := e.disk(t, "c")
	layered := fmt.Sprintf("squashportage=%s:%s:compact=1000%%", layeredImage, layeredTarget)
	t.Run("layers-boot-persist", func(t *testing.T) {
		log := e.boot(t, diskC, fmt.Sprintf("root=UUID=%s rw %s E2E_STEP=3", rootUUID, layered))
		expect(t, log,
			`squashportage: squashportage=\S+ mounted in`,
			`E2E: layered lowers=4 markers=\[1 2 3 \]`,
			`wrote layer `+regexp.QuoteMeta(layeredImage)+`\.layer-0004 `,
			`E2E: persist4 rc=0`,
			`E2E: done`)
	})
	t.Run("layers-boot-four", func(t *testing.T) {
		log := e.boot(t, diskC, fmt.Sprintf("root=UUID=%s rw %s E2E_STEP=4", rootUUID, layered))
		expect(t, log,
			`E2E: layered lowers=5 markers=\[1 2 3 4 \]`,
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
		bare := buildInitramfs(t, e, bin, "", "")
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
		// With u-root's commands, a missing root gives u-root's shell
		// (gosh) on the console; the test types into it once it is
		// announced: arithmetic only a shell does, u-root's ls and
		// poweroff.
		log := e.bootTyping(t, diskB, "root=LABEL=no-such-root squashportage.timeout=1",
			"starting rescue shell", "echo RESCUE-$((6*7)); ls /bbin/gosh /lib/modules; poweroff\n")
		expect(t, log,
			`squashportage: error: boot failed: root filesystem not available`,
			`squashportage: starting rescue shell /bin/sh \(u-root's gosh\) on the console`,
			`RESCUE-42`,
			`^gosh$`, // u-root's ls names a file argument by its base name
			`^6\.\d+\.\S+$`)
	})
	// PID 1's handover time (start of /init to exec of the real init)
	// with two images; reported, not enforced. Twice: on the host's
	// clock, which under TCG counts QEMU translating the guest's code
	// (a Go program's runtime start alone takes over 100 ms there), and
	// on the instruction clock (1 ns per guest instruction), which counts
	// the guest's own work, as a 1 GHz CPU doing one instruction a cycle
	// would.
	twoImages := fmt.Sprintf("root=UUID=%s squashportage=%s:%s squashportage=%s:%s:ro",
		rootUUID, imagePath, targetPath, image2Path, target2Path)
	for _, name := range []string{"two-images", "two-images-instruction-clock"} {
		t.Run(name, func(t *testing.T) {
			log := e.boot(t, diskB, twoImages)
			expect(t, log,
				`squashportage: squashportage=\S+ mounted in`,
				`squashportage: squashportage=\S+ mounted in`,
				`squashportage: handover: \S+ from the start of /init to the exec of /sbin/init \(\S+ in main: \S+ loading \d+ modules, \S+ waiting for the root device, \S+ of our own\)`,
				`E2E: init pid=1 `,
				`E2E: tree=\[gentoo\]`,
				// An ro spec is the image alone, without an overlay.
				`E2E: second mount=\[/dev/loop\d+ `+target2Path+` squashfs ro,`,
				`E2E: done`)
			t.Logf("HANDOVER with 2 images (%s): %s", name, handoverLine(log))
		})
	}
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

// cacheDir keeps the downloaded kernel between runs (E2E_CACHE, else
// the user's cache directory).
func cacheDir(t *testing.T) string {
	t.Helper()
	dir, err := vmtest.CacheDir()
	if err != nil {
		t.Fatal(err)
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

// buildURoot runs u-root's builder on the commands go.mod pins.
func buildURoot(t *testing.T, root, dir string) string {
	t.Helper()
	cmds, err := initramfs.URootCommands(root)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "uroot.cpio")
	start := time.Now()
	if err := initramfs.BuildURoot(context.Background(), "", root, p, cmds); err != nil {
		t.Fatal(err)
	}
	t.Logf("u-root builder: %d commands in %s", len(cmds), time.Since(start).Round(time.Second))
	return p
}

func buildInitramfs(t *testing.T, e *env, bin, uroot, busybox string) string {
	t.Helper()
	p := filepath.Join(e.dir, "initramfs.cpio.gz")
	if uroot == "" && busybox == "" {
		p = filepath.Join(e.dir, "initramfs-bare.cpio.gz")
	}
	n, err := vmtest.WriteInitramfs(p, e.kernel, bin, uroot, busybox)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs: %d bytes, kernel %s", n, e.kernel.Release)
	return p
}

// buildRootDir lays out the disk: busybox as the system's tools, the
// init script, squashportage, a Portage-like image made by our own
// writer, and a corrupt image.
func buildRootDir(t *testing.T, dir, bin string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	if err := vmtest.LayoutRoot(root, bin, realInit, "var/cache/squashportage", targetPath, target2Path, layeredTarget); err != nil {
		t.Fatal(err)
	}
	makeImage(t, filepath.Join(dir, "tree"), filepath.Join(root, imagePath), 0.003, 7)
	makeImage(t, filepath.Join(dir, "tree3"), filepath.Join(root, layeredImage), 0.002, 13)
	makeLayers(t, bin, dir, filepath.Join(root, layeredImage), 3)
	// The second image: a smaller tree of its own.
	makeImage(t, filepath.Join(dir, "tree2"), filepath.Join(root, image2Path), 0.001, 11)
	// A squashfs superblock magic followed by garbage: it gets past a
	// magic check and must be refused by the kernel or our checks.
	junk := append([]byte("hsqs"), bytes.Repeat([]byte{0xA5}, 128<<10)...)
	if err := os.WriteFile(filepath.Join(root, corruptPath), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// makeLayers stacks n delta layers on image with the squashportage
// binary, as persists on the host would: mount, write layer-N, persist.
func makeLayers(t *testing.T, bin, dir, image string, n int) {
	t.Helper()
	state, target := filepath.Join(dir, "layers-state"), filepath.Join(dir, "layers-target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	sp := "--state-dir"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("squashportage %v: %v\n%s", args, err, out)
		}
	}
	run("mount", sp, state, image+":"+target+":compact=1000%")
	defer exec.Command(bin, "umount", "--discard", sp, state, target).Run()
	for i := 1; i <= n; i++ {
		if err := os.WriteFile(filepath.Join(target, fmt.Sprintf("layer-%d", i)), []byte(fmt.Sprintf("%d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		run("persist", sp, state, target)
	}
	run("umount", sp, state, target)
	layers, _ := filepath.Glob(image + ".layer-*")
	if len(layers) != n {
		t.Fatalf("%d layers made, want %d: %v", len(layers), n, layers)
	}
}

// makeImage generates a Portage-like tree at tree and writes its image
// with our own writer.
func makeImage(t *testing.T, tree, image string, scale float64, seed int64) {
	t.Helper()
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := testtree.GeneratePortage(tree, testtree.PortageOptions{Scale: scale, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if rc := mksquashfs.Main([]string{tree, image, "-noappend", "-quiet"}, &out, &out); rc != 0 {
		t.Fatalf("mksquashfs: exit %d\n%s", rc, out.String())
	}
}

// disk makes an ext4 image of the root template without mounting
// anything (mkfs.ext4 -d).
func (e *env) disk(t *testing.T, name string) string {
	t.Helper()
	img := filepath.Join(e.dir, "disk-"+name+".img")
	if err := vmtest.MakeDisk(img, e.rootDir, rootUUID, rootLabel, "128M"); err != nil {
		t.Fatal(err)
	}
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
	res, err := vmtest.Boot{Kernel: e.kernel, Initrd: initrd, Disk: disk, Cmdline: cmdline,
		Timeout: bootTimeout, Console: serial, InstructionClock: strings.HasSuffix(t.Name(), "-instruction-clock")}.Run(context.Background())
	log := res.Log
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, log)
	}
	t.Logf("boot took %s wall; handover: %s", res.Wall.Round(100*time.Millisecond), handoverLine(log))
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
	b := vmtest.Boot{Kernel: e.kernel, Initrd: e.initramfs, Disk: disk, Cmdline: cmdline,
		Timeout: bootTimeout, Trigger: trigger, Input: input}
	if dir := os.Getenv("E2E_LOGDIR"); dir != "" {
		b.Console = filepath.Join(dir, "rescue-shell.console")
	}
	res, err := b.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, res.Log)
	}
	if !res.Typed {
		t.Fatalf("console never showed %q; console:\n%s", trigger, res.Log)
	}
	return res.Log
}

func handoverLine(log string) string {
	h, ok := vmtest.ReadHandover(log)
	if !ok {
		return "(no handover line)"
	}
	return h.String()
}
