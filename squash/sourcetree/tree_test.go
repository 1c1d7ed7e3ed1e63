package sourcetree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/cirequire"
	"github.com/squashportage/squashportage/squash"
)

// mkTree creates files under dir from a spec: "d/" is a directory, "l->t" a
// symlink to t, anything else a file whose content is its own path.
func mkTree(t *testing.T, dir string, spec ...string) {
	t.Helper()
	for _, s := range spec {
		switch {
		case strings.HasSuffix(s, "/"):
			must(t, os.MkdirAll(filepath.Join(dir, s), 0o755))
		case strings.Contains(s, "->"):
			name, target, _ := strings.Cut(s, "->")
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
			must(t, os.Symlink(target, filepath.Join(dir, name)))
		default:
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, s)), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, s), []byte(s), 0o644))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func names(tr *Tree) []string {
	var out []string
	for _, h := range headers(tr) {
		out = append(out, h.Name)
	}
	return out
}

// headers returns the headers Write would add, in order.
func headers(tr *Tree) []squash.Header {
	ps := paths{entries: tr.entries}
	out := make([]squash.Header, len(tr.entries))
	for i := range tr.entries {
		name, _ := ps.of(i)
		out[i] = tr.entries[i].header(name)
	}
	return out
}

func scan(t *testing.T, sources []string, opts Options) *Tree {
	t.Helper()
	tr, err := Scan(sources, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestOrderIndependentOfCreation(t *testing.T) {
	orders := [][]string{
		{"z", "b", "a/c", "a.b", "B/y", "B/x", "A"},
		{"A", "B/x", "B/y", "a.b", "a/c", "b", "z"},
		{"a/c", "B/x", "z", "A", "b", "B/y", "a.b"},
	}
	for i, order := range orders {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dir := t.TempDir()
			mkTree(t, dir, order...)
			got := names(scan(t, []string{dir}, Options{}))
			// "a" is a directory, so "a.b" sorts after it by bytes but
			// "a/c" comes right after "a" (depth first).
			want := []string{"", "A", "B", "B/x", "B/y", "a", "a/c", "a.b", "b", "z"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestExcludes(t *testing.T) {
	spec := []string{"a.gz", ".h.gz", "x/b.gz", "x/y/z/c.gz", "x/y/keep", "w/d.gz"}
	all := []string{"", ".h.gz", "a.gz", "w", "w/d.gz", "x", "x/b.gz", "x/y", "x/y/keep", "x/y/z", "x/y/z/c.gz"}
	without := func(drop ...string) []string {
		var out []string
	next:
		for _, n := range all {
			for _, d := range drop {
				if n == d || strings.HasPrefix(n, d+"/") {
					continue next
				}
			}
			out = append(out, n)
		}
		return out
	}
	tests := []struct {
		name      string
		excludes  []string
		wildcards bool
		regex     bool
		want      []string
	}{
		{"none", nil, false, false, all},
		{"exact relative", []string{"x/y"}, false, false, without("x/y")},
		{"exact missing", []string{"nope", "x/nope"}, false, false, all},
		{"exact file", []string{"x/b.gz"}, false, false, without("x/b.gz")},
		{"glob top level only", []string{"*.gz"}, true, false, without("a.gz")},
		{"glob any depth", []string{"... *.gz"}, true, false, without("a.gz", "x/b.gz", "x/y/z/c.gz", "w/d.gz")},
		{"glob two levels", []string{"*/*.gz"}, true, false, without("x/b.gz", "w/d.gz")},
		{"glob middle", []string{"x/*/z"}, true, false, without("x/y/z")},
		{"glob star", []string{"*"}, true, false, []string{"", ".h.gz"}},
		{"glob dot explicit", []string{".*"}, true, false, without(".h.gz")},
		{"dots component", []string{"x/.../*.gz"}, true, false, without("x/b.gz", "x/y/z/c.gz")},
		{"dots under", []string{"x/..."}, true, false, []string{"", ".h.gz", "a.gz", "w", "w/d.gz", "x"}},
		{"sticky dir", []string{"... z"}, true, false, without("x/y/z")},
		{"char class", []string{"[aw]*"}, true, false, without("a.gz", "w")},
		{"regex", []string{"^x$"}, false, true, without("x")},
		{"regex unanchored", []string{"g.$"}, false, true, without("a.gz", ".h.gz")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mkTree(t, dir, spec...)
			got := names(scan(t, []string{dir}, Options{Excludes: tc.excludes, Wildcards: tc.wildcards, Regex: tc.regex}))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestExcludeCwdRelativeAndErrors(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "x/y/f", "x/g")
	got := names(scan(t, []string{dir}, Options{Excludes: []string{filepath.Join(dir, "x/y")}}))
	if want := []string{"", "x", "x/g"}; !reflect.DeepEqual(got, want) {
		t.Errorf("absolute exclude: got %q, want %q", got, want)
	}
	for _, bad := range []Options{
		{Excludes: []string{"/abs"}, Wildcards: true},
		{Excludes: []string{"./rel"}, Regex: true},
		{Excludes: []string{"[x"}, Wildcards: true},
		{Excludes: []string{"(x"}, Regex: true},
	} {
		if _, err := Scan([]string{dir}, bad); err == nil {
			t.Errorf("Scan with %+v: no error", bad)
		}
	}
}

func TestReadExcludeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ef")
	must(t, os.WriteFile(p, []byte("a\n\n  ... *.o  \nb/c\n"), 0o644))
	got, err := ReadExcludeFile(p)
	must(t, err)
	if want := []string{"a", "... *.o", "b/c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHardLinks(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "m/orig", "z/")
	must(t, os.Link(filepath.Join(dir, "m/orig"), filepath.Join(dir, "a")))
	must(t, os.Link(filepath.Join(dir, "m/orig"), filepath.Join(dir, "z/b")))
	tr := scan(t, []string{dir}, Options{})
	links := map[string]string{}
	for _, e := range headers(tr) {
		links[e.Name] = e.Link
	}
	want := map[string]string{"": "", "a": "", "m": "", "m/orig": "a", "z": "", "z/b": "a"}
	if !reflect.DeepEqual(links, want) {
		t.Errorf("links %q, want %q", links, want)
	}
	if files, dirs, bytes := tr.Stats(); files != 1 || dirs != 3 || bytes != int64(len("m/orig")) {
		t.Errorf("Stats = %d, %d, %d", files, dirs, bytes)
	}
}

// TestWalkInOrder checks the parallel walk against a plain recursive one
// on a tree wide and deep enough to keep every worker busy: the same
// entries in the same order, every hard link naming the first name in
// that order (which a worker meets in no particular order), and the
// warnings in that order too.
func TestWalkInOrder(t *testing.T) {
	dir := t.TempDir()
	var links []string
	for i := range 40 {
		d := filepath.Join(dir, fmt.Sprintf("d%02d", i), fmt.Sprintf("e%d", i%3), "f")
		must(t, os.MkdirAll(d, 0o755))
		for j := range 5 {
			must(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("x%d", j)), []byte{byte(i), byte(j)}, 0o644))
		}
		if i%7 == 3 {
			links = append(links, filepath.Join(d, "x0"))
		}
	}
	// Deep names first in walk order are the later ones: link each of
	// them to the last, so the first name is the earliest directory's.
	last := links[len(links)-1]
	for _, l := range links[:len(links)-1] {
		must(t, os.Remove(l))
		must(t, os.Link(last, l))
	}
	// An access ACL (system.posix_acl_access, a namespace squashfs
	// cannot store) makes the scan warn, once per file.
	warnFiles := []string{"d05/e2/f/x1", "d12/e0/f/x2", "d31/e1/f/x4"}
	acl := []byte{2, 0, 0, 0} // version 2, then tag, perm, id
	for _, e := range [][3]uint32{{0x01, 6, 0xffffffff}, {0x02, 4, 65534}, {0x04, 4, 0xffffffff}, {0x10, 4, 0xffffffff}, {0x20, 4, 0xffffffff}} {
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[0]))
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[1]))
		acl = binary.LittleEndian.AppendUint32(acl, e[2])
	}
	for _, f := range warnFiles {
		if err := unix.Lsetxattr(filepath.Join(dir, f), "system.posix_acl_access", acl, 0); err != nil {
			t.Fatalf("POSIX ACLs unsupported here: %v", err)
		}
	}
	var want []string
	var walk func(p, img string)
	walk = func(p, img string) {
		ents, err := os.ReadDir(p)
		must(t, err)
		for _, e := range ents { // os.ReadDir sorts by name
			ci := e.Name()
			if img != "" {
				ci = img + "/" + e.Name()
			}
			want = append(want, ci)
			if e.IsDir() {
				walk(filepath.Join(p, e.Name()), ci)
			}
		}
	}
	want = append(want, "")
	walk(dir, "")
	var warned []string
	tr := scan(t, []string{dir}, Options{Warn: func(m string) { warned = append(warned, m) }})
	if got := names(tr); !reflect.DeepEqual(got, want) {
		t.Fatalf("walk order differs:\n got %q\nwant %q", got, want)
	}
	first := ""
	for _, h := range headers(tr) {
		if h.Link == "" && h.Nlink > 0 && first == "" {
			first = h.Name
		}
	}
	if first != "d03/e0/f/x0" {
		t.Errorf("first name of the linked file %q, want d03/e0/f/x0", first)
	}
	n := 0
	for _, h := range headers(tr) {
		if h.Link != "" {
			n++
			if h.Link != first {
				t.Errorf("%s links to %q, want %q", h.Name, h.Link, first)
			}
		}
	}
	if n != len(links)-1 {
		t.Errorf("%d links, want %d", n, len(links)-1)
	}
	if len(warned) != len(warnFiles) {
		t.Fatalf("warnings %q, want one for each of %q", warned, warnFiles)
	}
	for i, f := range warnFiles {
		if !strings.Contains(warned[i], f+": skipping xattr system.posix_acl_access") {
			t.Errorf("warning %d is %q, want one about %s", i, warned[i], f)
		}
	}
}

func TestXattrs(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "f", "g")
	f := filepath.Join(dir, "f")
	if err := unix.Lsetxattr(f, "user.b", []byte("2"), 0); err != nil {
		t.Fatalf("user xattrs unsupported here: %v", err)
	}
	must(t, unix.Lsetxattr(f, "user.a", []byte("1"), 0))
	tr := scan(t, []string{dir}, Options{})
	want := []squash.Xattr{{Name: "user.a", Value: []byte("1")}, {Name: "user.b", Value: []byte("2")}}
	if got := headers(tr)[1].Xattrs; !reflect.DeepEqual(got, want) {
		t.Errorf("xattrs %q, want %q", got, want)
	}
	if got := headers(tr)[2].Xattrs; got != nil {
		t.Errorf("g xattrs %q, want none", got)
	}
	tr = scan(t, []string{dir}, Options{NoXattrs: true})
	if got := headers(tr)[1].Xattrs; got != nil {
		t.Errorf("NoXattrs: xattrs %q", got)
	}
}

