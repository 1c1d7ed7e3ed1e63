package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// Report is what Status finds out about one managed mount.
type Report struct {
	Target     string `json:"target"`
	Image      string `json:"image"`
	Spec       string `json:"spec"`
	Compressor string `json:"compressor"`
	BlockSize  int    `json:"block_size"`
	ImageSize  int64  `json:"image_size"`
	// BlockSums: the image has the block sum record squashportage's
	// writers append; without it (mksquashfs's images) the next fold of the
	// whole image decompresses every block it keeps to check it.
	BlockSums bool   `json:"block_sums"`
	Loop      string `json:"loop"`
	// Mounted is false when the record outlived its mount (unmounted by
	// hand): the counts are then zero.
	Mounted   bool   `json:"mounted"`
	UpperKind string `json:"upper_kind"`
	Upper     string `json:"upper,omitempty"`
	// UpperUsed and UpperLimit are the bytes used and available in total
	// on the filesystem of the upper (the tmpfs and its size= limit, or
	// the disk holding upper=DIR).
	UpperUsed  int64 `json:"upper_used"`
	UpperLimit int64 `json:"upper_limit"`
	// Layers are the delta layers stacked on the image (layers= in the
	// spec), oldest first; LayerLimit is the spec's layers=, and
	// CompactBytes the layers' size at which persist folds them.
	Layers       []StackFile `json:"layers"`
	LayerLimit   int         `json:"layer_limit"`
	CompactBytes int64       `json:"compact_bytes"`
	// UpperFull: the upper's filesystem has (next to) no room left, so
	// writes may have failed with ENOSPC; persist refuses without --force.
	UpperFull bool `json:"upper_full"`
	// Changed counts upper entries hiding one of the image, New those the
	// image lacks, Deleted the image entries whited out. Directories that
	// are only on the way to a change are not counted.
	Changed int `json:"changed"`
	New     int `json:"new"`
	Deleted int `json:"deleted"`
	// PendingBytes is the size of the regular files in the upper: what a
	// persist has to compress.
	PendingBytes      int64     `json:"pending_bytes"`
	Persist           string    `json:"persist"`
	MountedAt         time.Time `json:"mounted_at"`
	LastPersist       time.Time `json:"last_persist,omitzero"`
	LastPersistResult string    `json:"last_persist_result,omitempty"`
}

// Status inspects the image and upper of a managed mount.
func Status(st *State) (Report, error) {
	rep := Report{
		Target: st.Target, Image: st.Image, Spec: st.Spec.String(), Loop: st.Loop,
		UpperKind: st.UpperKind, Upper: st.Upper, Persist: st.Spec.Persist,
		MountedAt: st.MountedAt, LastPersist: st.LastPersist, LastPersistResult: st.LastPersistResult,
	}
	if rep.LastPersist.IsZero() {
		// Mounted since the last persist (a reboot): its record is beside
		// the image.
		rep.LastPersist, rep.LastPersistResult = readLastPersist(st.ImagePath())
	}
	img, err := squash.OpenFile(st.ImagePath())
	if err != nil {
		return rep, fmt.Errorf("status of %s: image %s: %w", st.Target, st.Image, err)
	}
	rep.Compressor = img.Codec().ID.String()
	rep.BlockSize = int(img.Superblock().BlockSize)
	_, rep.BlockSums = img.BlockSums()
	img.Close()
	if fi, err := os.Stat(st.ImagePath()); err == nil {
		rep.ImageSize = fi.Size()
	}
	rep.Layers, rep.LayerLimit = []StackFile{}, st.Spec.LayerLimit()
	if stack, err := readStack(st.ImagePath()); err == nil {
		rep.Layers = append(rep.Layers, stack.Layers...)
		rep.CompactBytes = stack.Base.Size * int64(st.Spec.compactPercent()) / 100
	}
	m, mounted, err := mountAt(st.TargetPath())
	if err != nil {
		return rep, fmt.Errorf("status of %s: %w", st.Target, err)
	}
	rep.Mounted = mounted && (m.FSType == "overlay" || m.FSType == "squashfs")
	if st.UpperKind == KindNone || !rep.Mounted {
		return rep, nil
	}
	u, err := upperUsage(st.UpperPath())
	if err != nil {
		return rep, fmt.Errorf("status of %s: %w", st.Target, err)
	}
	rep.UpperLimit, rep.UpperUsed, rep.UpperFull = u.Limit, u.Used, u.Full
	c, err := CountChanges(st.UpperPath(), st.lowerDirs()...)
	if err != nil {
		return rep, fmt.Errorf("status of %s: %w", st.Target, err)
	}
	rep.Changed, rep.New, rep.Deleted, rep.PendingBytes = c.Changed, c.New, c.Deleted, c.Bytes
	return rep, nil
}

