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
