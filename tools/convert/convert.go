// Package convert is `squashportage convert`: it turns an existing tree
// (the Portage tree a machine already has) into an image and says how to
// mount it.
package convert

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/overlay/convert"
	"github.com/squashportage/squashportage/squash/codec"
)

const usage = `Usage: squashportage convert [options] DIR IMAGE

Turns the tree at DIR (e.g. /var/db/repos/gentoo) into the squashfs image
IMAGE, to be mounted at DIR from then on:

  1. writes IMAGE.new, a reproducible SquashFS 4.0 image, and syncs it;
  2. mounts IMAGE.new read-only through a loop device, as the kernel will
     at boot, and compares every entry with DIR: type, mode, owner, mtime,
     size, content, symlink target, device numbers, xattrs (user.,
     trusted., security.) and hard links; any difference fails;
  3. renames IMAGE.new to IMAGE and syncs its directory;
  4. with --remove-source, empties DIR (the directory itself stays, as
     the mount point); without, leaves DIR untouched;
  5. prints the kernel command line parameter and the
     /etc/squashportage.conf line that mount IMAGE at DIR.

On failure only IMAGE.new is removed; DIR and an existing IMAGE stay.
Run it when nothing writes to DIR (not during emerge --sync). It needs
root (loop devices, mount).

Options:
  --comp C             gzip, xz, lz4 or zstd (default: comp= of
                       --spec-options, else gzip, which every kernel with
                       squashfs reads; the others need their own
                       CONFIG_SQUASHFS_* option)
  --block SIZE         data block size, 4k..1m, a power of two (default:
                       block= of --spec-options, else 128k)
  --spec-options OPTS  the OPTIONS of the printed spec, e.g.
                       size=1g,keep=3 (see squashportage mount --help)
  --remove-source      empty DIR once the image is verified and on disk
  --force              replace an existing IMAGE
  --processors N       compression and comparison goroutines (default:
                       all CPUs)
  --state-dir DIR      where mounts are recorded (default ` + overlay.DefaultStateDir + `);
                       a DIR mounted by squashportage is refused
  --no-progress        on a terminal too, print neither the phases nor
                       the progress bar (without -v)
  -v, --verbose        tell each step (on a terminal: the default, with
                       a progress bar for writing and verifying)
  -h, --help           show this help

Example:
  squashportage convert --comp zstd /var/db/repos/gentoo /var/cache/squashportage/gentoo.sqfs

Exit status: 0 converted, 1 failed, 2 bad usage.
`

// isTerminal says whether stderr gets the phases and the progress bar.
var isTerminal = progress.IsTerminal

// Main runs the command with args (without the command name) and returns
// the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	comp := fs.String("comp", "", "")
	block := fs.String("block", "", "")
	specOpts := fs.String("spec-options", "", "")
	remove := fs.Bool("remove-source", false, "")
	force := fs.Bool("force", false, "")
	noProgress := fs.Bool("no-progress", false, "")
	procs := fs.Int("processors", runtime.NumCPU(), "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	var verbose bool
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	pos, err := cliflag.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "squashportage convert: "+format+" (see squashportage convert --help)\n", a...)
		return 2
	}
	if err != nil {
		return bad("%v", err)
	}
	if len(pos) != 2 {
		return bad("want DIR and IMAGE, got %d arguments", len(pos))
	}
	opts := convert.Options{SpecOptions: *specOpts, RemoveSource: *remove, Replace: *force, Workers: *procs, StateDir: *stateDir}
	if *procs < 1 {
		return bad("--processors must be at least 1")
	}
	if *comp != "" {
		id, err := codec.ParseWritable(*comp)
		if err != nil {
			return bad("--comp: %v", err)
		}
		opts.Comp = id
	}
	if *block != "" {
		n, err := parseBlock(*block)
		if err != nil {
			return bad("--block %q: %v", *block, err)
		}
		opts.Block = n
	}
	// On a terminal the phases are told as with -v, and the two long ones
	// (write, verify) draw a bar; a phase's line ends the bar before it.
	var bar *progress.Bar
	endBar := func() {
		if bar != nil {
			bar.Done()
			bar = nil
		}
	}
	tty := isTerminal(stderr) && !*noProgress
	if verbose || tty {
		opts.Log = func(format string, a ...any) {
			endBar()
			fmt.Fprintf(stderr, "squashportage convert: "+format+"\n", a...)
		}
	}
	if tty {
		phase, last := "", int64(-1)
		opts.Progress = func(p string, done, total int64) {
			if p != phase {
				endBar()
				phase, last = p, -1
				unit := "B"
				if p == "verify" {
					unit = "" // entries
				}
				bar = progress.NewBar(stderr, unit)
			}
			if done != last { // the end of a phase may be told twice
				bar.Update(done, total)
				last = done
			}
		}
	}

	res, err := convert.Convert(pos[0], pos[1], opts)
	endBar()
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "squashportage convert: warning: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "squashportage convert: %v\n", err)
		return 1
	}
	report(stdout, res)
	return 0
}

func report(w io.Writer, res convert.Result) {
	sp := res.Spec
	fmt.Fprintf(w, "wrote %s: %d entries, %.1f MB of files in %.1f MB, verified by mounting it (%s)\n",
		res.Image, res.Entries, float64(res.Bytes)/1e6, float64(res.ImageSize)/1e6, res.Duration.Round(1e8))
	if res.Removed {
		fmt.Fprintf(w, "emptied %s: it is now the mount point\n", sp.Target)
	} else {
		fmt.Fprintf(w, "left %s as it was: empty it before mounting (or rerun with --remove-source);\n"+
			"mounting over it with --force would only hide its files\n", sp.Target)
	}
	fmt.Fprintf(w, `
Mount it at boot in one of two ways:
  with the squashportage initramfs, add to the kernel command line:
    %s
  or with the OpenRC or systemd service, add this line to /etc/squashportage.conf:
    %s
Mount it now with: squashportage mount %s
`, convert.KernelParam(sp), sp.String(), sp.String())
}

// parseBlock reads 131072, 128k or 1m.
func parseBlock(v string) (int, error) {
	s := strings.ToLower(v)
	shift := 0
	switch {
	case strings.HasSuffix(s, "k"):
		shift, s = 10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		shift, s = 20, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0, errors.New("want a power of two from 4k to 1m")
	}
	n <<= shift
	if n < 4<<10 || n > 1<<20 || n&(n-1) != 0 {
		return 0, errors.New("want a power of two from 4k to 1m")
	}
	return n, nil
}
