package mksquashfs

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/squashportage/squashportage/internal/cliflag"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
	sqextract "github.com/squashportage/squashportage/squash/extract"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// config is a parsed command line.
type config struct {
	sources []string
	dest    string

	writer squash.WriterOptions
	tree   sourcetree.Options

	mkfsTimeSet bool // -mkfs-time or SOURCE_DATE_EPOCH; otherwise the current time
	mkfsInode   bool // -mkfs-time inode, -repro: the latest entry's mtime
	infoFile    string
	noAppend    bool
	rootBecomes string   // -root-becomes: the appended image's root becomes this entry
	layout      []string // options that an append ignores: the image keeps its own
	offset      int64    // where the image starts in DEST (-offset)
	tar         bool     // the source is a tar archive on stdin (SOURCE is -)
	cpio        bool     // -cpiostyle, -cpiostyle0: a list of files on stdin,
	cpioSep     byte     // ended by '\n' or (-cpiostyle0) NUL
	noStrip     bool     // -no-strip: sources kept at their whole paths
	stdin       io.Reader
	quiet       bool
	noProgress  bool
	percentage  bool // -percentage: the percentage done on stdout, one a line
	progress    bool
	info        bool
	help        bool
	version     bool

	notes []string // accepted-but-ignored options, reported unless -quiet
}

// usageError is a command-line mistake: reported with a pointer to -help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// unsupported are mksquashfs 4.5 options squashportage knowingly lacks; they
// get a clearer message than "unknown option".
var unsupported = map[string]bool{
	"-action": true, "-log-action": true,
	"-true-action": true, "-false-action": true, "-action-file": true, "-log-action-file": true,
	"-true-action-file": true, "-false-action-file": true,
	"-recover": true, "-recovery-path": true,
	"-throttle": true, "-limit": true, "-stream": true, "-fix": true, "-Xstrategy": true, "-Xalgorithm": true,
}

// xopt remembers a compressor option until the compressor and block size
// are both known, since mksquashfs lets them come in any order.
type xopt struct {
	name, value string
}

