// Package overlay mounts a SquashFS image read-only with a writable
// overlayfs over it, keeps a record of what it mounted, and takes it down
// again. Writing the merged view back into a new image (persist) builds on
// the State recorded here.
package overlay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/squashportage/squashportage/squash/codec"
)

// Persist policies.
const (
	PersistShutdown = "shutdown"
	PersistNever    = "never"
)

// UpperTmpfs is the Upper of a spec whose changes live in RAM.
const UpperTmpfs = "tmpfs"

// DefaultSize caps the tmpfs upper. tmpfs only uses RAM for what is
// written, so the cap is a guard, not a reservation: 25% of RAM holds a
// rewrite of the whole Portage tree (~700 MB of small files) on a 4 GB
// machine, yet keeps a runaway writer (distfiles downloaded into the tree)
// from pushing the machine into the OOM killer. Half of RAM, the kernel's
// own default, leaves too little on small machines that need squashfs most.
const DefaultSize = "25%"

// DefaultKeep keeps the current image and the previous one (IMAGE.old), so
// one bad persist can be rolled back by hand.
const DefaultKeep = 2

// allowedOptions is quoted in errors about unknown options.
const allowedOptions = "ro, upper=, size=, persist=, comp=, block=, keep=, exec, noexec, threshold=, layers=, compact=, toram"

// maxLayers bounds layers=: overlayfs stacks up to 500 lowers, but every
// layer is a loop device and a lookup more.
const maxLayers = 64

// Spec says what to mount where and how changes are kept: IMAGE:TARGET[:OPTIONS].
// ParseSpec fills in defaults, so every field is the effective value.
type Spec struct {
	Image  string // absolute path of the squashfs image
	Target string // absolute path of the directory it appears at
	// ReadOnly mounts the image alone, without overlay (kernel sources).
	ReadOnly bool
	// Upper is UpperTmpfs or an absolute directory holding upper/ and work/.
	Upper string
	// Size is the tmpfs size limit as tmpfs takes it: N[k|m|g] or N%.
	Size string
	// Persist is PersistShutdown or PersistNever.
	Persist string
	// Comp is the compressor of images written by persist; 0 keeps the
	// image's own.
	Comp codec.ID
	// Block is the block size of images written by persist; 0 keeps the
	// image's own.
	Block int
	// Keep is how many generations persist keeps (IMAGE, IMAGE.old, ...).
	Keep int
	// Exec allows executing files from the target (mounted noexec otherwise).
	Exec bool
	// Threshold is the size of pending changes (bytes of regular files in
	// the upper) below which persist leaves the image alone; 0 persists any
	// change.
	Threshold int64
	// ToRAM copies the image and its layers into RAM at mount, for slow
	// media; persist still writes to the medium.
	ToRAM bool
	// Layers is how many delta layers persist stacks on the image before
	// it folds them into a new image; 0 writes a whole new image each time.
	Layers int
	// CompactPercent folds the layers once their sizes add up to this
	// share of the image's (0: DefaultCompactPercent).
	CompactPercent int
}

func (sp Spec) compactPercent() int {
	if sp.CompactPercent == 0 {
		return DefaultCompactPercent
	}
	return sp.CompactPercent
}

// DefaultCompactPercent: layers adding up to a quarter of the image cost
// as much reading as they save writing; fold them.
const DefaultCompactPercent = 25

// ParseSpec parses IMAGE:TARGET[:OPTIONS].
func ParseSpec(s string) (Spec, error) {
	sp, err := parseSpec(s)
	if err != nil {
		return Spec{}, fmt.Errorf("spec %q: %w", s, err)
	}
	return sp, nil
}

