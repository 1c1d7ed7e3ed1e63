// Package publish is `squashportage publish`: it writes an image
// generation, its block index and a signed manifest into a directory a
// static HTTP server serves.
package publish

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/squashportage/squashportage/fleet"
	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/overlay"
)

const usage = `Usage: squashportage publish --key SECRET [--keep N] IMAGE DIR

Publishes IMAGE into DIR for 'squashportage fetch': DIR gets
NAME-HASH.sqfs (a copy of IMAGE), NAME-HASH.idx (the SHA-256 of every
data block, fragment block and 32 KiB piece of the tables) and
'manifest', signed with SECRET (from 'squashportage keygen'), which is
replaced last, atomically. Serve DIR with any static HTTP server that
answers range requests.

Options:
  --key SECRET  the secret key file (required)
  --keep N      generations kept in DIR (default 2), so that clients that
                read the previous manifest can still finish
  -h, --help    show this help

Exit status: 0 done, 1 failed, 2 bad usage.
`

// Main runs the command with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyPath := fs.String("key", "", "")
	keep := fs.Int("keep", 2, "")
	rest, err := cliflag.Parse(fs, args)
	switch {
	case err != nil:
	case len(rest) != 2:
		err = errors.New("need IMAGE and DIR")
	case *keyPath == "":
		err = errors.New("--key SECRET is required")
	case *keep < 1:
		err = errors.New("--keep must be at least 1")
	}
	if err != nil {
		return cliflag.Refused("publish", usage, err, stdout, stderr)
	}
	// Delta layers (layers= in the spec) hold changes IMAGE alone lacks.
	if n, err := overlay.DeltaLayers(rest[0]); err == nil && n > 0 {
		fmt.Fprintf(stderr, "squashportage publish: %s carries %d delta layers (layers=) not folded into it: its clients would miss their changes; fold them in first ('squashportage compact TARGET'), then publish\n", rest[0], n)
		return 1
	}
	key, err := fleet.ReadSecretKey(*keyPath)
	if err != nil {
		fmt.Fprintf(stderr, "squashportage publish: %v\n", err)
		return 1
	}
	res, err := fleet.Publish(rest[0], rest[1], key, *keep)
	if err != nil {
		fmt.Fprintf(stderr, "squashportage publish: %v\n", err)
		return 1
	}
	m := res.Manifest
	fmt.Fprintf(stdout, "published %s (%d bytes, %d blocks indexed) in %s, signed by key %s\n", m.Image, m.ImageSize, res.Blocks, rest[1], m.Key)
	for _, p := range res.Removed {
		fmt.Fprintf(stdout, "removed old generation file %s\n", p)
	}
	return 0
}
