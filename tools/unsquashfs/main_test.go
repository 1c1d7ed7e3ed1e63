package unsquashfs

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/tools/mksquashfs"
)

// Some tests attach loop devices: as root, in a private mount namespace,
// with a check that none is left attached.
func TestMain(m *testing.M) { privileged.Main(m) }

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		check   func(c *config) bool
	}{
		{args: []string{"img"}, check: func(c *config) bool { return c.image == "img" && c.dest == "squashfs-root" }},
		{args: []string{"-d", "out", "-f", "img", "a", "b/c"}, check: func(c *config) bool {
			return c.dest == "out" && c.force && strings.Join(c.paths, ",") == "a,b/c"
		}},
		{args: []string{"-dest", "o", "-force", "-n", "-q", "-no-xattrs", "-p", "3", "img"}, check: func(c *config) bool {
			return c.dest == "o" && c.noProgress && c.quiet && c.noXattrs && c.processors == 3
		}},
		{args: []string{"-lls", "img"}, check: func(c *config) bool { return c.list == 2 && !c.numeric }},
		{args: []string{"-lln", "img"}, check: func(c *config) bool { return c.list == 2 && c.numeric }},
		{args: []string{"-ls", "img"}, check: func(c *config) bool { return c.list == 1 }},
		{args: []string{"-cat", "img", "f"}, check: func(c *config) bool { return c.cat && c.paths[0] == "f" }},
		{args: []string{"-s", "img"}, check: func(c *config) bool { return c.stat }},
		{args: []string{"-help"}, check: func(c *config) bool { return c.help }},
		{args: []string{"img", "-f"}, check: func(c *config) bool { return !c.force && c.paths[0] == "-f" }},
		{args: []string{}, wantErr: "no image"},
		{args: []string{"-bogus", "img"}, wantErr: "unknown option -bogus"},
		{args: []string{"-d"}, wantErr: "missing argument"},
		{args: []string{"-p", "zero", "img"}, wantErr: "not a positive number"},
		{args: []string{"-p", "0", "img"}, wantErr: "not a positive number"},
		{args: []string{"-cat", "img"}, wantErr: "no files"},
		{args: []string{"-cat", "-s", "img", "f"}, wantErr: "exclude each other"},
		{args: []string{"-ef", "/nonexistent/list", "img"}, wantErr: "extract file"},
		{args: []string{"-excludes", "img", "a", "b"}, check: func(c *config) bool {
			return len(c.paths) == 0 && strings.Join(c.sel.Excludes, ",") == "a,b"
		}},
		{args: []string{"-ex", "a", "b", ";", "-exclude-list", ";", "img", "c"}, check: func(c *config) bool {
			return strings.Join(c.sel.Excludes, ",") == "a,b" && strings.Join(c.sel.Paths, ",") == "c"
		}},
		{args: []string{"-max", "0", "img"}, check: func(c *config) bool { return c.sel.LimitDepth && c.sel.MaxDepth == 0 }},
		{args: []string{"-max-depth", "3", "-regex", "img"}, check: func(c *config) bool { return c.sel.MaxDepth == 3 && c.sel.Regex }},
		{args: []string{"-r", "-no-wild", "img"}, check: func(c *config) bool { return c.sel.Literal && !c.sel.Regex }},
		{args: []string{"-lc", "img"}, check: func(c *config) bool { return c.list == 1 && c.concise }},
		{args: []string{"-llc", "img"}, check: func(c *config) bool { return c.list == 2 && c.concise }},
		{args: []string{"-o", "2K", "img"}, check: func(c *config) bool { return c.offset == 2048 }},
		{args: []string{"-offset", "1g", "img"}, check: func(c *config) bool { return c.offset == 1<<30 }},
		{args: []string{"-u", "img"}, check: func(c *config) bool { return c.userXattrs && !c.noXattrs }},
		{args: []string{"-u", "-no", "img"}, check: func(c *config) bool { return !c.userXattrs && c.noXattrs }},
		{args: []string{"-fstime", "-st", "-da", "64", "-fr", "64", "img"}, check: func(c *config) bool { return c.mkfsTime }},
		{args: []string{"-ex", "a", "img"}, wantErr: "no ; ends the list"},
		{args: []string{"-max", "-1", "img"}, wantErr: "not a number of levels"},
		{args: []string{"-o", "12Q", "img"}, wantErr: "not a size"},
		{args: []string{"-da", "lots", "img"}, wantErr: "Mbytes"},
		{args: []string{"-follow-symlinks", "img"}, check: func(c *config) bool { return c.follow && !c.missing }},
		{args: []string{"-missing", "img"}, check: func(c *config) bool { return c.follow && c.missing }},
		{args: []string{"-ig", "img"}, check: func(c *config) bool { return c.ignoreErrs && !c.noExitCode }},
		{args: []string{"-all", "7", "-full", "-match", "-mem", "1G", "-mem-percent", "20", "-no-pager", "-cols", "80", "img"}, check: func(c *config) bool {
			return *c.allTime == 7 && c.full && c.sel.Literal
		}},
		{args: []string{"-help-all"}, check: func(c *config) bool { return c.help }},
		{args: []string{"-all-time", "now", "img"}, wantErr: "not a time"},
		{args: []string{"-ignore-errors", "-strict-errors", "-no-exit", "img"}, check: func(c *config) bool { return !c.ignoreErrs && c.noExitCode }},
		{args: []string{"-mkfs-time", "-s", "img"}, wantErr: "exclude each other"},
	} {
		c, err := parseArgs(tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%q) = %v, want error containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !tc.check(c) {
			t.Errorf("parseArgs(%q) = %+v, %v", tc.args, c, err)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{}, {"-bogus", "x"}, {"/nonexistent/image"}, {"-s", "/etc/hostname"}} {
		var out, errb bytes.Buffer
		if rc := Main(args, &out, &errb); rc == 0 || errb.Len() == 0 {
			t.Errorf("Main(%q) = %d, stderr %q; want failure with a message", args, rc, errb.String())
		}
	}
}

