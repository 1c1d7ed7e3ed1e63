// Package layering holds the test that keeps the module's packages in
// their layers: init → tools → overlay → squash, with boot beside them and
// internal/ helpers below.
package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/squashportage/squashportage/"

// rules: a package under dir (the first path element, or a deeper prefix)
// may not import packages under any of forbidden. "tools/*" forbids other
// tools: a tool's command line imports no other tool.
var rules = []struct {
	dir       string
	forbidden []string
}{
	{"squash", []string{"overlay", "tools", "boot", "init", "testdata"}},
	{"overlay", []string{"tools", "boot", "init", "testdata"}},
	{"fleet", []string{"overlay", "tools", "boot", "init", "testdata"}},
	{"tools", []string{"tools/*", "boot", "init", "testdata"}},
	{"boot", []string{"overlay", "tools", "init", "testdata"}},
	{"internal", []string{"overlay", "tools", "init", "testdata"}},
}

func TestLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		pkg := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip := strings.Trim(imp.Path.Value, `"`)
			dep, ok := strings.CutPrefix(ip, module)
			if !ok {
				continue
			}
			checked++
			if why := forbidden(pkg, dep); why != "" {
				t.Errorf("%s imports %s: %s", rel, dep, why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d imports of the module checked: is the walk rooted right (%s)?", checked, root)
	}
}

// forbidden says why pkg may not import dep, "" if it may.
func forbidden(pkg, dep string) string {
	top := strings.SplitN(pkg, "/", 2)[0]
	for _, r := range rules {
		if r.dir != top {
			continue
		}
		for _, f := range r.forbidden {
			if f == "tools/*" {
				if strings.HasPrefix(dep, "tools/") && !within(dep, pkg) {
					return "a tool imports no other tool: move what they share below tools/"
				}
				continue
			}
			if within(dep, f) {
				return r.dir + " may not import " + f
			}
		}
	}
	return ""
}

func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func TestForbidden(t *testing.T) {
	for _, tc := range []struct {
		pkg, dep string
		ok       bool
	}{
		{"squash/sourcetree", "squash", true},
		{"squash", "overlay", false},
		{"squash/codec", "internal/xattr", true},
		{"overlay/fold", "squash/codec", true},
		{"overlay", "tools/persist", false},
		{"tools/info", "tools/unsquashfs", false},
		{"tools/unsquashfs", "squash/extract", true},
		{"boot/pid1", "overlay", false},
		{"init", "tools/persist", true},
		{"internal/testtree", "internal/treecmp", true},
		{"internal/testtree", "overlay/fold", false},
		{"fleet", "squash/blockindex", true},
		{"fleet", "overlay", false},
		{"tools/fetch", "fleet", true},
	} {
		if got := forbidden(tc.pkg, tc.dep) == ""; got != tc.ok {
			t.Errorf("%s → %s allowed = %v, want %v", tc.pkg, tc.dep, got, tc.ok)
		}
	}
}