func TestSources(t *testing.T) {
	base := t.TempDir()
	mkTree(t, base, "a/sub/f", "b/sub/g", "c/sub_1", "d/", "file", "ln->a")
	must(t, os.Chmod(filepath.Join(base, "d"), 0o700))
	p := func(s string) string { return filepath.Join(base, s) }
	tests := []struct {
		name    string
		sources []string
		keep    bool
		want    []string
		rootDir string // source whose metadata the root takes; "" = made up
	}{
		{"single dir", []string{p("d")}, false, []string{""}, "d"},
		{"keep as directory", []string{p("d")}, true, []string{"", "d"}, ""},
		{"single file", []string{p("file")}, false, []string{"", "file"}, ""},
		{"symlink not followed", []string{p("ln")}, false, []string{"", "ln"}, ""},
		{"collisions", []string{p("a/sub"), p("b/sub"), p("c/sub_1")},
			false, []string{"", "sub", "sub/f", "sub_1", "sub_1/g", "sub_1_1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var warned []string
			root := uint32(12345)
			tr := scan(t, tc.sources, Options{KeepAsDirectory: tc.keep, RootTime: &root,
				Warn: func(m string) { warned = append(warned, m) }})
			if got := names(tr); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
			r := headers(tr)[0]
			if tc.rootDir != "" {
				// The source's mode; RootTime applies to it too (-root-time).
				if r.Mode != fs.ModeDir|0o700 || r.Mtime != root {
					t.Errorf("root %v mtime %d, want the source's mode and mtime %d", r.Mode, r.Mtime, root)
				}
			} else if r.Mode != fs.ModeDir|0o777 || r.Mtime != root || r.UID != uint32(os.Getuid()) {
				t.Errorf("made-up root %v uid %d mtime %d", r.Mode, r.UID, r.Mtime)
			}
			if tc.name == "collisions" && len(warned) != 2 {
				t.Errorf("warnings %q, want 2", warned)
			}
			if tc.name == "symlink not followed" && headers(tr)[1].Target != "a" {
				t.Errorf("symlink target %q", headers(tr)[1].Target)
			}
		})
	}
}

