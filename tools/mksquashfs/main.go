// Package mksquashfs is the "squashportage mksquashfs" command: it builds a
// SquashFS 4.0 image from files and directories, taking mksquashfs 4.5's
// command line (SOURCE... DEST [options]).
package mksquashfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
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
	appending, err := checkDest(c.dest, c.noAppend, c.offset)
	if err != nil {
		return err
	}
	if c.rootBecomes != "" && !appending {
		return errors.New("-root-becomes applies when appending to an existing image, and " + c.dest + " is none (or -noappend was given)")
	}
	if !c.mkfsTimeSet && !c.mkfsInode {
		c.writer.MkfsTime = uint32(time.Now().Unix())
	}
	var old *appendBase
	if appending {
		if old, err = openBase(c); err != nil {
			return err
		}
		defer old.rc.Close()
		if !c.quiet {
			fmt.Fprintf(stderr, "mksquashfs: appending to %s (%s, block size %d): the sources join its root; -noappend writes a new image instead\n",
				c.dest, old.rc.Codec().ID, old.rc.Superblock().BlockSize)
			if len(c.layout) > 0 {
				fmt.Fprintf(stderr, "mksquashfs: note: %s ignored: an append keeps the image's compressor, block size and layout\n", strings.Join(c.layout, ", "))
			}
		}
	}
	// The image must never contain itself when DEST lies inside a source.
	c.tree.OmitPaths = append(c.tree.OmitPaths, c.dest)
	if !c.quiet {
		c.tree.Warn = func(msg string) { fmt.Fprintf(stderr, "mksquashfs: warning: %s\n", msg) }
	}
	var infoOut []io.Writer
	if c.info && !c.quiet {
		infoOut = append(infoOut, stdout)
	}
	if c.infoFile != "" {
		f, err := os.Create(c.infoFile)
		if err != nil {
			return fmt.Errorf("-info-file: %w", err)
		}
		defer f.Close()
		bw := bufio.NewWriter(f)
		defer bw.Flush()
		infoOut = append(infoOut, bw)
	}
	if len(infoOut) > 0 {
		c.tree.OnAdd = func(h *squash.Header) {
			for _, w := range infoOut {
				printInfo(w, h)
			}
		}
	}

	var tree *sourcetree.Tree
	if (c.tar || c.cpio) && stdinIsTerminal(c.stdin) {
		if c.tar {
			return errors.New("-tar reads the archive from standard input, which is a terminal: pipe it in (e.g. xzcat snapshot.tar.xz | squashportage mksquashfs - DEST -tar)")
		}
		return errors.New("-cpiostyle reads the files' names from standard input, which is a terminal: pipe them in (e.g. find DIR | squashportage mksquashfs - DEST -cpiostyle)")
	}
	if c.tar {
		tree, err = sourcetree.ScanTar(c.stdin, c.tree)
	} else if c.cpio {
		var names []string
		if names, err = readNames(c.stdin, c.cpioSep); err == nil {
			tree, err = sourcetree.ScanPaths(names, false, c.tree)
		}
	} else if c.noStrip {
		tree, err = sourcetree.ScanPaths(c.sources, true, c.tree)
	} else {
		tree, err = sourcetree.Scan(c.sources, c.tree)
	}
	if err != nil {
		return err
	}
	defer tree.Close()
	if old != nil {
		if err := tree.AppendTo(old.rc.Reader, old.rc.Data(), c.rootBecomes, c.tree.Warn); err != nil {
			return fmt.Errorf("appending to %s: %w", c.dest, err)
		}
	}
	if c.mkfsInode {
		c.writer.MkfsTime = tree.LatestMtime()
	}
	_, _, total := tree.Stats()

	// A ^C (or a kill from a script) leaves no half-written image: the
	// signals are caught from before the file is made, and held until
	// the goroutine below knows what to remove.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	finished := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(finished)
	}()
	out, err := openDest(c.dest, old)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		out.abandon()
		return err
	}
	unfinished := out.remove // an append's new file is renamed away, if at all, only when complete
	go func() {
		select {
		case sig := <-sigs:
			if unfinished != "" {
				os.Remove(unfinished)
				if old != nil {
					fmt.Fprintf(stderr, "mksquashfs: %v: %s is as it was\n", sig, c.dest)
				} else {
					fmt.Fprintf(stderr, "mksquashfs: %v: removed the unfinished %s\n", sig, c.dest)
				}
			}
			os.Exit(130)
		case <-finished:
		}
	}()

	var dst squash.Output = out.f
	if out.device {
		dst = deviceOutput{out.f}
	}
	if c.offset > 0 {
		dst = offsetOutput{dst, c.offset}
	}
	w, err := squash.NewWriter(dst, c.writer)
	if err != nil {
		return fail(fmt.Errorf("creating image %s: %w", c.dest, err))
	}
	var bar progress.Reporter
	var onProgress func(int64)
	switch {
	case c.percentage:
		bar = progress.NewPercent(stdout)
	case !c.quiet && !c.noProgress && (!c.info || c.progress) && progress.IsTerminal(stderr):
		bar = progress.NewBar(stderr, "B")
	}
	if bar != nil {
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
	fi, err := out.f.Stat()
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", c.dest, err))
	}
	if err := out.finish(); err != nil {
		return fail(fmt.Errorf("image %s: %w", c.dest, err))
	}
	if !c.quiet {
		printSummary(stdout, c, w.Stats(), fi.Size())
	}
	return nil
}

