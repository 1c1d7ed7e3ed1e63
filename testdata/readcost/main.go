// Command readcost measures what reading squashfs images costs the kernel,
// free of this machine's noise: it boots Debian's kernel (the one the e2e
// test uses) under QEMU with each image as the guest's disk, which its
// /init copies into RAM and mounts through a loop device, then reads
// three ways with the page cache dropped before each (every file in
// directory order, as tar does; every file of metadata/md5-cache when the
// image has one; an lstat of every entry, as find -ls does), on QEMU's
// instruction clock (1 ns per guest instruction, so the same image gives
// the same figure run after run, whatever else the host is doing),
// counting the loop device's reads.
//
//	go run ./testdata/readcost NAME=IMAGE...
//
// A cold read on the host varies by 5-20% from one read to the next
// (see make bench); this does not, but it counts instructions, not the
// time a processor's caches or a real disk would add.
// Needs qemu-system-x86_64; the kernel is cached as for make e2e.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/squashportage/squashportage/internal/vmtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "readcost:", err)
		os.Exit(1)
	}
}

func run() error {
	host := flag.Bool("host-clock", false, "time on the host's clock instead of the instruction count")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./testdata/readcost [-host-clock] NAME=IMAGE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	k, err := vmtest.CachedKernel()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "readcost")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "initrd.gz")
	g := vmtest.Guest{Kernel: k, Package: "./testdata/readcost/guest", List: "readcost.list",
		Modules: append([]string{"squashfs", "loop"}, vmtest.DiskModules()...)}
	if _, err := g.Write(initrd, dir); err != nil {
		return err
	}
	clock := "instruction count"
	if *host {
		clock = "host clock"
	}
	fmt.Printf("kernel %s, %s; ms (reads of the loop device)\n\n", k.Release, clock)
	fmt.Println("| image | size | whole tree | md5-cache | walk |")
	fmt.Println("|---|---|---|---|---|")
	for _, arg := range flag.Args() {
		name, img, ok := strings.Cut(arg, "=")
		if !ok {
			name, img = filepath.Base(arg), arg
		}
		fi, err := os.Stat(img)
		if err != nil {
			return err
		}
		res, err := vmtest.Boot{Kernel: k, Initrd: initrd, Disk: img, MemMB: 2048,
			Timeout: 60 * time.Minute, InstructionClock: !*host}.Run(context.Background())
		if err != nil {
			return fmt.Errorf("%s: boot: %v\n%s", name, err, res.Log)
		}
		row, err := parse(res.Log)
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, res.Log)
		}
		fmt.Printf("| %s | %.1f MB | %s | (boot %v wall)\n", name, float64(fi.Size())/1e6, row, res.Wall.Round(time.Second))
	}
	return nil
}

var lineRE = regexp.MustCompile(`READCOST (\S+) (\S+)(?: (\d+))?`)

// parse turns the guest's READCOST lines into the table's cells.
func parse(log string) (string, error) {
	cells := map[string]string{}
	for _, m := range lineRE.FindAllStringSubmatch(log, -1) {
		if m[1] == "error:" {
			return "", fmt.Errorf("guest: %s", strings.TrimPrefix(m[0], "READCOST error: "))
		}
		us, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return "", fmt.Errorf("bad line %q", m[0])
		}
		cells[m[1]] = fmt.Sprintf("%.1f (%s)", float64(us)/1000, m[3])
	}
	if len(cells) != 3 {
		return "", fmt.Errorf("%d of 3 readings in the console", len(cells))
	}
	return cells["tree"] + " | " + cells["md5"] + " | " + cells["walk"], nil
}