// image builds the all-cases tree and its mksquashfs image.
func image(t *testing.T) (src, img string) {
	t.Helper()
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Fatal("squashfs-tools not installed")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	src = filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	img = filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return src, img
}

func runOK(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := Main(args, &out, &errb); rc != 0 {
		t.Fatalf("Main(%q) = %d: %s", args, rc, errb.String())
	}
	return out.String(), errb.String()
}

func reference(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", args...).Output()
	if err != nil {
		t.Fatalf("unsquashfs %q: %v", args, err)
	}
	return string(out)
}

func TestAgainstUnsquashfs(t *testing.T) {
	src, img := image(t)
	// Options, the image (IMG), then names.
	for _, args := range [][]string{
		{"-lls", "-UTC", "IMG"},
		{"-lln", "-UTC", "IMG"},
		{"-ls", "IMG"},
		{"-s", "-UTC", "IMG"},
		{"-ls", "-d", "prefix", "IMG"},
		{"-lls", "-UTC", "IMG", "owners", "special/chr-*"},
		{"-lc", "IMG"},
		{"-llc", "-UTC", "IMG", "files", "empty"},
		{"-ls", "-max-depth", "1", "IMG"},
		{"-ls", "-max", "2", "IMG", "owners", "names"},
		{"-ls", "-max", "0", "IMG"},
		{"-ls", "-excludes", "IMG", "owners", "special/chr-*", "files/*-1*"},
		{"-ls", "-ex", "owners/u0*", "files", ";", "IMG"},
		{"-ls", "-ex", "special", ";", "IMG", "special", "symlinks"},
		{"-ls", "-regex", "IMG", "^sym", "^(owners|times)$/1"},
		{"-ls", "-r", "-excludes", "IMG", "[0-9]$"},
		{"-ls", "-no-wildcards", "IMG", "files/text-131073"},
		{"-mkfs-time", "IMG"},
		{"-fstime", "IMG"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			args := slices.Clone(args)
			args[slices.Index(args, "IMG")] = img
			got, _ := runOK(t, args...)
			want := reference(t, args...)
			if got != want {
				t.Errorf("output differs from unsquashfs:\n%s", diffLines(want, got))
			}
		})
	}

	t.Run("exclude file", func(t *testing.T) {
		list := filepath.Join(t.TempDir(), "list")
		if err := os.WriteFile(list, []byte("owners\n\nfiles/text-*\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, opt := range []string{"-exc", "-excf", "-exclude-file"} {
			got, _ := runOK(t, "-lls", "-UTC", opt, list, img)
			if want := reference(t, "-lls", "-UTC", "-exclude-file", list, img); got != want {
				t.Errorf("%s: output differs from unsquashfs:\n%s", opt, diffLines(want, got))
			}
		}
	})

	t.Run("offset", func(t *testing.T) {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		emb := filepath.Join(t.TempDir(), "embedded")
		if err := os.WriteFile(emb, append(bytes.Repeat([]byte("header!"), 1000), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		want := reference(t, "-lls", "-UTC", "-offset", "7000", emb)
		for _, opt := range []string{"-o", "-offset"} {
			if got, _ := runOK(t, "-lls", "-UTC", opt, "7000", emb); got != want || !strings.Contains(got, "owners") {
				t.Errorf("%s 7000: output differs from unsquashfs:\n%s", opt, diffLines(want, got))
			}
		}
		var out, errb bytes.Buffer
		if rc := Main([]string{"-ls", emb}, &out, &errb); rc == 0 {
			t.Error("an image 7000 bytes into a file was read without -o")
		}
	})

	t.Run("pseudo file", func(t *testing.T) {
		dir := t.TempDir()
		ours, theirs := filepath.Join(dir, "ours.pf"), filepath.Join(dir, "theirs.pf")
		// A name or symlink target with a line break has no pseudo
		// definition: refused, and no file is left.
		var out, errb bytes.Buffer
		if rc := Main([]string{"-pf", ours, img}, &out, &errb); rc == 0 || !strings.Contains(errb.String(), "line break") {
			t.Errorf("-pf of an image with a name holding a line break = %d: %s", rc, errb.String())
		}
		if _, err := os.Stat(ours); !os.IsNotExist(err) {
			t.Errorf("a failed -pf left its file: %v", err)
		}
		// Byte for byte as unsquashfs 4.5.1 writes it, but where it is
		// wrong: it prints ids of 2^31 and more as negative numbers
		// (which its mksquashfs then refuses), device numbers above
		// 255 in the old 8-bit split, and tabs in names unescaped
		// (where its mksquashfs then splits them).
		lineBreaks := []string{"names/new*", "symlinks/odd-bytes"}
		comparable := append([]string{"owners", "special", "names/tab*"}, lineBreaks...)
		runOK(t, append([]string{"-pf", ours, "-excludes", img}, comparable...)...)
		reference(t, append([]string{"-pf", theirs, "-excludes", img}, comparable...)...)
		a, _ := os.ReadFile(ours)
		b, _ := os.ReadFile(theirs)
		if !bytes.Equal(a, b) {
			t.Errorf("-pf output (%d bytes) differs from unsquashfs's (%d bytes)", len(a), len(b))
		}
		// Everything else: our mksquashfs -pf and Debian's make the same
		// image of it, with the contents of the original.
		runOK(t, append([]string{"-pf", ours, "-excludes", img}, lineBreaks...)...)
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			t.Fatal(err)
		}
		again, ref := filepath.Join(dir, "again.sqfs"), filepath.Join(dir, "ref.sqfs")
		if rc := mksquashfs.Main([]string{empty, again, "-pf", ours, "-quiet", "-mkfs-time", "1"}, &out, &errb); rc != 0 {
			t.Fatalf("mksquashfs -pf: %d: %s", rc, errb.String())
		}
		if out, err := exec.Command("mksquashfs", empty, ref, "-pf", ours, "-quiet", "-no-progress", "-mkfs-time", "1").CombinedOutput(); err != nil {
			t.Fatalf("Debian's mksquashfs -pf: %v\n%s", err, out)
		}
		// A directory's size is its listing's, whose headers depend on
		// where each writer puts the inodes.
		dirSize := regexp.MustCompile(`(?m)^(d\S+ \S+) +\d+ `)
		norm := func(l string) string { return dirSize.ReplaceAllString(l, "$1 - ") }
		if got, want := norm(reference(t, "-lls", "-UTC", again)), norm(reference(t, "-lls", "-UTC", ref)); got != want {
			t.Errorf("the image our mksquashfs made from the pseudo file lists differently from Debian's:\n%s", diffLines(want, got))
		}
		x1, x2 := filepath.Join(dir, "x1"), filepath.Join(dir, "x2")
		reference(t, "-q", "-n", "-d", x1, again)
		reference(t, "-q", "-n", "-d", x2, img, "files", "sparse", "bigdir")
		for _, d := range []string{"files", "sparse", "bigdir"} {
			if out, err := exec.Command("diff", "-r", "--no-dereference", filepath.Join(x1, d), filepath.Join(x2, d)).CombinedOutput(); err != nil {
				t.Errorf("%s: contents differ from the original image's: %v\n%.2000s", d, err, out)
			}
		}
		rc, err := squash.OpenFile(again)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		for _, group := range [][]string{{"hardlinks/pair-a", "hardlinks/pair-b"}, {"hardlinks/triple-a", "hardlinks/sub/triple-b", "hardlinks/triple-c"},
			{"hardlinks/fifo-a", "hardlinks/sub/fifo-b"}} { // (mksquashfs does not link the symlinks)
			var nums []uint32
			for _, name := range group {
				if fi, err := rc.Lstat(name); err == nil {
					nums = append(nums, fi.Sys().(*squash.Inode).Number)
				}
			}
			if len(nums) != len(group) || slices.Min(nums) != slices.Max(nums) {
				t.Errorf("%q: inode numbers %v in the image made from the pseudo file, want one inode", group, nums)
			}
		}
		// Standard output.
		if got, _ := runOK(t, "-pf", "-", "-ex", "names/new*", "symlinks/odd-bytes", ";", img); got != string(a) && got != string(mustRead(t, ours)) {
			t.Errorf("-pf - wrote %d bytes, the file %d", len(got), len(a))
		}
	})

	t.Run("block device", func(t *testing.T) {
		// stat gives a block device no size: the reader must find its end.
		dev, f, err := loopdev.Attach(img, true)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, _ := runOK(t, "-lls", "-UTC", dev)
		if want := reference(t, "-lls", "-UTC", img); got != want {
			t.Errorf("listing of %s differs from the image file's:\n%s", dev, diffLines(want, got))
		}
	})

	t.Run("user xattrs", func(t *testing.T) {
		all, user := filepath.Join(t.TempDir(), "all"), filepath.Join(t.TempDir(), "user")
		runOK(t, "-q", "-n", "-d", all, img)
		runOK(t, "-q", "-n", "-u", "-d", user, img)
		ref := filepath.Join(t.TempDir(), "ref")
		reference(t, "-q", "-n", "-u", "-d", ref, img)
		testtree.AssertEqual(t, ref, user, testtree.CompareOptions{})
		if n := xattrNames(t, all); !slices.ContainsFunc(n, func(s string) bool { return !strings.HasPrefix(s, "user.") }) {
			t.Fatalf("the image has only user xattrs (%q): the test shows nothing", n)
		}
		if n := xattrNames(t, user); len(n) == 0 || slices.ContainsFunc(n, func(s string) bool { return !strings.HasPrefix(s, "user.") }) {
			t.Errorf("-u extracted xattrs %q, want user.* only", n)
		}
	})

	t.Run("cat", func(t *testing.T) {
		got, _ := runOK(t, "-cat", img, "files/text-131073", "/hardlinks/pair-a")
		a, _ := os.ReadFile(filepath.Join(src, "files/text-131073"))
		b, _ := os.ReadFile(filepath.Join(src, "hardlinks/pair-a"))
		if got != string(a)+string(b) {
			t.Errorf("-cat output of %d bytes differs from the files (%d+%d)", len(got), len(a), len(b))
		}
		var out, errb bytes.Buffer
		if rc := Main([]string{"-cat", img, "files"}, &out, &errb); rc == 0 {
			t.Error("-cat of a directory succeeded")
		}
	})

	t.Run("extract", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "out")
		got, _ := runOK(t, "-n", "-d", dest, "-p", "2", img)
		refDest := filepath.Join(t.TempDir(), "ref")
		want := reference(t, "-n", "-p", "2", "-d", refDest, img)
		if got != want {
			t.Errorf("summary differs from unsquashfs:\n%s", diffLines(want, got))
		}
		// mksquashfs does not keep hardlinks/symlink-b linked to -a.
		testtree.AssertEqual(t, refDest, dest, testtree.CompareOptions{})
		// Without -f, a second extraction must refuse to overwrite.
		var out, errb bytes.Buffer
		if rc := Main([]string{"-q", "-d", dest, img}, &out, &errb); rc == 0 {
			t.Error("extracting over an existing tree without -f succeeded")
		}
		if _, errs := runOK(t, "-q", "-f", "-d", dest, img); errs != "" {
			t.Errorf("-f extraction wrote to stderr: %s", errs)
		}
		testtree.AssertEqual(t, refDest, dest, testtree.CompareOptions{})
	})

	t.Run("subset and info", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "out")
		list := filepath.Join(t.TempDir(), "list")
		if err := os.WriteFile(list, []byte("owners/u00*\n\nsparse\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := runOK(t, "-q", "-i", "-d", dest, "-ef", list, img, "symlinks")
		want := reference(t, "-q", "-i", "-d", dest+"2", "-ef", list, img, "symlinks")
		want = strings.ReplaceAll(want, dest+"2", dest)
		if got != want {
			t.Errorf("-i output differs from unsquashfs:\n%s", diffLines(want, got))
		}
		if _, err := os.Lstat(filepath.Join(dest, "owners/u001")); err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(filepath.Join(dest, "owners/u100")); err == nil {
			t.Error("owners/u100 extracted but not selected")
		}
	})
}

// TestExtractOverSymlinkCLI: the destination holds sub -> outside and the
// image has sub/file; -f replaces the link, without it the run fails, and
// nothing is ever written outside.
func TestExtractOverSymlinkCLI(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("squashfs-tools not installed")
	}
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/file"), []byte("x"), 0o644)
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	outside := t.TempDir()
	dest := t.TempDir()
	os.Symlink(outside, filepath.Join(dest, "sub"))
	var out, errb bytes.Buffer
	if rc := Main([]string{"-q", "-d", dest, img}, &out, &errb); rc == 0 {
		t.Error("extraction over a symlink succeeded without -f")
	}
	runOK(t, "-q", "-f", "-d", dest, img)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dest, "sub"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("sub was not replaced by a directory: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote outside the destination: %v", ents)
	}
}

// xattrNames lists the xattr names set in a tree, sorted and without
// repeats.
func xattrNames(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
			n++
		}
	}
	return b.String()
}
