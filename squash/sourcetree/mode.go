package sourcetree

import (
	"fmt"
	"strconv"
	"strings"
)

// ModeSpec is a permission change as mksquashfs 4.6 and later take it
// (-force-file-mode, -force-dir-mode): an octal mode, or chmod's symbolic
// form, clauses [ugoa]*([+-=]PERMS)+ separated by commas, PERMS being
// [rwxXst]* or one of u, g, o. As mksquashfs has it (measured against
// 4.7.5), no umask applies, and without u, g, o or a a clause changes the
// rwx bits only: s and t need a class that has them (u or g for s, o for
// t, or a), and = keeps the set-id and sticky bits.
type ModeSpec struct {
	octal   bool
	mode    uint32
	clauses []modeClause
}

type modeClause struct {
	who uint32 // the rwx bits of the classes named; 0777 when none is
	any bool   // a class was named: s, t and = reach the special bits
	ops []modeOp
}

type modeOp struct {
	op    byte   // '+', '-' or '='
	bits  uint32 // r, w, x, s, t, as bits of every class
	x     bool   // X
	copyC int    // from a class: 6 (u), 3 (g), 0 (o); -1 for none
}

// The letters of a symbolic mode and their bits: the classes (in every
// class's position), and the permissions (X's are added in Apply).
const (
	modeWho   = "ugoa"
	modePerms = "rwxXst"
)

var (
	modeWhoBits  = [...]uint32{0o700, 0o070, 0o007, 0o777}
	modePermBits = [...]uint32{0o444, 0o222, 0o111, 0, 0o6000, 0o1000}
)

// ParseModeSpec parses an octal or symbolic mode.
func ParseModeSpec(s string) (ModeSpec, error) {
	if s != "" && strings.Trim(s, "01234567") == "" {
		n, err := strconv.ParseUint(s, 8, 32)
		if err != nil || n > 0o7777 {
			return ModeSpec{}, fmt.Errorf("mode %q: an octal mode is 0 to 7777", s)
		}
		return ModeSpec{octal: true, mode: uint32(n)}, nil
	}
	var m ModeSpec
	for _, c := range strings.Split(s, ",") {
		var cl modeClause
		i := 0
		for ; i < len(c) && strings.IndexByte(modeWho, c[i]) >= 0; i++ {
			cl.who |= modeWhoBits[strings.IndexByte(modeWho, c[i])]
			cl.any = true
		}
		if !cl.any {
			cl.who = 0o777
		}
		if i == len(c) {
			return ModeSpec{}, fmt.Errorf("mode %q: %q has no +, - or =", s, c)
		}
		for i < len(c) {
			op := modeOp{op: c[i], copyC: -1}
			if op.op != '+' && op.op != '-' && op.op != '=' {
				return ModeSpec{}, fmt.Errorf("mode %q: %q where +, - or = should be", s, c[i:])
			}
			i++
			if i < len(c) && strings.IndexByte("ugo", c[i]) >= 0 {
				op.copyC = 6 - 3*strings.IndexByte("ugo", c[i]) // the class's shift
				i++
			} else {
				for ; i < len(c) && strings.IndexByte(modePerms, c[i]) >= 0; i++ {
					if c[i] == 'X' {
						op.x = true
					}
					op.bits |= modePermBits[strings.IndexByte(modePerms, c[i])]
				}
			}
			if i < len(c) && strings.IndexByte("+-=", c[i]) < 0 {
				return ModeSpec{}, fmt.Errorf("mode %q: %q is not a permission (r, w, x, X, s, t, or one of u, g, o)", s, c[i:])
			}
			cl.ops = append(cl.ops, op)
		}
		m.clauses = append(m.clauses, cl)
	}
	return m, nil
}

// Apply returns perm (07777 bits) changed by the spec, for a directory or
// not (X).
func (m *ModeSpec) Apply(perm uint32, isDir bool) uint32 {
	if m.octal {
		return m.mode
	}
	for _, cl := range m.clauses {
		// The special bits the named classes reach.
		var special uint32
		if cl.any {
			if cl.who&0o700 != 0 {
				special |= 0o4000
			}
			if cl.who&0o070 != 0 {
				special |= 0o2000
			}
			if cl.who&0o007 != 0 {
				special |= 0o1000
			}
		}
		mask := cl.who | special
		for _, op := range cl.ops {
			bits := op.bits
			if op.x && (isDir || perm&0o111 != 0) {
				bits |= 0o111
			}
			if op.copyC >= 0 {
				v := perm >> op.copyC & 7
				bits = v<<6 | v<<3 | v
			}
			bits &= mask
			switch op.op {
			case '+':
				perm |= bits
			case '-':
				perm &^= bits
			case '=':
				perm = perm&^mask | bits
			}
		}
	}
	return perm
}
