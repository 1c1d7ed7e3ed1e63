package overlay

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// PortageDirs are where Portage downloads sources and stores binary
// packages, and where that was learned ("portageq", a make.conf path, or
// "defaults").
type PortageDirs struct {
	DistDir, PkgDir string
	Source          string
}

// Portage's defaults since 2019 (they lived in /usr/portage before).
const (
	defaultDistDir = "/var/cache/distfiles"
	defaultPkgDir  = "/var/cache/binpkgs"
)

// ReadPortageDirs asks portageq when it is installed (it knows profiles
// and the environment), else reads root/etc/portage/make.conf, else
// assumes Portage's defaults. portageq is only asked about the running
// system (root "" or "/").
func ReadPortageDirs(root string) PortageDirs {
	if root == "" || root == "/" {
		if d, ok := askPortageq(); ok {
			return d
		}
	}
	d := PortageDirs{DistDir: defaultDistDir, PkgDir: defaultPkgDir, Source: "defaults"}
	conf := filepath.Join(root, "/etc/portage/make.conf")
	vars, files := readMakeConf(conf)
	if v := vars["DISTDIR"]; v != "" {
		d.DistDir = v
	}
	if v := vars["PKGDIR"]; v != "" {
		d.PkgDir = v
	}
	if len(files) > 0 && (vars["DISTDIR"] != "" || vars["PKGDIR"] != "") {
		d.Source = strings.Join(files, ", ")
	}
	return d
}

func askPortageq() (PortageDirs, bool) {
	pq, err := exec.LookPath("portageq")
	if err != nil {
		return PortageDirs{}, false
	}
	// portageq loads all of Portage: slow, but never minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pq, "envvar", "DISTDIR", "PKGDIR").Output()
	if err != nil {
		return PortageDirs{}, false
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return PortageDirs{}, false
	}
	return PortageDirs{DistDir: strings.TrimSpace(lines[0]), PkgDir: strings.TrimSpace(lines[1]), Source: "portageq"}, true
}

// readMakeConf reads the plain assignments of make.conf, which Portage
// also allows to be a directory of files read in name order. Values
// referring to other variables are expanded from what was read so far.
func readMakeConf(path string) (map[string]string, []string) {
	files := []string{path}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		ents, _ := os.ReadDir(path)
		files = files[:0]
		for _, e := range ents {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
	}
	vars := map[string]string{}
	var read []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		read = append(read, f)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasPrefix(k, "#") || strings.ContainsAny(k, " \t") {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			} else if i := strings.Index(v, " #"); i >= 0 {
				v = strings.TrimSpace(v[:i])
			}
			vars[k] = os.Expand(v, func(n string) string { return vars[n] })
		}
		fh.Close()
	}
	return vars, read
}

// PortageWarnings says which of DISTDIR and PKGDIR lie inside a managed
// overlay target: downloads and binary packages would fill the upper (RAM
// for upper=tmpfs) and be persisted into the image.
func PortageWarnings(states []*State, d PortageDirs) []string {
	var out []string
	for _, v := range []struct{ name, dir, def string }{
		{"DISTDIR", d.DistDir, defaultDistDir},
		{"PKGDIR", d.PkgDir, defaultPkgDir},
	} {
		if v.dir == "" {
			continue
		}
		for _, st := range states {
			if !within(filepath.Clean(v.dir), st.Target) {
				continue
			}
			where := "writes go to its upper and into the next image"
			if st.UpperKind == KindNone {
				where = "it is read-only there"
			} else if st.UpperKind == KindTmpfs {
				where = "writes fill RAM (its tmpfs upper) and the next image"
			}
			hint := fmt.Sprintf("e.g. %s=%s in /etc/portage/make.conf", v.name, v.def)
			if within(v.def, st.Target) {
				hint = fmt.Sprintf("set %s in /etc/portage/make.conf to a directory outside %s", v.name, st.Target)
			}
			out = append(out, fmt.Sprintf("warning: %s=%s (from %s) is inside %s, which squashportage manages: %s; move it out, %s",
				v.name, v.dir, d.Source, st.Target, where, hint))
		}
	}
	return out
}