// Usage is how full the filesystem holding an upper is.
type Usage struct {
	Used, Limit int64
	// Full: less than 1% of it, or no inode, is left. The kernel keeps no
	// record of an ENOSPC, but a write that failed for room leaves the
	// filesystem full, and only deleting files empties it again.
	Full bool
}

// WarnPercent is the share of the upper's room from which status warns.
const WarnPercent = 90

// Percent is the share of the room used.
func (u Usage) Percent() int64 {
	if u.Limit <= 0 {
		return 0
	}
	return u.Used * 100 / u.Limit
}

func (u Usage) String() string {
	return fmt.Sprintf("%d%% of %d bytes used", u.Percent(), u.Limit)
}

// UpperUsage measures the filesystem of st's upper; zero when st has none
// or it cannot be measured.
func UpperUsage(st *State) Usage {
	if st.UpperKind == KindNone {
		return Usage{}
	}
	u, _ := upperUsage(st.UpperPath())
	return u
}

func upperUsage(upper string) (Usage, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(upper, &sfs); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", upper, err)
	}
	u := Usage{
		Limit: int64(sfs.Blocks) * sfs.Bsize,
		Used:  int64(sfs.Blocks-sfs.Bfree) * sfs.Bsize,
	}
	avail := int64(sfs.Bavail) * sfs.Bsize
	u.Full = sfs.Blocks > 0 && (sfs.Bavail == 0 || avail*100 < u.Limit) ||
		sfs.Files > 0 && sfs.Ffree == 0
	return u, nil
}

// Changes counts what an overlay upper holds over its lower.
type Changes struct {
	Changed, New, Deleted int
	Bytes                 int64
}

// CountChanges walks upper, comparing with lower, the way overlayfs reads
// it: a whiteout (char device 0/0, or a file with trusted.overlay.whiteout)
// deletes the lower entry; an opaque directory (trusted.overlay.opaque=y)
// hides all the lower entries it does not have itself.
func CountChanges(upper string, lowers ...string) (Changes, error) {
	var c Changes
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		rel, _ := filepath.Rel(upper, p)
		// The entry below: in the newest lower layer that has it (a
		// whiteout there means none).
		lp, inLower := "", false
		for _, lower := range lowers {
			q := filepath.Join(lower, rel)
			var ls unix.Stat_t
			if unix.Lstat(q, &ls) == nil {
				lp, inLower = q, !isWhiteout(q, &ls)
				break
			}
		}
		var s unix.Stat_t
		if err := unix.Lstat(p, &s); err != nil {
			return fmt.Errorf("count changes: %w", err)
		}
		if isWhiteout(p, &s) {
			c.Deleted++
			return nil
		}
		switch s.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			opaque := xattrIs(p, "trusted.overlay.opaque", "y")
			switch {
			case !inLower:
				c.New++
			case opaque:
				c.Changed++
				c.Deleted += hiddenByOpaque(p, lp)
			}
			return nil
		case unix.S_IFREG:
			c.Bytes += s.Size
		}
		if inLower {
			c.Changed++
		} else {
			c.New++
		}
		return nil
	})
	if err != nil {
		return Changes{}, fmt.Errorf("count changes in %s: %w", upper, err)
	}
	return c, nil
}

func isWhiteout(p string, s *unix.Stat_t) bool {
	if s.Mode&unix.S_IFMT == unix.S_IFCHR && s.Rdev == 0 {
		return true
	}
	// Newer kernels also take a regular file with this xattr ("xwhiteout").
	return s.Mode&unix.S_IFMT == unix.S_IFREG && s.Size == 0 && hasXattr(p, "trusted.overlay.whiteout")
}

// hiddenByOpaque counts the entries of the lower directory that the opaque
// upper directory does not have again.
func hiddenByOpaque(upperDir, lowerDir string) int {
	ents, err := os.ReadDir(lowerDir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if _, err := os.Lstat(filepath.Join(upperDir, e.Name())); errors.Is(err, fs.ErrNotExist) {
			n++
		}
	}
	return n
}

func hasXattr(p, name string) bool {
	_, err := unix.Lgetxattr(p, name, nil)
	return err == nil
}

func xattrIs(p, name, want string) bool {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(p, name, buf)
	return err == nil && string(buf[:n]) == want
}
