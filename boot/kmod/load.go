package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Loader loads modules from one modules directory (/lib/modules/RELEASE).
type Loader struct {
	Dir string
	Dep *Dep
	// SysModule is /sys/module, where loaded and (many) built-in modules
	// appear; a field so tests can point it elsewhere.
	SysModule string
	// Log reports each module loaded or skipped.
	Log func(format string, args ...any)

	inserted atomic.Int32
}

// Loaded is how many modules this loader has inserted so far.
func (l *Loader) Loaded() int { return int(l.inserted.Load()) }

// NewLoader reads dir/modules.dep.
func NewLoader(dir string, log func(string, ...any)) (*Loader, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("opening modules.dep: %w", err)
	}
	defer f.Close()
	d, err := ParseDep(f)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	return &Loader{Dir: dir, Dep: d, SysModule: "/sys/module", Log: log}, nil
}

// Load loads the named modules with their dependencies. A module missing
// from modules.dep is assumed to be built in (it is logged, not an error);
// it returns the errors of the modules that failed to load, after trying
// them all, since one broken module must not stop the others.
func (l *Loader) Load(names ...string) error {
	var errs []error
	for _, n := range names {
		if !l.Dep.Has(n) {
			l.Log("module %s: not in the initramfs, assuming it is built in", n)
			continue
		}
		files, err := l.Dep.Order([]string{n})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			if err := l.loadFile(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// loadFile loads one module file unless a module of that name is present.
func (l *Loader) loadFile(file string) error {
	name := Name(file)
	if l.loaded(name) {
		return nil
	}
	err := insert(filepath.Join(l.Dir, file))
	switch {
	case errors.Is(err, unix.EEXIST):
		return nil
	case err != nil:
		return fmt.Errorf("module %s: %w", name, err)
	}
	l.inserted.Add(1)
	l.Log("loaded module %s", name)
	return nil
}

// loaded checks /proc/modules' view through /sys/module/NAME/initstate,
// which exists for loadable modules only (built-ins may have /sys/module/NAME
// for their parameters, and are caught by EEXIST or not in modules.dep).
func (l *Loader) loaded(name string) bool {
	_, err := os.Stat(filepath.Join(l.SysModule, name, "initstate"))
	return err == nil
}

// insert loads one module file. Plain .ko files go through finit_module so
// the kernel reads (and may verify) the file itself; compressed ones are
// decompressed here, since the kernel's own in-kernel decompression
// (MODULE_INIT_COMPRESSED_FILE) is not enabled everywhere. Initramfs
// builds store modules decompressed (see Uncompressed): decoding xz in Go
// at boot cost a few hundred milliseconds under emulation.
func insert(path string) error {
	if strings.HasSuffix(path, ".ko") {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
			return fmt.Errorf("finit_module %s: %w", path, err)
		}
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, plain, err := Uncompressed(path, b)
	if err != nil {
		return err
	}
	if err := unix.InitModule(plain, ""); err != nil {
		return fmt.Errorf("init_module %s: %w", path, err)
	}
	return nil
}

// Uncompressed returns a module file's name and contents as a plain .ko:
// .ko.xz and .ko.zst files are decompressed, .ko ones returned as they are.
func Uncompressed(name string, b []byte) (string, []byte, error) {
	var r io.Reader
	var plainName string
	switch {
	case strings.HasSuffix(name, ".ko"):
		return name, b, nil
	case strings.HasSuffix(name, ".ko.xz"):
		xr, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", nil, fmt.Errorf("decompressing %s: %w", name, err)
		}
		r, plainName = xr, PlainName(name)
	case strings.HasSuffix(name, ".ko.zst"):
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", nil, fmt.Errorf("decompressing %s: %w", name, err)
		}
		defer zr.Close()
		r, plainName = zr, PlainName(name)
	default:
		return "", nil, fmt.Errorf("%s: unsupported module format", name)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return "", nil, fmt.Errorf("decompressing %s: %w", name, err)
	}
	return plainName, buf.Bytes(), nil
}
