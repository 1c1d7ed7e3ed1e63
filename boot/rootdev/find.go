package rootdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Spec is a parsed root= value.
type Spec struct {
	Kind  string // "path", "devnum", "UUID", "LABEL", "PARTUUID", "PARTLABEL"
	Value string
	// PartOffset is PARTUUID=...;PARTNROFF=N's N, relative partition.
	PartOffset int
}

func (s Spec) String() string {
	switch s.Kind {
	case "path", "devnum":
		return s.Value
	}
	return s.Kind + "=" + s.Value
}

// ParseSpec understands the root= forms the kernel does (PARTNROFF too).
func ParseSpec(root string) (Spec, error) {
	if root == "" {
		return Spec{}, errors.New("no root= on the kernel command line")
	}
	for _, k := range []string{"PARTUUID", "PARTLABEL", "UUID", "LABEL"} {
		v, ok := strings.CutPrefix(root, k+"=")
		if !ok {
			continue
		}
		s := Spec{Kind: k, Value: v}
		if k == "PARTUUID" {
			if u, off, ok := strings.Cut(v, "/PARTNROFF="); ok {
				n, err := strconv.Atoi(off)
				if err != nil {
					return Spec{}, fmt.Errorf("root=%s: bad PARTNROFF: %w", root, err)
				}
				s.Value, s.PartOffset = u, n
			}
		}
		if s.Value == "" {
			return Spec{}, fmt.Errorf("root=%s: empty %s", root, k)
		}
		return s, nil
	}
	if strings.HasPrefix(root, "/") {
		return Spec{Kind: "path", Value: root}, nil
	}
	if maj, min, ok := strings.Cut(root, ":"); ok {
		if _, err := strconv.Atoi(maj); err == nil {
			if _, err := strconv.Atoi(min); err == nil {
				return Spec{Kind: "devnum", Value: root}, nil
			}
		}
	}
	// The kernel also takes bare names ("sda1") as /dev/NAME.
	if !strings.ContainsAny(root, "=/") {
		return Spec{Kind: "path", Value: "/dev/" + root}, nil
	}
	return Spec{}, fmt.Errorf("root=%s: unrecognized form", root)
}

// Device is a block device as PID 1 sees it.
type Device struct {
	Name   string // sda1
	Path   string // /dev/sda1
	Disk   string // sda for a partition, "" for a whole disk
	PartNo int    // partition number, 0 for a whole disk
	// Sectors is the size in 512-byte units; 0 for unbound loop devices
	// and empty drives.
	Sectors int64
	FS      FS
	Part    Part
}

// Finder looks for devices under a sysfs and a /dev; fields so tests can
// use a fake tree.
type Finder struct {
	SysBlock    string // /sys/class/block
	SysDevBlock string // /sys/dev/block, for MAJ:MIN
	Dev         string // /dev
}

// SystemFinder uses the real system paths.
func SystemFinder() Finder {
	return Finder{SysBlock: "/sys/class/block", SysDevBlock: "/sys/dev/block", Dev: "/dev"}
}

// Scan describes every block device now present, probing each for a
// filesystem and, for partitions, its partition table entry. Devices that
// cannot be read (empty CD drives, absent media) are listed without
// probe results.
func (f Finder) Scan() ([]Device, error) {
	ents, err := os.ReadDir(f.SysBlock)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var devs []Device
	for _, e := range ents {
		d := Device{Name: e.Name(), Path: filepath.Join(f.Dev, e.Name())}
		sys := filepath.Join(f.SysBlock, e.Name())
		if b, err := os.ReadFile(filepath.Join(sys, "partition")); err == nil {
			d.PartNo, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			if real, err := filepath.EvalSymlinks(sys); err == nil {
				d.Disk = filepath.Base(filepath.Dir(real))
			}
		}
		if b, err := os.ReadFile(filepath.Join(sys, "size")); err == nil {
			d.Sectors, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
		d.FS, _ = probePath(d.Path)
		if d.Disk != "" {
			d.Part, _ = probePartPath(filepath.Join(f.Dev, d.Disk), d.PartNo)
		}
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })
	return devs, nil
}