func parseSpec(s string) (Spec, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return Spec{}, errors.New("want IMAGE:TARGET[:OPTIONS]")
	}
	sp := Spec{Upper: UpperTmpfs, Persist: PersistShutdown, Keep: DefaultKeep}
	var err error
	if sp.Image, err = absPath("image", parts[0], ""); err != nil {
		return Spec{}, err
	}
	if sp.Target, err = absPath("target", parts[1], ""); err != nil {
		return Spec{}, err
	}
	seen := map[string]bool{}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Spec{}, errors.New("empty option list after the second ':'")
		}
		for opt := range strings.SplitSeq(parts[2], ",") {
			key, val, hasVal := strings.Cut(opt, "=")
			if key == "exec" || key == "noexec" {
				key = "exec" // one setting, two spellings
			}
			if seen[key] {
				return Spec{}, fmt.Errorf("option %q given twice", opt)
			}
			seen[key] = true
			if err := sp.setOption(opt, key, val, hasVal); err != nil {
				return Spec{}, err
			}
		}
	}
	if sp.ReadOnly {
		for _, k := range []string{"upper", "size", "persist", "comp", "block", "keep", "threshold", "layers", "compact"} {
			if seen[k] {
				return Spec{}, fmt.Errorf("option %q conflicts with \"ro\" (a read-only mount has no upper and nothing to persist)", k+"=")
			}
		}
		sp.Upper, sp.Persist, sp.Keep = "", PersistNever, 0
	} else if sp.Upper == UpperTmpfs && sp.Size == "" {
		sp.Size = DefaultSize
	}
	if sp.Upper != UpperTmpfs && seen["size"] {
		return Spec{}, errors.New(`option "size=" only applies to upper=tmpfs`)
	}
	return sp, sp.validate()
}

func (sp *Spec) setOption(opt, key, val string, hasVal bool) error {
	takesValue, known := map[string]bool{
		"ro": false, "exec": false, "toram": false,
		"upper": true, "size": true, "persist": true, "comp": true, "block": true, "keep": true, "threshold": true,
		"layers": true, "compact": true,
	}[key]
	switch {
	case !known:
		return fmt.Errorf("unknown option %q (allowed: %s)", key, allowedOptions)
	case takesValue && (!hasVal || val == ""):
		return fmt.Errorf("option %q needs a value (%s=...)", opt, key)
	case !takesValue && hasVal:
		return fmt.Errorf("option %q takes no value", opt)
	}
	var err error
	switch key {
	case "ro":
		sp.ReadOnly = true
	case "exec":
		sp.Exec = opt == "exec"
	case "toram":
		sp.ToRAM = true
	case "upper":
		if val == UpperTmpfs {
			sp.Upper = UpperTmpfs
			break
		}
		if sp.Upper, err = absPath("upper", val, ","); err != nil {
			return fmt.Errorf("option %q: %w (allowed: upper=tmpfs or upper=/absolute/dir)", opt, err)
		}
	case "size":
		if sp.Size, err = parseTmpfsSize(val); err != nil {
			return fmt.Errorf("option %q: %w", opt, err)
		}
	case "persist":
		if val != PersistShutdown && val != PersistNever {
			return fmt.Errorf("option %q: allowed are persist=shutdown and persist=never", opt)
		}
		sp.Persist = val
	case "comp":
		id, err := codec.ParseWritable(val)
		if err != nil {
			return fmt.Errorf("option %q: %w", opt, err)
		}
		sp.Comp = id
	case "block":
		n, err := parseBytes(val)
		if err != nil || n < 4<<10 || n > 1<<20 || n&(n-1) != 0 {
			return fmt.Errorf("option %q: block size must be a power of two from 4k to 1m", opt)
		}
		sp.Block = int(n)
	case "keep":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("option %q: keep must be a number from 1 to 100", opt)
		}
		sp.Keep = n
	case "threshold":
		n, err := parseBytes(val)
		if err != nil {
			return fmt.Errorf("option %q: threshold must be N, Nk, Nm or Ng", opt)
		}
		sp.Threshold = n
	case "layers":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 || n > maxLayers {
			return fmt.Errorf("option %q: layers must be a number from 0 (a whole image at each persist) to %d", opt, maxLayers)
		}
		sp.Layers = n
	case "compact":
		n, err := strconv.Atoi(strings.TrimSuffix(val, "%"))
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("option %q: compact must be a percentage of the image's size, 1%% to 1000%%", opt)
		}
		sp.CompactPercent = n
		if n == DefaultCompactPercent {
			sp.CompactPercent = 0 // as if not given: one spelling of each spec
		}
	}
	return nil
}

