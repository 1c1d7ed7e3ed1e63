package sourcetree

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// Exclude semantics, following mksquashfs 4.5 as observed:
//
// Plain excludes (no -wildcards/-regex) name files: "/abs", "./rel" and
// "../rel" are resolved from the current directory, any other path from
// each source in turn. The named files are dropped by device and inode, so
// a hard link elsewhere goes too, and names that do not exist are ignored.
//
// Pattern excludes (-wildcards or -regex) are matched against image paths
// one component at a time: "x/*/z" matches z two levels below the root
// entry x. A "... " prefix (three dots and a space) lets the rest match
// starting in any directory ("... *.gz" drops every .gz file). As an
// extension mksquashfs lacks, a "..." component matches zero or more
// directories ("x/.../*.gz"). Wildcards are shell globs where * and ? do
// not match a leading dot (fnmatch FNM_PERIOD); -regex components are
// unanchored regular expressions (Go syntax, close to POSIX ERE).

// ReadExcludeFile reads an -ef file: one exclude per line. Blank lines are
// skipped; surrounding white space is trimmed.
func ReadExcludeFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("exclude file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("exclude file %s: %w", name, err)
	}
	return out, nil
}

// excluder decides which scanned files are left out.
type excluder struct {
	ids   map[devIno]bool
	pats  []pattern
	regex bool
}

type pattern struct {
	comps  []string
	res    []*regexp.Regexp // per component, regex mode only
	sticky bool             // "... " prefix: may start in any directory
}

// pstate is a pattern partly matched down to the current directory: the
// next component to match is comps[i].
type pstate struct{ p, i int }

// matchState is the set of pattern positions active in one directory.
type matchState []pstate

func newExcluder(sources []string, opts Options) (*excluder, error) {
	ex := &excluder{ids: make(map[devIno]bool), regex: opts.Regex}
	addID := func(p string) error {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				return nil
			}
			return fmt.Errorf("exclude: %w", &fs.PathError{Op: "lstat", Path: p, Err: err})
		}
		ex.ids[devIno{uint64(st.Dev), st.Ino}] = true
		return nil
	}
	for _, p := range opts.OmitPaths {
		if err := addID(p); err != nil {
			return nil, err
		}
	}
	patterns := opts.Wildcards || opts.Regex
	for _, e := range opts.Excludes {
		if e == "" {
			continue
		}
		if !patterns {
			for _, p := range sourcePaths(e, sources) {
				if err := addID(p); err != nil {
					return nil, err
				}
			}
			continue
		}
		if cwdRelative(e) {
			return nil, fmt.Errorf("exclude %q: /, ./ and ../ prefixed excludes are not supported with -wildcards or -regex", e)
		}
		p, err := compilePattern(e, opts.Regex)
		if err != nil {
			return nil, err
		}
		ex.pats = append(ex.pats, p)
	}
	return ex, nil
}

// cwdRelative says whether a path given for an exclude or a sort rule
// is taken from the current directory (starting with /, ./ or ../)
// rather than from each source.
func cwdRelative(p string) bool {
	return strings.HasPrefix(p, "/") || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../")
}

// sourcePaths is where such a path names files: itself, or below each
// source.
func sourcePaths(p string, sources []string) []string {
	if cwdRelative(p) {
		return []string{p}
	}
	out := make([]string, len(sources))
	for i, src := range sources {
		out[i] = filepath.Join(src, p)
	}
	return out
}

func compilePattern(e string, regex bool) (pattern, error) {
	var p pattern
	rest := e
	if strings.HasPrefix(rest, "... ") {
		p.sticky = true
		rest = strings.TrimLeft(rest[4:], " ")
	}
	for _, c := range strings.Split(rest, "/") {
		if c == "" || c == "." {
			continue
		}
		p.comps = append(p.comps, c)
	}
	if len(p.comps) == 0 {
		return p, fmt.Errorf("exclude %q: empty pattern", e)
	}
	for _, c := range p.comps {
		if c == "..." {
			p.res = append(p.res, nil)
			continue
		}
		if regex {
			re, err := regexp.Compile(c)
			if err != nil {
				return p, fmt.Errorf("exclude %q: bad regular expression: %w", e, err)
			}
			p.res = append(p.res, re)
			continue
		}
		if _, err := path.Match(c, ""); err != nil {
			return p, fmt.Errorf("exclude %q: bad wildcard pattern %q: %w", e, c, err)
		}
	}
	return p, nil
}

// rootMatch is the state for the image root: every pattern at its start.
func rootMatch(ex *excluder) matchState {
	if len(ex.pats) == 0 {
		return nil
	}
	m := make(matchState, len(ex.pats))
	for i := range ex.pats {
		m[i] = pstate{i, 0}
	}
	return m
}

func (ex *excluder) excludedID(k devIno) bool {
	return len(ex.ids) > 0 && ex.ids[k]
}

// match reports whether the entry name in a directory with state m is
// excluded and, for a directory, the state to use for its children.
func (ex *excluder) match(m matchState, name string, isDir bool) (bool, matchState) {
	if len(ex.pats) == 0 {
		return false, nil
	}
	var sub matchState
	if isDir {
		for i, p := range ex.pats {
			if p.sticky {
				sub = sub.add(pstate{i, 0})
			}
		}
	}
	for _, st := range m {
		if ex.step(st, name, isDir, &sub) {
			return true, nil
		}
	}
	return false, sub
}

func (ex *excluder) step(st pstate, name string, isDir bool, sub *matchState) bool {
	p := &ex.pats[st.p]
	if st.i >= len(p.comps) {
		return false
	}
	last := st.i+1 == len(p.comps)
	if p.comps[st.i] == "..." {
		if last {
			return true
		}
		if ex.step(pstate{st.p, st.i + 1}, name, isDir, sub) {
			return true
		}
		if isDir {
			*sub = sub.add(st)
		}
		return false
	}
	if !ex.matchComp(p, st.i, name) {
		return false
	}
	if last {
		return true
	}
	if isDir {
		*sub = sub.add(pstate{st.p, st.i + 1})
	}
	return false
}

func (ex *excluder) matchComp(p *pattern, i int, name string) bool {
	if ex.regex {
		return p.res[i].MatchString(name)
	}
	c := p.comps[i]
	// FNM_PERIOD: a leading dot is only matched by a literal dot.
	if strings.HasPrefix(name, ".") && !strings.HasPrefix(c, ".") {
		return false
	}
	ok, _ := path.Match(c, name)
	return ok
}

func (m matchState) add(st pstate) matchState {
	for _, x := range m {
		if x == st {
			return m
		}
	}
	return append(m, st)
}
