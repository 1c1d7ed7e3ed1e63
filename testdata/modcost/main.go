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
	k, err := vmtest.CachedKernel()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "modcost")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "disk.img") // gives virtio_blk a device to probe
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		return err
	}
	// The modules and order of the e2e test's initramfs, which PID 1 loads.
	initrds := map[bool]string{}
	var files []string
	for _, signed := range []bool{true, false} {
		initrds[signed] = filepath.Join(dir, fmt.Sprintf("initrd-signed-%v.gz", signed))
		g := vmtest.Guest{Kernel: k, Package: "./testdata/modcost/guest", List: "modcost.list",
			Modules: append(initramfs.BaseModules(), vmtest.DiskModules()...)}
		if !signed {
			g.Edit = func(_ string, b []byte) ([]byte, error) { return stripSignature(b) }
		}
		if files, err = g.Write(initrds[signed], dir); err != nil {
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
