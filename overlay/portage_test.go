package overlay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPortageDirs(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under root/etc/portage/
		want  PortageDirs       // Source "" means root/etc/portage/make.conf
	}{
		{"no make.conf", nil, PortageDirs{DistDir: defaultDistDir, PkgDir: defaultPkgDir, Source: "defaults"}},
		{"plain", map[string]string{"make.conf": "# c\nCFLAGS=\"-O2\"\nDISTDIR=\"/srv/distfiles\"\nPKGDIR='/srv/pkg'\n"},
			PortageDirs{DistDir: "/srv/distfiles", PkgDir: "/srv/pkg"}},
		{"expansion and export", map[string]string{"make.conf": "BASE=/var/db/repos/gentoo\nexport DISTDIR=${BASE}/distfiles # old layout\n"},
			PortageDirs{DistDir: "/var/db/repos/gentoo/distfiles", PkgDir: defaultPkgDir}},
		{"neither set", map[string]string{"make.conf": "USE=\"x\"\n"}, PortageDirs{DistDir: defaultDistDir, PkgDir: defaultPkgDir, Source: "defaults"}},
		{"directory", map[string]string{"make.conf/10-a": "DISTDIR=/a\n", "make.conf/20-b": "DISTDIR=/b\nPKGDIR=/p\n"},
			PortageDirs{DistDir: "/b", PkgDir: "/p", Source: "ROOT/etc/portage/make.conf/10-a, ROOT/etc/portage/make.conf/20-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, "etc/portage", name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, p, content)
			}
			want := tt.want
			if want.Source == "" {
				want.Source = root + "/etc/portage/make.conf"
			}
			want.Source = strings.ReplaceAll(want.Source, "ROOT", root)
			if got := ReadPortageDirs(root); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestPortageWarnings(t *testing.T) {
	states := []*State{
		{Target: "/var/db/repos/gentoo", UpperKind: KindTmpfs},
		{Target: "/var/cache", UpperKind: KindDir},
	}
	got := PortageWarnings(states[:1], PortageDirs{DistDir: "/var/cache/distfiles", PkgDir: "/var/cache/binpkgs", Source: "defaults"})
	if len(got) != 0 {
		t.Errorf("defaults: %q", got)
	}
	got = PortageWarnings(states[:1], PortageDirs{DistDir: "/var/db/repos/gentoo/distfiles", PkgDir: "/var/db/repos/gentoo/packages", Source: "portageq"})
	if len(got) != 2 || !strings.Contains(got[0], "DISTDIR=/var/db/repos/gentoo/distfiles (from portageq) is inside /var/db/repos/gentoo") ||
		!strings.Contains(got[0], "fill RAM") || !strings.Contains(got[0], "e.g. DISTDIR=/var/cache/distfiles") ||
		!strings.Contains(got[1], "PKGDIR=/var/db/repos/gentoo/packages") {
		t.Errorf("inside the tree: %q", got)
	}
	got = PortageWarnings(states[1:], PortageDirs{DistDir: "/var/cache/distfiles", PkgDir: "/srv/pkg", Source: "defaults"})
	if len(got) != 1 || !strings.Contains(got[0], "to a directory outside /var/cache") {
		t.Errorf("default inside a target: %q", got)
	}
}