func TestOwnerAndTime(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "old", "new")
	must(t, os.Chtimes(filepath.Join(dir, "old"), time.Unix(1000, 0), time.Unix(1000, 0)))
	must(t, os.Chtimes(filepath.Join(dir, "new"), time.Unix(5000, 0), time.Unix(5000, 0)))
	must(t, os.Chtimes(dir, time.Unix(-50, 0), time.Unix(-50, 0)))
	u := func(v uint32) *uint32 { return &v }
	type meta struct{ uid, gid, mtime uint32 }
	me := meta{uint32(os.Getuid()), uint32(os.Getgid()), 0}
	tests := []struct {
		name string
		opts Options
		want []meta // root, new, old
	}{
		{"defaults", Options{}, []meta{{me.uid, me.gid, 0}, {me.uid, me.gid, 5000}, {me.uid, me.gid, 1000}}},
		{"all root", Options{AllRoot: true}, []meta{{0, 0, 0}, {0, 0, 5000}, {0, 0, 1000}}},
		{"force", Options{AllRoot: true, ForceUID: u(7), ForceGID: u(8)}, []meta{{7, 8, 0}, {7, 8, 5000}, {7, 8, 1000}}},
		{"force uid only", Options{ForceUID: u(7)}, []meta{{7, me.gid, 0}, {7, me.gid, 5000}, {7, me.gid, 1000}}},
		{"all time", Options{AllTime: u(42)}, []meta{{me.uid, me.gid, 42}, {me.uid, me.gid, 42}, {me.uid, me.gid, 42}}},
		{"clamp", Options{ClampTime: u(2000)}, []meta{{me.uid, me.gid, 0}, {me.uid, me.gid, 2000}, {me.uid, me.gid, 1000}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := scan(t, []string{dir}, tc.opts)
			var got []meta
			for _, e := range headers(tr) {
				got = append(got, meta{e.UID, e.GID, e.Mtime})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	if err := unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		cirequire.Unavailable(t, "no device node test (mknod needs root): %v", err)
	}
	tr := scan(t, []string{dir}, Options{})
	for _, e := range headers(tr)[1:] {
		switch e.Name {
		case "fifo":
			if e.Mode != fs.ModeNamedPipe|0o600 {
				t.Errorf("fifo mode %v", e.Mode)
			}
		case "null":
			if e.Mode.Type() != fs.ModeDevice|fs.ModeCharDevice || e.Major != 1 || e.Minor != 3 {
				t.Errorf("null: %v %d,%d", e.Mode, e.Major, e.Minor)
			}
		}
	}
}

func TestUnreadableDir(t *testing.T) {
	if dir := os.Getenv("SOURCETREE_UNREADABLE"); dir != "" {
		// The child, as an ordinary user: say what Scan said.
		_, err := Scan([]string{dir}, Options{})
		fmt.Printf("SCAN ERROR: %v\n", err)
		return
	}
	dir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(dir), 0o755)) // t.TempDir's parent and dir are 0700
	must(t, os.Chmod(dir, 0o755))
	mkTree(t, dir, "locked/f")
	must(t, os.Chmod(filepath.Join(dir, "locked"), 0))
	defer os.Chmod(filepath.Join(dir, "locked"), 0o755)
	// Root reads everything, so the scan runs in a child process as
	// nobody: the walk's workers are threads of their own, which a
	// per-thread identity (setfsuid) would not reach.
	// A copy of the test binary that nobody may run (go test builds it
	// in a directory of mode 0700).
	exe := filepath.Join(t.TempDir(), "sourcetree.test")
	must(t, os.Chmod(filepath.Dir(exe), 0o755))
	b, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(exe, b, 0o755))
	cmd := exec.Command(exe, "-test.run=^TestUnreadableDir$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SOURCETREE_UNREADABLE="+dir)
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`SCAN ERROR: (.*)`).FindSubmatch(out)
	if m == nil || !strings.Contains(string(m[1]), "reading directory") || !strings.Contains(string(m[1]), "locked") {
		t.Errorf("child said %q, want an error naming the directory", out)
	}
}

