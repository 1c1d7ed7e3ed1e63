package convert

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash/codec"
)

func TestMain(m *testing.M) { privileged.Main(m) }

// smallTree writes a few Portage-like entries into a new directory.
func smallTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gentoo")
	for _, p := range []string{"app-misc/foo/files", "metadata", "profiles"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"app-misc/foo/foo-1.ebuild":         "EAPI=8\nDESCRIPTION=foo\n",
		"app-misc/foo/Manifest":             "DIST foo-1.tar.gz 1234 BLAKE2B abc\n",
		"app-misc/foo/files/foo.patch":      strings.Repeat("+ line\n", 5000),
		"metadata/timestamp.chk":            "Mon, 01 Jan 2024 00:00:00 +0000\n",
		"profiles/repo_name":                "gentoo\n",
		"app-misc/foo/files/foo-conf.d.txt": "",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../foo/foo-1.ebuild", filepath.Join(dir, "app-misc/foo/latest")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConvertAllCases(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(src, 0o750); err != nil {
		t.Fatal(err)
	}
	rep := testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	img := filepath.Join(t.TempDir(), "tree.sqfs")
	var logged []string
	type call struct {
		phase       string
		done, total int64
	}
	var calls []call
	res, err := Convert(src, img, Options{Workers: 2, Log: func(f string, a ...any) { logged = append(logged, f) },
		Progress: func(phase string, done, total int64) { calls = append(calls, call{phase, done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	// Progress: write, then verify, never backwards, each ending at its total.
	var phases []string
	for i, c := range calls {
		if i == 0 || calls[i-1].phase != c.phase {
			phases = append(phases, c.phase)
		} else if c.done < calls[i-1].done || c.total != calls[i-1].total {
			t.Errorf("progress went from %v to %v", calls[i-1], c)
		}
		if c.done > c.total {
			t.Errorf("progress %v beyond its total", c)
		}
		if i == len(calls)-1 || calls[i+1].phase != c.phase {
			if c.done != c.total || c.total == 0 {
				t.Errorf("phase %s ended at %v", c.phase, c)
			}
		}
	}
	if strings.Join(phases, ",") != "write,verify" {
		t.Errorf("progress phases %q, want write,verify", phases)
	}
	if len(calls) > 0 && calls[0].total != res.Bytes {
		t.Errorf("write progress total %d, want the %d bytes read", calls[0].total, res.Bytes)
	}
	if res.Entries != rep.Entries+1 {
		t.Errorf("compared %d entries, want %d (the tree and its root)", res.Entries, rep.Entries+1)
	}
	if res.Removed {
		t.Error("source removed without RemoveSource")
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != res.ImageSize {
		t.Errorf("image: %v, size %v, want %d", err, fi, res.ImageSize)
	}
	if _, err := os.Stat(img + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("IMAGE.new left behind: %v", err)
	}
	if len(logged) == 0 {
		t.Error("nothing logged")
	}
	// An independent check with the test suite's own comparer.
	mnt := t.TempDir()
	privileged.MountSquashfs(t, img, mnt)
	for _, d := range testtree.Compare(src, mnt) {
		t.Errorf("image differs from source: %v", d)
	}
	if got, want := res.Spec.String(), img+":"+src; got != want {
		t.Errorf("spec %q, want %q", got, want)
	}
	if got, want := KernelParam(res.Spec), "squashportage="+img+":"+src; got != want {
		t.Errorf("kernel parameter %q, want %q", got, want)
	}
}

func TestConvertCompressors(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantSpec string // after IMAGE:DIR
	}{
		{"default gzip", Options{}, ""},
		{"xz 1m", Options{Comp: codec.XZ, Block: 1 << 20}, ""},
		{"lz4", Options{Comp: codec.LZ4}, ""},
		{"zstd from the spec", Options{SpecOptions: "comp=zstd,size=1g,keep=3"}, ":size=1g,comp=zstd,keep=3"},
		{"block from the spec", Options{SpecOptions: "block=4k"}, ":block=4k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := smallTree(t)
			img := filepath.Join(t.TempDir(), "gentoo.sqfs")
			tc.opts.Workers = 2
			res, err := Convert(src, img, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Spec.String(); got != img+":"+src+tc.wantSpec {
				t.Errorf("spec %q, want %q", got, img+":"+src+tc.wantSpec)
			}
			if res.Entries != 13 {
				t.Errorf("compared %d entries, want 13 (6 directories, 6 files, a symlink)", res.Entries)
			}
		})
	}
}

func TestConvertRemoveSource(t *testing.T) {
	src := smallTree(t)
	img := filepath.Join(t.TempDir(), "gentoo.sqfs")
	res, err := Convert(src, img, Options{RemoveSource: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Removed {
		t.Error("Removed is false")
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("the source directory itself must stay: %v", err)
	}
	if len(ents) != 0 {
		t.Errorf("source not emptied: %d entries left", len(ents))
	}
	// The image now holds the tree: mount it where the tree was.
	privileged.MountSquashfs(t, img, src)
	if b, err := os.ReadFile(filepath.Join(src, "profiles/repo_name")); err != nil || string(b) != "gentoo\n" {
		t.Errorf("read back from the image: %q, %v", b, err)
	}
}

func TestConvertRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, src, img, stateDir string) (string, string, Options)
		want  string
	}{
		{"existing image", func(t *testing.T, src, img, _ string) (string, string, Options) {
			write(t, img, "old")
			return src, img, Options{}
		}, "exists"},
		{"image inside the tree", func(t *testing.T, src, _, _ string) (string, string, Options) {
			return src, filepath.Join(src, "x.sqfs"), Options{}
		}, "lies inside target"},
		{"source is a file", func(t *testing.T, src, img, _ string) (string, string, Options) {
			f := filepath.Join(t.TempDir(), "f")
			write(t, f, "")
			return f, img, Options{}
		}, "not a directory"},
		{"source missing", func(t *testing.T, src, img, _ string) (string, string, Options) {
			return filepath.Join(src, "nope"), img, Options{}
		}, "no such file"},
		{"image directory missing", func(t *testing.T, src, img, _ string) (string, string, Options) {
			return src, filepath.Join(filepath.Dir(img), "no/such/dir.sqfs"), Options{}
		}, "must exist"},
		{"bad spec options", func(t *testing.T, src, img, _ string) (string, string, Options) {
			return src, img, Options{SpecOptions: "size=huge"}
		}, "size="},
		{"unknown spec option", func(t *testing.T, src, img, _ string) (string, string, Options) {
			return src, img, Options{SpecOptions: "bogus"}
		}, "unknown option"},
		{"bad block size", func(t *testing.T, src, img, _ string) (string, string, Options) {
			return src, img, Options{Block: 3000}
		}, "block"},
		{"managed by squashportage", func(t *testing.T, src, img, stateDir string) (string, string, Options) {
			sp, err := overlay.ParseSpec(img + ":" + src)
			if err != nil {
				t.Fatal(err)
			}
			st := &overlay.State{Spec: sp, Image: img, Target: src, UpperKind: overlay.KindTmpfs}
			if err := st.Save(stateDir); err != nil {
				t.Fatal(err)
			}
			return src, img, Options{StateDir: stateDir}
		}, "already mounted by squashportage"},
		{"source is a squashfs mount", func(t *testing.T, src, img, stateDir string) (string, string, Options) {
			other := filepath.Join(t.TempDir(), "other.sqfs")
			if _, err := Convert(smallTree(t), other, Options{Workers: 2, StateDir: stateDir}); err != nil {
				t.Fatal(err)
			}
			privileged.MountSquashfs(t, other, src)
			return src, img, Options{StateDir: stateDir}
		}, "squashfs mount"},
		{"mount below the source with remove-source", func(t *testing.T, src, img, stateDir string) (string, string, Options) {
			below := filepath.Join(src, "metadata")
			if err := unix.Mount("tmpfs", below, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(below, unix.MNT_DETACH) })
			return src, img, Options{RemoveSource: true, StateDir: stateDir}
		}, "mounted below it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := smallTree(t)
			img := filepath.Join(t.TempDir(), "gentoo.sqfs")
			stateDir := t.TempDir()
			dir, image, opts := tc.setup(t, src, img, stateDir)
			if opts.StateDir == "" {
				opts.StateDir = stateDir
			}
			_, err := Convert(dir, image, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(src, "profiles/repo_name")); err != nil {
				t.Errorf("source touched: %v", err)
			}
			if _, err := os.Stat(image + ".new"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("IMAGE.new left behind: %v", err)
			}
		})
	}
}

func TestConvertReplace(t *testing.T) {
	src := smallTree(t)
	img := filepath.Join(t.TempDir(), "gentoo.sqfs")
	write(t, img, "old")
	res, err := Convert(src, img, Options{Replace: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != res.ImageSize {
		t.Errorf("image not replaced: %v %v", fi, err)
	}
}

// TestVerifyMismatch feeds the verifier an image of an older state of
// the tree, as a sync running during the conversion would cause.
func TestVerifyMismatch(t *testing.T) {
	src := smallTree(t)
	img := filepath.Join(t.TempDir(), "gentoo.sqfs")
	if _, err := Convert(src, img, Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(src, "metadata/timestamp.chk"), "Tue, 02 Jan 2024 00:00:00 +0000\n")
	if err := os.Remove(filepath.Join(src, "app-misc/foo/latest")); err != nil {
		t.Fatal(err)
	}
	_, err := verifyMounted(img, src, codec.Gzip, 2, nil)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("error %v, want a MismatchError", err)
	}
	msg := me.Error()
	for _, want := range []string{`"app-misc/foo/latest": only in B`, `"metadata/timestamp.chk": content differs`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestLayoutWarnings(t *testing.T) {
	src := smallTree(t)
	if err := os.MkdirAll(filepath.Join(src, "distfiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(src, "distfiles/foo-1.tar.gz"), "tarball")
	if err := os.MkdirAll(filepath.Join(src, "packages"), 0o755); err != nil {
		t.Fatal(err) // empty: no warning
	}
	res, err := Convert(src, filepath.Join(t.TempDir(), "g.sqfs"), Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "DISTDIR=/var/cache/distfiles") {
		t.Errorf("warnings %q, want one about distfiles", res.Warnings)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
