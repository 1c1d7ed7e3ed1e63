// Command squashportage is the project's single static binary. It runs the
// subcommand named by its first argument, or by the name it was invoked
// under (a symlink called mksquashfs or unsquashfs behaves like that tool).
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/squashportage/squashportage/tools/convert"
	"github.com/squashportage/squashportage/tools/fetch"
	"github.com/squashportage/squashportage/tools/info"
	"github.com/squashportage/squashportage/tools/keygen"
	"github.com/squashportage/squashportage/tools/mksquashfs"
	"github.com/squashportage/squashportage/tools/mount"
	"github.com/squashportage/squashportage/tools/persist"
	"github.com/squashportage/squashportage/tools/publish"
	"github.com/squashportage/squashportage/tools/rollback"
	"github.com/squashportage/squashportage/tools/status"
	"github.com/squashportage/squashportage/tools/umount"
	"github.com/squashportage/squashportage/tools/unsquashfs"
	"github.com/squashportage/squashportage/tools/verify"
)

// command is one subcommand. main receives the arguments after its name.
type command struct {
	summary string
	main    func(args []string, stdout, stderr io.Writer) int
	// alias: also selected when the binary is invoked under this name.
	alias bool
}

// commands builds the dispatch table; new modes (e.g. PID 1) hook in
// before it in run, new tools are one line here.
func commands() map[string]command {
	return map[string]command{
		"convert":    {"turn an existing tree into a verified image to mount in its place", convert.Main, false},
		"mksquashfs": {"build a squashfs image from files (mksquashfs 4.5 options)", mksquashfs.Main, true},
		"unsquashfs": {"list or extract a squashfs image (unsquashfs 4.5 options)", unsquashfs.Main, true},
		"verify":     {"check a squashfs image: every table and every block", verify.Main, false},
		"info":       {"describe a squashfs image: superblock and counts", info.Main, false},
		"mount":      {"mount images with a writable overlay (IMAGE:TARGET[:OPTIONS])", mount.Main, false},
		"umount":     {"unmount managed overlays", umount.Main, false},
		"status":     {"show managed mounts and their pending changes", status.Main, false},
		"persist":    {"fold overlay changes into new images, crash-safely", persist.Main, false},
		"keygen":     {"make the key pair that signs published images", keygen.Main, false},
		"publish":    {"publish an image generation with its block index and a signed manifest", publish.Main, false},
		"fetch":      {"update an image from a publisher (or a Gentoo snapshot), verified", fetch.Main, false},
		"rollback":   {"step an unmounted image back one generation (layer or image)", rollback.Main, false},
		"compact": {"fold a target's delta layers into a new image now", func(args []string, stdout, stderr io.Writer) int {
			return persist.Main(append([]string{"--compact"}, args...), stdout, stderr)
		}, false},
	}
}

func main() {
	if os.Getenv("GOGC") == "" {
		// Collect at 1.5x the live heap rather than 2x: the machines this
		// runs on have little RAM, and most of the heap lives long (a
		// tree's entries, the tables). Kernel tree, gzip, two warm runs
		// each: mksquashfs peaked at 90-92 MB and took 14.9-15.7 s at
		// GOGC=100, 77 MB and 15.0-16.4 s at 50.
		debug.SetGCPercent(50)
	}
	if isPID1() {
		runPID1() // never returns
	}
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run dispatches argv (argv[0] included) and returns the exit status.
func run(argv []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(argv) > 0 {
		if c, ok := cmds[filepath.Base(argv[0])]; ok && c.alias {
			return c.main(argv[1:], stdout, stderr)
		}
	}
	if len(argv) < 2 {
		usage(stderr, cmds)
		return 2
	}
	name, args := argv[1], argv[2:]
	switch name {
	case "help", "-help", "--help", "-h":
		if len(args) > 0 {
			if c, ok := cmds[args[0]]; ok {
				return c.main([]string{"-help"}, stdout, stderr)
			}
			fmt.Fprintf(stderr, "squashportage: unknown command %q\n", args[0])
			return 2
		}
		usage(stdout, cmds)
		return 0
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "squashportage %s\n", version())
		return 0
	}
	c, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "squashportage: unknown command %q; see 'squashportage help'\n", name)
		return 2
	}
	return c.main(args, stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	width := 0
	for n := range cmds {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("Usage: squashportage COMMAND [arguments]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, n, cmds[n].summary)
	}
	fmt.Fprintf(&b, "  %-*s  %s\n", width, "help", "show this list, or 'help COMMAND' for a command's options")
	fmt.Fprintf(&b, "  %-*s  %s\n", width, "version", "print the version")
	b.WriteString("\nA link to this binary named after a tool (mksquashfs, unsquashfs) runs that tool.\n")
	io.WriteString(w, b.String())
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
