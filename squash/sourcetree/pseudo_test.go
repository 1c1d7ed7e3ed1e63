package sourcetree

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash"
)

func TestParsePseudo(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		def  string
		want Pseudo // Def is filled in
		err  string
	}{
		{def: "dev d 755 0 0", want: Pseudo{Name: "dev", Type: 'd', Mode: 0o755}},
		{def: "/dev/console c 600 root root 5 1", want: Pseudo{Name: "dev/console", Type: 'c', Mode: 0o600, Major: 5, Minor: 1}},
		{def: "dev/sda B 3000 2660 0 6 4095 1048575", want: Pseudo{Name: "dev/sda", Type: 'b', Mode: fs.ModeSetgid | 0o660, GID: 6, Mtime: u32(3000), Major: 4095, Minor: 1048575}},
		{def: `"with space"/f\ x f 644 1 2 echo  "a  b" | tr a c`, want: Pseudo{Name: "with space/f x", Type: 'f', Mode: 0o644, UID: 1, GID: 2, Command: `echo  "a  b" | tr a c`}},
		{def: "l S 7 0 0 0 ../target with spaces", want: Pseudo{Name: "l", Type: 's', Mtime: u32(7), Target: "../target with spaces"}},
		{def: "fifo i 644 0 0 f", want: Pseudo{Name: "fifo", Type: 'i', Mode: fs.ModeNamedPipe | 0o644}},
		{def: "sock I 1 644 0 0 s", want: Pseudo{Name: "sock", Type: 'i', Mode: fs.ModeSocket | 0o644, Mtime: u32(1)}},
		{def: "/ m 1777 0 0", want: Pseudo{Name: "", Type: 'm', Mode: fs.ModeSticky | 0o777}},
		{def: "dir/ M 9 700 0 0", want: Pseudo{Name: "dir", Type: 'm', Mode: 0o700, Mtime: u32(9)}},
		{def: "", err: "no file name"},
		{def: "x", err: "no type"},
		{def: "x dd 755 0 0", err: "not one letter"},
		{def: "x q 755 0 0", err: "unknown type q"},
		{def: "x l y", err: "type l is not supported"},
		{def: "x d 755 0", err: "too few fields"},
		{def: "x d 855 0 0", err: "mode"},
		{def: "x d 17777 0 0", err: "mode"},
		{def: "x d 755 no-such-user-here 0", err: "uid"},
		{def: "x d 755 0 no-such-group-here", err: "gid"},
		{def: "x d 755 0 0 extra", err: "unexpected"},
		{def: "x c 600 0 0 4096 0", err: "major"},
		{def: "x c 600 0 0 1 1048576", err: "major"},
		{def: "x c 600 0 0 1", err: "too few fields"},
		{def: "x i 600 0 0 p", err: "want s (socket) or f (FIFO)"},
		{def: "x f 600 0 0", err: "no command"},
		{def: "x s 600 0 0", err: "no link target"},
		{def: "x D soon 755 0 0", err: "time"},
		{def: "a/../../x d 755 0 0", err: "not a path"},
	} {
		got, err := ParsePseudo(tc.def)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePseudo(%q) = %v, want an error with %q", tc.def, err, tc.err)
			}
			continue
		}
		tc.want.Def = tc.def
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePseudo(%q) = %+v, %v\nwant %+v", tc.def, got, err, tc.want)
		}
	}
}

// TestPseudoName: the names unsquashfs -pf writes read back as the same
// path, whatever bytes they hold but line breaks.
func TestPseudoName(t *testing.T) {
	for _, rel := range []string{"", "a", "a b/c", `quote"'`, `back\slash`, "tab\there", "trailing ", " leading", "\xff\x01", "ünï/日本"} {
		name, err := PseudoName(rel)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParsePseudo(name + " D 1 755 0 0")
		if err != nil || p.Name != rel {
			t.Errorf("%q -> %q -> %q, %v", rel, name, p.Name, err)
		}
	}
	if _, err := PseudoName("new\nline"); err == nil {
		t.Error("a line break was written")
	}
}

func TestReadPseudoFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "pf")
	if err := os.WriteFile(name, []byte("# devices\ndev d 755 0 0\n\n  dev/null c 666 0 0 1 3\nlong f 644 0 0 echo a \\\n  b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := ReadPseudoFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Name+":"+string(p.Type)+":"+p.Command)
	}
	if want := []string{"dev:d:", "dev/null:c:", "long:f:echo a   b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("read %q, want %q", got, want)
	}
	if err := os.WriteFile(name, []byte("dev d 755 0 0\n\nbad z 1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPseudoFile(name); err == nil || !strings.Contains(err.Error(), name+":3:") {
		t.Errorf("bad line 3: %v", err)
	}
	if err := os.WriteFile(name, []byte("x f 644 0 0 echo \\"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPseudoFile(name); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("dangling continuation: %v", err)
	}
}

// TestPseudoTree: definitions land in sorted place in their directories,
// below directories defined before them; m changes an entry of the
// sources; the overrides for every entry apply on top; a missing directory
// or a failing command is an error, and Close lets go of the commands' files.
func TestPseudoTree(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "a/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	defs := func(ds ...string) []Pseudo {
		var ps []Pseudo
		for _, d := range ds {
			p, err := ParsePseudo(d)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		return ps
	}
	var warned []string
	uid := uint32(77)
	tr, err := Scan([]string{src}, Options{ForceUID: &uid, Warn: func(m string) { warned = append(warned, m) }, Pseudo: defs(
		"a/b/z c 600 0 0 1 2", "a/aa f 644 0 0 printf hello", "a/c d 700 1 1", "a/c/x s 0 0 0 ../f", "0 i 644 0 0 f",
		"a/f m 600 5 6", "c D 5 755 0 0", "gone m 755 0 0")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(tr), []string{"", "0", "a", "a/aa", "a/b", "a/b/z", "a/c", "a/c/x", "a/f", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
	hs := headers(tr)
	byName := map[string]int{}
	for i, h := range hs {
		byName[h.Name] = i
	}
	if h := hs[byName["a/f"]]; h.Mode != 0o600 || h.UID != 77 || h.GID != 6 {
		t.Errorf("a/f after m: %v %d:%d, want -rw------- 77:6 (-force-uid over m)", h.Mode, h.UID, h.GID)
	}
	if h := hs[byName["a/b/z"]]; h.Mode != fs.ModeDevice|fs.ModeCharDevice|0o600 || h.Major != 1 || h.Minor != 2 || h.UID != 77 {
		t.Errorf("a/b/z: %v %d,%d uid %d", h.Mode, h.Major, h.Minor, h.UID)
	}
	if h := hs[byName["a/aa"]]; h.Size != 5 {
		t.Errorf("a/aa: %d bytes, want the command's 5", h.Size)
	}
	if len(warned) != 2 {
		t.Errorf("warnings %q, want two (c is in the sources, gone is not)", warned)
	}
	// The command's output is held in an unlinked file: nothing in
	// TMPDIR even before Close, or after a ^C.
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 || len(tr.open) != 1 {
		t.Errorf("%d files in TMPDIR and %d held, want none and the command's output", len(ents), len(tr.open))
	}
	var out memOutput
	w, err := squash.NewWriter(&out, squash.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Write(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := squash.NewReader(bytes.NewReader(out.b), int64(len(out.b)))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fs.ReadFile(r, "a/aa"); err != nil || string(b) != "hello" {
		t.Errorf("a/aa in the image: %q, %v", b, err)
	}
	if err := tr.Close(); err != nil || tr.open != nil {
		t.Fatalf("Close: %v, %d still held", err, len(tr.open))
	}

	for def, want := range map[string]string{
		"dev/console c 600 0 0 5 1": `no directory "dev"`,
		"a/f/x d 755 0 0":           `no directory "a/f"`,
		"a/x f 644 0 0 exit 3":      "exit status 3",
	} {
		if _, err := Scan([]string{src}, Options{Pseudo: defs(def)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", def, err, want)
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("a failed scan left %d files in TMPDIR", len(ents))
	}
}
