// Package mount is `squashportage mount`: it mounts squashfs images with a
// writable overlay, from specs on the command line or in the config file.
package mount

import (
	"errors"
	"flag"
	"fmt"
	"github.com/squashportage/squashportage/tools/cliflag"
	"io"
	"os"
	"strings"

	"github.com/squashportage/squashportage/overlay"
)

// DefaultConfig lists the specs mounted when none are given.
const DefaultConfig = "/etc/squashportage.conf"

const usage = `Usage: squashportage mount [--force] [--state-dir DIR] [--config FILE] [-v] [SPEC...]

Mounts each SPEC: the squashfs IMAGE read-only, and over it at TARGET a
writable overlay whose changes persist writes into a new image. Without
SPEC, mounts the specs of the config file that are not mounted yet.

Options:
  --force          mount over a TARGET that is not empty (hiding its files)
  --state-dir DIR  where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  --config FILE    config file read without SPEC (default ` + DefaultConfig + `)
  -v, --verbose    tell each step
  -h, --help       show this help

`

// Main runs the command with args (without the command name) and returns
// the exit status: 0 done, 1 a mount failed, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	force := fs.Bool("force", false, "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	config := fs.String("config", DefaultConfig, "")
	var verbose bool
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	rest, err := cliflag.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage+overlay.SpecHelp)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "squashportage mount: %v (see squashportage mount --help)\n", err)
		return 2
	}

	var specs []overlay.Spec
	fromConfig := len(rest) == 0
	if fromConfig {
		f, err := os.Open(*config)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: no SPEC given and no config: %v\n", err)
			return 2
		}
		specs, err = overlay.ParseConfig(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %s: %v\n", *config, err)
			return 1
		}
	}
	for _, a := range rest {
		sp, err := overlay.ParseSpec(a)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
			return 2
		}
		specs = append(specs, sp)
	}

	opts := overlay.MountOptions{StateDir: *stateDir, Force: *force}
	if verbose {
		opts.Log = func(format string, args ...any) {
			fmt.Fprintf(stderr, "squashportage mount: "+format+"\n", args...)
		}
	}
	status := 0
	for _, sp := range specs {
		if fromConfig {
			if _, err := overlay.Load(*stateDir, sp.Target); err == nil {
				if verbose {
					fmt.Fprintf(stderr, "squashportage mount: %s already mounted\n", sp.Target)
				}
				continue
			}
		}
		st, err := overlay.Mount(sp, opts)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "mounted %s at %s (%s)\n", st.Image, st.Target, describe(st))
	}
	return status
}

func describe(st *overlay.State) string {
	var parts []string
	switch st.UpperKind {
	case overlay.KindNone:
		parts = append(parts, "read-only")
	case overlay.KindTmpfs:
		parts = append(parts, "changes in RAM, up to "+st.Spec.Size)
	case overlay.KindDir:
		parts = append(parts, "changes in "+st.Spec.Upper)
	}
	if !st.Spec.ReadOnly {
		parts = append(parts, "persist="+st.Spec.Persist)
	}
	return strings.Join(parts, ", ")
}
