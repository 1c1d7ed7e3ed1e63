// Package status is `squashportage status`: what is mounted, how full the
// uppers are, and what a persist would write.
package status

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/squashportage/squashportage/overlay"
)

const usage = `Usage: squashportage status [--json] [--state-dir DIR]

Shows every mount made by squashportage: its image (compressor, size),
where its changes live and how full that is, how many entries were
changed, added and deleted, how many bytes the next persist would write,
and the last persist. Warns when Portage's DISTDIR or PKGDIR lies inside a
managed target.

Options:
  --json           print JSON instead of a table
  --state-dir DIR  where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  -h, --help       show this help

`

// Main runs the command with args (without the command name) and returns
// the exit status: 0 done, 1 a mount could not be inspected, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, stdout, stderr, func() overlay.PortageDirs { return overlay.ReadPortageDirs("") })
}

// output is the JSON form.
type output struct {
	Mounts   []overlay.Report `json:"mounts"`
	Warnings []string         `json:"warnings"`
	Errors   []string         `json:"errors,omitempty"`
}

func run(args []string, stdout, stderr io.Writer, portage func() overlay.PortageDirs) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
			err = fmt.Errorf("unknown option --%s", strings.TrimLeft(name, "-"))
		}
		fmt.Fprintf(stderr, "squashportage status: %v (see squashportage status --help)\n", err)
		return 2
	}

	states, err := overlay.List(*stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "squashportage status: %v\n", err)
		return 1
	}
	out := output{Mounts: []overlay.Report{}, Warnings: []string{}}
	for _, st := range states {
		rep, err := overlay.Status(st)
		if err != nil {
			out.Errors = append(out.Errors, err.Error())
			continue
		}
		out.Mounts = append(out.Mounts, rep)
		if !rep.Mounted {
			out.Warnings = append(out.Warnings, fmt.Sprintf("warning: %s is recorded but not mounted; `squashportage umount %s` clears the record", rep.Target, rep.Target))
		}
		if !rep.BlockSums && rep.Persist != overlay.PersistNever {
			out.Warnings = append(out.Warnings, fmt.Sprintf("note: %s has no block sums (mksquashfs writes none): the first whole-image persist or compaction decompresses every block it keeps to check it; `squashportage verify --record-sums %s` does that now", rep.Image, rep.Image))
		}
		u := overlay.Usage{Used: rep.UpperUsed, Limit: rep.UpperLimit, Full: rep.UpperFull}
		switch {
		case rep.UpperFull:
			out.Warnings = append(out.Warnings, fmt.Sprintf("warning: the upper of %s ran full (%s): writes may have failed with ENOSPC and files may be truncated; persist refuses until checked (persist --force)", rep.Target, u))
		case u.Percent() >= overlay.WarnPercent:
			out.Warnings = append(out.Warnings, fmt.Sprintf("warning: the upper of %s is %d%% full: persist now, or give it a larger size=", rep.Target, u.Percent()))
		}
	}
	if len(states) > 0 {
		out.Warnings = append(out.Warnings, overlay.PortageWarnings(states, portage())...)
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "squashportage status: %v\n", err)
			return 1
		}
	} else {
		printTable(stdout, out.Mounts)
		for _, w := range out.Warnings {
			fmt.Fprintln(stdout, w)
		}
	}
	for _, e := range out.Errors {
		fmt.Fprintf(stderr, "squashportage status: %s\n", e)
	}
	if len(out.Errors) > 0 {
		return 1
	}
	return 0
}

func printTable(w io.Writer, reps []overlay.Report) {
	if len(reps) == 0 {
		fmt.Fprintln(w, "nothing mounted by squashportage")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tIMAGE\tCOMP\tIMAGE SIZE\tLAYERS\tUPPER\tUSED/LIMIT\tCHANGED\tNEW\tDELETED\tPENDING\tLAST PERSIST")
	for _, r := range reps {
		used, changed, added, deleted, pending := "-", "-", "-", "-", "-"
		if r.UpperKind != overlay.KindNone && r.Mounted {
			used = size(r.UpperUsed) + "/" + size(r.UpperLimit)
			if r.UpperLimit > 0 {
				used += fmt.Sprintf(" (%d%%)", r.UpperUsed*100/r.UpperLimit)
			}
			changed, added, deleted = fmt.Sprint(r.Changed), fmt.Sprint(r.New), fmt.Sprint(r.Deleted)
			pending = size(r.PendingBytes)
		}
		last := "never"
		if !r.LastPersist.IsZero() {
			last = r.LastPersist.Local().Format(time.DateTime)
			if r.LastPersistResult != "" {
				last += " (" + r.LastPersistResult + ")"
			}
		}
		if r.Persist == overlay.PersistNever && r.UpperKind != overlay.KindNone {
			last += ", persist=never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Target, r.Image, r.Compressor, size(r.ImageSize), layers(r), r.UpperKind, used, changed, added, deleted, pending, last)
	}
	tw.Flush()
}

// layers says how many delta layers there are, their size, and how far
// the next fold is: "2/8(96K<24M)".
func layers(r overlay.Report) string {
	if r.LayerLimit == 0 && len(r.Layers) == 0 {
		return "-"
	}
	var n int64
	for _, l := range r.Layers {
		n += l.Size
	}
	return fmt.Sprintf("%d/%d(%s<%s)", len(r.Layers), r.LayerLimit, size(n), size(r.CompactBytes))
}

// size formats bytes in binary units, short enough for a table.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, suffix := float64(n), ""
	for _, s := range []string{"K", "M", "G", "T"} {
		f /= unit
		suffix = s
		if f < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f%s", f, suffix)
}
