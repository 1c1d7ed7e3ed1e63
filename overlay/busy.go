package overlay

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Holder is a process that keeps a directory busy.
type Holder struct {
	PID  int
	Comm string
	// Uses says how: "cwd", "root", "fd 3: /x/file", "maps: /x/lib.so".
	Uses []string
}

func (h Holder) String() string {
	return fmt.Sprintf("pid %d (%s): %s", h.PID, h.Comm, strings.Join(h.Uses, ", "))
}

// Holders lists the processes with a cwd, root, open file or mapped file
// at or below dir, as /proc shows them (processes in other mount
// namespaces show paths of theirs and may be missed).
func Holders(dir string) ([]Holder, error) {
	return holdersIn("/proc", dir)
}

func holdersIn(proc, dir string) ([]Holder, error) {
	dir = filepath.Clean(dir)
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("scan processes: %w", err)
	}
	self := os.Getpid()
	var out []Holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		pdir := filepath.Join(proc, e.Name())
		var uses []string
		for _, l := range []string{"cwd", "root"} {
			if t, err := os.Readlink(filepath.Join(pdir, l)); err == nil && within(t, dir) {
				// Every process has root /; only a chroot below dir counts.
				uses = append(uses, l)
			}
		}
		if fds, err := os.ReadDir(filepath.Join(pdir, "fd")); err == nil {
			for _, fd := range fds {
				if t, err := os.Readlink(filepath.Join(pdir, "fd", fd.Name())); err == nil && within(t, dir) {
					uses = append(uses, "fd "+fd.Name()+": "+t)
				}
			}
		}
		uses = append(uses, mappedUnder(filepath.Join(pdir, "maps"), dir)...)
		if len(uses) == 0 {
			continue // also processes that exited while we looked
		}
		comm, _ := os.ReadFile(filepath.Join(pdir, "comm"))
		out = append(out, Holder{PID: pid, Comm: strings.TrimSpace(string(comm)), Uses: uses})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// mappedUnder lists the distinct files under dir in a /proc/PID/maps.
func mappedUnder(maps, dir string) []string {
	f, err := os.Open(maps)
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path; the path may hold spaces.
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 {
			continue
		}
		p := strings.TrimSuffix(strings.TrimLeft(fields[5], " "), " (deleted)")
		if p != "" && within(p, dir) && !seen[p] {
			seen[p] = true
			out = append(out, "maps: "+p)
		}
	}
	return out
}

// MountEntry is one line of /proc/self/mountinfo.
type MountEntry struct {
	MountPoint string
	FSType     string
	Source     string
	Options    string // per-mount options: ro, nodev, nosuid, noexec, ...
	SuperOpts  string // filesystem options: lowerdir=..., size=...
	Dev        string // the filesystem's device number, "major:minor"
}

// Mounts reads /proc/self/mountinfo.
func Mounts() ([]MountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []MountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 6 || len(b) < 3 {
			continue
		}
		out = append(out, MountEntry{
			Dev:        a[2],
			MountPoint: unescapeMountinfo(a[4]),
			Options:    a[5],
			FSType:     b[0],
			Source:     unescapeMountinfo(b[1]),
			SuperOpts:  unescapeMountinfo(b[2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the topmost mount at dir, if any.
func mountAt(dir string) (MountEntry, bool, error) {
	ms, err := Mounts()
	if err != nil {
		return MountEntry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == dir {
			return ms[i], true, nil
		}
	}
	return MountEntry{}, false, nil
}

// mountsBelow lists mount points strictly below dir, which keep it busy
// too.
func mountsBelow(dir string) []string {
	ms, err := Mounts()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		if m.MountPoint != dir && within(m.MountPoint, dir) {
			out = append(out, m.MountPoint)
		}
	}
	return out
}

// describeHolders explains an EBUSY unmount of dir.
func describeHolders(dir string) string {
	var parts []string
	if hs, err := Holders(dir); err == nil {
		for _, h := range hs {
			parts = append(parts, h.String())
		}
	}
	for _, m := range mountsBelow(dir) {
		parts = append(parts, "mount at "+m)
	}
	if len(parts) == 0 {
		return "no process found holding it (maybe in another mount namespace)"
	}
	return "held by:\n\t" + strings.Join(parts, "\n\t")
}
