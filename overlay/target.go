package overlay

import (
	"fmt"
	"path/filepath"
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
func ResolveSpec(sp Spec) (Spec, error) {
	real, err := filepath.EvalSymlinks(sp.Target)
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