// recorder is an adder that keeps what it is given.
type recorder struct {
	hdrs []squash.Header
	data map[string][]byte
	fail string // Add of this name fails
}

func (r *recorder) Add(h *squash.Header, data io.Reader) error {
	if r.fail != "" && h.Name == r.fail {
		return errors.New("boom")
	}
	r.hdrs = append(r.hdrs, *h)
	if data != nil {
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		if int64(len(b)) != h.Size {
			return fmt.Errorf("%s: got %d bytes, header says %d", h.Name, len(b), h.Size)
		}
		r.data[h.Name] = b
	}
	return nil
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	var spec []string
	for i := range 300 {
		spec = append(spec, fmt.Sprintf("d%d/f%03d", i%7, i))
	}
	spec = append(spec, "empty/", "ln->d0")
	mkTree(t, dir, spec...)
	must(t, os.WriteFile(filepath.Join(dir, "empty/zero"), nil, 0o644))
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+5)
	must(t, os.WriteFile(filepath.Join(dir, "big"), big, 0o644))
	must(t, os.Link(filepath.Join(dir, "big"), filepath.Join(dir, "big2")))

	tr := scan(t, []string{dir}, Options{})
	rec := &recorder{data: map[string][]byte{}}
	var last int64
	var calls int
	if err := tr.write(rec, func(n int64) {
		if n < last {
			t.Errorf("progress went back: %d < %d", n, last)
		}
		last = n
		calls++
	}, nil); err != nil {
		t.Fatal(err)
	}
	_, _, total := tr.Stats()
	if last != total {
		t.Errorf("progress ended at %d, want %d", last, total)
	}
	if got, want := len(rec.hdrs), len(tr.entries); got != want {
		t.Fatalf("%d entries added, want %d", got, want)
	}
	for i, h := range rec.hdrs {
		if h.Name != headers(tr)[i].Name {
			t.Fatalf("entry %d is %q, want %q", i, h.Name, headers(tr)[i].Name)
		}
	}
	for _, s := range spec[:300] {
		if got := string(rec.data[s]); got != s {
			t.Errorf("%s: data %q", s, got)
		}
	}
	if !bytes.Equal(rec.data["big"], big) {
		t.Error("big file data differs")
	}
	if _, ok := rec.data["big2"]; ok {
		t.Error("hard link got data")
	}
}

