package sourcetree

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/squashportage/squashportage/squash"
)

// A Pseudo is a pseudo file definition (mksquashfs -p and -pf): an entry
// the image gets without it being in the sources (a device node made
// without root, a file holding a command's output), or new attributes for
// one that is.
//
//	NAME d MODE UID GID                 directory
//	NAME m MODE UID GID                 new mode and owner of an entry of the sources
//	NAME b MODE UID GID MAJOR MINOR     block device
//	NAME c MODE UID GID MAJOR MINOR     character device
//	NAME f MODE UID GID COMMAND         file holding what /bin/sh -c COMMAND prints
//	NAME s MODE UID GID TARGET          symbolic link (MODE is ignored)
//	NAME i MODE UID GID s|f             socket or FIFO
//	NAME L OTHER                        hard link to OTHER, an entry of the image
//	NAME R TIME MODE UID GID LEN OFF    file holding LEN bytes at OFF of the
//	                                    data that follows the definitions in
//	                                    a -pf file (unsquashfs -pf writes them)
//
// The letters dmbcfsi in upper case take a TIME (seconds since 1970)
// before MODE; otherwise the time is the build's. MODE is octal; UID and
// GID are numbers or names. NAME may quote ("...") or backslash-escape
// spaces.
type Pseudo struct {
	Def          string // as given, for messages
	Name         string // image path, without leading slashes; "" is the root
	Type         byte   // one of "dmbcfsi", or 'L' or 'R'
	Mode         fs.FileMode
	UID, GID     uint32
	Mtime        *uint32
	Major, Minor uint32
	Command      string // f
	Target       string // s; L: the image path linked to
	// R: the file holding the data, and where in it
	DataFile         string
	DataOff, DataLen int64
}

// PseudoDataMarker is the line that ends the definitions of a -pf file
// that has R data (between two "#" lines, as unsquashfs -pf writes it).
const PseudoDataMarker = "# START OF DATA - DO NOT MODIFY"

// ParsePseudo parses one definition.
func ParsePseudo(def string) (Pseudo, error) {
	p := Pseudo{Def: def}
	fail := func(format string, a ...any) (Pseudo, error) {
		return Pseudo{}, fmt.Errorf("pseudo definition %q: %s", def, fmt.Sprintf(format, a...))
	}
	name, rest := pseudoName(def)
	if name == "" {
		return fail("no file name")
	}
	if strings.Contains(name, "\x00") || slices.Contains(strings.Split(name, "/"), "..") {
		return fail("%q is not a path in the image", name)
	}
	p.Name = strings.Trim(path.Clean("/"+name), "/")
	rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
	if rest == "" {
		return fail("no type")
	}
	typ := rest[0]
	rest = rest[1:]
	if len(rest) > 0 && !unicode.IsSpace(rune(rest[0])) {
		return fail("type %q is not one letter", strings.Fields(string(typ) + rest)[0])
	}
	if typ == 'L' {
		target, tail := pseudoName(strings.TrimLeftFunc(rest, unicode.IsSpace))
		if target == "" || strings.TrimSpace(tail) != "" || slices.Contains(strings.Split(target, "/"), "..") {
			return fail("want one image path to link to")
		}
		p.Type, p.Target = 'L', strings.Trim(path.Clean("/"+target), "/")
		return p, nil
	}
	if typ == 'R' {
		// TIME MODE UID GID LEN OFF; the data file is set by ReadPseudoFile.
		f, tail := fieldsN(rest, 6)
		if len(f) < 6 || tail != "" {
			return fail("want TIME MODE UID GID LENGTH OFFSET")
		}
		n1, err1 := strconv.ParseInt(f[4], 10, 64)
		n2, err2 := strconv.ParseInt(f[5], 10, 64)
		if err1 != nil || err2 != nil || n1 < 0 || n2 < 0 {
			return fail("length %q and offset %q: want numbers", f[4], f[5])
		}
		p.Type, p.DataLen, p.DataOff = 'R', n1, n2
		if err := p.attrs(f[:4], true); err != nil {
			return fail("%v", err)
		}
		return p, nil
	}
	p.Type = typ | 0x20 // lower case
	if !strings.ContainsRune("dmbcfsi", rune(p.Type)) {
		if strings.ContainsRune("l", rune(typ)) {
			return fail("type %c is not supported by squashportage", typ)
		}
		return fail("unknown type %c (d, m, b, c, f, s or i, or D, M, B, C, F, S, I with a time, or L, R)", typ)
	}
	// Fields up to the type's free-text tail (f's command, s's target).
	fixed := 3
	if typ != p.Type { // upper case: TIME first
		fixed++
	}
	switch p.Type {
	case 'b', 'c':
		fixed += 2
	case 'i':
		fixed++
	}
	f, tail := fieldsN(rest, fixed)
	if len(f) < fixed {
		return fail("too few fields")
	}
	if err := p.attrs(f, typ != p.Type); err != nil {
		return fail("%v", err)
	}
	if typ != p.Type {
		f = f[1:]
	}
	switch p.Type {
	case 'b', 'c':
		maj, err1 := strconv.ParseUint(f[3], 10, 32)
		min, err2 := strconv.ParseUint(f[4], 10, 32)
		// What the squashfs device encoding holds, as mksquashfs checks.
		if err1 != nil || err2 != nil || maj > 0xfff || min > 0xfffff {
			return fail("major %q and minor %q: want numbers up to 4095 and 1048575", f[3], f[4])
		}
		p.Major, p.Minor = uint32(maj), uint32(min)
	case 'i':
		switch f[3] {
		case "f":
			p.Mode |= fs.ModeNamedPipe
		case "s":
			p.Mode |= fs.ModeSocket
		default:
			return fail("%q: want s (socket) or f (FIFO)", f[3])
		}
	}
	switch p.Type {
	case 'f':
		if p.Command = tail; tail == "" {
			return fail("no command")
		}
	case 's':
		if p.Target = tail; tail == "" {
			return fail("no link target")
		}
		if len(tail) > 65535 {
			return fail("link target longer than 65535 bytes")
		}
	default:
		if tail != "" {
			return fail("unexpected %q at the end", tail)
		}
	}
	return p, nil
}

