package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRotateDropped rotates a new image in over full generations: each
// moves up one name, and the one that falls off the end is handed back
// under a second name (read there, then removed by removeDropped) instead
// of being freed by a rename; a leftover of that name from a rotation
// that died is replaced.
func TestRotateDropped(t *testing.T) {
	for _, tc := range []struct {
		keep    int
		want    []string // contents of IMAGE, IMAGE.old, IMAGE.old.2 afterwards
		dropped string   // the generation handed back, "" for none
	}{
		{keep: 1, want: []string{"new"}},
		{keep: 2, want: []string{"new", "g0"}, dropped: "g1"},
		{keep: 3, want: []string{"new", "g0", "g1"}, dropped: "g2"},
	} {
		dir := t.TempDir()
		image := filepath.Join(dir, "gentoo.sqfs")
		files := map[string]string{image: "g0", image + ".dropped": "leftover", image + ".new": "new"}
		for k := 1; k < tc.keep; k++ {
			files[oldName(image, k)] = fmt.Sprintf("g%d", k)
		}
		for name, content := range files {
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dropped, err := rotate(image, image+".new", tc.keep)
		if err != nil {
			t.Fatalf("keep=%d: %v", tc.keep, err)
		}
		for i, want := range tc.want {
			name := image
			if i > 0 {
				name = oldName(image, i)
			}
			if b, err := os.ReadFile(name); err != nil || string(b) != want {
				t.Errorf("keep=%d: %s holds %q (%v), want %q", tc.keep, name, b, err, want)
			}
		}
		if _, err := os.Stat(oldName(image, tc.keep)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("keep=%d: a generation too many: %s (%v)", tc.keep, oldName(image, tc.keep), err)
		}
		if tc.dropped == "" {
			if dropped != "" {
				t.Errorf("keep=%d: dropped %q, want none", tc.keep, dropped)
			}
			continue
		}
		if b, err := os.ReadFile(dropped); err != nil || string(b) != tc.dropped {
			t.Errorf("keep=%d: dropped %q holds %q (%v), want %q", tc.keep, dropped, b, err, tc.dropped)
		}
		removeDropped(dropped)
		if _, err := os.Stat(dropped); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("keep=%d: %s not removed (%v)", tc.keep, dropped, err)
		}
	}
}