// checkDest says whether DEST is an image to append to, and refuses to
// replace anything else that exists there without -noappend, as mksquashfs
// does.
func checkDest(dest string, noAppend bool, offset int64) (bool, error) {
	fi, err := os.Stat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	if fi.IsDir() {
		return false, fmt.Errorf("destination %s is a directory", dest)
	}
	if fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		if at := mountedAt(fi); at != "" {
			return false, fmt.Errorf("%s is mounted at %s: writing it would change a mounted filesystem under the kernel; unmount it first", dest, at)
		}
	}
	if fi.Mode().IsRegular() {
		if devs := loopdev.Serving(dest); len(devs) > 0 {
			// Writing it in place changes a mounted filesystem under the
			// kernel; replacing it (an append) goes unseen by the mount,
			// and a squashportage-managed one is written over at its
			// next persist.
			return false, fmt.Errorf("%s is in use by %s (mounted?): unmount it first, or write another file; to change a squashportage-managed image, change the files where it is mounted and run 'squashportage persist'", dest, strings.Join(devs, ", "))
		}
	}
	if noAppend {
		return false, nil
	}
	if isImage(dest, offset) {
		if !fi.Mode().IsRegular() {
			return false, fmt.Errorf("%s holds a squashfs image, and appending is done to image files only (the new image is written beside the old one, then renamed over it); add -noappend to overwrite it", dest)
		}
		return true, nil
	}
	return false, fmt.Errorf("%s exists and is not a squashfs image; will not overwrite it without -noappend", dest)
}

// mountedAt returns where the block device fi is mounted, "" if nowhere
// (or if the mount table cannot be read).
func mountedAt(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	mounts, err := overlay.Mounts()
	if err != nil {
		return ""
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	for _, m := range mounts {
		if m.Dev == dev {
			return m.MountPoint
		}
	}
	return ""
}

// appendBase is the image an append adds to.
type appendBase struct {
	rc *squash.ReadCloser
	fi os.FileInfo
}

// openBase opens DEST's image to append to and makes c's writer options
// its own: the compressor and its options, the block size and the flags
// mksquashfs keeps when appending.
func openBase(c *config) (*appendBase, error) {
	rc, err := squash.OpenFileAt(c.dest, c.offset)
	if err != nil {
		return nil, fmt.Errorf("appending: %w", err) // names the image
	}
	fi, err := rc.File().Stat()
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("appending: %w", err)
	}
	cfg := rc.Codec()
	if d := codec.Describe(cfg.ID); d == nil || !d.Writes {
		rc.Close()
		return nil, fmt.Errorf("cannot append to %s: its compressor %s is not one images can be written with; add -noappend to write a new image in its place", c.dest, cfg.ID)
	}
	sb := rc.Superblock()
	o := &c.writer
	o.Codec = cfg
	o.UncompressedInodes = sb.Flags&squash.FlagUncompressedInodes != 0
	o.UncompressedData = sb.Flags&squash.FlagUncompressedData != 0
	o.UncompressedFragments = sb.Flags&squash.FlagUncompressedFragments != 0
	o.UncompressedXattrs = sb.Flags&squash.FlagUncompressedXattrs != 0
	o.NoFragments = sb.Flags&squash.FlagNoFragments != 0
	o.AlwaysFragments = sb.Flags&squash.FlagAlwaysFragments != 0
	o.NoDuplicates = sb.Flags&squash.FlagDuplicates == 0
	o.NoExports = sb.Flags&squash.FlagExportable == 0
	// The image's own xattrs are kept; -no-xattrs leaves out the sources'.
	o.NoXattrs = false
	return &appendBase{rc: rc, fi: fi}, nil
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
	out squash.Output
	off int64
}

