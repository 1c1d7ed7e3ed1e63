// Package verify is the "squashportage verify" subcommand: read every table
// and block of an image and report the first fault.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
)

const usage = "Usage: squashportage verify [-q] [-n] IMAGE\n\n" +
	"Reads every metadata table and data block of IMAGE and checks that they\n" +
	"decode and agree. Data and fragment blocks that do not decode are listed\n" +
	"with the files (paths in the image) whose contents they hold. The delta\n" +
	"layers IMAGE.layers names (layers= in a spec) are checked against their\n" +
	"recorded size and sha256 and verified as well.\n" +
	"Exit status 0 if the image is sound, 1 otherwise.\n" +
	"  -q, --quiet        print nothing on success\n" +
	"  -n, --no-progress  no progress bar\n"

// Main runs "squashportage verify" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	var image string
	quiet, noProgress := false, false
	for i, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			io.WriteString(stdout, usage)
			return 0
		case a == "-q" || a == "-quiet" || a == "--quiet":
			quiet = true
		case a == "-n" || a == "-no-progress" || a == "--no-progress":
			noProgress = true
		case a == "--":
			if i+1 < len(args) && image == "" && i+2 == len(args) {
				image = args[i+1]
			} else {
				fmt.Fprint(stderr, "verify: expected exactly one image\n"+usage)
				return 1
			}
			return runStack(image, quiet, noProgress, stdout, stderr)
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
	return runStack(image, quiet, noProgress, stdout, stderr)
}

// runStack verifies image and the delta layers its record names: the
// whole stack a mount would show.
func runStack(image string, quiet, noProgress bool, stdout, stderr io.Writer) int {
	if code := run(image, quiet, noProgress, stdout, stderr); code != 0 {
		return code
	}
	layers, err := overlay.LayerFiles(image)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %s: FAULT: %v\n", image, err)
		return 1
	}
	for _, l := range layers {
		if code := run(l, quiet, noProgress, stdout, stderr); code != 0 {
			return code
		}
	}
	return 0
}

func run(image string, quiet, noProgress bool, stdout, stderr io.Writer) int {
	rc, err := squash.OpenFile(image)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 1
	}
	defer rc.Close()
	var onProgress func(done, total int64)
	var bar *progress.Bar
	if !quiet && !noProgress && progress.IsTerminal(stderr) {
		bar = progress.NewBar(stderr, "")
		onProgress = bar.Update
	}
	start := time.Now()
	err = rc.Verify(context.Background(), onProgress)
	if bar != nil {
		bar.Done()
	}
	var de *squash.DamageError
	if errors.As(err, &de) {
		printDamage(stderr, image, de)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "verify: %s: FAULT: %v\n", image, err)
		return 1
	}
	if !quiet {
		sb := rc.Superblock()
		fmt.Fprintf(stdout, "%s: OK: %d inodes, %d fragments, %d bytes, %s, block size %d (%.1fs)\n",
			image, sb.Inodes, sb.Fragments, sb.BytesUsed, sb.Compression, sb.BlockSize, time.Since(start).Seconds())
	}
	return 0
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