// parseArgs parses "SOURCE... DEST [options]" the way mksquashfs does:
// positionals end at the first argument starting with "-", and "-e" takes
// every argument after it as an exclude. getenv looks up SOURCE_DATE_EPOCH.
func parseArgs(args []string, getenv func(string) (string, bool)) (*config, error) {
	c := &config{}
	i := 0
	var pos []string
	for i < len(args) && (!strings.HasPrefix(args[i], "-") || args[i] == "-") {
		pos = append(pos, args[i])
		i++
	}

	var (
		comp            = codec.Gzip
		blockSize       = squash.DefaultBlockSize
		xopts           []xopt
		excludeFiles    []string
		mkfsTime        *uint32
		allTime         *uint32
		forceUID        *uint32
		forceGID        *uint32
		wildcards, rgx  bool
		excludes        []string
		processors      int
		noXattrs        bool
		noExports       *bool // nil: the default (-tar: no export table)
		tailends        *bool // likewise (-tar: tails in fragments)
		noBlockSums     bool
		keepAsDirectory bool
		xattrIncl       []*regexp.Regexp
		xattrExcl       []*regexp.Regexp
		allRoot         bool
	)
	next := func(opt string) (string, error) {
		if i+1 >= len(args) {
			return "", usagef("%s: missing argument", opt)
		}
		i++
		return args[i], nil
	}

	for ; i < len(args); i++ {
		opt := args[i]
		var val string
		var err error
		switch opt {
		case "-comp", "-b", "-ef", "-force-uid", "-force-gid", "-all-time", "-mkfs-time", "-fstime",
			"-processors", "-mem", "-root-mode", "-root-uid", "-root-gid", "-root-time", "-offset", "-o",
			"-p", "-pf", "-strip-components", "-root-becomes",
			"-force-file-mode", "-force-dir-mode", "-uid-gid-offset", "-inode-time", "-repro-time", "-max-depth",
			"-xattrs-exclude", "-xattrs-include", "-xattrs-add", "-info-file", "-small-readers", "-block-readers",
			"-overcommit", "-mem-percent", "-cols", "-default-mode", "-default-uid", "-default-gid", "-sort", "-pd", "-pseudo-dir":
			if val, err = next(opt); err != nil {
				return nil, err
			}
		}
		switch opt {
		case "-comp", "-b", "-noI", "-noInodeCompression", "-noD", "-noDataCompression",
			"-noF", "-noFragmentCompression", "-noX", "-noXattrCompression", "-no-fragments",
			"-no-tailends", "-always-use-fragments", "-tailends", "-no-duplicates",
			"-exports", "-no-exports", "-no-compression":
			c.layout = append(c.layout, opt)
		}
		if isX, takesValue := codec.IsXOption(opt); isX {
			if takesValue {
				if val, err = next(opt); err != nil {
					return nil, err
				}
			}
			c.layout = append(c.layout, opt)
			xopts = append(xopts, xopt{opt, val})
			continue
		}
		switch opt {
		case "-help", "-h", "--help", "-help-all", "-ha":
			c.help = true
		case "-version":
			c.version = true
		case "-comp":
			if comp, err = codec.ParseID(val); err != nil {
				return nil, usagef("-comp: %v", err)
			}
		case "-b":
			if blockSize, err = parseBlockSize(val); err != nil {
				return nil, err
			}
		case "-no-compression":
			c.writer.UncompressedInodes, c.writer.UncompressedData = true, true
			c.writer.UncompressedFragments, c.writer.UncompressedXattrs = true, true
		case "-force-file-mode", "-force-dir-mode":
			m, err := sourcetree.ParseModeSpec(val)
			if err != nil {
				return nil, usagef("%s: %v (octal, e.g. 0644, or symbolic, e.g. u=rwX,go=rX)", opt, err)
			}
			if opt == "-force-file-mode" {
				c.tree.FileMode = &m
			} else {
				c.tree.DirMode = &m
			}
		case "-default-mode":
			m, err := sourcetree.ParseModeSpec(val)
			if err != nil {
				return nil, usagef("-default-mode: %v (octal, e.g. 0755, or symbolic, e.g. u=rwx,go=rx)", err)
			}
			c.tree.DefaultMode = &m
		case "-default-uid":
			if c.tree.DefaultUID, err = lookupID(opt, val, false); err != nil {
				return nil, err
			}
		case "-default-gid":
			if c.tree.DefaultGID, err = lookupID(opt, val, true); err != nil {
				return nil, err
			}
		case "-ignore-zeros":
			c.tree.IgnoreZeros = true
		case "-numeric-owner":
			c.tree.NumericOwner = true
		case "-uid-gid-offset":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return nil, usagef("-uid-gid-offset: %q is not a number (0 to 4294967295)", val)
			}
			c.tree.IDOffset = uint32(n)
		case "-max-depth":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return nil, usagef("-max-depth: %q is not a number of levels (0 or more)", val)
			}
			c.tree.MaxDepth = &n
		case "-xattrs-exclude", "-xattrs-include":
			re, err := regexp.Compile(val)
			if err != nil {
				return nil, usagef("%s: %v", opt, err)
			}
			if opt == "-xattrs-exclude" {
				xattrExcl = append(xattrExcl, re)
			} else {
				xattrIncl = append(xattrIncl, re)
			}
		case "-xattrs-add":
			x, err := parseXattrAdd(val)
			if err != nil {
				return nil, usagef("-xattrs-add: %v", err)
			}
			c.tree.AddXattrs = append(c.tree.AddXattrs, x)
		case "-pd", "-pseudo-dir":
			d, err := sourcetree.ParsePseudo("x " + val)
			if err != nil || d.Type != 'd' {
				return nil, usagef("%s: %q is not \"d MODE UID GID\" or \"D TIME MODE UID GID\"", opt, val)
			}
			c.tree.PseudoDir = &d
		case "-pseudo-override":
			c.tree.PseudoOverride = true
		case "-sort":
			rules, err := sourcetree.ReadSortFile(val)
			if err != nil {
				return nil, fmt.Errorf("-sort: %w", err)
			}
			c.tree.Sort = append(c.tree.Sort, rules...)
		case "-info-file":
			c.infoFile = val
		case "-single-reader", "-no-pager", "-mem-default":
		case "-small-readers", "-block-readers", "-overcommit", "-mem-percent", "-cols":
			if n, err := strconv.Atoi(val); err != nil || n < 0 {
				return nil, usagef("%s: %q is not a number", opt, val)
			}
			c.notes = append(c.notes, opt+" ignored: reading and memory are tuned internally")
		case "-noI", "-noInodeCompression":
			c.writer.UncompressedInodes = true
		case "-noD", "-noDataCompression":
			c.writer.UncompressedData = true
		case "-noF", "-noFragmentCompression":
			c.writer.UncompressedFragments = true
		case "-noX", "-noXattrCompression":
			c.writer.UncompressedXattrs = true
		case "-noId", "-noIdTableCompression":
			c.notes = append(c.notes, opt+" ignored: the id table is always compressed unless -noI")
		case "-no-fragments":
			c.writer.NoFragments = true
		case "-no-tailends":
			// mksquashfs 4.5's default, and ours: tails of files larger
			// than a block keep a block of their own.
			tailends = ptr(false)
		case "-always-use-fragments", "-tailends":
			tailends = ptr(true)
		case "-tar":
			c.tar = true
		case "-cpiostyle":
			c.cpio, c.cpioSep = true, '\n'
		case "-cpiostyle0":
			c.cpio, c.cpioSep = true, 0
		case "-no-strip", "-tarstyle":
			c.noStrip = true
		case "-strip-components":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return nil, usagef("-strip-components: %q is not a number of path components (0 or more)", val)
			}
			c.tree.StripComponents = n
		case "-no-duplicates":
			c.writer.NoDuplicates = true
		case "-no-fragment-grouping":
			c.writer.NoFragmentGrouping = true
		case "-block-sums":
			noBlockSums = false
		case "-no-block-sums":
			noBlockSums = true
		case "-exports":
			noExports = ptr(false)
		case "-no-exports":
			noExports = ptr(true)
		case "-xattrs":
			noXattrs = false
		case "-no-xattrs":
			noXattrs = true
		case "-noappend":
			c.noAppend = true
		case "-root-becomes":
			if err := sqextract.CheckName(val); err != nil {
				return nil, usagef("-root-becomes: %v: it names a directory of the root", err)
			}
			c.rootBecomes = val
		case "-e":
			excludes = append(excludes, args[i+1:]...)
			i = len(args)
		case "-ef":
			excludeFiles = append(excludeFiles, val)
		case "-wildcards":
			wildcards = true
		case "-regex":
			rgx = true
		case "-keep-as-directory":
			keepAsDirectory = true
		case "-all-root", "-root-owned":
			allRoot = true
		case "-force-uid":
			if forceUID, err = lookupID(opt, val, false); err != nil {
				return nil, err
			}
		case "-force-gid":
			if forceGID, err = lookupID(opt, val, true); err != nil {
				return nil, err
			}
		case "-root-mode":
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil || n > 0o7777 {
				return nil, usagef("-root-mode: %q is not an octal mode (0 to 7777, e.g. 0755)", val)
			}
			m := squash.FileModeFromUnix(uint32(n))
			c.tree.RootMode = &m
		case "-root-uid":
			if c.tree.RootUID, err = lookupID(opt, val, false); err != nil {
				return nil, err
			}
		case "-root-gid":
			if c.tree.RootGID, err = lookupID(opt, val, true); err != nil {
				return nil, err
			}
		case "-root-time":
			if c.tree.RootTime, err = parseTime(opt, val); err != nil {
				return nil, err
			}
		case "-offset", "-o":
			if c.offset, err = cliflag.ParseSize(val, "KMG"); err != nil {
				return nil, usagef("%s: %q is not a size (bytes, with an optional K, M or G suffix)", opt, val)
			}
		case "-p":
			d, err := sourcetree.ParsePseudo(val)
			if err != nil {
				return nil, usagef("-p: %v", err)
			}
			c.tree.Pseudo = append(c.tree.Pseudo, d)
		case "-pf":
			ds, err := sourcetree.ReadPseudoFile(val)
			if err != nil {
				return nil, fmt.Errorf("-pf: %w", err)
			}
			c.tree.Pseudo = append(c.tree.Pseudo, ds...)
		case "-no-hardlinks":
			c.tree.NoHardlinks = true
		case "-one-file-system", "-one-file-system-x":
			c.tree.OneFileSystem = true
		case "-no-sparse":
			c.writer.NoSparse = true
		case "-nopad":
			c.writer.NoPad = true
		case "-all-time":
			if allTime, err = parseTime(opt, val); err != nil {
				return nil, err
			}
		case "-mkfs-time", "-fstime":
			if val == "inode" {
				c.mkfsInode = true
				mkfsTime = nil
			} else if mkfsTime, err = parseTime(opt, val); err != nil {
				return nil, err
			} else {
				c.mkfsInode = false
			}
		case "-repro":
			c.mkfsInode, mkfsTime = true, nil
		case "-repro-time":
			if mkfsTime, err = parseTime(opt, val); err != nil {
				return nil, err
			}
			allTime, c.mkfsInode = mkfsTime, false
		case "-inode-time":
			if allTime, err = parseTime(opt, val); err != nil {
				return nil, err
			}
		case "-processors":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return nil, usagef("-processors: %q is not a positive number", val)
			}
			processors = n
		case "-mem":
			if _, err := cliflag.ParseSize(val, "KMG"); err != nil {
				return nil, usagef("-mem: %q is not a size (a number with an optional K, M or G suffix)", val)
			}
			c.notes = append(c.notes, "-mem ignored: memory use is bounded internally")
		case "-quiet":
			c.quiet = true
		case "-no-progress":
			c.noProgress = true
		case "-percentage":
			c.percentage = true
		case "-progress":
			c.progress = true
		case "-info":
			c.info = true
		case "-reproducible", "-no-recovery", "-exit-on-error":
			// Always the case here: images are reproducible, no
			// recovery file is ever written, and an error reading a
			// source (which mksquashfs skips, with a message) ends
			// the run.
		case "-not-reproducible":
			c.notes = append(c.notes, "-not-reproducible ignored: images are always reproducible")
		default:
			if opt == "-recover" || opt == "-recovery-path" {
				return nil, usagef("%s: squashportage has no recovery files to use: an append writes the new image beside DEST and renames it over DEST once complete, so one cut short leaves DEST as it was", opt)
			}
			if unsupported[opt] {
				return nil, usagef("option %s is not supported by squashportage", opt)
			}
			if !strings.HasPrefix(opt, "-") {
				return nil, usagef("unexpected argument %q after the options (SOURCE... DEST must come first)", opt)
			}
			return nil, usagef("unknown option %s", opt)
		}
	}
	if c.help || c.version {
		return c, nil
	}
	if len(pos) < 2 {
		return nil, usagef("need at least one SOURCE and a DEST")
	}
	c.sources, c.dest = pos[:len(pos)-1], pos[len(pos)-1]
	if c.cpio {
		switch {
		case c.tar:
			return nil, usagef("-tar and -cpiostyle exclude each other")
		case len(c.sources) != 1 || c.sources[0] != "-":
			return nil, usagef("-cpiostyle reads the files' names from standard input: the SOURCE must be - (find DIR | mksquashfs - DEST -cpiostyle)")
		case len(excludes) > 0 || len(excludeFiles) > 0:
			return nil, usagef("-cpiostyle: excludes are not supported; leave the files out of the list")
		}
	}
	if c.noStrip && (len(excludes) > 0 || len(excludeFiles) > 0) {
		return nil, usagef("-no-strip: excludes are not supported")
	}
	if c.tar {
		if len(c.sources) != 1 || c.sources[0] != "-" {
			return nil, usagef("-tar reads the archive from standard input: the SOURCE must be - (mksquashfs - DEST -tar)")
		}
		if len(excludes) > 0 || len(excludeFiles) > 0 {
			return nil, usagef("-tar: excludes are not supported with a tar archive")
		}
		// mksquashfs -tar's defaults, which its directory sources keep
		// only for compatibility.
		if noExports == nil {
			noExports = ptr(true)
		}
		if tailends == nil {
			tailends = ptr(true)
		}
	} else if c.tree.StripComponents > 0 {
		return nil, usagef("-strip-components applies to -tar only")
	}
	c.writer.AlwaysFragments = tailends != nil && *tailends

	cfg := codec.Config{ID: comp, BlockSize: blockSize}
	for _, x := range xopts {
		if err := codec.SetXOption(&cfg, x.name, x.value); err != nil {
			return nil, usagef("%v", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, usagef("compressor options: %v", err)
	}
	c.writer.Codec = cfg
	c.writer.Workers = processors
	c.writer.NoExports = noExports != nil && *noExports
	c.writer.NoXattrs = noXattrs
	c.writer.BlockSums = !noBlockSums && !c.writer.NoPad
	if c.writer.NoPad && !noBlockSums {
		c.notes = append(c.notes, "-nopad: no block sum record either (it follows the padding); a first persist from this image decodes the blocks it keeps")
	}

	c.tree.KeepXattr = cliflag.XattrFilter(xattrIncl, xattrExcl)
	if epoch, ok := getenv("SOURCE_DATE_EPOCH"); ok {
		if mkfsTime != nil || allTime != nil || c.mkfsInode {
			return nil, usagef("SOURCE_DATE_EPOCH and -mkfs-time/-all-time/-inode-time/-repro/-repro-time can't be used together to set timestamps")
		}
		t, err := parseTime("SOURCE_DATE_EPOCH", epoch)
		if err != nil {
			return nil, err
		}
		mkfsTime = t
		c.tree.ClampTime = t
	}
	if mkfsTime != nil {
		c.writer.MkfsTime = *mkfsTime
		c.mkfsTimeSet = true
	}

	for _, ef := range excludeFiles {
		list, err := sourcetree.ReadExcludeFile(ef)
		if err != nil {
			return nil, fmt.Errorf("-ef: %w", err)
		}
		excludes = append(excludes, list...)
	}
	c.tree.Excludes = excludes
	c.tree.Wildcards = wildcards
	c.tree.Regex = rgx
	c.tree.KeepAsDirectory = keepAsDirectory
	c.tree.NoXattrs = noXattrs
	c.tree.AllRoot = allRoot
	c.tree.ForceUID = forceUID
	c.tree.ForceGID = forceGID
	c.tree.AllTime = allTime
	return c, nil
}

func ptr[T any](v T) *T { return &v }

// parseBlockSize accepts bytes with an optional K or M suffix; the result
// must be a power of two from 4K to 1M.
func parseBlockSize(s string) (int, error) {
	n, err := cliflag.ParseSize(s, "KM")
	if err != nil || n < squash.MinBlockSize || n > squash.MaxBlockSize || n&(n-1) != 0 {
		return 0, usagef("-b: %q is not a valid block size (a power of two from 4K to 1M, e.g. 4096, 64K, 1M)", s)
	}
	return int(n), nil
}

func parseTime(opt, s string) (*uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return nil, usagef("%s: %q is not a time (seconds since 1970-01-01, 0 to 4294967295)", opt, s)
	}
	t := uint32(n)
	return &t, nil
}

