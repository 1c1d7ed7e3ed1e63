// Package unsquashfs is the "squashportage unsquashfs" subcommand: extract,
// list, cat and describe SquashFS images with unsquashfs 4.5's command line.
package unsquashfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/internal/progress"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/extract"
)

// config is a parsed command line.
type config struct {
	image      string
	paths      []string // the names after the image: to extract, cat, or exclude (-excludes)
	sel        extract.Selection
	excludes   bool // the names after the image are excludes
	offset     int64
	dest       string
	force      bool
	list       int  // 0 none, 1 -ls, 2 -lls
	concise    bool // -lc, -llc: files and empty directories only
	numeric    bool
	userXattrs bool
	mkfsTime   bool
	pseudoFile string // -pf: write pseudo definitions here ("-": stdout)
	linfo      bool
	info       bool
	cat        bool
	stat       bool
	noProgress bool
	quiet      bool
	noXattrs   bool
	processors int
	utc        bool
	allTime    *uint32
	full       bool // -full-precision
	xattrIncl  []*regexp.Regexp
	xattrExcl  []*regexp.Regexp
	follow     bool // -follow-symlinks: resolve extract names through symlinks
	missing    bool // -missing-symlinks: one that cannot be is fatal
	percentage bool // -percentage: the percentage done on stdout, one a line
	ignoreErrs bool // -ignore-errors: salvage past damaged files
	noExitCode bool // -no-exit-code: and exit 0 all the same
	help       bool
	version    bool
}

// usageError is a bad command line, reported with a pointer to -help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

const helpText = `SYNTAX: squashportage unsquashfs [OPTIONS] FILESYSTEM [files to extract or exclude (with -excludes) or cat (with -cat)]
	-v[ersion]		print version information
	-cat			cat the files on the command line to stdout
	-d[est] <pathname>	extract to <pathname>, default "squashfs-root"
	-max[-depth] <levels>	descend at most <levels> of directories when
				extracting or listing
	-excludes		treat files on command line as exclude files
	-ex[clude-list]		list of files to be excluded, terminated
				with ; e.g. file1 file2 ;
	-f[orce]		if file already exists then overwrite
	-q[uiet]		no verbose output
	-n[o-progress]		don't display the progress bar
	-percentage		print the percentage done on stdout, one a
				line, instead of the bar (for dialog --gauge)
	-no[-xattrs]		don't extract xattrs in file system
	-x[attrs]		extract xattrs in file system (default)
	-u[ser-xattrs]		only extract user xattrs in file system.
				Enables extracting xattrs
	-xattrs-exclude <regex>	do not extract xattrs whose names match
				<regex> (e.g. '^user\.'); may be repeated
	-xattrs-include <regex>	extract only xattrs whose names match (and no
				-xattrs-exclude does); may be repeated
	-all[-time] <time>	give every extracted entry this time (seconds
				since 1970) instead of the image's
	-p[rocessors] <number>	decode and write files with <number> goroutines
				(default: all CPUs; 1 extracts in order)
	-i[nfo]			print files as they are extracted
	-li[nfo]		print files as they are extracted with file
				attributes (like ls -l output)
	-l[s]			list filesystem, but don't extract files
	-ll[s]			list filesystem with file attributes (like
				ls -l output), but don't extract files
	-lln[umeric]		same as -lls but with numeric uids and gids
	-lc			list filesystem concisely, displaying only files
				and empty directories.  Don't extract files
	-llc			list filesystem concisely with file attributes,
				displaying only files and empty directories.
				Don't extract files
	-o[ffset] <bytes>	skip <bytes> at start of FILESYSTEM.  Optionally
				a suffix of K, M or G can be given to specify
				Kbytes, Mbytes or Gbytes respectively (default
				0 bytes).
	-s[tat]			display filesystem superblock information
	-UTC			use UTC rather than local time zone when
				displaying time
	-full[-precision]	show times with seconds in -lls, -lln, -llc and
				-linfo
	-mkfs-time		display filesystem superblock time, which is an
				unsigned 32-bit int representing the time in
				seconds since the epoch (1970-01-01)
	-fstime			synonym for -mkfs-time
	-e[f] <extract file>	list of directories or files to extract.
				One per line
	-extract-file <file>	synonym for -ef
	-exc[f] <exclude file>	list of directories or files to exclude.
				One per line
	-exclude-file <file>	synonym for -excf
	-no-wild[cards]		do not use wildcard matching in extract and
				exclude names
	-r[egex]		treat extract and exclude names as regular
				expressions (each must match within a name;
				anchor with ^ and $) rather than shell wildcards
	-pf <file>		output a pseudo file equivalent of the input
				Squashfs filesystem (- for standard output):
				mksquashfs DIR IMAGE -pf <file>, DIR empty,
				makes it again (without its xattrs)
	-pseudo-file <file>	alternative name for -pf
	-ig[nore-errors]	a file whose data cannot be read from the image
				(a damaged block) keeps what could be read, is
				named on stderr, and extraction goes on; the
				exit status is then 2
	-st[rict-errors]	every error is fatal (the default)
	-no-exit[-code]		exit 0 after errors -ignore-errors went past
	-da[ta-queue] <size>, -fr[ag-queue] <size>, -mem <size>,
	-mem-percent <percent>, -no-pager, -cols <width>
				accepted and ignored (memory is bounded
				internally)
	-match			use no wildcards (an extract name that matches
				nothing is always an error here)
	-follow[-symlinks], -L	resolve extract names through the image's
				symlinks: each one met on the way (in the middle
				or at the end of a name) is extracted as it is,
				and the name goes on from its target (relative
				targets only); names are then literal. A name
				that cannot be resolved is a warning
	-missing[-symlinks]	-follow-symlinks, and a name that cannot be
				resolved is an error
	-h[elp], -help-all, -ha	output this options text to stdout

Files to extract may use shell wildcards (*, ?, [...]) in each component.
An extract name that matches nothing is an error; an exclude name is not.
Exit status: 0 done, 1 failed (a damaged file without -ignore-errors, an
unreadable image, a bad command line), 2 done but some files could not be
read in full (-ignore-errors).
Entry names that could escape the destination are refused, and no symlink,
from the image or already in the destination, is ever followed.
`

