package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultStateDir is on the tmpfs /run: the records describe mounts, which
// do not survive a reboot either.
const DefaultStateDir = "/run/squashportage"

// stateDirOr returns the state directory to use for dir: the default for
// "", else dir made absolute. Records hold mount points derived from it,
// and the kernel reports mount points absolute; a relative one would not
// be recognised as mounted when it is time to unmount.
func stateDirOr(dir string) string {
	if dir == "" {
		return DefaultStateDir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// Upper kinds recorded in State.UpperKind.
const (
	KindTmpfs = "tmpfs" // upper and work on a tmpfs of their own
	KindDir   = "dir"   // upper and work in a directory on disk (Spec.Upper)
	KindNone  = "none"  // ro spec: the squashfs is mounted at the target
)

// ErrNotManaged is wrapped by errors about a target squashportage has no
// record of.
var ErrNotManaged = errors.New("not managed by squashportage")

// State records one managed mount, as JSON in STATEDIR/ID.json. Paths are
// as seen from the running system, without MountOptions.Root.
type State struct {
	ID     string `json:"id"`
	Spec   Spec   `json:"spec"`
	Image  string `json:"image"` // the image mounted now (persist may swap it)
	Target string `json:"target"`
	Loop   string `json:"loop"`
	// Lower is where the squashfs is mounted: STATEDIR/ID/lower, or the
	// target itself for a ro spec.
	Lower string `json:"lower"`
	// RW is the mount point of the tmpfs holding Upper and Work (KindTmpfs),
	// or Spec.Upper (KindDir).
	RW        string    `json:"rw,omitempty"`
	Upper     string    `json:"upper,omitempty"`
	Work      string    `json:"work,omitempty"`
	UpperKind string    `json:"upper_kind"`
	MountedAt time.Time `json:"mounted_at"`
	// RAM is the tmpfs holding copies of the image and its layers (toram).
	RAM string `json:"ram,omitempty"`
	// Layers are the mount points of the delta layers stacked between the
	// upper and Lower, newest first (layers= in the spec).
	Layers []string `json:"layers,omitempty"`
	// Gen counts the stacks persist has swapped in since the mount; it
	// names their private mount points (lower.N, rw.N).
	Gen int `json:"gen,omitempty"`
	// Next is the stack a persist is moving into place; set only while it
	// does, so a record that has it names a persist that died then.
	Next *State `json:"next,omitempty"`

	// Written by persist.
	LastPersist       time.Time `json:"last_persist,omitzero"`
	LastPersistResult string    `json:"last_persist_result,omitempty"`

	// Root is the prefix the mount was made under (at boot, before
	// switch_root); it is not saved, since it is gone once the system runs.
	Root string `json:"-"`

	// dir is the state directory the record lives in.
	dir string
	// memFree, when set, stands in for MemAvailable (tests).
	memFree func() int64
}

func (st *State) memAvailable() int64 {
	if st.memFree != nil {
		return st.memFree()
	}
	return memAvailable()
}

// Path is p as reachable from the current root (p with Root prepended).
func (st *State) Path(p string) string {
	if st.Root == "" {
		return p
	}
	return filepath.Join(st.Root, p)
}

// ImagePath is the image as reachable now (under Root).
func (st *State) ImagePath() string { return st.Path(st.Image) }

// TargetPath is the target as reachable now (under Root).
func (st *State) TargetPath() string { return st.Path(st.Target) }

// LowerPath is the squashfs mount point as reachable now.
func (st *State) LowerPath() string {
	if st.UpperKind == KindNone {
		return st.Path(st.Lower)
	}
	return st.Lower
}

// UpperPath is the overlay's upper directory as reachable now ("" for ro).
func (st *State) UpperPath() string {
	if st.UpperKind == KindDir {
		return st.Path(st.Upper)
	}
	return st.Upper
}

// WorkPath is the overlay's work directory as reachable now ("" for ro).
func (st *State) WorkPath() string {
	if st.UpperKind == KindDir {
		return st.Path(st.Work)
	}
	return st.Work
}

// lowerDirs are the overlay's lower layers, newest first: the delta
// layers, then the image.
func (st *State) lowerDirs() []string {
	return append(append([]string(nil), st.Layers...), st.LowerPath())
}

// StateDir is the directory the record was loaded from or saved to.
func (st *State) StateDir() string {
	if st.dir == "" {
		return DefaultStateDir
	}
	return st.dir
}

// ID names a target's state the way systemd names mount units:
// /var/db/repos/gentoo → var-db-repos-gentoo, with '-' and bytes outside
// [A-Za-z0-9:_.] escaped as \xNN so that distinct paths never collide.
func ID(target string) string {
	p := strings.Trim(filepath.Clean(target), "/")
	if p == "" {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0, // a leading dot would make a hidden file
			!(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.'):
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func statePath(stateDir, target string) string {
	return filepath.Join(stateDir, ID(target)+".json")
}

// Save writes the record atomically (temp file + rename), so a crash or a
// concurrent reader never sees half of it.
func (st *State) Save(stateDir string) error {
	stateDir = stateDirOr(stateDir)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("save state of %s: %w", st.Target, err)
	}
	st.dir = stateDir
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save state of %s: %w", st.Target, err)
	}
	b = append(b, '\n')
	dst := statePath(stateDir, st.Target)
	if err := writeAtomic(dst, b); err != nil {
		return fmt.Errorf("save state of %s to %s: %w", st.Target, dst, err)
	}
	return nil
}

// writeAtomic replaces the file p by one holding b: a temporary file
// synced and renamed over it, and the directory synced, so that a crash
// or a concurrent reader sees the old content or the new, never part.
func writeAtomic(p string, b []byte) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}

// Load reads the record of target; an unknown target gives an error
// wrapping ErrNotManaged.
func Load(stateDir, target string) (*State, error) {
	stateDir = stateDirOr(stateDir)
	target = filepath.Clean(target)
	st, err := loadFile(statePath(stateDir, target))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("target %s: %w (no record in %s)", target, ErrNotManaged, stateDir)
	}
	if err != nil {
		return nil, err
	}
	st.dir = stateDir
	return st, nil
}

func loadFile(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	st := new(State)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("load state %s: %w", path, err)
	}
	return st, nil
}

// List reads every record in stateDir, sorted by target. A missing
// stateDir means nothing is mounted.
func List(stateDir string) ([]*State, error) {
	stateDir = stateDirOr(stateDir)
	ents, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list states: %w", err)
	}
	var out []*State
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := loadFile(filepath.Join(stateDir, e.Name()))
		if err != nil {
			return nil, err
		}
		st.dir = stateDir
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

func removeState(stateDir, target string) error {
	err := os.Remove(statePath(stateDir, target))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove state of %s: %w", target, err)
	}
	return nil
}

// syncDir makes a directory's entries (renames, new files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
