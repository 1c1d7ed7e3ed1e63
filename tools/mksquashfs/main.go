// Package mksquashfs is the "squashportage mksquashfs" command: it builds a
// SquashFS 4.0 image from files and directories, taking mksquashfs 4.5's
// command line (SOURCE... DEST [options]).
package mksquashfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// Main runs the command with args (without the command name) and returns
// the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	return mainIO(args, os.Stdin, stdout, stderr)
}

// mainIO is Main reading a -tar archive from stdin.
func mainIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, os.LookupEnv)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "mksquashfs: %v; see 'squashportage mksquashfs -help'\n", err)
		} else {
			fmt.Fprintf(stderr, "mksquashfs: %v\n", err)
		}
		return 1
	}
	if c.help {
		io.WriteString(stdout, helpText)
		return 0
	}
	if c.version {
		fmt.Fprintf(stdout, "squashportage mksquashfs %s (SquashFS 4.0, mksquashfs 4.5 compatible options)\n", version())
		return 0
	}
	if !c.quiet {
		for _, n := range c.notes {
			fmt.Fprintf(stderr, "mksquashfs: note: %s\n", n)
		}
	}
	c.stdin = stdin
	if err := run(c, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "mksquashfs: %v\n", err)
		return 1
	}
	return 0
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// run builds the image described by c.
func run(c *config, stdout, stderr io.Writer) error {
	if err := checkDest(c.dest, c.noAppend, c.offset); err != nil {
		return err
	}
	if !c.mkfsTimeSet {
		c.writer.MkfsTime = uint32(time.Now().Unix())
	}
	// The image must never contain itself when DEST lies inside a source.
	c.tree.OmitPaths = append(c.tree.OmitPaths, c.dest)
	if !c.quiet {
		c.tree.Warn = func(msg string) { fmt.Fprintf(stderr, "mksquashfs: warning: %s\n", msg) }
	}
	if c.info && !c.quiet {
		c.tree.OnAdd = func(h *squash.Header) { printInfo(stdout, h) }
	}

	var tree *sourcetree.Tree
	var err error
	if c.tar {
		if f, ok := c.stdin.(*os.File); ok && progress.IsTerminal(f) {
			return errors.New("-tar reads the archive from standard input, which is a terminal: pipe it in (e.g. xzcat snapshot.tar.xz | squashportage mksquashfs - DEST -tar)")
		}
		tree, err = sourcetree.ScanTar(c.stdin, c.tree)
	} else {
		tree, err = sourcetree.Scan(c.sources, c.tree)
	}
	if err != nil {
		return err
	}
	defer tree.Close()
	_, _, total := tree.Stats()

	out, created, err := openDest(c.dest)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		out.Close()
		if created {
			os.Remove(c.dest)
		}
		return err
	}
	// A ^C (or a kill from a script) leaves no half-written image.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	finished := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(finished)
	}()
	go func() {
		select {
		case sig := <-sigs:
			if created {
				os.Remove(c.dest)
				fmt.Fprintf(stderr, "mksquashfs: %v: removed the unfinished %s\n", sig, c.dest)
			}
			os.Exit(130)
		case <-finished:
		}
	}()

	var dst squash.Output = out
	if c.offset > 0 {
		dst = offsetOutput{out, c.offset}
	}
	w, err := squash.NewWriter(dst, c.writer)
	if err != nil {
		return fail(fmt.Errorf("creating image %s: %w", c.dest, err))
	}
	var bar *progress.Bar
	var onProgress func(int64)
	if !c.quiet && !c.noProgress && (!c.info || c.progress) && progress.IsTerminal(stderr) {
		bar = progress.NewBar(stderr, "B")
		onProgress = func(done int64) { bar.Update(done, total) }
	}
	werr := tree.Write(w, onProgress)
	if bar != nil {
		if werr == nil {
			bar.Update(total, total)
		}
		bar.Done()
	}
	if werr != nil {
		w.Close()
		return fail(fmt.Errorf("writing image %s: %w", c.dest, werr))
	}
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("writing image %s: %w", c.dest, err))
	}
	fi, err := out.Stat()
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", c.dest, err))
	}
	if err := out.Close(); err != nil {
		return fail(fmt.Errorf("closing image %s: %w", c.dest, err))
	}
	if !c.quiet {
		printSummary(stdout, c, w.Stats(), fi.Size())
	}
	return nil
}

