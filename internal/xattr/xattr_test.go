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

// TestAllAt reads through a directory descriptor, with listxattrat where
// the kernel has it and by path where not, and never follows a symlink.
func TestAllAt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"user.b", "2"}, {"user.a", "1"}} {
		if err := unix.Lsetxattr(p, kv[0], []byte(kv[1]), 0); err != nil {
			t.Fatalf("set %s: %v", kv[0], err)
		}
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	for _, noAt := range []bool{false, true} {
		r := Reader{buf: make([]byte, 4), noAt: noAt} // too small: ERANGE
		got, err := r.AllAt(dfd, "f", p, nil)
		if err != nil || len(got) != 2 || got[0].Name != "user.a" || string(got[1].Value) != "2" {
			t.Errorf("noAt=%v: AllAt = %v, %v", noAt, got, err)
		}
		if got, err := r.AllAt(dfd, "l", filepath.Join(dir, "l"), nil); err != nil || len(got) != 0 {
			t.Errorf("noAt=%v: AllAt of the symlink = %v, %v; want its own (none)", noAt, got, err)
		}
		if _, err := r.AllAt(dfd, "missing", filepath.Join(dir, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("noAt=%v: AllAt of a missing name: %v", noAt, err)
		}
	}
}
