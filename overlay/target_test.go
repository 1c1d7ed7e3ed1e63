package overlay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveTarget(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, d := range []string{"repos/gentoo", "repos/guru", "usr"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// /usr/portage -> ../repos/gentoo, as on an old layout.
	if err := os.Symlink("../repos/gentoo", filepath.Join(dir, "usr/portage")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("repos/guru", filepath.Join(dir, "guru-link")); err != nil {
		t.Fatal(err)
	}
	gentoo, guru := filepath.Join(dir, "repos/gentoo"), filepath.Join(dir, "guru-link")
	// A record made from the symlinked path (before mount resolved it).
	for _, target := range []string{gentoo, guru} {
		st := &State{Target: target, Image: "/i.sqfs", Spec: Spec{Image: "/i.sqfs", Target: target}}
		if err := st.Save(state); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(filepath.Join(dir, "repos"))
	tests := []struct{ arg, want string }{
		{gentoo, gentoo},
		{gentoo + "/", gentoo},
		{"gentoo", gentoo},
		{"./gentoo/../gentoo", gentoo},
		{filepath.Join(dir, "usr/portage"), gentoo},
		{"../usr/portage", gentoo},
		{"guru", guru}, // the real path of a record kept under the link
		{guru, guru},   // the link itself, as recorded
		{"nonesuch", filepath.Join(dir, "repos/nonesuch")},
	}
	for _, tt := range tests {
		got, err := ResolveTarget(state, tt.arg)
		if err != nil || got != tt.want {
			t.Errorf("ResolveTarget(%q) = %q, %v; want %q", tt.arg, got, err, tt.want)
		}
	}
}

func TestResolveSpec(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "repos/gentoo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "repos/gentoo"), filepath.Join(dir, "portage")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "repos/gentoo/up")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ spec, want, err string }{
		{"/i.sqfs:" + dir + "/portage:comp=xz", "/i.sqfs:" + dir + "/repos/gentoo:comp=xz", ""},
		{"/i.sqfs:" + dir + "/repos/gentoo", "/i.sqfs:" + dir + "/repos/gentoo", ""},
		{"/i.sqfs:" + dir + "/missing", "/i.sqfs:" + dir + "/missing", ""},
		// The image turns out to lie inside the resolved target.
		{dir + "/x.sqfs:" + dir + "/repos/gentoo/up", "", "lies inside target"},
	} {
		sp, err := ParseSpec(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ResolveSpec(sp)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ResolveSpec(%s): %v, want %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ResolveSpec(%s) = %s, %v; want %s", tt.spec, got, err, tt.want)
		}
	}
}

func TestResolveSpecUnder(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"var/db/repos/gentoo", "usr/src/linux-6.1"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, dest := range map[string]string{
		"usr/portage":   "/var/db/repos/gentoo", // absolute: means root's /var
		"usr/src/linux": "linux-6.1",
		"old":           "usr/portage", // a link to a link
		"up":            "../../..",    // .. stops at root
		"loop1":         "loop2",
		"loop2":         "loop1",
	} {
		if err := os.Symlink(dest, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ target, want string }{
		{"/usr/portage", "/var/db/repos/gentoo"},
		{"/old", "/var/db/repos/gentoo"},
		{"/usr/src/linux", "/usr/src/linux-6.1"},
		{"/up/var/db/repos/gentoo", "/var/db/repos/gentoo"},
		{"/var/db/repos/gentoo", "/var/db/repos/gentoo"},
		{"/var/db/repos/missing", "/var/db/repos/missing"}, // left for Mount to report
		{"/loop1", "/loop1"},
	} {
		sp, err := ParseSpec("/i.sqfs:" + tt.target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ResolveSpecUnder(root, sp)
		if err != nil || got.Target != tt.want {
			t.Errorf("ResolveSpecUnder(%s) = %s, %v; want %s", tt.target, got.Target, err, tt.want)
		}
	}
	if _, err := evalSymlinksUnder(root, "/loop1"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("a symlink loop: %v", err)
	}
}
