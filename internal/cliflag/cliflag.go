// Package cliflag parses the options of squashportage's own commands the
// way users type them: options anywhere among the arguments
// (`mount SPEC --force`), "--" ending them, and unknown options named
// plainly.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Parse parses fs's options out of args and returns the other arguments in
// order.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
				return nil, fmt.Errorf("unknown option --%s", strings.TrimLeft(name, "-"))
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(rest, tail...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// Refused answers a command line Parse (or the command's own checks)
// refused: --help prints usage to stdout, exit 0; anything else names the
// problem on stderr, exit 2 (bad usage).
func Refused(cmd, usage string, err error, stdout, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "squashportage %s: %v (see squashportage %s --help)\n", cmd, err, cmd)
	return 2
}