// PseudoName is the name a pseudo definition gives an image path: "/" for
// the root, and a backslash before each quote, backslash and space, as
// unsquashfs writes them, and tab, which the parser would split at (see
// pseudoName). A line break cannot be written.
func PseudoName(rel string) (string, error) {
	if rel == "" {
		return "/", nil
	}
	if strings.ContainsAny(rel, "\n\r") {
		return "", fmt.Errorf("%q: a name with a line break cannot be written as a pseudo definition", rel)
	}
	var b strings.Builder
	for i := 0; i < len(rel); i++ {
		switch c := rel[i]; c {
		case '\'', '"', '\\', ' ', '\t':
			b.WriteByte('\\')
			fallthrough
		default:
			b.WriteByte(rel[i])
		}
	}
	return b.String(), nil
}

// attrs parses [TIME] MODE UID GID (TIME when timed) into p.
func (p *Pseudo) attrs(f []string, timed bool) error {
	if timed {
		t, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return fmt.Errorf("time %q is not seconds since 1970 (0 to 4294967295)", f[0])
		}
		t32 := uint32(t)
		p.Mtime = &t32
		f = f[1:]
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil || mode > 0o7777 {
		return fmt.Errorf("mode %q is not octal (0 to 7777)", f[0])
	}
	p.Mode = squash.FileModeFromUnix(uint32(mode))
	if p.UID, err = LookupID(f[1], false); err != nil {
		return err
	}
	p.GID, err = LookupID(f[2], true)
	return err
}

// pseudoName reads the leading file name: up to unquoted white space, with
// "..." quoting and backslash escapes, as mksquashfs reads it.
func pseudoName(def string) (name, rest string) {
	var b strings.Builder
	quoted := false
	i := 0
	for ; i < len(def); i++ {
		c := def[i]
		if !quoted && unicode.IsSpace(rune(c)) {
			break
		}
		switch c {
		case '"':
			quoted = !quoted
			continue
		case '\\':
			if i+1 == len(def) {
				continue
			}
			i++
			c = def[i]
		}
		b.WriteByte(c)
	}
	return b.String(), def[i:]
}

// fieldsN splits the first n white-space separated fields off s and
// returns them with the rest, its leading white space removed.
func fieldsN(s string, n int) ([]string, string) {
	var out []string
	for len(out) < n {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if s == "" {
			break
		}
		end := strings.IndexFunc(s, unicode.IsSpace)
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out, strings.TrimSpace(s)
}

// LookupID takes a user id (group: a group id) as a number or a name.
// os/user reads /etc/passwd and /etc/group itself when built without cgo,
// as the static binary is.
func LookupID(s string, group bool) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	var id string
	if group {
		g, err := user.LookupGroup(s)
		if err != nil {
			return 0, fmt.Errorf("gid %q: neither a number nor a known group", s)
		}
		id = g.Gid
	} else {
		u, err := user.Lookup(s)
		if err != nil {
			return 0, fmt.Errorf("uid %q: neither a number nor a known user", s)
		}
		id = u.Uid
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s has the id %q, not a number", s, id)
	}
	return uint32(n), nil
}