// lookupID takes a number or a user/group name.
func lookupID(opt, s string, group bool) (*uint32, error) {
	id, err := sourcetree.LookupID(s, group)
	if err != nil {
		return nil, usagef("%s: %v", opt, err)
	}
	return &id, nil
}

// parseXattrAdd parses -xattrs-add's NAME=VALUE, the value as given, or
// base64 after 0s, hex after 0x, or with backslash-octal escapes after 0t.
func parseXattrAdd(s string) (squash.Xattr, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return squash.Xattr{}, fmt.Errorf("%q is not NAME=VALUE", s)
	}
	if !squash.StorableXattr(name) {
		return squash.Xattr{}, fmt.Errorf("%s: squashfs stores only user., trusted. and security. attributes", name)
	}
	var v []byte
	var err error
	switch {
	case strings.HasPrefix(val, "0s"):
		v, err = base64.StdEncoding.DecodeString(val[2:])
	case strings.HasPrefix(val, "0x"), strings.HasPrefix(val, "0X"):
		v, err = hex.DecodeString(val[2:])
	case strings.HasPrefix(val, "0t"):
		v, err = unescapeOctal(val[2:])
	default:
		v = []byte(val)
	}
	if err != nil {
		return squash.Xattr{}, fmt.Errorf("%s: value %q: %v", name, val, err)
	}
	return squash.Xattr{Name: name, Value: v}, nil
}

// unescapeOctal takes \ for a backslash and \NNN (three octal digits) for
// any byte.
func unescapeOctal(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+4 > len(s) {
			return nil, errors.New("a backslash needs three octal digits or another backslash after it")
		}
		n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return nil, errors.New("a backslash needs three octal digits (000 to 377) or another backslash after it")
		}
		out = append(out, byte(n))
		i += 3
	}
	return out, nil
}
