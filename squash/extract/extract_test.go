package extract

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"..a", true},
		{"a..", true},
		{"...", true},
		{" ", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"/", false},
		{"/etc", false},
		{"a\x00b", false},
	} {
		err := CheckName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestParsePaths(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    [][]string // nil: everything
		wantErr bool
	}{
		{in: nil, want: nil},
		{in: []string{"/"}, want: nil},
		{in: []string{"a", "/b/c/", "./d"}, want: [][]string{{"a"}, {"b", "c"}, {"d"}}},
		{in: []string{"a/*.txt"}, want: [][]string{{"a", "*.txt"}}},
		{in: []string{"a/../../etc"}, wantErr: true},
		{in: []string{"a/["}, wantErr: true},
		{in: []string{"a\x00"}, wantErr: true},
	} {
		pats, err := parsePaths(tc.in, &Selection{})
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePaths(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		var got [][]string
		for _, p := range pats {
			var comps []string
			for _, c := range p.comps {
				comps = append(comps, c.text)
			}
			got = append(got, comps)
		}
		if strings.Join(flatten(got), "|") != strings.Join(flatten(tc.want), "|") || (got == nil) != (tc.want == nil) {
			t.Errorf("parsePaths(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func flatten(x [][]string) []string {
	var out []string
	for _, c := range x {
		out = append(out, strings.Join(c, "/"))
	}
	return out
}

// outsideDir is a directory the hostile cases try to write into; it must
// stay empty.
func outsideDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(d)
		if len(ents) != 0 {
			t.Errorf("something was written outside the destination: %v", ents)
		}
	})
	return d
}

func TestHostileListings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(m *memSource, outside string)
		want  string // error substring
	}{
		{"dotdot", func(m *memSource, _ string) { m.add(1, "..", m.file(2, "x")) }, "refers to a directory"},
		{"dot", func(m *memSource, _ string) { m.add(1, ".", m.dir(2, 0o755)) }, "refers to a directory"},
		{"slash", func(m *memSource, _ string) { m.add(1, "../../x", m.file(2, "x")) }, "contains '/'"},
		{"absolute", func(m *memSource, _ string) { m.add(1, "/tmp/x", m.file(2, "x")) }, "contains '/'"},
		{"empty", func(m *memSource, _ string) { m.add(1, "", m.file(2, "x")) }, "empty entry name"},
		{"nul", func(m *memSource, _ string) { m.add(1, "a\x00", m.file(2, "x")) }, "NUL"},
		{"symlink then dir of same name", func(m *memSource, out string) {
			m.add(1, "a", m.symlink(2, out))
			m.add(1, "a", m.dir(3, 0o755))
			m.add(3, "passwd", m.file(4, "owned"))
		}, "twice"},
		{"nested dotdot", func(m *memSource, _ string) {
			m.add(1, "d", m.dir(2, 0o755))
			m.add(2, "..", m.dir(3, 0o755))
			m.add(3, "x", m.file(4, "owned"))
		}, "refers to a directory"},
		{"directory loop", func(m *memSource, _ string) {
			m.add(1, "d", m.dir(2, 0o755))
			m.add(2, "up", m.rootIno)
		}, "loop"},
		{"symlink target with NUL", func(m *memSource, _ string) { m.add(1, "l", m.symlink(2, "a\x00b")) }, "bad target"},
		{"unknown type", func(m *memSource, _ string) {
			m.add(1, "q", &squash.Inode{Type: 99, Number: 2, XattrIndex: squash.NoXattr})
		}, "unknown inode type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := outsideDir(t)
			m := newMem()
			tc.build(m, out)
			dest := filepath.Join(t.TempDir(), "dest")
			err := extract(m, dest, Options{Force: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("extract: %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// A symlink the extraction itself made is never followed: the image has
// link "a" -> outside, and a hard-link group whose first member is in a
// directory; nothing ends up outside.
func TestSymlinkFromImageNotFollowed(t *testing.T) {
	out := outsideDir(t)
	m := newMem()
	m.add(1, "a", m.symlink(2, out))
	m.add(1, "b", m.dir(3, 0o755))
	f := m.file(4, "data")
	m.add(3, "f", f)
	m.add(1, "c", f) // hard link
	for _, workers := range []int{0, 3} {
		dest := filepath.Join(t.TempDir(), "dest")
		if err := extract(m, dest, Options{Workers: workers}); err != nil {
			t.Fatal(err)
		}
		checkSymlinkAndLink(t, dest, out)
	}
}

func checkSymlinkAndLink(t *testing.T, dest, out string) {
	t.Helper()
	if tgt, err := os.Readlink(filepath.Join(dest, "a")); err != nil || tgt != out {
		t.Errorf("symlink a: %q, %v", tgt, err)
	}
	checkLinked(t, dest, 2, "b/f", "c")
}

// checkLinked makes sure the names below dest are one inode with nlink
// links.
func checkLinked(t *testing.T, dest string, nlink uint64, names ...string) {
	t.Helper()
	var first unix.Stat_t
	for i, name := range names {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, name), &st); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = st
		}
		if st.Ino != first.Ino || uint64(st.Nlink) != nlink {
			t.Errorf("%s: inode %d with %d links; want inode %d (%s) with %d", name, st.Ino, st.Nlink, first.Ino, names[0], nlink)
		}
	}
}

// A symlink already in the destination where the image has a directory is
// refused without Force and replaced with it, never followed.
func TestPreexistingSymlinkInDest(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(map[bool]string{false: "noforce", true: "force"}[force], func(t *testing.T) {
			out := outsideDir(t)
			m := newMem()
			m.add(1, "sub", m.dir(2, 0o755))
			m.add(2, "file", m.file(3, "hello"))
			dest := t.TempDir()
			if err := os.Symlink(out, filepath.Join(dest, "sub")); err != nil {
				t.Fatal(err)
			}
			err := extract(m, dest, Options{Force: force, Workers: 3})
			if !force {
				if err == nil || !strings.Contains(err.Error(), "not a directory") {
					t.Fatalf("extract without force: %v, want 'not a directory' error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(dest, "sub"))
			if err != nil || !fi.IsDir() {
				t.Fatalf("sub is not a directory: %v %v", fi, err)
			}
			if b, err := os.ReadFile(filepath.Join(dest, "sub/file")); err != nil || string(b) != "hello" {
				t.Errorf("sub/file = %q, %v", b, err)
			}
		})
	}
}

func TestExistingEntries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing func(t *testing.T, p string)
		force    bool
		wantErr  bool
	}{
		{"file noforce", func(t *testing.T, p string) { mustWrite(t, p, "old") }, false, true},
		{"file force", func(t *testing.T, p string) { mustWrite(t, p, "old") }, true, false},
		{"symlink to outside force", func(t *testing.T, p string) {
			if err := os.Symlink(filepath.Join(outsideDir(t), "victim"), p); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"symlink to outside noforce", func(t *testing.T, p string) {
			if err := os.Symlink(filepath.Join(outsideDir(t), "victim"), p); err != nil {
				t.Fatal(err)
			}
		}, false, true},
		{"empty dir force", func(t *testing.T, p string) { mustMkdir(t, p) }, true, false},
		{"full dir force", func(t *testing.T, p string) { mustMkdir(t, p); mustWrite(t, p+"/x", "") }, true, true},
	} {
		for _, workers := range []int{0, 3} {
			t.Run(fmt.Sprintf("%s workers=%d", tc.name, workers), func(t *testing.T) {
				m := newMem()
				m.add(1, "f", m.file(2, "new"))
				dest := t.TempDir()
				tc.existing(t, filepath.Join(dest, "f"))
				err := extract(m, dest, Options{Force: tc.force, Workers: workers})
				if (err != nil) != tc.wantErr {
					t.Fatalf("extract: %v, want error %v", err, tc.wantErr)
				}
				if err == nil {
					if b, err := os.ReadFile(filepath.Join(dest, "f")); err != nil || string(b) != "new" {
						t.Errorf("f = %q, %v", b, err)
					}
				}
			})
		}
	}
}

func TestDestIsSymlink(t *testing.T) {
	out := outsideDir(t)
	dest := filepath.Join(t.TempDir(), "dest")
	if err := os.Symlink(out, dest); err != nil {
		t.Fatal(err)
	}
	m := newMem()
	m.add(1, "f", m.file(2, "x"))
	if err := extract(m, dest, Options{Force: true}); err == nil {
		t.Fatal("extract into a symlinked destination succeeded")
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// subsetImage is a small listing for path selection tests.
func subsetImage() *memSource {
	m := newMem()
	m.add(1, "a", m.dir(2, 0o750))
	m.add(2, "x.txt", m.file(3, "x"))
	m.add(2, "y.dat", m.file(4, "y"))
	m.add(2, "deep", m.dir(5, 0o755))
	m.add(5, "z", m.file(6, "z"))
	m.add(1, "b", m.file(7, "b"))
	return m
}

func TestSubsetExtraction(t *testing.T) {
	all := []string{"a", "a/deep", "a/deep/z", "a/x.txt", "a/y.dat", "b"}
	for _, tc := range []struct {
		name    string
		paths   []string
		sel     Selection // Paths: paths
		want    []string
		wantErr bool
	}{
		{paths: nil, want: all},
		{paths: []string{"b"}, want: []string{"b"}},
		{paths: []string{"/a/deep"}, want: []string{"a", "a/deep", "a/deep/z"}},
		{paths: []string{"a/*.txt", "b"}, want: []string{"a", "a/x.txt", "b"}},
		{paths: []string{"a/deep/z"}, want: []string{"a", "a/deep", "a/deep/z"}},
		{paths: []string{"a", "a/deep", "a/deep/z"}, want: all[:5]},
		{paths: []string{"a/deep/z", "a/deep/nope"}, wantErr: true},
		{paths: []string{"nope"}, wantErr: true},
		{paths: []string{"b/c"}, wantErr: true},
		{name: "exclude", sel: Selection{Excludes: []string{"a/deep", "b"}}, want: []string{"a", "a/x.txt", "a/y.dat"}},
		{name: "exclude pattern", sel: Selection{Excludes: []string{"a/*.*"}}, want: []string{"a", "a/deep", "a/deep/z", "b"}},
		{name: "exclude within paths", paths: []string{"a"}, sel: Selection{Excludes: []string{"a/deep/z", "nope"}},
			want: []string{"a", "a/deep", "a/x.txt", "a/y.dat"}},
		{name: "exclude the root", sel: Selection{Excludes: []string{"/"}}, wantErr: true},
		{name: "literal", paths: []string{"a/*.txt"}, sel: Selection{Literal: true}, wantErr: true},
		{name: "literal name", paths: []string{"a/x.txt"}, sel: Selection{Literal: true}, want: []string{"a", "a/x.txt"}},
		// Unanchored, as regexec: "a" is in "dat" too.
		{name: "regex", paths: []string{"^a$/t$"}, sel: Selection{Regex: true}, want: []string{"a", "a/x.txt", "a/y.dat"}},
		{name: "regex exclude", sel: Selection{Regex: true, Excludes: []string{"a/e"}}, want: []string{"a", "a/x.txt", "a/y.dat", "b"}},
		{name: "bad regex", paths: []string{"a/("}, sel: Selection{Regex: true}, wantErr: true},
		{name: "depth 0", sel: Selection{LimitDepth: true}, want: nil},
		{name: "depth 1", sel: Selection{LimitDepth: true, MaxDepth: 1}, want: []string{"a", "b"}},
		{name: "depth 2", sel: Selection{LimitDepth: true, MaxDepth: 2}, want: []string{"a", "a/deep", "a/x.txt", "a/y.dat", "b"}},
		{name: "path below the depth", paths: []string{"a/deep/z"}, sel: Selection{LimitDepth: true, MaxDepth: 2}, want: []string{"a", "a/deep"}},
	} {
		name := tc.name
		if name == "" {
			name = strings.Join(tc.paths, ",")
		}
		t.Run(name, func(t *testing.T) {
			dest := t.TempDir()
			var infos []string
			sel := tc.sel
			sel.Paths = tc.paths
			err := extract(subsetImage(), dest, Options{Selection: sel, Info: func(p string) { infos = append(infos, p) }})
			if (err != nil) != tc.wantErr {
				t.Fatalf("extract: %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var got []string
			filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				if p != dest {
					got = append(got, strings.TrimPrefix(p, dest+"/"))
				}
				return err
			})
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("extracted %q, want %q", got, tc.want)
			}
			if len(infos) != len(tc.want)+1 {
				t.Errorf("Info called for %q", infos)
			}
			if fi, err := os.Stat(filepath.Join(dest, "a")); err == nil && fi.Mode().Perm() != 0o750 {
				t.Errorf("parent a has mode %v, want its image mode 0750", fi.Mode())
			}
		})
	}
}

func TestProgress(t *testing.T) {
	var last, total int64
	calls := 0
	err := extract(subsetImage(), t.TempDir(), Options{Progress: func(d, tot int64) {
		if d < last {
			t.Errorf("progress went back: %d after %d", d, last)
		}
		last, total = d, tot
		calls++
	}})
	if err != nil {
		t.Fatal(err)
	}
	if last != total || total != 7+4 {
		t.Errorf("progress ended at %d/%d, want 11/11", last, total)
	}
}

// The writer reproduces a real tree with every kind of entry and metadata
// when fed from that tree, sequentially and with workers.
func TestExtractAllCasesFromTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for devices and ownership")
	}
	src := filepath.Join(t.TempDir(), "src")
	mustMkdir(t, src)
	testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	// The image test covers several workers; this one the sequential path.
	for _, workers := range []int{0} {
		dest := filepath.Join(t.TempDir(), "dest")
		var warns []error
		err := extract(newOSSource(src), dest, Options{Workers: workers, Warn: func(err error) { warns = append(warns, err) }})
		if err != nil {
			t.Fatalf("workers=%d: %v", workers, err)
		}
		if len(warns) > 0 {
			t.Errorf("workers=%d: warnings: %v", workers, warns)
		}
		testtree.AssertEqual(t, src, dest, testtree.CompareOptions{})
		checkSparse(t, dest)
	}
}

// checkSparse makes sure an all-zero file was extracted as a hole.
func checkSparse(t *testing.T, dest string) {
	t.Helper()
	var st unix.Stat_t
	p := filepath.Join(dest, "sparse/hole-all")
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size == 0 || st.Blocks*512 >= st.Size/2 {
		t.Errorf("%s: size %d but %d bytes allocated, want a hole", p, st.Size, st.Blocks*512)
	}
}

// Ownership is exact although chown is skipped for entries that are
// created with the owner the image asks for: a set-group-ID destination
// gives its group to what is made in it, and a directory that was there
// keeps its owner unless chowned.
func TestOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for ownership")
	}
	owned := func(ino *squash.Inode, uid, gid uint32) *squash.Inode {
		ino.UID, ino.GID = uid, gid
		return ino
	}
	for _, workers := range []int{0, 3} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			m := newMem()
			m.rootIno.UID, m.rootIno.GID = 0, 0
			m.add(1, "f", owned(m.file(2, "root's"), 0, 0))
			m.add(1, "g", owned(m.file(3, "someone's"), 1234, 5678))
			m.add(1, "s", owned(m.symlink(4, "f"), 0, 0))
			m.add(1, "d", owned(m.dir(5, 0o755), 0, 0))
			m.add(5, "h", owned(m.file(6, "in d"), 0, 0))
			m.add(1, "e", owned(m.dir(7, 0o755), 0, 0))
			m.add(7, "i", owned(m.file(8, "in e"), 0, 0))
			dest := t.TempDir()
			if err := os.Chown(dest, 0, 4321); err != nil {
				t.Fatal(err)
			}
			if err := unix.Chmod(dest, 0o2755); err != nil {
				t.Fatal(err)
			}
			// e is there already, someone else's.
			mustMkdir(t, filepath.Join(dest, "e"))
			if err := os.Chown(filepath.Join(dest, "e"), 1111, 2222); err != nil {
				t.Fatal(err)
			}
			if err := extract(m, dest, Options{Workers: workers}); err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string][2]uint32{
				".": {0, 0}, "f": {0, 0}, "g": {1234, 5678}, "s": {0, 0},
				"d": {0, 0}, "d/h": {0, 0}, "e": {0, 0}, "e/i": {0, 0},
			} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(dest, name), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != want[0] || st.Gid != want[1] {
					t.Errorf("%s owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
				}
			}
		})
	}
}