func probePath(p string) (FS, error) {
	f, err := os.Open(p)
	if err != nil {
		return FS{}, err
	}
	defer f.Close()
	return ProbeFS(f)
}

func probePartPath(disk string, n int) (Part, error) {
	f, err := os.Open(disk)
	if err != nil {
		return Part{}, err
	}
	defer f.Close()
	return ProbePart(f, n)
}

// Match picks the device spec names among devs, or nil.
func Match(spec Spec, devs []Device) *Device {
	if spec.Kind == "PARTUUID" && spec.PartOffset != 0 {
		for _, d := range devs {
			if d.Disk != "" && strings.EqualFold(d.Part.UUID, spec.Value) {
				for i := range devs {
					if devs[i].Disk == d.Disk && devs[i].PartNo == d.PartNo+spec.PartOffset {
						return &devs[i]
					}
				}
			}
		}
		return nil
	}
	for i, d := range devs {
		var ok bool
		switch spec.Kind {
		case "UUID":
			ok = d.FS.Type != "" && strings.EqualFold(d.FS.UUID, spec.Value)
		case "LABEL":
			ok = d.FS.Type != "" && d.FS.Label == spec.Value
		case "PARTUUID":
			ok = d.Disk != "" && strings.EqualFold(d.Part.UUID, spec.Value)
		case "PARTLABEL":
			ok = d.Disk != "" && d.Part.Label == spec.Value
		}
		if ok {
			return &devs[i]
		}
	}
	return nil
}

// Find resolves spec once, without waiting. It returns os.ErrNotExist
// (wrapped) when no device matches yet.
func (f Finder) Find(spec Spec) (Device, error) {
	switch spec.Kind {
	case "path":
		// A path needs no probing to be found, but the probe result
		// lets the caller pick a filesystem type to mount.
		if _, err := os.Stat(spec.Value); err != nil {
			return Device{}, fmt.Errorf("root device %s: %w", spec.Value, err)
		}
		fs, _ := probePath(spec.Value)
		return Device{Name: filepath.Base(spec.Value), Path: spec.Value, FS: fs}, nil
	case "devnum":
		real, err := filepath.EvalSymlinks(filepath.Join(f.SysDevBlock, spec.Value))
		if err != nil {
			return Device{}, notFound("no block device " + spec.Value)
		}
		p := filepath.Join(f.Dev, filepath.Base(real))
		fs, _ := probePath(p)
		return Device{Name: filepath.Base(real), Path: p, FS: fs}, nil
	}
	devs, err := f.Scan()
	if err != nil {
		return Device{}, err
	}
	if d := Match(spec, devs); d != nil {
		return *d, nil
	}
	return Device{}, notFound("no block device with " + spec.String())
}

// notFound is an error that is os.ErrNotExist without saying "file does
// not exist" about something that is not a file.
type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == os.ErrNotExist }

// Wait polls for spec until it appears, ctx ends, or timeout passes
// (timeout 0: no limit). tick is called about every 5 s while waiting so
// a slow boot says what it waits for.
func (f Finder) Wait(ctx context.Context, spec Spec, timeout time.Duration, tick func(waited time.Duration)) (Device, error) {
	start := time.Now()
	lastTick := start
	for {
		d, err := f.Find(spec)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return d, err
		}
		waited := time.Since(start)
		if timeout > 0 && waited >= timeout {
			return Device{}, fmt.Errorf("gave up after %s: %w", waited.Round(time.Millisecond), err)
		}
		if tick != nil && time.Since(lastTick) >= 5*time.Second {
			lastTick = time.Now()
			tick(waited)
		}
		select {
		case <-ctx.Done():
			return Device{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
