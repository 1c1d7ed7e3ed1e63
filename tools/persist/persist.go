// Package persist is `squashportage persist`: it folds the changes of
// managed overlays into new images.
package persist

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/overlay"
)

const usage = `Usage: squashportage persist [--dry-run] [--force] [--compact] [--if-managed] [--json] [--wait D] [--state-dir DIR] [TARGET...]
       squashportage compact [options] [TARGET...]   (persist --compact)

Writes the changes of each managed overlay (all of them without TARGET;
a TARGET may be relative or reached through a symlink), when its upper
holds some: with a tmpfs upper, as a delta layer stacked on the image
(see below); once layers=N of them are stacked (default 8), and at every
persist with layers=0 or a disk upper, as the merged view in a new
squashfs image:

  - unchanged files keep their compressed blocks, copied verbatim in their
    old order: the cost is what changed, not the tree;
  - the new image is written beside IMAGE as IMAGE.new, synced, verified
    by reading back every table and block, and renamed over IMAGE; the
    previous image stays as IMAGE.old (keep=N in the spec keeps more);
    a power cut at any instant leaves IMAGE complete, old or new;
  - while it folds, the target is read-only (writers get EROFS; files
    open for writing are waited for, up to --wait); then a new overlay on
    the new image with an empty upper takes its place in one step, freeing
    the RAM. Nothing written before, during or after is lost.

A delta layer holds only the upper's changes, as a small squashfs image
(IMAGE.layer-NNNN) stacked on IMAGE and named in IMAGE.layers; when the
layers reach layers=N (or compact=P% of IMAGE's size), or with
--compact, persist folds IMAGE, the layers and the upper into a new
IMAGE as above and removes the layers.

Nothing is written when the upper is empty, when the spec says
persist=never or ro, below threshold=, when /etc/killpower or
/etc/nut/killpower exists, or on battery (unless --force). When the
upper ran full (writes may have failed with ENOSPC), persist refuses
until --force says the tree was checked.
On any failure the image and the upper stay as they were.

Options:
  --compact        fold the delta layers into a new image now
  --dry-run        say what would be written
  --force          persist even below the threshold, on battery, with a
                   killpower flag, or when the upper ran full
  --if-managed     a TARGET squashportage does not manage is not worth a
                   message, only exit status 3 (for scripts such as the
                   Portage postsync hook)
  --json           print the results as JSON
  --processors N   compression goroutines (default: all CPUs)
  --wait DURATION  how long to wait for files open for writing in the
                   target to be closed (default 30s), e.g. 2m
  --state-dir DIR  where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  -v, --verbose    tell each step
  -h, --help       show this help

Exit status: 0 done (or nothing to do), 1 a persist failed, 2 bad usage,
3 a TARGET is not managed by squashportage (nothing was persisted).
`

// notManaged is the exit status for a TARGET without a record.
const notManaged = 3

// Main runs the command with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("persist", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "")
	force := fs.Bool("force", false, "")
	compact := fs.Bool("compact", false, "")
	ifManaged := fs.Bool("if-managed", false, "")
	asJSON := fs.Bool("json", false, "")
	procs := fs.Int("processors", runtime.NumCPU(), "")
	wait := fs.Duration("wait", overlay.DefaultWriterWait, "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	var verbose bool
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	targets, err := cliflag.Parse(fs, args)
	if err == nil {
		targets, err = overlay.ResolveTargets(*stateDir, targets)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "squashportage persist: %v (see squashportage persist --help)\n", err)
		return 2
	}
	if *procs < 1 {
		fmt.Fprintf(stderr, "squashportage persist: --processors must be at least 1\n")
		return 2
	}
	var states []*overlay.State
	if len(targets) == 0 {
		all, err := overlay.List(*stateDir)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage persist: %v\n", err)
			return 1
		}
		states = all
		if len(states) == 0 && !*asJSON {
			fmt.Fprintln(stdout, "squashportage persist: no managed mounts")
		}
	}
	for _, t := range targets {
		st, err := overlay.Load(*stateDir, t)
		if err != nil {
			return loadFailed(stderr, err, *ifManaged)
		}
		states = append(states, st)
	}
	opts := overlay.PersistOptions{DryRun: *dry, Force: *force, Compact: *compact, Workers: *procs, WriterWait: *wait}
	// On a terminal a persist shows its phases and a bar while it writes
	// (a comp= change recompresses everything: minutes on slow CPUs);
	// elsewhere (a service's log) only -v makes it talk.
	var bar *progress.Bar
	if progress.IsTerminal(stderr) && !*asJSON {
		bar = progress.NewBar(stderr, "")
		opts.Progress = bar.Update
	}
	if verbose || bar != nil {
		opts.Log = func(format string, a ...any) {
			if bar != nil {
				bar.Done()
			}
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	status := 0
	var results []result
	for _, st := range states {
		res, err := overlay.Persist(st, opts)
		if bar != nil {
			bar.Done()
		}
		r := result{PersistResult: res, DurationSeconds: res.Duration.Seconds()}
		if err != nil {
			r.Error = err.Error()
			status = 1
			if !*asJSON {
				fmt.Fprintf(stderr, "squashportage persist: %v\n", err)
			}
		} else if !*asJSON {
			fmt.Fprintln(stdout, describe(res))
		}
		results = append(results, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if results == nil {
			results = []result{}
		}
		enc.Encode(results)
	}
	return status
}

// loadFailed reports a TARGET whose record could not be loaded and
// returns the exit status: notManaged for a target without a record.
func loadFailed(stderr io.Writer, err error, quietUnmanaged bool) int {
	if errors.Is(err, overlay.ErrNotManaged) {
		if !quietUnmanaged {
			fmt.Fprintf(stderr, "squashportage persist: %v\n", err)
		}
		return notManaged
	}
	fmt.Fprintf(stderr, "squashportage persist: %v\n", err)
	return 1
}

// result is one target's line of --json: PersistResult's fields, named
// like status --json's, with the time in seconds.
type result struct {
	overlay.PersistResult
	DurationSeconds float64 `json:"duration_seconds"`
	Error           string  `json:"error,omitempty"`
}

func describe(r overlay.PersistResult) string {
	if !r.Written {
		return fmt.Sprintf("%s: %s", r.Target, r.Skipped)
	}
	if r.Layer != "" {
		return fmt.Sprintf("%s: wrote layer %s (%d bytes; %d layers on %s) in %v, %d bytes written to storage",
			r.Target, r.Layer, r.ImageSize, r.Layers, r.Image, r.Duration.Round(1e6), r.BytesWritten)
	}
	s := fmt.Sprintf("%s: wrote %s (%d bytes, was %d) in %v: %d files reused (%.1f MB copied), %.1f MB new data, %d fragment blocks kept, %d repacked",
		r.Target, r.Image, r.ImageSize, r.OldImageSize, r.Duration.Round(1e6), r.Stats.ReusedFiles,
		float64(r.Stats.ReusedBytes)/1e6, float64(r.Stats.NewBytes)/1e6, r.Stats.FragmentsKept, r.Stats.FragmentsRepacked)
	if r.Remounted {
		s += "; remounted with an empty upper"
	}
	return s
}
