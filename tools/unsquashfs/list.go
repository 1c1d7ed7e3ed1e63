package unsquashfs

import (
	"fmt"
	"io"
	"io/fs"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

// lister formats entries the way unsquashfs -ls and -lls do, so scripts
// written against unsquashfs's output keep working.
type lister struct {
	prefix  string
	long    bool
	numeric bool
	loc     *time.Location
	full    bool // -full-precision: times with seconds
	users   map[uint32]string
	groups  map[uint32]string
}

func newLister(prefix string, long, numeric bool, loc *time.Location) *lister {
	return &lister{prefix: prefix, long: long, numeric: numeric, loc: loc,
		users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (l *lister) path(rel string) string {
	if rel == "" {
		return l.prefix
	}
	return l.prefix + "/" + rel
}

func (l *lister) user(id uint32) string {
	if s, ok := l.users[id]; ok {
		return s
	}
	s := strconv.FormatUint(uint64(id), 10)
	if !l.numeric {
		if u, err := user.LookupId(s); err == nil {
			s = u.Username
		}
	}
	l.users[id] = s
	return s
}

func (l *lister) group(id uint32) string {
	if s, ok := l.groups[id]; ok {
		return s
	}
	s := strconv.FormatUint(uint64(id), 10)
	if !l.numeric {
		if g, err := user.LookupGroupId(s); err == nil {
			s = g.Name
		}
	}
	l.groups[id] = s
	return s
}

// line is one listing line with its newline.
func (l *lister) line(rel string, ino *squash.Inode) string {
	p := l.path(rel)
	if !l.long {
		return p + "\n"
	}
	var b strings.Builder
	u, g := l.user(ino.UID), l.group(ino.GID)
	b.WriteString(modeString(ino))
	b.WriteByte(' ')
	b.WriteString(u)
	b.WriteByte('/')
	b.WriteString(g)
	// unsquashfs right-aligns the size so that owner and size take 26
	// columns; a negative width (long names) left-aligns, as C's does.
	width := 26 - len(u) - len(g)
	switch basicType(ino.Type) {
	case squash.TypeBlockDev, squash.TypeCharDev:
		// unsquashfs prints the squashfs device word with the old 8:8
		// split (sign-extended), not the real major and minor; -lls is
		// matched byte for byte, so this does too.
		major := int32(ino.Rdev) >> 8
		minor := ino.Rdev & 0xff
		// Seven columns are reserved for "%3d,%3d"; longer majors push on.
		fmt.Fprintf(&b, "%*s%3d,%3d", width-7, "", major, minor)
	default:
		fmt.Fprintf(&b, "%*d", width, ino.Size)
	}
	b.WriteByte(' ')
	layout := "2006-01-02 15:04"
	if l.full {
		layout += ":05"
	}
	b.WriteString(time.Unix(int64(ino.Mtime), 0).In(l.loc).Format(layout))
	b.WriteByte(' ')
	b.WriteString(p)
	if basicType(ino.Type) == squash.TypeSymlink {
		b.WriteString(" -> ")
		b.WriteString(ino.Target)
	}
	b.WriteByte('\n')
	return b.String()
}

func basicType(t uint16) uint16 {
	if t > squash.TypeSocket {
		return t - 7
	}
	return t
}

// modeString is ls -l's ten-character mode.
func modeString(ino *squash.Inode) string {
	var b [10]byte
	b[0] = map[uint16]byte{
		squash.TypeDir: 'd', squash.TypeFile: '-', squash.TypeSymlink: 'l',
		squash.TypeBlockDev: 'b', squash.TypeCharDev: 'c', squash.TypeFifo: 'p', squash.TypeSocket: 's',
	}[basicType(ino.Type)]
	if b[0] == 0 {
		b[0] = '?'
	}
	m := ino.Mode
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<(8-i)) != 0 {
			b[1+i] = rwx[i]
		} else {
			b[1+i] = '-'
		}
	}
	special := func(pos int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[pos] == 'x' {
			b[pos] = lower
		} else {
			b[pos] = upper
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b[:])
}

// printStat writes superblock information in unsquashfs -s's layout.
func printStat(w io.Writer, image string, r *squash.Reader, loc *time.Location) error {
	sb := r.Superblock()
	cfg := r.Codec()
	flag := func(f uint16) bool { return sb.Flags&f != 0 }
	pf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	pf("Found a valid SQUASHFS 4:0 superblock on %s.\n", image)
	pf("Creation or last append time %s\n", time.Unix(int64(sb.MkfsTime), 0).In(loc).Format("Mon Jan _2 15:04:05 2006"))
	pf("Filesystem size %d bytes (%.2f Kbytes / %.2f Mbytes)\n", sb.BytesUsed, float64(sb.BytesUsed)/1024, float64(sb.BytesUsed)/(1024*1024))
	pf("Compression %s\n", sb.Compression)
	if flag(squash.FlagCompressorOptions) {
		for _, l := range codec.Describe(cfg.ID).Lines(cfg) {
			pf("\t%s\n", l)
		}
	}
	pf("Block size %d\n", sb.BlockSize)
	pf("Filesystem is %sexportable via NFS\n", map[bool]string{true: "", false: "not "}[flag(squash.FlagExportable)])
	un := func(f uint16) string { return map[bool]string{true: "uncompressed", false: "compressed"}[flag(f)] }
	pf("Inodes are %s\n", un(squash.FlagUncompressedInodes))
	pf("Data is %s\n", un(squash.FlagUncompressedData))
	// mksquashfs -noI also leaves the id table uncompressed without
	// setting its flag; unsquashfs reports either.
	ids := "compressed"
	if flag(squash.FlagUncompressedIDs) || flag(squash.FlagUncompressedInodes) {
		ids = "uncompressed"
	}
	pf("Uids/Gids (Id table) are %s\n", ids)
	if flag(squash.FlagNoFragments) {
		pf("Fragments are not stored\n")
	} else {
		pf("Fragments are %s\n", un(squash.FlagUncompressedFragments))
		pf("Always-use-fragments option is %sspecified\n", map[bool]string{true: "", false: "not "}[flag(squash.FlagAlwaysFragments)])
	}
	noXattrs := flag(squash.FlagNoXattrs)
	if noXattrs {
		pf("Xattrs are not stored\n")
	} else {
		pf("Xattrs are %s\n", un(squash.FlagUncompressedXattrs))
	}
	pf("Duplicates are %sremoved\n", map[bool]string{true: "", false: "not "}[flag(squash.FlagDuplicates)])
	pf("Number of fragments %d\n", sb.Fragments)
	pf("Number of inodes %d\n", sb.Inodes)
	pf("Number of ids %d\n", sb.IDs)
	if !noXattrs {
		pf("Number of xattr ids %d\n", r.XattrIDs())
	}
	return nil
}
