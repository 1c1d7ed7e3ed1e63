package xattr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("v"), 1000) // over the first buffers
	want := map[string][]byte{"user.b": []byte("2"), "user.c": nil, "user.a": []byte("1"), "trusted.x": big}
	for k, v := range want {
		if err := unix.Lsetxattr(p, k, v, 0); err != nil {
			t.Fatalf("set %s: %v (tmpfs with xattrs needed)", k, err)
		}
	}
	r := Reader{buf: make([]byte, 8)} // too small: the ERANGE path
	got, err := r.All(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("All: %d attributes, want %d", len(got), len(want))
	}
	for i, a := range got {
		if i > 0 && got[i-1].Name >= a.Name {
			t.Errorf("not sorted at %s", a.Name)
		}
		if !bytes.Equal(want[a.Name], a.Value) {
			t.Errorf("%s = %q", a.Name, a.Value)
		}
	}
	user, err := r.All(p, func(n string) bool { return n == "trusted.x" || strings.HasPrefix(n, "user.b") })
	if err != nil || len(user) != 2 || user[0].Name != "trusted.x" || user[1].Name != "user.b" {
		t.Errorf("All with keep: %v, %v", user, err)
	}
	if _, err := Get(p, "user.none"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("Get of a missing attribute: %v", err)
	}
	if _, err := r.Names(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Names of a missing path: %v", err)
	}
}
