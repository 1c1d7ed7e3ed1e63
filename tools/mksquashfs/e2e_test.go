package mksquashfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/squashportage/squashportage/squash"
)

// buildSource makes a small tree with the entry kinds mksquashfs handles.
func buildSource(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	files := map[string]string{
		"zeta":             "last\n",
		"alpha":            "first\n",
		"dir/b.gz":         "gz",
		"dir/sub/c.gz":     "deep gz",
		"dir/sub/keep.txt": strings.Repeat("keep me ", 1000),
		"big.bin":          strings.Repeat("0123456789", 300_000), // > 1 MiB: streamed, not prefetched
		"dup1":             "same content",
		"dup2":             "same content",
		".hidden.gz":       "dot",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustDo(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o700))
	mustDo(t, os.Symlink("alpha", filepath.Join(dir, "link")))
	mustDo(t, os.Link(filepath.Join(dir, "alpha"), filepath.Join(dir, "dir/hard")))
	mustDo(t, os.Chmod(filepath.Join(dir, "zeta"), 0o4755))
	// Whole blocks of zeros (at 4K and 128K blocks): holes unless -no-sparse.
	sparse := filepath.Join(dir, "sparse.bin")
	mustDo(t, os.WriteFile(sparse, append(make([]byte, 300_000), "end"...), 0o644))
	return dir
}

// pseudoFile writes a -pf file with timed definitions, so that images
// built from it at different times agree.
func pseudoFile(t *testing.T) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "pseudo")
	mustDo(t, os.WriteFile(name, []byte(`# made without root
dev D 100 755 0 0
dev/null C 100 666 0 0 1 3
"dev/a b" C 100 600 0 0 4 64
dir/out F 100 644 0 0 printf '%s\n' one \
    two
dir/sub M 100 700 1 1
`), 0o644))
	return name
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listing is unsquashfs -lls output minus the extraction directory name.
func listing(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lls", "-d", "R", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lls %s: %v\n%s", img, err, out)
	}
	return string(out)
}

// extract unpacks img and returns the directory.
func extract(t *testing.T, img string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "x")
	if out, err := exec.Command("unsquashfs", "-no-progress", "-d", d, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs %s: %v\n%s", img, err, out)
	}
	return d
}

func TestEndToEndAgainstMksquashfs(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs", "diff"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed", tool)
		}
	}
	src := buildSource(t)
	other := filepath.Join(filepath.Dir(src), "other")
	mustDo(t, os.MkdirAll(filepath.Join(other, "dir"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(other, "dir", "o"), []byte("other"), 0o644))

	// Fixed times: a made-up root would otherwise get the current time,
	// which differs between the two runs.
	fixed := []string{"-all-time", "1000000", "-mkfs-time", "1000000"}
	tests := []struct {
		name    string
		sources []string
		opts    []string
	}{
		{"defaults", []string{src}, nil},
		{"keep as directory", []string{src}, append([]string{"-keep-as-directory"}, fixed...)},
		{"several sources", []string{src, filepath.Join(src, "dir"), filepath.Join(other, "dir")}, fixed},
		{"owner and time", []string{src}, append([]string{"-all-root", "-force-gid", "7"}, fixed...)},
		{"wildcard excludes", []string{src}, []string{"-wildcards", "-e", "... *.gz", "empty"}},
		{"plain excludes", []string{src}, []string{"-e", "dir/sub", "big.bin"}},
		{"xz no fragments", []string{src}, []string{"-comp", "xz", "-no-fragments", "-b", "64K"}},
		{"uncompressed", []string{src}, []string{"-noI", "-noD", "-noF", "-noX", "-no-duplicates", "-no-exports"}},
		{"no hard links", []string{src}, []string{"-no-hardlinks"}},
		{"root attributes", []string{src}, []string{"-root-mode", "1750", "-root-uid", "12", "-root-gid", "34", "-root-time", "5000"}},
		{"root attributes of a made-up root", []string{src, filepath.Join(other, "dir")},
			[]string{"-root-mode", "0700", "-root-uid", "12", "-root-gid", "34", "-root-time", "5000", "-mkfs-time", "1"}},
		{"every file's owner over the root's", []string{src}, []string{"-root-uid", "12", "-root-gid", "34", "-all-root", "-root-time", "5000", "-all-time", "6000"}},
		{"no sparse", []string{src}, []string{"-no-sparse", "-b", "4K"}},
		{"no pad", []string{src}, []string{"-nopad", "-no-exports"}},
		{"pseudo files", []string{src}, []string{"-all-time", "7",
			"-p", "dev d 755 0 0", "-p", "dev/console c 600 0 0 5 1", "-p", "dev/sda B 3000 660 0 disk 8 0",
			"-p", "dir/new f 644 12 34 printf 'made %s' here", "-p", "zeta m 700 5 6", "-p", "dir m 750 0 9",
			"-p", "fifo i 644 0 0 f", "-p", "sock I 5 644 0 0 s", "-p", "ln s 0 0 0 dir/new",
			"-p", `with\ space D 1000 755 0 0`, "-p", "alpha d 755 0 0", "-p", "missing m 755 0 0"}},
		{"pseudo file", []string{src}, []string{"-pf", pseudoFile(t)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			ours, ref := filepath.Join(tmp, "ours.img"), filepath.Join(tmp, "ref.img")
			common := append([]string{"-no-progress", "-quiet"}, tc.opts...)
			refArgs := append(append(append([]string{}, tc.sources...), ref, "-noappend"), common...)
			if out, err := exec.Command("mksquashfs", refArgs...).CombinedOutput(); err != nil {
				t.Fatalf("mksquashfs: %v\n%s", err, out)
			}
			var stdout, stderr bytes.Buffer
			args := append(append(append([]string{}, tc.sources...), ours), common...)
			if code := Main(args, &stdout, &stderr); code != 0 {
				t.Fatalf("Main(%q) = %d\n%s%s", args, code, stdout.String(), stderr.String())
			}
			if got, want := listing(t, ours), listing(t, ref); got != want {
				t.Errorf("listing differs from mksquashfs\nours:\n%s\nmksquashfs:\n%s", got, want)
			}
			if out, err := exec.Command("diff", "-r", "--no-dereference", extract(t, ours), extract(t, ref)).CombinedOutput(); err != nil && !onlyAlikeSpecials(string(out)) {
				t.Errorf("contents differ from mksquashfs: %v\n%s", err, out)
			}
		})
	}
}

