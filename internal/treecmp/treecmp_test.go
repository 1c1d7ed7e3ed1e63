package treecmp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// build writes the same small tree into dir: a file, a large file, a
// hard-link pair, a symlink, a directory, a fifo.
func build(t *testing.T, dir string) {
	t.Helper()
	mtime := time.Unix(1_700_000_000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "cat/pkg"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "cat/pkg/pkg-1.ebuild"), []byte("EAPI=8\n"), 0o644))
	big := make([]byte, 3*chunk+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	must(os.WriteFile(filepath.Join(dir, "big"), big, 0o644))
	must(os.WriteFile(filepath.Join(dir, "a"), []byte("linked"), 0o600))
	must(os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	must(os.WriteFile(filepath.Join(dir, "c"), []byte("linked"), 0o600))
	must(os.Symlink("cat/pkg", filepath.Join(dir, "link")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	for _, p := range []string{"cat/pkg/pkg-1.ebuild", "big", "a", "c", "fifo", "cat/pkg", "cat", "."} {
		must(os.Chtimes(filepath.Join(dir, p), mtime, mtime))
	}
	must(unix.Lutimes(filepath.Join(dir, "link"), []unix.Timeval{{Sec: mtime.Unix()}, {Sec: mtime.Unix()}}))
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, b string)
		opts   Options
		want   []string // Diff.Path + " " + Diff.What, in order; nil: equal
		// keepDirTimes: the mutation is about directory mtimes, which the
		// loop otherwise restores after adding and removing entries.
		keepDirTimes bool
	}{
		{name: "identical", mutate: func(*testing.T, string) {}},
		{name: "mode", mutate: func(t *testing.T, b string) {
			chk(t, os.Chmod(filepath.Join(b, "cat/pkg/pkg-1.ebuild"), 0o664))
		}, want: []string{"cat/pkg/pkg-1.ebuild mode"}},
		{name: "owner", mutate: func(t *testing.T, b string) {
			chk(t, os.Lchown(filepath.Join(b, "link"), 250, 250))
		}, want: []string{"link uid", "link gid"}},
		{name: "mtime of root", mutate: func(t *testing.T, b string) {
			chk(t, os.Chtimes(b, time.Unix(5, 0), time.Unix(5, 0)))
		}, want: []string{". mtime"}, keepDirTimes: true},
		{name: "sub-second mtime is ignored", mutate: func(t *testing.T, b string) {
			ts := time.Unix(1_700_000_000, 500_000_000)
			chk(t, os.Chtimes(filepath.Join(b, "big"), ts, ts))
		}},
		{name: "content of equal size, late in a large file", mutate: func(t *testing.T, b string) {
			f, err := os.OpenFile(filepath.Join(b, "big"), os.O_WRONLY, 0)
			chk(t, err)
			_, err = f.WriteAt([]byte{0xff}, 3*chunk+3)
			chk(t, err)
			chk(t, f.Close())
			chk(t, os.Chtimes(filepath.Join(b, "big"), time.Unix(1_700_000_000, 0), time.Unix(1_700_000_000, 0)))
		}, want: []string{"big content differs at offset 786435"}},
		{name: "size", mutate: func(t *testing.T, b string) {
			chk(t, os.Truncate(filepath.Join(b, "c"), 2))
			chk(t, os.Chtimes(filepath.Join(b, "c"), time.Unix(1_700_000_000, 0), time.Unix(1_700_000_000, 0)))
		}, want: []string{"c size"}},
		{name: "symlink target", mutate: func(t *testing.T, b string) {
			chk(t, os.Remove(filepath.Join(b, "link")))
			chk(t, os.Symlink("cat", filepath.Join(b, "link")))
			chk(t, unix.Lutimes(filepath.Join(b, "link"), []unix.Timeval{{Sec: 1_700_000_000}, {Sec: 1_700_000_000}}))
		}, want: []string{"link symlink target"}},
		{name: "type", mutate: func(t *testing.T, b string) {
			chk(t, os.Remove(filepath.Join(b, "fifo")))
			chk(t, os.WriteFile(filepath.Join(b, "fifo"), nil, 0o644))
		}, want: []string{"fifo type"}},
		{name: "entries only on one side", mutate: func(t *testing.T, b string) {
			chk(t, os.WriteFile(filepath.Join(b, "cat/new"), nil, 0o644))
			chk(t, os.RemoveAll(filepath.Join(b, "cat/pkg")))
		}, want: []string{"cat/new only in B", "cat/pkg only in A"}},
		{name: "hard links split", mutate: func(t *testing.T, b string) {
			chk(t, os.Remove(filepath.Join(b, "b")))
			chk(t, os.WriteFile(filepath.Join(b, "b"), []byte("linked"), 0o600))
			chk(t, os.Chtimes(filepath.Join(b, "b"), time.Unix(1_700_000_000, 0), time.Unix(1_700_000_000, 0)))
		}, want: []string{"a hard-link group", "b hard-link group"}},
		{name: "hard links joined", mutate: func(t *testing.T, b string) {
			chk(t, os.Remove(filepath.Join(b, "c")))
			chk(t, os.Link(filepath.Join(b, "a"), filepath.Join(b, "c")))
		}, want: []string{"a hard-link group", "c hard-link group"}},
		{name: "xattr", mutate: func(t *testing.T, b string) {
			chk(t, unix.Lsetxattr(filepath.Join(b, "cat"), "user.test", []byte("v"), 0))
		}, want: []string{"cat xattr user.test"}},
		{name: "xattr outside the compared namespaces", mutate: func(t *testing.T, b string) {
			chk(t, unix.Lsetxattr(filepath.Join(b, "cat"), "user.test", []byte("v"), 0))
		}, opts: Options{Xattr: func(n string) bool { return !strings.HasPrefix(n, "user.") }}},
		{name: "max diffs truncates", mutate: func(t *testing.T, b string) {
			for _, n := range []string{"x", "y", "z"} {
				chk(t, os.WriteFile(filepath.Join(b, n), nil, 0o644))
			}
		}, opts: Options{MaxDiffs: 2}, want: []string{"x only in B", "y only in B", "truncated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
			build(t, a)
			build(t, b)
			tc.mutate(t, b)
			if !tc.keepDirTimes {
				for _, d := range []string{".", "cat", "cat/pkg"} {
					ts := time.Unix(1_700_000_000, 0)
					if err := os.Chtimes(filepath.Join(b, d), ts, ts); err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
				}
			}
			res, err := Compare(a, b, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range res.Diffs {
				got = append(got, d.Path+" "+d.What)
			}
			if res.Truncated {
				got = append(got, "truncated")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("diffs:\n%s\nwant:\n%s\n(full: %v)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), res.Diffs)
			}
			if res.Equal() != (tc.want == nil) {
				t.Errorf("Equal() = %v with %d diffs", res.Equal(), len(res.Diffs))
			}
		})
	}
}

func TestCompareCounts(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	build(t, a)
	build(t, b)
	var last int
	res, err := Compare(a, b, Options{Workers: 1, Progress: func(n int) { last = n }})
	if err != nil {
		t.Fatal(err)
	}
	// . cat cat/pkg cat/pkg/pkg-1.ebuild big a b c link fifo
	if res.Entries != 10 || last != 10 {
		t.Errorf("entries %d, progress %d; want 10", res.Entries, last)
	}
	if want := int64(7 + 3*chunk + 17 + 6 + 6 + 6); res.Bytes != want {
		t.Errorf("bytes %d, want %d", res.Bytes, want)
	}
}

func TestCompareRootErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	chk(t, os.WriteFile(file, nil, 0o644))
	for _, tc := range []struct{ name, a, b string }{
		{"missing", filepath.Join(dir, "nope"), dir},
		{"not a directory", dir, file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compare(tc.a, tc.b, Options{}); err == nil {
				t.Error("no error")
			}
		})
	}
}

func chk(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
