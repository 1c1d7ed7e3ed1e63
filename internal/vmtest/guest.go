package vmtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/squashportage/squashportage/boot/initramfs"
	"github.com/squashportage/squashportage/boot/kmod"
)

// Guest is an initramfs for a measuring tool (testdata/modcost,
// testdata/readcost): a Go package of ours as /init and some of k's
// modules, which that /init loads itself.
type Guest struct {
	Kernel Kernel
	// Package is the /init's Go package, e.g. "./testdata/readcost/guest",
	// built statically from the current directory (the module's root).
	Package string
	// Modules are loaded, with their dependencies, in the order of the
	// list file /List names ("/" + List), one path a line.
	Modules []string
	List    string
	// Edit, if set, may change each module file (decompressed) on its way
	// in; name is the file's base name.
	Edit func(name string, b []byte) ([]byte, error)
}

// Write builds the guest's /init in dir and writes the initramfs to path;
// it returns the module files in load order.
func (g Guest) Write(path, dir string) ([]string, error) {
	init := filepath.Join(dir, "guest-init")
	build := exec.Command("go", "build", "-o", init, g.Package)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %v\n%s", g.Package, err, out)
	}
	l, err := kmod.NewLoader(g.Kernel.Modules, nil)
	if err != nil {
		return nil, err
	}
	files, err := l.Dep.Order(g.Modules)
	if err != nil {
		return nil, err
	}
	a := initramfs.NewArchive()
	b, err := os.ReadFile(init)
	if err != nil {
		return nil, err
	}
	a.File("init", 0o755, b)
	for _, d := range []string{"dev", "proc", "sys"} {
		a.Dir(d, 0o755)
	}
	a.CharDev("dev/console", 0o600, 5, 1)
	var list []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(g.Kernel.Modules, f))
		if err != nil {
			return nil, err
		}
		// A kernel that ships .ko.xz or .ko.zst: stored decompressed, as
		// the project's initramfs does.
		plain, b, err := kmod.Uncompressed(f, b)
		if err != nil {
			return nil, err
		}
		if g.Edit != nil {
			if b, err = g.Edit(filepath.Base(plain), b); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
		p := "m/" + filepath.Base(plain)
		a.File(p, 0o644, b)
		list = append(list, "/"+p)
	}
	a.File(g.List, 0o644, []byte(strings.Join(list, "\n")+"\n"))
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		return nil, err
	}
	return files, os.WriteFile(path, buf.Bytes(), 0o644)
}

// CachedKernel is DebianKernel in CacheDir, telling on stderr what it
// fetches the first time.
func CachedKernel() (Kernel, error) {
	cache, err := CacheDir()
	if err != nil {
		return Kernel{}, err
	}
	return DebianKernel(cache, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
}