// validate checks what ParseSpec guarantees, for Specs built in code.
func (sp Spec) validate() error {
	if !filepath.IsAbs(sp.Image) || !filepath.IsAbs(sp.Target) {
		return errors.New("image and target must be absolute paths")
	}
	if sp.Target == "/" {
		return errors.New("target must not be /")
	}
	if within(sp.Image, sp.Target) {
		// The image would be hidden by its own mount, and persist would
		// write the new image into the overlay.
		return fmt.Errorf("image %s lies inside target %s", sp.Image, sp.Target)
	}
	if sp.ReadOnly {
		return nil
	}
	if sp.Upper == "" {
		return errors.New("no upper (want tmpfs or a directory)")
	}
	if sp.Upper != UpperTmpfs && (within(sp.Upper, sp.Target) || within(sp.Target, sp.Upper)) {
		return fmt.Errorf("upper %s and target %s must not contain each other", sp.Upper, sp.Target)
	}
	if sp.Keep < 1 {
		return errors.New("keep must be at least 1")
	}
	if sp.Layers > 0 && sp.Upper != UpperTmpfs {
		// A disk upper's changes are relative to the stack below it, which
		// its base record cannot name yet.
		return errors.New("layers= needs upper=tmpfs")
	}
	return nil
}

// absPath accepts absolute paths only and cleans them. ':' separates the
// spec's parts; a newline would end a config line; bad are also the
// spec-specific separators in forbidden.
func absPath(what, p, forbidden string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty %s path", what)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%s %q is not an absolute path", what, p)
	}
	if strings.ContainsAny(p, ":\n"+forbidden) {
		return "", fmt.Errorf("%s %q contains ':'%s or a newline, which the spec cannot carry", what, p, strings.ReplaceAll(forbidden, ",", ", ','"))
	}
	return filepath.Clean(p), nil
}

// within reports whether p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// parseTmpfsSize accepts what the tmpfs size= option does, except bare
// page counts and the e/t/p suffixes nobody needs for a Portage tree.
func parseTmpfsSize(v string) (string, error) {
	v = strings.ToLower(v)
	if n, ok := strings.CutSuffix(v, "%"); ok {
		p, err := strconv.Atoi(n)
		if err != nil || p < 1 || p > 100 {
			return "", errors.New("percentage must be 1% to 100% of RAM")
		}
		return strconv.Itoa(p) + "%", nil
	}
	n, err := parseBytes(v)
	if err != nil || n < 1<<20 {
		return "", errors.New("size must be N[k|m|g] (at least 1m) or N% of RAM")
	}
	return formatBytes(n), nil
}

// parseBytes parses N, Nk, Nm or Ng (binary multiples, as tmpfs does).
func parseBytes(v string) (int64, error) {
	v = strings.ToLower(v)
	shift := 0
	switch {
	case strings.HasSuffix(v, "k"):
		shift = 10
	case strings.HasSuffix(v, "m"):
		shift = 20
	case strings.HasSuffix(v, "g"):
		shift = 30
	}
	if shift > 0 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n << shift, nil
}

