// Command modcost measures what loading a kernel's modules costs at boot,
// and how much of it is the check of their signatures: it boots Debian's
// kernel (the one the e2e test uses) under QEMU with an initramfs whose
// /init loads the modules the e2e test's initramfs gives PID 1 (the base
// modules and a virtio disk's, with their dependencies), timing each, once with Debian's signed files and
// once with the same files with their signatures cut off (which the
// kernel loads, tainting itself), on QEMU's instruction clock and on the
// host's.
//
//	go run ./testdata/modcost [-cpu MODEL]
//
// -cpu passes QEMU a processor model (e.g. max) in place of its qemu64.
// Needs qemu-system-x86_64; the kernel is cached as for make e2e.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/squashportage/squashportage/boot/initramfs"
	"github.com/squashportage/squashportage/boot/kmod"
	"github.com/squashportage/squashportage/internal/vmtest"
)

const sigMagic = "~Module signature appended~\n"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "modcost:", err)
		os.Exit(1)
	}
}

func run() error {
	cpu := flag.String("cpu", "", "QEMU -cpu model (default QEMU's qemu64)")
	flag.Parse()
	cache, err := vmtest.CacheDir()
	if err != nil {
		return err
	}
	k, err := vmtest.DebianKernel(cache, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "modcost")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	guest := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", guest, "./testdata/modcost/guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the guest: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "disk.img") // gives virtio_blk a device to probe
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		return err
	}
	// The modules and order of the e2e test's initramfs, which PID 1 loads.
	l, err := kmod.NewLoader(k.Modules, nil)
	if err != nil {
		return err
	}
	files, err := l.Dep.Order(append(initramfs.BaseModules(), vmtest.DiskModules()...))
	if err != nil {
		return err
	}
	initrds := map[bool]string{}
	for _, signed := range []bool{true, false} {
		initrds[signed] = filepath.Join(dir, fmt.Sprintf("initrd-signed-%v.gz", signed))
		if err := writeInitrd(initrds[signed], guest, k.Modules, files, signed); err != nil {
			return err
		}
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = kmod.Name(f)
	}
	fmt.Printf("kernel %s; %d modules: %s\n\n", k.Release, len(files), strings.Join(names, " "))
	fmt.Println("| clock | modules | total | per module (ms) |")
	fmt.Println("|---|---|---|---|")
	for _, icount := range []bool{true, false} {
		for _, signed := range []bool{true, false} {
			res, err := vmtest.Boot{Kernel: k, Initrd: initrds[signed], Disk: disk, Timeout: 3 * time.Minute,
				InstructionClock: icount, CPU: *cpu}.Run(context.Background())
			if err != nil {
				return fmt.Errorf("boot: %v\n%s", err, res.Log)
			}
			per, total, err := parse(res.Log)
			if err != nil {
				return fmt.Errorf("%v\n%s", err, res.Log)
			}
			clock, kind := "host", "unsigned copies"
			if icount {
				clock = "instruction"
			}
			if signed {
				kind = "Debian's, signed"
			}
			fmt.Printf("| %s | %s | %.1f ms | %s |\n", clock, kind, total, per)
		}
	}
	return nil
}

// writeInitrd makes an initramfs of guest as /init and the module files,
// decompressed as the project's initramfs stores them, listed in load
// order in /modcost.list; unsigned strips each signature.
func writeInitrd(path, guest, modDir string, files []string, signed bool) error {
	a := initramfs.NewArchive()
	b, err := os.ReadFile(guest)
	if err != nil {
		return err
	}
	a.File("init", 0o755, b)
	a.Dir("dev", 0o755)
	a.Dir("proc", 0o755)
	a.CharDev("dev/console", 0o600, 5, 1)
	var list []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil {
			return err
		}
		// A kernel that ships .ko.xz or .ko.zst: the signature is inside.
		plain, b, err := kmod.Uncompressed(f, b)
		if err != nil {
			return err
		}
		if !signed {
			if b, err = stripSignature(b); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		p := "m/" + filepath.Base(plain)
		a.File(p, 0o644, b)
		list = append(list, "/"+p)
	}
	a.File("modcost.list", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// stripSignature cuts a module's appended signature: the PKCS#7 data, the
// 12-byte module_signature record (its last 4 bytes the data's length,
// big-endian) and the magic string.
func stripSignature(b []byte) ([]byte, error) {
	if !bytes.HasSuffix(b, []byte(sigMagic)) {
		return nil, errors.New("not signed")
	}
	end := len(b) - len(sigMagic)
	if end < 12 {
		return nil, errors.New("signature record cut short")
	}
	n := int(binary.BigEndian.Uint32(b[end-4 : end]))
	if n > end-12 {
		return nil, errors.New("signature longer than the file")
	}
	return b[:end-12-n], nil
}

var lineRE = regexp.MustCompile(`MODCOST (\S+) (\d+)(?: err=(.*))?`)

func parse(log string) (string, float64, error) {
	var per []string
	total := -1.0
	for _, m := range lineRE.FindAllStringSubmatch(log, -1) {
		us, _ := strconv.Atoi(m[2])
		if m[1] == "total" {
			total = float64(us) / 1000
			continue
		}
		if e := strings.TrimSpace(m[3]); e != "<nil>" {
			return "", 0, fmt.Errorf("loading %s: %s", m[1], e)
		}
		per = append(per, fmt.Sprintf("%s %.1f", strings.TrimSuffix(filepath.Base(m[1]), ".ko"), float64(us)/1000))
	}
	if total < 0 {
		return "", 0, errors.New("no total in the console")
	}
	return strings.Join(per, ", "), total, nil
}
