// Package kmod resolves kernel modules through modules.dep and loads them.
//
// It is used twice: by the initramfs builder, to copy a module and its
// dependencies and write their load order, and by PID 1, to load them with
// no udev or modprobe around. u-root's pkg/kmodule would do the loading
// too, but it uses init_module for plain .ko files, where finit_module lets
// the kernel read the file itself, and it cannot compute the set to copy.
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// LoadList is the file, next to modules.dep in lib/modules/RELEASE, that
// names the modules PID 1 loads, in order, dependencies first. It lives
// here rather than in boot/initramfs, which writes it, so that PID 1 does
// not link the archive writer and u-root's packages.
const LoadList = "squashportage.load"

// Dep is a parsed modules.dep: for each module name, its file (relative
// to the modules directory) and the files it depends on, nearest last as
// depmod writes them.
type Dep struct {
	files map[string]string   // name -> file
	deps  map[string][]string // name -> dependency files
}

// Name is the module name of a file name or module name: the base name
// without .ko and compression suffix, with '-' folded to '_' as the kernel
// does.
func Name(file string) string {
	b := path.Base(file)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, suf)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ParseDep reads modules.dep ("file: dep dep ..." per line).
func ParseDep(r io.Reader) (*Dep, error) {
	d := &Dep{files: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon in %q", n, line)
		}
		name := Name(file)
		d.files[name] = file
		d.deps[name] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return d, nil
}

// Has reports whether modules.dep lists the module.
func (d *Dep) Has(name string) bool {
	_, ok := d.files[Name(name)]
	return ok
}

// Order returns the files to load for the named modules, each after all
// of its dependencies and each once, in a stable order.
func (d *Dep) Order(names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		name := Name(n)
		file, ok := d.files[name]
		if !ok {
			return nil, fmt.Errorf("module %s: not in modules.dep", n)
		}
		if seen[file] {
			continue
		}
		// depmod lists the full transitive closure, deepest dependency
		// last, so loading the list reversed satisfies every symbol.
		ds := d.deps[name]
		for i := len(ds) - 1; i >= 0; i-- {
			if !seen[ds[i]] {
				seen[ds[i]] = true
				out = append(out, ds[i])
			}
		}
		seen[file] = true
		out = append(out, file)
	}
	return out, nil
}

// WriteDep writes a modules.dep restricted to files, in their order, so a
// pruned module tree stays self-consistent. It names every module by its
// PlainName: a pruned tree stores modules decompressed (see Uncompressed).
func (d *Dep) WriteDep(w io.Writer, files []string) error {
	for _, f := range files {
		line := PlainName(f) + ":"
		for _, dep := range d.deps[Name(f)] {
			line += " " + PlainName(dep)
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return fmt.Errorf("writing modules.dep: %w", err)
		}
	}
	return nil
}

// PlainName is a module file's name once decompressed: .ko.xz and .ko.zst
// become .ko.
func PlainName(file string) string {
	for _, suf := range []string{".ko.xz", ".ko.zst"} {
		if strings.HasSuffix(file, suf) {
			return strings.TrimSuffix(file, suf) + ".ko"
		}
	}
	return file
}
