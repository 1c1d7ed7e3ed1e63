package testtree

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBuildAllCasesSelfCompare(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	rep := BuildAllCases(t, dir, AllCasesOptions{})
	t.Logf("built %d entries in %v; xattr namespaces %v, largest value %d, %d keys; skipped %v",
		rep.Entries, time.Since(start), rep.XattrNamespaces, rep.LargeXattrSize, rep.ManyXattrKeys, rep.Skipped)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("BuildAllCases took %v, want well under 2s", d)
	}
	if diffs := Compare(dir, dir); len(diffs) != 0 {
		t.Fatalf("tree differs from itself: %v", diffs)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "modes/f4755"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o4755 {
		t.Errorf("modes/f4755 has mode %o", st.Mode&0o7777)
	}
	if os.Geteuid() == 0 {
		if err := unix.Lstat(filepath.Join(dir, "special/chr-4095-1048575"), &st); err != nil {
			t.Fatal(err)
		}
		if unix.Major(st.Rdev) != 4095 || unix.Minor(st.Rdev) != 1048575 {
			t.Errorf("rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
}

func TestBuildAllCasesDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	BuildAllCases(t, a, AllCasesOptions{Seed: 7})
	BuildAllCases(t, b, AllCasesOptions{Seed: 7})
	AssertEqual(t, a, b, CompareOptions{})
}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
	return dst
}

func TestCompareCopy(t *testing.T) {
	src := t.TempDir()
	BuildAllCases(t, src, AllCasesOptions{})
	dst := copyTree(t, src)
	AssertEqual(t, src, dst, CompareOptions{})
}

// keepDirTime runs fn, then restores the mtime of dir, so that a mutation
// inside it shows up only as itself.
func keepDirTime(t *testing.T, dir string, fn func() error) {
	t.Helper()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dir, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func TestCompareFindsEachChange(t *testing.T) {
	src := t.TempDir()
	BuildAllCases(t, src, AllCasesOptions{})
	dst := copyTree(t, src)
	p := func(rel string) string { return filepath.Join(dst, rel) }
	var want []string
	expect := func(s string) { want = append(want, s) }

	if err := os.Chmod(p("files/text-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(`"files/text-1": mode 0644 != 0600`)

	old := time.Unix(12345, 0)
	if err := os.Chtimes(p("times/file-one"), old, old); err != nil {
		t.Fatal(err)
	}
	expect(`"times/file-one": mtime 1 != 12345`)

	f, err := os.OpenFile(p("files/random-3m"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	var one [1]byte
	g, _ := os.Open(filepath.Join(src, "files/random-3m"))
	g.ReadAt(one[:], 2000000)
	g.Close()
	one[0] ^= 0x55
	f.WriteAt(one[:], 2000000)
	f.Close()
	os.Chtimes(p("files/random-3m"), fi.ModTime(), fi.ModTime())
	expect(`"files/random-3m": content differs at offset 2000000`)

	fi, _ = os.Lstat(p("files/text-4096"))
	os.Truncate(p("files/text-4096"), 4000)
	os.Chtimes(p("files/text-4096"), fi.ModTime(), fi.ModTime())
	expect(`"files/text-4096": size 4096 != 4000`)

	// A sparse file whose data moved into a former hole.
	fi, _ = os.Lstat(p("sparse/hole-all"))
	f, _ = os.OpenFile(p("sparse/hole-all"), os.O_WRONLY, 0)
	f.WriteAt([]byte{1}, 5*bigBlock+3)
	f.Close()
	os.Chtimes(p("sparse/hole-all"), fi.ModTime(), fi.ModTime())
	expect(`"sparse/hole-all": content differs at offset 655363`)

	keepDirTime(t, p("symlinks"), func() error {
		if err := os.Remove(p("symlinks/short")); err != nil {
			return err
		}
		return os.Symlink("b", p("symlinks/short"))
	})
	unix.UtimesNanoAt(unix.AT_FDCWD, p("symlinks/short"), lstatTimes(t, filepath.Join(src, "symlinks/short")), unix.AT_SYMLINK_NOFOLLOW)
	expect(`"symlinks/short": symlink target "a" != "b"`)

	if err := unix.Lsetxattr(p("xattrs/same-0"), "user.mime_type", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	expect(`"xattrs/same-0": xattr user.mime_type "text/plain" != "x"`)
	if err := unix.Lremovexattr(p("xattrs/same-1"), "user.empty"); err != nil {
		t.Fatal(err)
	}
	expect(`"xattrs/same-1": xattr user.empty present != missing`)

	keepDirTime(t, p("names"), func() error { return os.WriteFile(p("names/new"), nil, 0o644) })
	expect(`"names/new": only in B`)
	keepDirTime(t, p("bigdir"), func() error { return os.Remove(p("bigdir/" + firstFile(t, p("bigdir")))) })
	expect(`"bigdir/` + firstFile(t, filepath.Join(src, "bigdir")) + `": only in A`)

	if os.Geteuid() == 0 {
		os.Lchown(p("owners/u001"), 7, -1)
		os.Chmod(p("owners/u001"), 0o644)
		var st unix.Stat_t
		unix.Lstat(filepath.Join(src, "owners/u001"), &st)
		expect(`"owners/u001": uid ` + strconv.FormatUint(uint64(st.Uid), 10) + ` != 7`)

		var ds unix.Stat_t
		unix.Lstat(p("special/chr-255-255"), &ds)
		keepDirTime(t, p("special"), func() error {
			os.Remove(p("special/chr-255-255"))
			return unix.Mknod(p("special/chr-255-255"), unix.S_IFCHR|(ds.Mode&0o7777), int(unix.Mkdev(255, 254)))
		})
		os.Lchown(p("special/chr-255-255"), int(ds.Uid), int(ds.Gid))
		unix.UtimesNanoAt(unix.AT_FDCWD, p("special/chr-255-255"), []unix.Timespec{ds.Atim, ds.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		expect(`"special/chr-255-255": device 255:255 != 255:254`)

		if err := unix.Lremovexattr(p("xattrs/overlay"), "trusted.overlay.redirect"); err != nil {
			t.Fatal(err)
		}
		expect(`"xattrs/overlay": xattr trusted.overlay.redirect present != missing`)
	}

	var got []string
	for _, d := range Compare(src, dst) {
		got = append(got, d.String())
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Compare found:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	for _, d := range CompareWith(src, dst, CompareOptions{IgnoreOverlayXattrs: true}) {
		if strings.Contains(d.What, "overlay") {
			t.Errorf("IgnoreOverlayXattrs still reports %v", d)
		}
	}
}

func lstatTimes(t *testing.T, path string) []unix.Timespec {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return []unix.Timespec{st.Atim, st.Mtim}
}

func firstFile(t *testing.T, dir string) string {
	names, err := readNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if fi, err := os.Lstat(filepath.Join(dir, n)); err == nil && fi.Mode().IsRegular() {
			return n
		}
	}
	t.Fatalf("no file in %s", dir)
	return ""
}

// TestCompareHardLinkPartition swaps link partners while keeping every
// nlink, so only the partition check can notice.
func TestCompareHardLinkPartition(t *testing.T) {
	mk := func(groups [][]string) string {
		dir := t.TempDir()
		for _, g := range groups {
			if err := os.WriteFile(filepath.Join(dir, g[0]), []byte("same"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, n := range g[1:] {
				if err := os.Link(filepath.Join(dir, g[0]), filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ts := time.Unix(1000, 0)
		for _, n := range []string{"a", "b", "c", "d", "."} {
			os.Chtimes(filepath.Join(dir, n), ts, ts)
		}
		return dir
	}
	a := mk([][]string{{"a", "b"}, {"c", "d"}})
	b := mk([][]string{{"a", "c"}, {"b", "d"}})
	diffs := CompareWith(a, b, CompareOptions{IgnoreRootMeta: true})
	if len(diffs) == 0 {
		t.Fatal("swapped hard links not noticed")
	}
	for _, d := range diffs {
		if d.What != "hard-link group" {
			t.Errorf("unexpected diff %v", d)
		}
	}
	t.Logf("%v", diffs)
	if d := CompareWith(a, mk([][]string{{"b", "a"}, {"d", "c"}}), CompareOptions{IgnoreRootMeta: true}); len(d) != 0 {
		t.Errorf("same partition reported different: %v", d)
	}
}

func TestGeneratePortageSmall(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	opts := PortageOptions{Scale: 0.01, Seed: 5}
	st, err := GeneratePortage(a, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v", st)
	if st.Files < 1000 || st.Files > 5000 {
		t.Errorf("scale 0.01 made %d files, want about 2k", st.Files)
	}
	var files int
	filepath.WalkDir(a, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if files != st.Files {
		t.Errorf("Stats.Files %d, walk counts %d", st.Files, files)
	}
	if _, err := GeneratePortage(b, opts); err != nil {
		t.Fatal(err)
	}
	AssertEqual(t, a, b, CompareOptions{IgnoreRootMeta: true})
	if _, err := GeneratePortage(c, PortageOptions{Scale: 0.01, Seed: 6}); err != nil {
		t.Fatal(err)
	}
	if len(CompareWith(a, c, CompareOptions{MaxDiffs: 5})) == 0 {
		t.Error("different seeds gave identical trees")
	}

	ms, err := MutatePortage(a, 0.1, 9)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v", ms)
	if ms.Modified == 0 || ms.Added == 0 || ms.Removed == 0 {
		t.Errorf("mutation too small: %+v", ms)
	}
	if _, err := MutatePortage(b, 0.1, 9); err != nil {
		t.Fatal(err)
	}
	AssertEqual(t, a, b, CompareOptions{IgnoreRootMeta: true})
	if len(CompareWith(a, c, CompareOptions{MaxDiffs: 5})) == 0 {
		t.Error("mutated tree equals an unrelated one")
	}
	// The md5-cache must still describe the ebuilds after mutation.
	checkCache(t, a)
}

func checkCache(t *testing.T, dir string) {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(dir, "metadata/md5-cache"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, "metadata/md5-cache"), path)
		cat, pf := filepath.Split(rel)
		data, _ := os.ReadFile(path)
		var pn string
		// The package directory is the one whose ebuild exists.
		matches, _ := filepath.Glob(filepath.Join(dir, cat, "*", pf+".ebuild"))
		if len(matches) != 1 {
			t.Errorf("cache entry %s has %d ebuilds", rel, len(matches))
			return nil
		}
		pn = filepath.Base(filepath.Dir(matches[0]))
		eb, _ := os.ReadFile(matches[0])
		if !strings.Contains(string(data), "_md5_="+md5Hex(eb)+"\n") {
			t.Errorf("cache entry %s: stale _md5_ for %s", rel, pn)
		}
		n++
		return nil
	})
	if n == 0 {
		t.Error("no md5-cache entries")
	}
}

func TestHugeSparseCompare(t *testing.T) {
	src := t.TempDir()
	start := time.Now()
	rep := BuildAllCases(t, src, AllCasesOptions{Huge: true})
	if rep.HugeFile == "" {
		t.Fatal("no huge file reported")
	}
	fi, err := os.Stat(filepath.Join(src, rep.HugeFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= 1<<32 {
		t.Fatalf("huge file is %d bytes", fi.Size())
	}
	dst := copyTree(t, src)
	cmpStart := time.Now()
	AssertEqual(t, src, dst, CompareOptions{})
	t.Logf("build %v, compare %v", cmpStart.Sub(start), time.Since(cmpStart))

	p := filepath.Join(dst, rep.HugeFile)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const off = 4<<30 + 3*bigBlock + 50 // inside a hole, past 2^32
	f.WriteAt([]byte{7}, off)
	f.Close()
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	diffs := Compare(src, dst)
	if len(diffs) != 1 || diffs[0].What != "content differs at offset "+strconv.Itoa(off) {
		t.Errorf("got %v, want one content diff at %d", diffs, off)
	}
}