// TestWritePrefetchRing writes more small files than the prefetch ring
// holds, in batches cut by bytes, with a large file and empty ones among
// them: the dispatcher hands over a partial batch before it waits for
// room, and every file's data arrives in order.
func TestWritePrefetchRing(t *testing.T) {
	dir := t.TempDir()
	want := map[string][]byte{}
	for i := range 3 * prefetchBudget / (100 << 10) {
		name := fmt.Sprintf("f%03d", i)
		data := bytes.Repeat([]byte(name), (100<<10)/4+i)
		if i%5 == 0 {
			data = nil
		}
		want[name] = data
		must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	big := bytes.Repeat([]byte("large"), (prefetchMaxFile+10)/5)
	want["f050x"] = big
	must(t, os.WriteFile(filepath.Join(dir, "f050x"), big, 0o644))
	tr := scan(t, []string{dir}, Options{})
	rec := &recorder{data: map[string][]byte{}}
	if err := tr.write(rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		if got := rec.data[name]; !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, want %d", name, len(got), len(data))
		}
	}
}

func TestWriteSizeChanged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		newSize int
	}{
		{"small grew", 100, 200},
		{"small shrank", 100, 10},
		{"large grew", 2 << 20, 3 << 20},
		{"large shrank", 2 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "f")
			must(t, os.WriteFile(f, make([]byte, tc.size), 0o644))
			tr := scan(t, []string{dir}, Options{})
			must(t, os.WriteFile(f, make([]byte, tc.newSize), 0o644))
			err := tr.write(&recorder{data: map[string][]byte{}}, nil, nil)
			if !errors.Is(err, errSizeChanged) || !strings.Contains(err.Error(), f) {
				t.Errorf("err = %v, want a size change naming %s", err, f)
			}
		})
	}
}