// parseArgs reads options up to the image name; the rest are paths, as in
// unsquashfs.
func parseArgs(args []string) (*config, error) {
	c := &config{dest: "squashfs-root", processors: runtime.NumCPU()}
	i := 0
	value := func(opt string) (string, error) {
		if i+1 >= len(args) {
			return "", usagef("%s: missing argument", opt)
		}
		i++
		return args[i], nil
	}
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		var err error
		switch a {
		case "-v", "-version":
			c.version = true
		case "-h", "-help", "--help", "-help-all", "-ha":
			c.help = true
		case "-cat":
			c.cat = true
		case "-d", "-dest":
			c.dest, err = value(a)
			if err == nil && c.dest == "" {
				err = usagef("%s: empty pathname", a)
			}
		case "-f", "-force":
			c.force = true
		case "-q", "-quiet":
			c.quiet = true
		case "-n", "-no-progress":
			c.noProgress = true
		case "-no", "-no-xattrs":
			c.noXattrs, c.userXattrs = true, false
		case "-x", "-xattrs":
			c.noXattrs = false
		case "-u", "-user-xattrs":
			c.noXattrs, c.userXattrs = false, true
		case "-max", "-max-depth":
			var v string
			if v, err = value(a); err == nil {
				c.sel.MaxDepth, err = strconv.Atoi(v)
				c.sel.LimitDepth = true
				if err != nil || c.sel.MaxDepth < 0 {
					err = usagef("%s: %q is not a number of levels (0 or more)", a, v)
				}
			}
		case "-excludes":
			c.excludes = true
		case "-ex", "-exclude-list":
			j := i + 1
			for j < len(args) && args[j] != ";" {
				j++
			}
			if j == len(args) {
				err = usagef("%s: no ; ends the list", a)
				break
			}
			c.sel.Excludes = append(c.sel.Excludes, args[i+1:j]...)
			i = j
		case "-exc", "-excf", "-exclude-file":
			var f string
			if f, err = value(a); err == nil {
				var ps []string
				ps, err = readExtractFile(f)
				c.sel.Excludes = append(c.sel.Excludes, ps...)
			}
		case "-no-wild", "-no-wildcards":
			c.sel.Literal, c.sel.Regex = true, false
		case "-r", "-regex":
			c.sel.Regex, c.sel.Literal = true, false
		case "-lc":
			c.list, c.concise = 1, true
		case "-llc":
			c.list, c.concise = 2, true
		case "-o", "-offset":
			var v string
			if v, err = value(a); err == nil {
				c.offset, err = cliflag.ParseSize(v, "KMG")
				if err != nil {
					err = usagef("%s: %q is not a size (bytes, with an optional K, M or G)", a, v)
				}
			}
		case "-mkfs-time", "-fstime":
			c.mkfsTime = true
		case "-st", "-strict-errors":
			c.ignoreErrs = false
		case "-all", "-all-time":
			var v string
			if v, err = value(a); err == nil {
				n, perr := strconv.ParseUint(v, 10, 32)
				if perr != nil {
					err = usagef("%s: %q is not a time (seconds since 1970-01-01, 0 to 4294967295)", a, v)
				} else {
					t := uint32(n)
					c.allTime = &t
				}
			}
		case "-full", "-full-precision":
			c.full = true
		case "-xattrs-exclude", "-xattrs-include":
			var v string
			if v, err = value(a); err == nil {
				re, rerr := regexp.Compile(v)
				switch {
				case rerr != nil:
					err = usagef("%s: %v", a, rerr)
				case a == "-xattrs-exclude":
					c.xattrExcl = append(c.xattrExcl, re)
				default:
					c.xattrIncl = append(c.xattrIncl, re)
				}
			}
		case "-match":
			// An extract name that matches nothing is always an error
			// here; -match also means no wildcards.
			c.sel.Literal, c.sel.Regex = true, false
		case "-mem", "-mem-percent", "-cols":
			var v string
			if v, err = value(a); err == nil {
				if _, perr := cliflag.ParseSize(v, "KMG"); perr != nil {
					err = usagef("%s: %q is not a size or number", a, v)
				}
			}
		case "-percentage":
			c.percentage = true
		case "-no-pager":
		case "-ig", "-ignore-errors":
			c.ignoreErrs = true
		case "-no-exit", "-no-exit-code":
			c.noExitCode = true
		case "-da", "-data-queue", "-fr", "-frag-queue":
			var v string
			if v, err = value(a); err == nil {
				if n, perr := strconv.Atoi(v); perr != nil || n < 1 {
					err = usagef("%s: %q is not a positive number of Mbytes", a, v)
				}
			}
		case "-pf", "-pseudo-file":
			c.pseudoFile, err = value(a)
			if err == nil && c.pseudoFile == "" {
				err = usagef("%s: empty file name", a)
			}
		case "-L", "-follow", "-follow-symlinks":
			c.follow = true
		case "-missing", "-missing-symlinks":
			c.follow, c.missing = true, true
		case "-p", "-processors":
			var v string
			if v, err = value(a); err == nil {
				c.processors, err = strconv.Atoi(v)
				if err != nil || c.processors < 1 {
					err = usagef("%s: %q is not a positive number", a, v)
				}
			}
		case "-i", "-info":
			c.info = true
		case "-li", "-linfo":
			c.info, c.linfo = true, true
		case "-l", "-ls":
			c.list, c.concise = 1, false
		case "-ll", "-lls":
			c.list, c.concise = 2, false
		case "-lln", "-llnumeric":
			c.list, c.concise, c.numeric = 2, false, true
		case "-s", "-stat":
			c.stat = true
		case "-UTC":
			c.utc = true
		case "-e", "-ef", "-extract-file":
			var f string
			if f, err = value(a); err == nil {
				var ps []string
				ps, err = readExtractFile(f)
				c.paths = append(c.paths, ps...)
			}
		default:
			err = usagef("unknown option %s", a)
		}
		if err != nil {
			return nil, err
		}
	}
	if c.help || c.version {
		return c, nil
	}
	if i >= len(args) {
		return nil, usagef("no image given")
	}
	c.image = args[i]
	names := args[i+1:]
	if c.cat && len(names) == 0 {
		return nil, usagef("-cat: no files given")
	}
	if c.excludes && !c.cat {
		c.sel.Excludes = append(c.sel.Excludes, names...)
	} else {
		c.paths = append(c.paths, names...)
	}
	c.sel.Paths = c.paths
	if n := b2i(c.cat) + b2i(c.stat) + b2i(c.list > 0) + b2i(c.mkfsTime) + b2i(c.pseudoFile != ""); n > 1 {
		return nil, usagef("-cat, -stat, -mkfs-time, -pf and the listing options exclude each other")
	}
	return c, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readExtractFile reads one path per line, skipping blank lines.
func readExtractFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("extract file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("extract file %s: %w", name, err)
	}
	return out, nil
}

// Main runs "squashportage unsquashfs" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	c, err := parseArgs(args)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "unsquashfs: %v; see 'squashportage unsquashfs -help'\n", err)
		} else {
			fmt.Fprintf(stderr, "unsquashfs: %v\n", err)
		}
		return 1
	}
	if c.help {
		io.WriteString(stdout, helpText)
		return 0
	}
	if c.version {
		fmt.Fprintln(stdout, "squashportage unsquashfs (SquashFS 4.0, unsquashfs 4.5 compatible options)")
		return 0
	}
	if err := run(c, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "unsquashfs: %v\n", err)
		var se *salvageError
		if errors.As(err, &se) {
			if c.noExitCode {
				return 0
			}
			return 2
		}
		return 1
	}
	return 0
}

// salvageError ends an extraction that went past damaged files
// (-ignore-errors).
type salvageError struct{ files int }

func (e *salvageError) Error() string {
	if e.files == 1 {
		return "1 file could not be read in full from the image (named above); everything else is extracted"
	}
	return fmt.Sprintf("%d files could not be read in full from the image (named above); everything else is extracted", e.files)
}

func run(c *config, stdout, stderr io.Writer) error {
	rc, err := squash.OpenFileAt(c.image, c.offset)
	if err != nil {
		return err // names the image already
	}
	defer rc.Close()
	r := rc.Reader
	loc := time.Local
	if c.utc {
		loc = time.UTC
	}
	if c.follow && len(c.sel.Paths) > 0 && !c.cat {
		paths, unresolved := extract.Follow(r, c.sel.Paths)
		for _, err := range unresolved {
			if c.missing {
				return fmt.Errorf("%w (-missing-symlinks)", err)
			}
			fmt.Fprintf(stderr, "unsquashfs: warning: %v\n", err)
		}
		c.sel.Paths, c.sel.Literal, c.sel.Regex = paths, true, false
		if len(paths) == 0 {
			// Nothing resolved: the root alone, not the whole image.
			c.sel.LimitDepth, c.sel.MaxDepth = true, 0
		}
	}
	switch {
	case c.stat:
		return printStat(stdout, c.image, r, loc)
	case c.mkfsTime:
		_, err := fmt.Fprintln(stdout, r.Superblock().MkfsTime)
		return err
	case c.pseudoFile != "":
		return writePseudo(c.pseudoFile, r, c.sel, stdout)
	case c.cat:
		return catFiles(stdout, r, c.paths)
	case c.list > 0:
		bw := bufio.NewWriter(stdout)
		l := newLister(c.dest, c.list == 2, c.numeric, loc)
		l.full = c.full
		err := extract.Walk(r, c.sel, func(rel string, ino *squash.Inode) error {
			if c.concise && !leaf(ino) {
				return nil
			}
			_, err := io.WriteString(bw, l.line(rel, ino))
			return err
		})
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return err
	}
	return doExtract(c, r, stdout, stderr, loc)
}