func (o offsetOutput) WriteAt(p []byte, off int64) (int, error) { return o.out.WriteAt(p, o.off+off) }
func (o offsetOutput) Truncate(size int64) error                { return o.out.Truncate(o.off + size) }

// deviceOutput is a block device DEST: its size is its own, and what
// lies after the image on it stays (as with mksquashfs).
type deviceOutput struct{ *os.File }

func (deviceOutput) Truncate(int64) error { return nil }

// dest is where the image is written: DEST itself, or for an append a
// new file beside it that replaces it once complete.
type dest struct {
	f      *os.File
	device bool   // a block device: not truncated
	name   string // DEST
	remove string // what a failed run removes: DEST when created here, or the new file
	old    *appendBase
}

// openDest opens DEST for writing, truncating regular files; for an
// append, a new file in DEST's directory that finish renames over it.
func openDest(name string, old *appendBase) (*dest, error) {
	if old != nil {
		return openBeside(name, old)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("creating image: %w", err)
	}
	d := &dest{f: f, name: name, device: fi.Mode()&os.ModeDevice != 0}
	if fi.Mode().IsRegular() {
		d.remove = name
	}
	return d, nil
}

// openBeside makes the file an append writes, in the directory DEST (or
// what it links to) is in, with its permissions and, as far as allowed,
// its owner; the bytes before -offset are copied over.
func openBeside(name string, old *appendBase) (*dest, error) {
	real, err := filepath.EvalSymlinks(name)
	if err != nil {
		return nil, fmt.Errorf("appending: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(real), "."+filepath.Base(real)+".append-*")
	if err != nil {
		return nil, fmt.Errorf("appending: new image beside %s: %w", real, err)
	}
	d := &dest{f: f, name: real, remove: f.Name(), old: old}
	if err := f.Chmod(old.fi.Mode().Perm()); err != nil {
		d.abandon()
		return nil, fmt.Errorf("appending: %w", err)
	}
	if st, ok := old.fi.Sys().(*syscall.Stat_t); ok {
		f.Chown(int(st.Uid), int(st.Gid)) // best effort, as cp -p without root
	}
	if off, ok := old.rc.Data().(*io.SectionReader); ok {
		_, base, _ := off.Outer()
		if _, err := io.Copy(f, io.NewSectionReader(old.rc.File(), 0, base)); err != nil {
			d.abandon()
			return nil, fmt.Errorf("appending: copying the %d bytes before the image: %w", base, err)
		}
	}
	return d, nil
}

// abandon closes and removes what a failed run wrote.
func (d *dest) abandon() {
	d.f.Close()
	if d.remove != "" {
		os.Remove(d.remove)
	}
}

// finish closes the image; for an append it makes it durable first and
// then renames it over DEST, so that DEST is always one whole image, the
// old or the new.
func (d *dest) finish() error {
	if d.old == nil {
		return d.f.Close()
	}
	if err := d.f.Sync(); err != nil {
		return err
	}
	if err := d.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(d.f.Name(), d.name); err != nil {
		return err
	}
	d.remove = ""
	if dir, err := os.Open(filepath.Dir(d.name)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
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

func stdinIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && progress.IsTerminal(f)
}

// readNames reads -cpiostyle's list of file names, one a line (sep '\n',
// blank lines skipped) or NUL-terminated (sep 0, -cpiostyle0).
func readNames(r io.Reader, sep byte) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, sep); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	var names []string
	for sc.Scan() {
		if name := sc.Text(); name != "" {
			names = append(names, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the list of files: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("-cpiostyle: no file names on standard input")
	}
	return names, nil
}