// ReadPseudoFile reads definitions one a line (mksquashfs -pf): a line
// ending in a backslash continues on the next, and blank lines and lines
// starting with # are skipped. A "# START OF DATA - DO NOT MODIFY" line
// ends them: the rest of the file is the data of R definitions.
func ReadPseudoFile(name string) ([]Pseudo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Pseudo
	br := bufio.NewReaderSize(f, 64<<10)
	var line strings.Builder
	n := 0
	var pos int64 // bytes read so far
	data := int64(-1)
	for data < 0 {
		text, err := br.ReadString('\n')
		pos += int64(len(text))
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if text == "" && err == io.EOF {
			break
		}
		n++
		text = strings.TrimSuffix(text, "\n")
		if strings.TrimSpace(text) == PseudoDataMarker {
			// The marker's closing "#" line, then the data.
			rest, _ := br.ReadString('\n')
			pos += int64(len(rest))
			data = pos
			break
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line.WriteString(cont)
			continue
		}
		line.WriteString(text)
		def := strings.TrimSpace(line.String())
		line.Reset()
		if def == "" || def[0] == '#' {
			continue
		}
		p, err := ParsePseudo(def)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, p)
	}
	if def := strings.TrimSpace(line.String()); def != "" {
		return nil, fmt.Errorf("%s:%d: the last line ends in a backslash", name, n)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	for i := range out {
		p := &out[i]
		if p.Type != 'R' {
			continue
		}
		if data < 0 {
			return nil, fmt.Errorf("%s: %q: no %q line, so no data", name, p.Def, PseudoDataMarker)
		}
		if p.DataOff > fi.Size()-data || p.DataLen > fi.Size()-data-p.DataOff {
			return nil, fmt.Errorf("%s: %q: its data lies beyond the end of the file", name, p.Def)
		}
		p.DataFile, p.DataOff = abs, data+p.DataOff
	}
	return out, nil
}

// applyPseudo adds the definitions to the scanned tree, in order, each new
// entry in its sorted place in its directory. A definition naming an
// entry that is already there (other than m), or an m naming none, is
// skipped with a warning, as mksquashfs does; one whose directory is
// missing is an error.
func (s *scanner) applyPseudo(defs []Pseudo) error {
	if len(defs) == 0 {
		return nil
	}
	root := s.tree.nodes()
	if err := s.applyPseudoTo(root, defs); err != nil {
		return err
	}
	s.flatten(root, "", -1)
	return nil
}

// applyPseudoTo applies the definitions to a tree of nodes.
func (s *scanner) applyPseudoTo(root *treeNode, defs []Pseudo) error {
	now := clampUnix(time.Now().Unix())
	for _, p := range defs {
		if err := s.applyOne(root, p, now); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) applyOne(root *treeNode, p Pseudo, now uint32) error {
	old := lookupNode(root, p.Name)
	if p.Type == 'm' {
		if old == nil {
			s.warn(fmt.Sprintf("pseudo definition %q: no %s in the sources to modify, ignored", p.Def, p.Name))
			return nil
		}
		if old.data != nil {
			old = old.data
		}
		e := &old.e
		e.mode = e.mode.Type() | p.Mode
		e.uid, e.gid = p.UID, p.GID
		if p.Mtime != nil {
			e.mtime = *p.Mtime
		}
		s.fixPseudo(e)
		return nil
	}
	if old != nil {
		s.warn(fmt.Sprintf("pseudo definition %q: %s is in the sources already, ignored (exclude it with -e to replace it)", p.Def, p.Name))
		return nil
	}
	dir, base := path.Split(p.Name)
	dir = strings.TrimSuffix(dir, "/")
	parent := lookupNode(root, dir)
	if parent == nil && s.opts.PseudoDir != nil {
		parent = s.pseudoDirs(root, dir, now)
	}
	if parent == nil || !parent.e.mode.IsDir() || parent.data != nil {
		return fmt.Errorf("pseudo definition %q: no directory %q in the image to put it in (define it first, e.g. \"%s d 755 0 0\")", p.Def, dir, dir)
	}
	n := &treeNode{e: entry{name: base, mode: p.Mode, uid: p.UID, gid: p.GID, mtime: now}}
	e := &n.e
	if p.Mtime != nil {
		e.mtime = *p.Mtime
	}
	switch p.Type {
	case 'd':
		e.mode |= fs.ModeDir
	case 'b', 'c':
		e.mode |= fs.ModeDevice
		if p.Type == 'c' {
			e.mode |= fs.ModeCharDevice
		}
		x := e.extra()
		x.major, x.minor = p.Major, p.Minor
	case 's':
		e.mode = fs.ModeSymlink | 0o777
		e.extra().target = p.Target
	case 'f':
		f, size, err := s.runPseudo(p)
		if err != nil {
			return err
		}
		e.size = size
		x := e.extra()
		x.src, x.from = f.Name(), f
	case 'R':
		if p.DataFile == "" {
			return fmt.Errorf("pseudo definition %q: R takes its data from a pseudo file: use -pf", p.Def)
		}
		e.size = p.DataLen
		x := e.extra()
		f, err := s.openData(p.DataFile)
		if err != nil {
			return fmt.Errorf("pseudo definition %q: %w", p.Def, err)
		}
		x.src, x.from, x.fromOff = p.DataFile, f, p.DataOff
	case 'L':
		target := lookupNode(root, p.Target)
		if target != nil && target.data != nil {
			target = target.data
		}
		if target == nil || target.e.mode.IsDir() {
			return fmt.Errorf("pseudo definition %q: no %s in the image to link to (or a directory)", p.Def, p.Target)
		}
		n.e = entry{name: base}
		n.data = target
		target.names++
		parent.setChild(n)
		return nil
	}
	if !e.mode.IsDir() {
		n.names = 1
	}
	s.fixPseudo(e)
	parent.setChild(n)
	return nil
}

// pseudoDirs makes the directories of dir that are missing with
// Options.PseudoDir's attributes (mksquashfs -pd) and returns the last, or
// nil when one on the way is not a directory.
func (s *scanner) pseudoDirs(root *treeNode, dir string, now uint32) *treeNode {
	n := root
	for _, c := range strings.Split(dir, "/") {
		next := n.children[c]
		if next == nil {
			pd := s.opts.PseudoDir
			next = &treeNode{e: entry{name: c, mode: fs.ModeDir | pd.Mode.Perm() | pd.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), uid: pd.UID, gid: pd.GID, mtime: now}}
			if pd.Mtime != nil {
				next.e.mtime = *pd.Mtime
			}
			s.fixPseudo(&next.e)
			n.setChild(next)
		}
		if !next.e.mode.IsDir() || next.data != nil {
			return nil
		}
		n = next
	}
	return n
}

