// Package rollback is `squashportage rollback`: it steps an unmounted
// image back one generation.
package rollback

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/overlay"
)

const usage = `Usage: squashportage rollback [--state-dir DIR] IMAGE

Steps IMAGE back one generation:
  - with delta layers (layers= in the spec): without the newest layer;
  - without: to IMAGE.old, the image before the last persist that wrote
    a whole image (IMAGE.old.2 becomes IMAGE.old, and so on).
What is stepped away from is kept, renamed *.rolled-back, so a rollback
can be undone by hand. IMAGE must not be mounted: 'squashportage umount
TARGET' first (after a persist, if its changes matter), mount again after.

Options:
  --state-dir DIR  where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  -h, --help       show this help
`

// Main runs the command with args and returns the exit status: 0 done,
// 1 failed, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	rest, err := cliflag.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	if err == nil && len(rest) != 1 {
		err = errors.New("give one IMAGE")
	}
	if err != nil {
		fmt.Fprintf(stderr, "squashportage rollback: %v (see squashportage rollback --help)\n", err)
		return 2
	}
	msg, err := overlay.Rollback(rest[0], *stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "squashportage rollback: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}