func TestWriteStopsOnError(t *testing.T) {
	dir := t.TempDir()
	var spec []string
	for i := range 2000 {
		spec = append(spec, fmt.Sprintf("f%04d", i))
	}
	mkTree(t, dir, spec...)
	tr := scan(t, []string{dir}, Options{})
	err := tr.write(&recorder{data: map[string][]byte{}, fail: "f0100"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v", err)
	}
}

func TestOnAdd(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "a", "b/c")
	var seen []string
	tr := scan(t, []string{dir}, Options{OnAdd: func(h *squash.Header) { seen = append(seen, h.Name) }})
	must(t, tr.write(&recorder{data: map[string][]byte{}}, nil, nil))
	if want := []string{"", "a", "b", "b/c"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("OnAdd saw %q", seen)
	}
}

// TestDuplicatesBySize: only files sharing a size are hashed, and
// duplicates are still found among them.
func TestDuplicatesBySize(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a": "same content", "b": "same content", // duplicates
		"c": "same-size!!!", // same size as a, other bytes
		"d": "unique size", "e": "",
	} {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	tree, err := Scan([]string{dir}, Options{})
	must(t, err)
	if got, want := tree.sharedSizes(), map[uint64]bool{12: true}; !reflect.DeepEqual(got, want) {
		t.Errorf("shared sizes %v, want %v", got, want)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	must(t, err)
	defer f.Close()
	w, err := squash.NewWriter(f, squash.WriterOptions{})
	must(t, err)
	must(t, tree.Write(w, nil))
	must(t, w.Close())
	if d := w.Stats().Duplicates; d != 1 {
		t.Errorf("%d duplicates found, want 1 (b of a)", d)
	}
}