// alikeSpecial is what diff -r says of two FIFOs, sockets or device
// nodes of one type: they have no contents to compare, and it takes two
// device nodes for alike only if their status agrees to the change time,
// which is when each extraction made them (by hand: two mknod'ed c 5 1
// nodes compare alike until one is chmod'ed back to its own mode). The
// listing compared their types, modes, owners, times and device numbers.
var alikeSpecial = regexp.MustCompile(`^File .* is a (fifo|socket|character special file|block special file) while file .* is a (fifo|socket|character special file|block special file)$`)

func onlyAlikeSpecials(out string) bool {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := alikeSpecial.FindStringSubmatch(l)
		if m == nil || m[1] != m[2] {
			return false
		}
	}
	return true
}

func TestEndToEndDest(t *testing.T) {
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Fatal("unsquashfs not installed")
	}
	src := buildSource(t)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "img")
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(args, &out, &errb)
		return code, out.String() + errb.String()
	}

	if code, out := run(src, img, "-mkfs-time", "77"); code != 0 || !strings.Contains(out, "Number of files") {
		t.Fatalf("first run = %d: %s", code, out)
	}
	if code, out := run(src, img); code != 0 || !strings.Contains(out, "appending to") {
		t.Errorf("existing image without -noappend = %d, want an append: %s", code, out)
	} else if l := listing(t, img); !strings.Contains(l, "R/alpha_1") {
		t.Errorf("appended image has no alpha_1:\n%s", l)
	}
	if code, out := run(src, img, "-noappend", "-quiet"); code != 0 || out != "" {
		t.Errorf("-noappend -quiet = %d: %q", code, out)
	}

	notImg := filepath.Join(tmp, "notimg")
	mustDo(t, os.WriteFile(notImg, []byte("precious"), 0o644))
	if code, out := run(src, notImg); code == 0 || !strings.Contains(out, "not a squashfs image") {
		t.Errorf("non-image DEST = %d: %s", code, out)
	}
	if b, _ := os.ReadFile(notImg); string(b) != "precious" {
		t.Errorf("non-image DEST was modified")
	}

	// The image inside its own source must not include itself.
	inside := filepath.Join(src, "self.img")
	mustDo(t, os.WriteFile(inside, []byte("old"), 0o644))
	if code, out := run(src, inside, "-noappend", "-quiet"); code != 0 {
		t.Fatalf("image inside source = %d: %s", code, out)
	}
	if l := listing(t, inside); strings.Contains(l, "self.img") {
		t.Errorf("image contains itself:\n%s", l)
	}

	// A file that grows while being read (procfs reports size 0) fails the
	// run, and the partial DEST is removed.
	bad := filepath.Join(tmp, "bad.img")
	if code, out := run("/proc/self/status", bad, "-quiet"); code == 0 || !strings.Contains(out, "/proc/self/status") {
		t.Errorf("growing file = %d: %s", code, out)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("partial image left behind: %v", err)
	}

	// SOURCE_DATE_EPOCH sets the creation time and clamps file times.
	t.Setenv("SOURCE_DATE_EPOCH", "86400")
	sde := filepath.Join(tmp, "sde.img")
	if code, out := run(src, sde, "-quiet"); code != 0 {
		t.Fatalf("SOURCE_DATE_EPOCH run = %d: %s", code, out)
	}
	out, err := exec.Command("unsquashfs", "-s", sde).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Unix(86400, 0).Format("Mon Jan 2 15:04:05 2006")
	if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), want) {
		t.Errorf("creation time is not %s:\n%s", want, out)
	}
	if l := listing(t, sde); !strings.Contains(l, "1970-01-02") || strings.Contains(l, time.Now().Format("2006-")) {
		t.Errorf("file times not clamped:\n%s", l)
	}
}

