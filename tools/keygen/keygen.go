// Package keygen is `squashportage keygen`: it makes the key pair a
// publisher signs manifests with.
package keygen

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/squashportage/squashportage/fleet"
	"github.com/squashportage/squashportage/internal/cliflag"
)

const usage = `Usage: squashportage keygen SECRET PUBLIC

Makes an ed25519 key pair for 'squashportage publish': the secret key
goes to SECRET (mode 0600, never overwritten; keep it on the publisher
only), the public key to PUBLIC (copy it to every client, e.g.
/etc/squashportage/fleet.pub).

Exit status: 0 done, 1 failed, 2 bad usage.
`

// Main runs the command with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	rest, err := cliflag.Parse(fs, args)
	if err == nil && len(rest) != 2 {
		err = errors.New("need SECRET and PUBLIC")
	}
	if err != nil {
		return cliflag.Refused("keygen", usage, err, stdout, stderr)
	}
	pub, err := fleet.GenerateKey(rest[0], rest[1])
	if err != nil {
		fmt.Fprintf(stderr, "squashportage keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "key %s: secret %s, public %s\n", fleet.KeyID(pub), rest[0], rest[1])
	return 0
}
