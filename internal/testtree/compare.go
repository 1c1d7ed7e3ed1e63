package testtree

import (
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/treecmp"
)

// Diff is one difference between two trees.
type Diff = treecmp.Diff

// CompareOptions says what Compare may ignore. Access and change times are
// never compared: reading a tree changes the former, copying the latter.
type CompareOptions struct {
	// IgnoreRootMeta skips mode, owner, times, xattrs and nlink of the roots
	// themselves, whose metadata often belongs to a mount point.
	IgnoreRootMeta bool
	// IgnoreDirMtime skips directory mtimes, which copying tools and
	// overlayfs do not always keep.
	IgnoreDirMtime bool
	// IgnoreDirNlink skips directory link counts, which some filesystems
	// (btrfs, overlayfs) report differently.
	IgnoreDirNlink bool
	// IgnoreOverlayXattrs skips trusted.overlay.* and user.overlay.*,
	// which overlayfs uses internally.
	IgnoreOverlayXattrs bool
	// IgnoreXattrs skips xattrs altogether.
	IgnoreXattrs bool
	// IgnoreOwner skips uid and gid.
	IgnoreOwner bool
	// IgnoreHardlinks skips nlink of non-directories and the inode-group
	// check.
	IgnoreHardlinks bool
	// MaxDiffs stops the walk after that many differences; 0 means 1000.
	MaxDiffs int
}

// Compare compares two trees fully, ignoring only access and change times.
func Compare(a, b string) []Diff {
	return CompareWith(a, b, CompareOptions{})
}

// AssertEqual fails t with every difference between the trees.
func AssertEqual(t testing.TB, a, b string, opts CompareOptions) {
	t.Helper()
	diffs := CompareWith(a, b, opts)
	if len(diffs) == 0 {
		return
	}
	var sb strings.Builder
	for _, d := range diffs {
		sb.WriteString("\n\t")
		sb.WriteString(d.String())
	}
	t.Errorf("trees %s and %s differ in %d ways:%s", a, b, len(diffs), sb.String())
}

// CompareWith compares the trees below a and b, entry by entry (with
// treecmp, link counts included), and returns the differences by path.
func CompareWith(a, b string, opts CompareOptions) []Diff {
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 1000
	}
	res := treecmp.CompareAny(a, b, treecmp.Options{
		IgnoreRootMeta:      opts.IgnoreRootMeta,
		IgnoreDirMtime:      opts.IgnoreDirMtime,
		IgnoreOverlayXattrs: opts.IgnoreOverlayXattrs,
		IgnoreXattrs:        opts.IgnoreXattrs,
		IgnoreOwner:         opts.IgnoreOwner,
		IgnoreHardlinks:     opts.IgnoreHardlinks,
		Nlink:               true,
		IgnoreDirNlink:      opts.IgnoreDirNlink,
		MaxDiffs:            opts.MaxDiffs,
	})
	return res.Diffs
}