// checkDest refuses to replace an existing DEST without -noappend, as
// mksquashfs does (it would append to an image, and refuses anything else);
// appending is not implemented here, so the message says how to overwrite.
func checkDest(dest string, noAppend bool, offset int64) error {
	fi, err := os.Stat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("destination %s is a directory", dest)
	}
	if noAppend {
		return nil
	}
	if isImage(dest, offset) {
		return fmt.Errorf("%s is an existing squashfs image; appending is not supported, add -noappend to overwrite it", dest)
	}
	return fmt.Errorf("%s exists and is not a squashfs image; will not overwrite it without -noappend", dest)
}

func isImage(name string, offset int64) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, squash.SuperblockSize)
	if _, err := f.ReadAt(b, offset); err != nil {
		return false
	}
	var sb squash.Superblock
	return !errors.Is(sb.UnmarshalBinary(b), squash.ErrNotSquashfs)
}

// offsetOutput writes an image offset bytes into a file (-offset); as
// with mksquashfs -noappend, the bytes before it are zeros.
type offsetOutput struct {
	f   *os.File
	off int64
}

func (o offsetOutput) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, o.off+off) }
func (o offsetOutput) Truncate(size int64) error                { return o.f.Truncate(o.off + size) }

// openDest opens DEST for writing, truncating regular files. created says
// whether a failed run should remove it (not for block devices).
func openDest(dest string) (*os.File, bool, error) {
	f, err := os.OpenFile(dest, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("creating image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("creating image: %w", err)
	}
	return f, fi.Mode().IsRegular(), nil
}

func printInfo(w io.Writer, h *squash.Header) {
	name := "/" + h.Name
	switch {
	case h.Link != "":
		fmt.Fprintf(w, "hard link %s -> /%s\n", name, h.Link)
	case h.Mode.IsDir():
		fmt.Fprintf(w, "directory %s\n", name)
	case h.Mode.IsRegular():
		fmt.Fprintf(w, "file %s, uncompressed size %d bytes\n", name, h.Size)
	case h.Mode&os.ModeSymlink != 0:
		fmt.Fprintf(w, "symbolic link %s -> %s\n", name, h.Target)
	default:
		fmt.Fprintf(w, "special file %s (%v)\n", name, h.Mode.Type())
	}
}

func printSummary(w io.Writer, c *config, st squash.WriteStats, size int64) {
	compressed := func(off bool) string {
		if off {
			return "uncompressed"
		}
		return "compressed"
	}
	o := c.writer
	kind := "Exportable Squashfs 4.0"
	if o.NoExports {
		kind = "Squashfs 4.0"
	}
	fmt.Fprintf(w, "%s filesystem %s, %s compressed, data block size %d\n", kind, c.dest, o.Codec.ID, o.Codec.BlockSize)
	fmt.Fprintf(w, "\t%s data, %s metadata, %s fragments, %s xattrs\n",
		compressed(o.UncompressedData), compressed(o.UncompressedInodes),
		compressed(o.UncompressedFragments), compressed(o.UncompressedXattrs))
	switch {
	case o.NoFragments:
		fmt.Fprintln(w, "\tno fragments")
	case o.AlwaysFragments:
		fmt.Fprintln(w, "\tfragments always used")
	}
	if o.NoDuplicates {
		fmt.Fprintln(w, "\tduplicates are not removed")
	} else {
		fmt.Fprintln(w, "\tduplicates are removed")
	}
	if st.BytesOut > 0 {
		size = st.BytesOut // without the padding to 4K, as mksquashfs reports it
	}
	fmt.Fprintf(w, "Filesystem size %.2f Kbytes (%.2f Mbytes)\n", float64(size)/1024, float64(size)/(1<<20))
	if st.BytesIn > 0 {
		fmt.Fprintf(w, "\t%.2f%% of uncompressed file data (%.2f Kbytes)\n",
			100*float64(size)/float64(st.BytesIn), float64(st.BytesIn)/1024)
	}
	fmt.Fprintf(w, "Number of inodes %d\n", st.Inodes)
	fmt.Fprintf(w, "Number of files %d\n", st.Files)
	fmt.Fprintf(w, "Number of fragments %d\n", st.Fragments)
	fmt.Fprintf(w, "Number of directories %d\n", st.Dirs)
	fmt.Fprintf(w, "Number of duplicate files found %d\n", st.Duplicates)
}