// formatBytes writes n with the largest exact suffix, so that String
// round-trips and reads well.
func formatBytes(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "g"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "m"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// String writes the spec back in the form ParseSpec reads, leaving out
// options at their defaults, in the order of the help text.
func (sp Spec) String() string {
	var opts []string
	if sp.ReadOnly {
		opts = append(opts, "ro")
	} else {
		if sp.Upper != UpperTmpfs && sp.Upper != "" {
			opts = append(opts, "upper="+sp.Upper)
		}
		if sp.Size != "" && sp.Size != DefaultSize {
			opts = append(opts, "size="+sp.Size)
		}
		if sp.Persist == PersistNever {
			opts = append(opts, "persist="+PersistNever)
		}
		if sp.Comp != 0 {
			opts = append(opts, "comp="+sp.Comp.String())
		}
		if sp.Block != 0 {
			opts = append(opts, "block="+formatBytes(int64(sp.Block)))
		}
		if sp.Keep != DefaultKeep && sp.Keep != 0 {
			opts = append(opts, "keep="+strconv.Itoa(sp.Keep))
		}
	}
	if sp.Exec {
		opts = append(opts, "exec")
	}
	if sp.ToRAM {
		opts = append(opts, "toram")
	}
	if !sp.ReadOnly && sp.Threshold != 0 {
		opts = append(opts, "threshold="+formatBytes(sp.Threshold))
	}
	if !sp.ReadOnly && sp.Layers != 0 {
		opts = append(opts, "layers="+strconv.Itoa(sp.Layers))
	}
	if !sp.ReadOnly && sp.CompactPercent != 0 && sp.CompactPercent != DefaultCompactPercent {
		opts = append(opts, "compact="+strconv.Itoa(sp.CompactPercent)+"%")
	}
	s := sp.Image + ":" + sp.Target
	if len(opts) > 0 {
		s += ":" + strings.Join(opts, ",")
	}
	return s
}

// MarshalText stores a Spec in its own syntax (in state files).
func (sp Spec) MarshalText() ([]byte, error) { return []byte(sp.String()), nil }

// UnmarshalText parses a Spec stored by MarshalText.
func (sp *Spec) UnmarshalText(b []byte) error {
	p, err := ParseSpec(string(b))
	if err != nil {
		return err
	}
	*sp = p
	return nil
}

// ConfigLineError is a config line that was rejected.
type ConfigLineError struct {
	Line int
	Err  error
}

func (e *ConfigLineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ConfigLineError) Unwrap() error { return e.Err }

// ConfigErrors lists every line ParseConfig rejected, in order.
type ConfigErrors []*ConfigLineError

func (e ConfigErrors) Error() string {
	msgs := make([]string, len(e))
	for i, le := range e {
		msgs[i] = le.Error()
	}
	return strings.Join(msgs, "; ")
}

// ParseConfig reads /etc/squashportage.conf: one spec a line, '#' starts a
// comment, blank lines are ignored. A bad line does not reject the others:
// the specs of the good lines are returned together with a ConfigErrors
// naming each bad one. A second spec for a target already configured is a
// bad line; the first one stays. Only a read error returns no specs.
func ParseConfig(r io.Reader) ([]Spec, error) {
	var specs []Spec
	var bad ConfigErrors
	targets := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		sp, err := ParseSpec(line)
		if err != nil {
			bad = append(bad, &ConfigLineError{n, err})
			continue
		}
		if prev, ok := targets[sp.Target]; ok {
			bad = append(bad, &ConfigLineError{n, fmt.Errorf("target %s already configured on line %d", sp.Target, prev)})
			continue
		}
		targets[sp.Target] = n
		specs = append(specs, sp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(bad) > 0 {
		return specs, bad
	}
	return specs, nil
}

// SpecHelp explains the spec language, for the commands' --help.
const SpecHelp = `A SPEC is IMAGE:TARGET[:OPTIONS], both paths absolute, OPTIONS separated
by commas. The same specs go on the kernel command line and, one a line,
into /etc/squashportage.conf ('#' starts a comment).

  ro              mount the image read-only at TARGET, without overlay
                  (e.g. kernel sources); excludes the options below it
  upper=tmpfs     keep changes in RAM (default)
  upper=DIR       keep changes in DIR/upper (and DIR/work) on disk, so
                  they survive a reboot without persist
  size=N[k|m|g|%] limit of the tmpfs upper (default 25%: of RAM)
  persist=shutdown  write changes into a new image at shutdown (default)
  persist=never   drop the changes (upper=tmpfs) or leave them in DIR
  comp=gzip|xz|lz4|zstd  compressor of new images (default: the image's)
  block=SIZE      block size of new images, 4k..1m, a power of two
                  (default: the image's)
  keep=N          images kept: IMAGE, IMAGE.old, ... (default 2)
  threshold=N[k|m|g]  persist only when at least this much changed
                  (default 0: any change)
  layers=N        write each persist's changes as a small delta layer
                  stacked on IMAGE, up to N layers, then fold them into a
                  new IMAGE (default 0: a whole new IMAGE each time)
  compact=P%      fold the layers also once they add up to P% of IMAGE's
                  size (default 25%)
  exec, noexec    allow running programs from TARGET (default noexec)
  toram           copy the image and its layers into RAM at mount (slow
                  sticks); refused when memory is short

Examples:
  /var/cache/gentoo.sqfs:/var/db/repos/gentoo
  /var/cache/gentoo.sqfs:/var/db/repos/gentoo:comp=zstd,size=1g,keep=3
  /var/cache/linux.sqfs:/usr/src/linux:ro
`
