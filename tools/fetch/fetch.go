// Package fetch is `squashportage fetch`: it brings an image up to date
// from a publisher (or from Gentoo's squashfs snapshots) and installs it.
package fetch

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/squashportage/squashportage/fleet"
	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/overlay"
)

// DefaultKey is where clients keep the publisher's public key.
const DefaultKey = "/etc/squashportage/fleet.pub"

const usage = `Usage: squashportage fetch [--key PUBLIC] [--gpg-key KEYRING] [--sums URL] [--keep N] [--timeout D] [--state-dir DIR] [-v] URL TARGET|IMAGE

Brings IMAGE (or the image of the managed mount at TARGET) up to the
generation published at URL:

  - URL a directory written by 'squashportage publish': its manifest is
    checked against the public key (--key, default ` + DefaultKey + `);
    every block the current image already has is copied from it, the
    others are downloaded with HTTP range requests (adjacent ones in one
    request), and each is checked against the signed index;
  - URL a Gentoo snapshot (https://distfiles.gentoo.org/snapshots/squashfs/
    gentoo-current.xz.sqfs): sha512sum.txt beside it (or --sums URL) is
    checked with gpgv against --gpg-key, and the image is downloaded
    whole and checked by its SHA-512.

The new image is assembled as IMAGE.new, synced, checked against the
signed hash, verified with our reader, then renamed over IMAGE with the
previous one kept as IMAGE.old (keep= of the mount's spec, or --keep).
An interrupted fetch keeps IMAGE.new and IMAGE.new.fetch (the verified
ranges) and resumes from them when run again. A managed TARGET is
remounted on the new image; one whose overlay holds changes is refused
(persist first). On any failure IMAGE is untouched.

Options:
  --key PUBLIC      the publisher's public key (from 'squashportage keygen')
  --gpg-key KEYRING OpenPGP key (armored or binary) that signs a Gentoo
                    snapshot's sha512sum.txt
  --sums URL        the signed sums of a snapshot (default: sha512sum.txt
                    beside URL)
  --keep N          generations kept for an IMAGE (default 2)
  --timeout D       give up on a server that sends nothing for D (default 60s)
  --state-dir DIR   where mounts are recorded (default ` + overlay.DefaultStateDir + `)
  -v, --verbose     tell each step
  -h, --help        show this help

Exit status: 0 done (or already up to date), 1 failed, 2 bad usage.
`

// Main runs the command with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyPath := fs.String("key", DefaultKey, "")
	gpgKey := fs.String("gpg-key", "", "")
	sums := fs.String("sums", "", "")
	keep := fs.Int("keep", overlay.DefaultKeep, "")
	stall := fs.Duration("timeout", fleet.DefaultStallTimeout, "")
	stateDir := fs.String("state-dir", overlay.DefaultStateDir, "")
	var verbose bool
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	rest, err := cliflag.Parse(fs, args)
	snapshot := len(rest) > 0 && strings.HasSuffix(rest[0], ".sqfs")
	switch {
	case err != nil:
	case len(rest) != 2:
		err = errors.New("need URL and TARGET or IMAGE")
	case *keep < 1:
		err = errors.New("--keep must be at least 1")
	case *stall <= 0:
		err = errors.New("--timeout must be positive")
	case snapshot && *gpgKey == "":
		err = errors.New("a snapshot URL (.sqfs) needs --gpg-key KEYRING to check its sha512sum.txt")
	}
	if err != nil {
		return cliflag.Refused("fetch", usage, err, stdout, stderr)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "squashportage fetch: %v\n", err)
		return 1
	}
	logf := func(string, ...any) {}
	if verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	url, dest := rest[0], rest[1]

	// A managed target, or an image file.
	var st *overlay.State
	image := dest
	if t, err := overlay.ResolveTarget(*stateDir, dest); err == nil {
		if s, err := overlay.Load(*stateDir, t); err == nil {
			st, image = s, s.ImagePath()
			if err := overlay.CheckFetchable(st); err != nil {
				return fail(err)
			}
		}
	}
	if fi, err := os.Stat(image); err == nil && fi.IsDir() {
		return fail(fmt.Errorf("%s is a directory squashportage does not manage: give a managed TARGET or an IMAGE file", image))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp := image + ".new"
	var res fleet.FetchResult
	if snapshot {
		res, err = fleet.FetchSnapshot(ctx, fleet.SnapshotOptions{URL: url, SumsURL: *sums, Keyring: *gpgKey, Tmp: tmp, StallTimeout: *stall, Log: logf})
	} else {
		pub, kerr := fleet.ReadPublicKey(*keyPath)
		if kerr != nil {
			return fail(kerr)
		}
		res, err = fleet.Fetch(ctx, fleet.FetchOptions{URL: url, PublicKey: pub, Local: image, Tmp: tmp, StallTimeout: *stall, Log: logf})
	}
	if err != nil {
		return fail(fmt.Errorf("%v (%s untouched)", err, image))
	}
	if res.UpToDate {
		fmt.Fprintf(stdout, "%s: up to date (%s)\n", image, res.Manifest.Image)
		return 0
	}
	line := fmt.Sprintf("fetched %d bytes for a %d-byte image (%.2f%%): %d bytes of blocks in %d requests",
		res.Fetched, res.ImageSize, 100*float64(res.Fetched)/float64(max(res.ImageSize, 1)), res.BlockBytes, res.Requests)
	if !snapshot {
		line += fmt.Sprintf(", %d reused from %s", res.Reused, image)
	}
	fmt.Fprintf(stdout, "%s, %d resumed\n", line, res.Resumed)
	logf("fetch: downloaded %d bytes of data blocks, %d of fragment blocks, %d of superblock and tables; manifest and index %d",
		res.Downloaded.Data, res.Downloaded.Fragment, res.Downloaded.Raw, res.Fetched-res.BlockBytes)
	if st != nil {
		if _, err := overlay.InstallFetched(st, tmp, logf); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "installed %s; %s remounted on it\n", image, st.Target)
		return 0
	}
	if err := overlay.InstallImage(image, tmp, *keep); err != nil {
		return fail(fmt.Errorf("%v (%s untouched)", err, image))
	}
	fmt.Fprintf(stdout, "installed %s\n", image)
	return 0
}
