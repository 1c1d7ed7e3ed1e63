package sourcetree

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
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
//
// The same letters in upper case take a TIME (seconds since 1970) before
// MODE; otherwise the time is the build's. MODE is octal; UID and GID are
// numbers or names. NAME may quote ("...") or backslash-escape spaces.
type Pseudo struct {
	Def          string // as given, for messages
	Name         string // image path, without leading slashes; "" is the root
	Type         byte   // one of "dmbcfsi"
	Mode         fs.FileMode
	UID, GID     uint32
	Mtime        *uint32
	Major, Minor uint32
	Command      string // f
	Target       string // s
}

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
	p.Type = typ | 0x20 // lower case
	if !strings.ContainsRune("dmbcfsi", rune(p.Type)) {
		if strings.ContainsRune("lLR", rune(typ)) {
			return fail("type %c is not supported by squashportage", typ)
		}
		return fail("unknown type %c (d, m, b, c, f, s or i, or D, M, B, C, F, S, I with a time)", typ)
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
	if typ != p.Type {
		t, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return fail("time %q is not seconds since 1970 (0 to 4294967295)", f[0])
		}
		t32 := uint32(t)
		p.Mtime = &t32
		f = f[1:]
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil || mode > 0o7777 {
		return fail("mode %q is not octal (0 to 7777)", f[0])
	}
	p.Mode = squash.FileModeFromUnix(uint32(mode))
	if p.UID, err = LookupID(f[1], false); err != nil {
		return fail("%v", err)
	}
	if p.GID, err = LookupID(f[2], true); err != nil {
		return fail("%v", err)
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
// starting with # are skipped.
func ReadPseudoFile(name string) ([]Pseudo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Pseudo
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var line strings.Builder
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
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
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if def := strings.TrimSpace(line.String()); def != "" {
		return nil, fmt.Errorf("%s:%d: the last line ends in a backslash", name, n)
	}
	return out, nil
}

// applyPseudo adds the definitions to the scanned tree, in order, each new
// entry in its sorted place in its directory. A definition naming an
// entry that is already there (other than m), or an m naming none, is
// skipped with a warning, as mksquashfs does; one whose directory is
// missing is an error.
func (s *scanner) applyPseudo(defs []Pseudo) error {
	now := clampUnix(time.Now().Unix())
	for _, p := range defs {
		idx := s.tree.index()
		at, exists := idx[p.Name]
		if p.Type == 'm' {
			if !exists {
				s.warn(fmt.Sprintf("pseudo definition %q: no %s in the sources to modify, ignored", p.Def, p.Name))
				continue
			}
			e := &s.tree.entries[at]
			if e.isLink() {
				e = &s.tree.entries[idx[e.x.link]]
			}
			e.mode = e.mode.Type() | p.Mode
			e.uid, e.gid = p.UID, p.GID
			if p.Mtime != nil {
				e.mtime = *p.Mtime
			}
			s.fixEntry(e)
			continue
		}
		if exists {
			s.warn(fmt.Sprintf("pseudo definition %q: %s is in the sources already, ignored (exclude it with -e to replace it)", p.Def, p.Name))
			continue
		}
		dir, base := path.Split(p.Name)
		dir = strings.TrimSuffix(dir, "/")
		parent, ok := idx[dir]
		if !ok || !s.tree.entries[parent].mode.IsDir() || s.tree.entries[parent].isLink() {
			return fmt.Errorf("pseudo definition %q: no directory %q in the image to put it in (define it first, e.g. \"%s d 755 0 0\")", p.Def, dir, dir)
		}
		e := entry{name: base, parent: int32(parent), mode: p.Mode, uid: p.UID, gid: p.GID, mtime: now}
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
			src, size, err := s.runPseudo(p)
			if err != nil {
				return err
			}
			e.size = size
			e.extra().src = src
		}
		s.fixEntry(&e)
		s.tree.insert(parent, e)
	}
	return nil
}

// runPseudo runs an f definition's command into a file that Write reads
// and Tree.Close removes.
func (s *scanner) runPseudo(p Pseudo) (string, int64, error) {
	f, err := os.CreateTemp("", "squashportage-pseudo-*")
	if err != nil {
		return "", 0, fmt.Errorf("pseudo definition %q: %w", p.Def, err)
	}
	s.tree.temps = append(s.tree.temps, f.Name())
	cmd := exec.Command("/bin/sh", "-c", p.Command)
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	fi, serr := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = serr
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return "", 0, fmt.Errorf("pseudo definition %q: command: %w", p.Def, err)
	}
	return f.Name(), fi.Size(), nil
}

// fixEntry applies the every-entry overrides (-all-root, -force-uid,
// -all-time ...) to an entry made or changed after the scan.
func (s *scanner) fixEntry(e *entry) {
	h := squash.Header{UID: e.uid, GID: e.gid, Mtime: e.mtime}
	s.fixOwnerTime(&h)
	e.uid, e.gid, e.mtime = h.UID, h.GID, h.Mtime
}

// index maps the image path of every entry to its index.
func (t *Tree) index() map[string]int {
	m := make(map[string]int, len(t.entries))
	ps := paths{entries: t.entries}
	for i := range t.entries {
		img, _ := ps.of(i)
		m[img] = i
	}
	return m
}

// insert puts e among the entries of directory parent, before the first
// whose name sorts after its own, keeping every subtree contiguous.
func (t *Tree) insert(parent int, e entry) {
	at := len(t.entries)
	for i := parent + 1; i < len(t.entries); i++ {
		if !t.within(i, parent) {
			at = i
			break
		}
		if int(t.entries[i].parent) == parent && t.entries[i].name > e.name {
			at = i
			break
		}
	}
	for i := range t.entries {
		if int(t.entries[i].parent) >= at {
			t.entries[i].parent++
		}
	}
	t.entries = append(t.entries, entry{})
	copy(t.entries[at+1:], t.entries[at:])
	t.entries[at] = e
	t.count(&e)
}

// within says whether entry i is below directory d.
func (t *Tree) within(i, d int) bool {
	for p := int(t.entries[i].parent); p >= 0; p = int(t.entries[p].parent) {
		if p == d {
			return true
		}
	}
	return false
}

// Close removes the files that pseudo definitions' commands wrote.
func (t *Tree) Close() error {
	var first error
	for _, name := range t.temps {
		if err := os.Remove(name); err != nil && first == nil {
			first = err
		}
	}
	t.temps = nil
	return first
}
