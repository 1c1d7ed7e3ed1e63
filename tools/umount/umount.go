// Package umount is `squashportage umount`: it takes down mounts made by
// `squashportage mount` (without persisting: that is `persist`'s job).
package umount

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/overlay"
)

const usage = `Usage: squashportage umount [--lazy] [--discard] [--state-dir DIR] TARGET...
       squashportage umount [--lazy] [--discard] [--state-dir DIR] --all

Unmounts the overlay at each TARGET (relative, or through a symlink, as
well as the path it was mounted at), its upper and the squashfs image
below it. A tmpfs upper holding changes no persist has written is
refused (run 'squashportage persist TARGET' first), unless --discard
says to drop them; persist=never specs drop them anyway. A disk upper
(upper=DIR) keeps its changes for the next mount. A TARGET in use is
refused, naming the processes that use it.

Options:
  --all            unmount every target squashportage mounted
  --lazy           detach busy targets anyway; they go away when the last
                   process stops using them
  --discard        drop the unpersisted changes of tmpfs uppers
  --state-dir DIR  where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  -h, --help       show this help

`

// Main runs the command with args (without the command name) and returns
// the exit status: 0 done, 1 an unmount failed, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("umount", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	all := fs.Bool("all", false, "")
	lazy := fs.Bool("lazy", false, "")
	discard := fs.Bool("discard", false, "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	targets, err := cliflag.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	if err == nil && *all == (len(targets) > 0) {
		err = errors.New("give either TARGET... or --all")
	}
	if err != nil {
		fmt.Fprintf(stderr, "squashportage umount: %v (see squashportage umount --help)\n", err)
		return 2
	}
	if targets, err = overlay.ResolveTargets(*stateDir, targets); err != nil {
		fmt.Fprintf(stderr, "squashportage umount: %v\n", err)
		return 1
	}
	if *all {
		states, err := overlay.List(*stateDir)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage umount: %v\n", err)
			return 1
		}
		for _, st := range states {
			targets = append(targets, st.Target)
		}
		// Deepest first, in case one target lies inside another.
		sort.Sort(sort.Reverse(sort.StringSlice(targets)))
	}
	status := 0
	for _, t := range targets {
		if err := overlay.Umount(t, overlay.UmountOptions{Lazy: *lazy, Discard: *discard, StateDir: *stateDir}); err != nil {
			fmt.Fprintf(stderr, "squashportage umount: %v\n", err)
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "unmounted %s\n", t)
	}
	return status
}
