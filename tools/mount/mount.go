// Package mount is `squashportage mount`: it mounts squashfs images with a
// writable overlay, from specs on the command line or in the config file.
package mount

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/squashportage/squashportage/internal/cliflag"
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

Without SPEC, a missing config file means nothing to mount (the initramfs
may have mounted the kernel command line's specs), and a bad line, a
missing image or a failed mount does not stop the other specs: each is
reported as FILE:LINE or by its spec, and the exit status is 3.

Exit status: 0 done, 1 a SPEC failed to mount, 2 bad usage, 3 some of the
config's specs failed, the others are mounted (the OpenRC service and the
systemd unit count 3 as started, so that they persist at shutdown what is
mounted).

`

// partial is the exit status of a config mount that mounted what it
// could: the services count it as started, so that what is mounted gets
// persisted at shutdown.
const partial = 3

// Main runs the command with args (without the command name) and returns
// the exit status: 0 done, 1 a SPEC failed, 2 bad usage, 3 (from the
// config) some specs failed and the others are mounted.
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
	// failed is the status of a spec that is not mounted: from the config
	// it is partial (3), the others are mounted all the same.
	failed, status := 1, 0
	if fromConfig {
		failed = partial
		f, err := os.Open(*config)
		if errors.Is(err, iofs.ErrNotExist) {
			// The initramfs may have mounted everything from the kernel
			// command line; the service still has to persist those.
			fmt.Fprintf(stdout, "squashportage mount: no %s: nothing to mount\n", *config)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
			return partial
		}
		specs, err = overlay.ParseConfig(f)
		f.Close()
		var bad overlay.ConfigErrors
		if errors.As(err, &bad) {
			for _, le := range bad {
				fmt.Fprintf(stderr, "squashportage mount: %s:%d: %v\n", *config, le.Line, le.Err)
			}
			status = partial
		} else if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %s: %v\n", *config, err)
			return partial
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
	for _, sp := range specs {
		sp, err := overlay.ResolveSpec(sp)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
			status = failed
			continue
		}
		if fromConfig {
			// Also a record kept under a symlink to the target.
			if t, err := overlay.ResolveTarget(*stateDir, sp.Target); err != nil {
				fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
				status = failed
				continue
			} else if _, err := overlay.Load(*stateDir, t); err == nil {
				if verbose {
					fmt.Fprintf(stderr, "squashportage mount: %s already mounted\n", sp.Target)
				}
				continue
			}
		}
		st, err := overlay.Mount(sp, opts)
		if err != nil {
			fmt.Fprintf(stderr, "squashportage mount: %v\n", err)
			status = failed
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