func catFiles(stdout io.Writer, r *squash.Reader, paths []string) error {
	for _, p := range paths {
		name := strings.Trim(p, "/")
		if name == "" {
			name = "."
		}
		f, err := r.Open(name)
		if err != nil {
			return fmt.Errorf("cat %s: %w", p, err)
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
		}
		if err == nil {
			_, err = io.Copy(stdout, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("cat %s: %w", p, err)
		}
	}
	return nil
}

// counts tallies what an extraction creates, for unsquashfs's summary.
type counts struct {
	inodes, blocks                                            int64
	files, dirs, symlinks, devices, fifos, sockets, hardlinks int64
}

func tally(p *extract.Plan) (counts, error) {
	var n counts
	seen := map[uint32]bool{}
	err := p.Walk(func(_ string, ino *squash.Inode) error {
		// unsquashfs's "inodes to write" counts non-directory entries,
		// hard links included.
		if basicType(ino.Type) != squash.TypeDir {
			n.inodes++
		}
		if seen[ino.Number] {
			n.hardlinks++
			return nil
		}
		seen[ino.Number] = true
		switch ino.Type {
		case squash.TypeDir, squash.TypeLDir:
			n.dirs++
		case squash.TypeFile, squash.TypeLFile:
			n.files++
			n.blocks += int64(len(ino.BlockSizes))
			if ino.Fragment != squash.NoFragment {
				n.blocks++
			}
		case squash.TypeSymlink, squash.TypeLSymlink:
			n.symlinks++
		case squash.TypeBlockDev, squash.TypeLBlock, squash.TypeCharDev, squash.TypeLChar:
			n.devices++
		case squash.TypeFifo, squash.TypeLFifo:
			n.fifos++
		case squash.TypeSocket, squash.TypeLSocket:
			n.sockets++
		}
		return nil
	})
	return n, err
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("created %d %s", n, one)
	}
	return fmt.Sprintf("created %d %s", n, many)
}

