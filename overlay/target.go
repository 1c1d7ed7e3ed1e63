package overlay

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ResolveTarget turns a TARGET given on a command line (relative, or
// through a symlink: /usr/portage -> /var/db/repos/gentoo) into the target
// its record is kept under. A target recorded as given wins; else the
// path is made absolute and its symlinks are resolved (the target is a
// mount point by then, which EvalSymlinks walks like any directory), and a
// record whose own target resolves to the same directory is taken (records
// made from a symlinked spec before mount resolved them). A path that does
// not exist is returned absolute and cleaned, for Load to report.
func ResolveTarget(stateDir, arg string) (string, error) {
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", fmt.Errorf("target %s: %w", arg, err)
	}
	if _, err := Load(stateDir, abs); err == nil {
		return abs, nil
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return abs, nil
	}
	if _, err := Load(stateDir, real); err == nil {
		return real, nil
	}
	states, _ := List(stateDir)
	for _, st := range states {
		if r, err := filepath.EvalSymlinks(st.Target); err == nil && r == real {
			return st.Target, nil
		}
	}
	return real, nil
}

// ResolveTargets is ResolveTarget for each of args.
func ResolveTargets(stateDir string, args []string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		t, err := ResolveTarget(stateDir, a)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// ResolveSpec records the target of a spec given through a symlink under
// its real path, so that the record, the mount table and a later persist
// or umount of either path agree. A target that does not exist (yet) is
// left as it is, for Mount to report. The image and upper paths are left
// alone: they are opened, not recorded as mount points.
func ResolveSpec(sp Spec) (Spec, error) { return ResolveSpecUnder("", sp) }

// ResolveSpecUnder is ResolveSpec for a spec mounted with
// MountOptions.Root: the target's symlinks are followed as the system
// under root will see them, an absolute link starting again at root (at
// boot, /newroot/usr/portage -> /var/db/repos/gentoo means
// /newroot/var/db/repos/gentoo).
func ResolveSpecUnder(root string, sp Spec) (Spec, error) {
	var real string
	var err error
	if root == "" || root == "/" {
		real, err = filepath.EvalSymlinks(sp.Target)
	} else {
		real, err = evalSymlinksUnder(root, sp.Target)
	}
	if err != nil || real == sp.Target {
		return sp, nil
	}
	given := sp.String()
	sp.Target = real
	if err := sp.validate(); err != nil {
		return Spec{}, fmt.Errorf("spec %q (target resolved to %s): %w", given, real, err)
	}
	return sp, nil
}

// maxLinks bounds the symlinks followed for one path, as the kernel's 40.
const maxLinks = 40

// evalSymlinksUnder resolves the symlinks of the absolute path p as seen
// from root, returning the real path relative to root (absolute, without
// root). ".." never climbs above root.
func evalSymlinksUnder(root, p string) (string, error) {
	todo := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	cur, links := "/", 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, comp)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		dest, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(dest) {
			cur = "/"
		}
		todo = append(strings.Split(dest, "/"), todo...)
	}
	return cur, nil
}
