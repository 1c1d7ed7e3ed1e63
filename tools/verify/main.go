// Package verify is the "squashportage verify" subcommand: read every table
// and block of an image and report the first fault.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
)

const usage = "Usage: squashportage verify [-q] [-n] [--record-sums] IMAGE\n\n" +
	"Reads every metadata table and data block of IMAGE and checks that they\n" +
	"decode and agree. Data and fragment blocks that do not decode are listed\n" +
	"with the files (paths in the image) whose contents they hold. The delta\n" +
	"layers IMAGE.layers names (layers= in a spec) are checked against their\n" +
	"recorded size and sha256 and verified as well.\n" +
	"Exit status 0 if the image is sound, 1 otherwise.\n" +
	"  -q, --quiet        print nothing on success\n" +
	"  -n, --no-progress  no progress bar\n" +
	"  --record-sums      if IMAGE is sound and has no block sum record (images\n" +
	"                     from mksquashfs have none), append one past its 4K\n" +
	"                     padding, where the kernel and other tools never look:\n" +
	"                     the first persist from IMAGE then reads the blocks it\n" +
	"                     keeps instead of decompressing every one (on slow\n" +
	"                     machines, seconds at shutdown). IMAGE may be mounted;\n" +
	"                     a regular file only, with nothing after its padding\n"

// Main runs "squashportage verify" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	var image string
	var o options
	for i, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			io.WriteString(stdout, usage)
			return 0
		case a == "-q" || a == "-quiet" || a == "--quiet":
			o.quiet = true
		case a == "-n" || a == "-no-progress" || a == "--no-progress":
			o.noProgress = true
		case a == "--record-sums" || a == "-record-sums":
			o.recordSums = true
		case a == "--":
			if i+1 < len(args) && image == "" && i+2 == len(args) {
				image = args[i+1]
			} else {
				fmt.Fprint(stderr, "verify: expected exactly one image\n"+usage)
				return 1
			}
			return runStack(image, o, stdout, stderr)
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "verify: unknown option %s\n%s", a, usage)
			return 1
		default:
			if image != "" {
				fmt.Fprint(stderr, "verify: expected exactly one image\n"+usage)
				return 1
			}
			image = a
		}
	}
	if image == "" {
		fmt.Fprint(stderr, "verify: no image given\n"+usage)
		return 1
	}
	return runStack(image, o, stdout, stderr)
}

type options struct {
	quiet, noProgress bool
	recordSums        bool // for the image, not its layers (persist records theirs)
}

// runStack verifies image and the delta layers its record names: the
// whole stack a mount would show.
func runStack(image string, o options, stdout, stderr io.Writer) int {
	if code := run(image, o, stdout, stderr); code != 0 {
		return code
	}
	layers, err := overlay.LayerFiles(image)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %s: FAULT: %v\n", image, err)
		return 1
	}
	for _, l := range layers {
		o.recordSums = false
		if code := run(l, o, stdout, stderr); code != 0 {
			return code
		}
	}
	return 0
}

func run(image string, o options, stdout, stderr io.Writer) int {
	rc, err := squash.OpenFile(image)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 1
	}
	defer rc.Close()
	var onProgress func(done, total int64)
	var bar *progress.Bar
	if !o.quiet && !o.noProgress && progress.IsTerminal(stderr) {
		bar = progress.NewBar(stderr, "")
		onProgress = bar.Update
	}
	start := time.Now()
	note := ""
	if o.recordSums {
		var n int
		n, err = recordSums(image, onProgress)
		switch {
		case errors.Is(err, squash.ErrHasBlockSums):
			note = "; it had block sums already"
			err = rc.Verify(context.Background(), onProgress)
		case err == nil:
			note = fmt.Sprintf("; block sums recorded for %d block%s", n, map[bool]string{true: "s"}[n != 1])
		}
	} else {
		err = rc.Verify(context.Background(), onProgress)
	}
	if bar != nil {
		bar.Done()
	}
	var de *squash.DamageError
	if errors.As(err, &de) {
		printDamage(stderr, image, de)
		return 1
	}
	if err != nil && o.recordSums && !squash.IsCorrupt(err) {
		fmt.Fprintf(stderr, "verify: %s: no block sums recorded: %v\n", image, err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "verify: %s: FAULT: %v\n", image, err)
		return 1
	}
	if !o.quiet {
		sb := rc.Superblock()
		fmt.Fprintf(stdout, "%s: OK: %d inodes, %d fragments, %d bytes, %s, block size %d (%.1fs)%s\n",
			image, sb.Inodes, sb.Fragments, sb.BytesUsed, sb.Compression, sb.BlockSize, time.Since(start).Seconds(), note)
	}
	return 0
}

// recordSums verifies image and records its block sums (see
// squash.AddBlockSums).
func recordSums(image string, progress func(done, total int64)) (int, error) {
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	n, err := squash.AddBlockSums(context.Background(), f, squash.VerifyOptions{Progress: progress})
	if cerr := f.Close(); err == nil && cerr != nil {
		return 0, cerr
	}
	return n, err
}

// printDamage lists each damaged block and, below it, every file whose data
// or tail it holds.
func printDamage(w io.Writer, image string, de *squash.DamageError) {
	paths := de.Paths()
	fmt.Fprintf(w, "verify: %s: FAULT: %d damaged data or fragment blocks, %d files affected\n", image, len(de.Faults), len(paths))
	for _, f := range de.Faults {
		if f.Fragment {
			fmt.Fprintf(w, "  fragment block %d at %#x: %v\n", f.Index, f.Pos, f.Err)
			fmt.Fprintf(w, "    holds the tails of:\n")
		} else {
			fmt.Fprintf(w, "  data block %d at %#x: %v\n", f.Index, f.Pos, f.Err)
			fmt.Fprintf(w, "    of:\n")
		}
		for _, p := range f.Paths {
			fmt.Fprintf(w, "      %s\n", p)
		}
	}
}