// fixPseudo applies the every-entry overrides to a pseudo definition's
// entry; with PseudoOverride its owner and permissions stay as defined,
// as mksquashfs 4.7.5 -pseudo-override keeps them (the uid/gid offset and
// the times still apply).
func (s *scanner) fixPseudo(e *entry) {
	if !s.opts.PseudoOverride {
		s.fixEntry(e)
		return
	}
	o := s.opts
	o.AllRoot, o.ForceUID, o.ForceGID, o.FileMode, o.DirMode, o.AddXattrs = false, nil, nil, nil, nil, nil
	(&scanner{opts: o}).fixEntry(e)
}

// runPseudo runs an f definition's command into a file that Write reads
// (see tempFile).
func (s *scanner) runPseudo(p Pseudo) (*os.File, int64, error) {
	f, err := s.tree.tempFile("squashportage-pseudo-*")
	if err != nil {
		return nil, 0, fmt.Errorf("pseudo definition %q: %w", p.Def, err)
	}
	cmd := exec.Command("/bin/sh", "-c", p.Command)
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	fi, serr := f.Stat()
	if err == nil {
		err = serr
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil, 0, fmt.Errorf("pseudo definition %q: command: %w", p.Def, err)
	}
	return f, fi.Size(), nil
}

// fixEntry applies the every-entry overrides (-all-root, -force-uid,
// -all-time ...) to an entry made or changed after the scan.
func (s *scanner) fixEntry(e *entry) {
	h := squash.Header{Mode: e.mode, UID: e.uid, GID: e.gid, Mtime: e.mtime}
	s.fixOwnerTime(&h)
	e.mode, e.uid, e.gid, e.mtime = h.Mode, h.UID, h.GID, h.Mtime
	if len(s.opts.AddXattrs) > 0 {
		var xs []squash.Xattr
		if e.x != nil {
			xs = slices.Clone(e.x.xattrs)
		}
		e.extra().xattrs = s.addXattrs(e.mode, xs)
	}
}

// tempFile makes a temporary file in os.TempDir, kept open by the Tree,
// and removes its name at once: the space it takes goes back when Close
// closes it, or when the process ends however it ends (a ^C while a
// Portage snapshot is spooled leaves nothing in /tmp).
func (t *Tree) tempFile(pattern string) (*os.File, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	t.open = append(t.open, f)
	return f, nil
}

// openData opens a -pf file for its R definitions' data, once.
func (s *scanner) openData(name string) (*os.File, error) {
	for _, f := range s.tree.open {
		if f.Name() == name {
			return f, nil
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	s.tree.open = append(s.tree.open, f)
	return f, nil
}

// Close closes the files entries' contents are read from: pseudo
// commands' outputs, -pf files, a tar archive's spool.
func (t *Tree) Close() error {
	var first error
	for _, f := range t.open {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	t.open = nil
	return first
}