func doExtract(c *config, r *squash.Reader, stdout, stderr io.Writer, loc *time.Location) error {
	p, err := extract.NewPlan(r, c.sel)
	if err != nil {
		return err
	}
	n, err := tally(p)
	if err != nil {
		return err
	}
	if !c.quiet {
		fmt.Fprintf(stdout, "Parallel unsquashfs: Using %d processor%s\n", c.processors, map[bool]string{true: "", false: "s"}[c.processors == 1])
		fmt.Fprintf(stdout, "%d inodes (%d blocks) to write\n\n", n.inodes, n.blocks)
	}
	opts := extract.Options{
		Force:      c.force,
		NoXattrs:   c.noXattrs,
		UserXattrs: c.userXattrs,
		KeepXattr:  cliflag.XattrFilter(c.xattrIncl, c.xattrExcl),
		AllTime:    c.allTime,
		Workers:    c.processors,
		Warn: func(err error) {
			fmt.Fprintf(stderr, "unsquashfs: warning: %v\n", err)
		},
	}
	damaged := 0
	if c.ignoreErrs {
		opts.Damaged = func(err error) {
			damaged++
			fmt.Fprintf(stderr, "unsquashfs: %v; kept what could be read\n", err)
		}
	}
	var bar progress.Reporter
	switch {
	case c.percentage:
		bar = progress.NewPercent(stdout)
	case !c.quiet && !c.noProgress && progress.IsTerminal(stderr):
		bar = progress.NewBar(stderr, "B")
	}
	if bar != nil {
		opts.Progress = bar.Update
	}
	if c.info {
		l := newLister(c.dest, c.linfo, false, loc)
		l.full = c.full
		bw := bufio.NewWriter(stdout)
		defer bw.Flush()
		opts.Info = func(rel string) {
			if !c.linfo {
				io.WriteString(bw, l.path(rel)+"\n")
				return
			}
			// Info gives only the path; the long form needs the inode.
			ino, err := lstat(r, rel)
			if err != nil {
				io.WriteString(bw, l.path(rel)+"\n")
				return
			}
			io.WriteString(bw, l.line(rel, ino))
		}
	}
	err = p.Extract(c.dest, opts)
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		return err
	}

	if !c.quiet {
		fmt.Fprintln(stdout)
		for _, s := range []string{
			plural(n.files, "file", "files"),
			plural(n.dirs, "directory", "directories"),
			plural(n.symlinks, "symlink", "symlinks"),
			plural(n.devices, "device", "devices"),
			plural(n.fifos, "fifo", "fifos"),
			plural(n.sockets, "socket", "sockets"),
			plural(n.hardlinks, "hardlink", "hardlinks"),
		} {
			fmt.Fprintln(stdout, s)
		}
	}
	if damaged > 0 {
		return &salvageError{damaged}
	}
	return nil
}

// leaf says whether -lc lists an entry: files of every kind and empty
// directories (a listing of no entries is stored as size 3).
func leaf(ino *squash.Inode) bool {
	return squash.BasicType(ino.Type) != squash.TypeDir || ino.Size <= 3
}

func lstat(r *squash.Reader, rel string) (*squash.Inode, error) {
	if rel == "" {
		rel = "."
	}
	fi, err := r.Lstat(rel)
	if err != nil {
		return nil, err
	}
	ino, ok := fi.Sys().(*squash.Inode)
	if !ok {
		return nil, fmt.Errorf("%s: no inode", rel)
	}
	return ino, nil
}