// TestTailendsOptions: mksquashfs 4.5's -no-tailends is the default (same
// image as without it), and -tailends is -always-use-fragments.
// buildSmall writes img from src with fixed times and 4K blocks, plus opts.
func buildSmall(t *testing.T, src, img string, opts ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{src, img, "-noappend", "-quiet", "-mkfs-time", "1", "-all-time", "1", "-b", "4K"}, opts...)
	if code := Main(args, &out, &errb); code != 0 {
		t.Fatalf("mksquashfs %q: exit %d: %s", opts, code, &errb)
	}
	return img
}

func TestTailendsOptions(t *testing.T) {
	src := buildSource(t)
	dir := t.TempDir()
	build := func(name string, opts ...string) []byte {
		t.Helper()
		b, err := os.ReadFile(buildSmall(t, src, filepath.Join(dir, name), opts...))
		mustDo(t, err)
		return b
	}
	def, no := build("def"), build("no", "-no-tailends")
	always, tail := build("always", "-always-use-fragments"), build("tail", "-tailends")
	if !bytes.Equal(def, no) {
		t.Error("-no-tailends changed the image")
	}
	if !bytes.Equal(always, tail) {
		t.Error("-tailends differs from -always-use-fragments")
	}
	if bytes.Equal(def, tail) {
		t.Error("-tailends made no difference (the source has files larger than a block)")
	}
}

// TestBlockSumsOption: by default the image carries a block sum record
// that the reader accepts (so a first persist from it reads instead of
// decodes); -no-block-sums ends the file at the 4K padding, and the two
// images agree on everything the superblock covers.
func TestBlockSumsOption(t *testing.T) {
	src := buildSource(t)
	dir := t.TempDir()
	sums := func(img string) (int, int64, uint64) {
		t.Helper()
		f, err := os.Open(img)
		mustDo(t, err)
		defer f.Close()
		fi, err := f.Stat()
		mustDo(t, err)
		r, err := squash.NewReader(f, fi.Size())
		mustDo(t, err)
		m, _ := r.BlockSums()
		return len(m), fi.Size(), r.Superblock().BytesUsed
	}
	def := buildSmall(t, src, filepath.Join(dir, "def"))
	off := buildSmall(t, src, filepath.Join(dir, "off"), "-no-block-sums")
	n, size, used := sums(def)
	if n == 0 {
		t.Errorf("default image: no block sums found (size %d, bytes used %d)", size, used)
	}
	n, size, used = sums(off)
	if n != 0 || size != int64((used+4095)&^4095) {
		t.Errorf("-no-block-sums: %d sums, size %d for %d bytes used", n, size, used)
	}
	a, err := os.ReadFile(def)
	mustDo(t, err)
	b, err := os.ReadFile(off)
	mustDo(t, err)
	if !bytes.Equal(a[:len(b)], b) {
		t.Error("the images differ before the record")
	}
	if listing(t, def) != listing(t, off) {
		t.Error("unsquashfs lists the images differently")
	}
}
