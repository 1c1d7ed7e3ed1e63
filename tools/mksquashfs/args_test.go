package mksquashfs

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
)

func noEnv(string) (string, bool) { return "", false }

func u32(v uint32) *uint32 { return &v }

func TestParseArgs(t *testing.T) {
	gz := codec.Config{ID: codec.Gzip, BlockSize: 128 << 10}
	base := func() *config {
		return &config{sources: []string{"src"}, dest: "out.img", writer: squash.WriterOptions{Codec: gz, BlockSums: true}}
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(c *config)
	}{
		{"defaults", nil, nil, func(c *config) {}},
		{"comp xz", []string{"-comp", "xz"}, nil, func(c *config) { c.writer.Codec.ID = codec.XZ }},
		{"block size K", []string{"-b", "64K"}, nil, func(c *config) { c.writer.Codec.BlockSize = 64 << 10 }},
		{"block size m", []string{"-b", "1m"}, nil, func(c *config) { c.writer.Codec.BlockSize = 1 << 20 }},
		{"block size bytes", []string{"-b", "4096"}, nil, func(c *config) { c.writer.Codec.BlockSize = 4096 }},
		{"gzip level window", []string{"-Xcompression-level", "3", "-Xwindow-size", "10"}, nil, func(c *config) {
			c.writer.Codec.Options = codec.Options{Level: 3, WindowSize: 10}
		}},
		{"zstd level", []string{"-comp", "zstd", "-Xcompression-level", "19"}, nil, func(c *config) {
			c.writer.Codec = codec.Config{ID: codec.Zstd, BlockSize: 128 << 10, Options: codec.Options{Level: 19}}
		}},
		{"xz dict percent after -b", []string{"-Xdict-size", "50%", "-comp", "xz", "-b", "64K"}, nil, func(c *config) {
			c.writer.Codec = codec.Config{ID: codec.XZ, BlockSize: 64 << 10, Options: codec.Options{DictSize: 32 << 10}}
		}},
		{"xz dict fraction", []string{"-comp", "xz", "-Xdict-size", "37.5%"}, nil, func(c *config) {
			c.writer.Codec = codec.Config{ID: codec.XZ, BlockSize: 128 << 10, Options: codec.Options{DictSize: 48 << 10}}
		}},
		{"xz dict K and bcj", []string{"-comp", "xz", "-Xdict-size", "8K", "-Xbcj", "x86,arm"}, nil, func(c *config) {
			c.writer.Codec = codec.Config{ID: codec.XZ, BlockSize: 128 << 10,
				Options: codec.Options{DictSize: 8 << 10, Filters: codec.FilterX86 | codec.FilterARM}}
		}},
		{"lz4 hc", []string{"-comp", "lz4", "-Xhc"}, nil, func(c *config) {
			c.writer.Codec = codec.Config{ID: codec.LZ4, BlockSize: 128 << 10, Options: codec.Options{HC: true}}
		}},
		{"uncompressed short", []string{"-noI", "-noD", "-noF", "-noX"}, nil, func(c *config) {
			c.writer.UncompressedInodes, c.writer.UncompressedData = true, true
			c.writer.UncompressedFragments, c.writer.UncompressedXattrs = true, true
		}},
		{"uncompressed long", []string{"-noInodeCompression", "-noDataCompression", "-noFragmentCompression", "-noXattrCompression"}, nil, func(c *config) {
			c.writer.UncompressedInodes, c.writer.UncompressedData = true, true
			c.writer.UncompressedFragments, c.writer.UncompressedXattrs = true, true
		}},
		{"noId noted", []string{"-noId"}, nil, func(c *config) {
			c.notes = []string{"-noId ignored: the id table is always compressed unless -noI"}
		}},
		{"fragments dups", []string{"-no-fragments", "-always-use-fragments", "-no-duplicates", "-no-fragment-grouping"}, nil, func(c *config) {
			c.writer.NoFragments, c.writer.AlwaysFragments, c.writer.NoDuplicates, c.writer.NoFragmentGrouping = true, true, true, true
		}},
		// mksquashfs 4.5: -no-tailends is its default and ours.
		{"no-tailends is the default", []string{"-no-tailends"}, nil, func(c *config) {}},
		{"tailends", []string{"-tailends"}, nil, func(c *config) { c.writer.AlwaysFragments = true }},
		{"no block sums", []string{"-no-block-sums"}, nil, func(c *config) { c.writer.BlockSums = false }},
		{"block sums last wins", []string{"-no-block-sums", "-block-sums"}, nil, func(c *config) {}},
		{"exports last wins", []string{"-no-exports", "-exports", "-no-exports"}, nil, func(c *config) { c.writer.NoExports = true }},
		{"exports", []string{"-no-exports", "-exports"}, nil, func(c *config) {}},
		{"no xattrs", []string{"-xattrs", "-no-xattrs"}, nil, func(c *config) { c.writer.NoXattrs, c.tree.NoXattrs = true, true }},
		{"noappend", []string{"-noappend"}, nil, func(c *config) { c.noAppend = true }},
		{"excludes take the rest", []string{"-wildcards", "-e", "a", "-b", "... *.o"}, nil, func(c *config) {
			c.tree.Excludes, c.tree.Wildcards = []string{"a", "-b", "... *.o"}, true
		}},
		{"regex keep", []string{"-regex", "-keep-as-directory"}, nil, func(c *config) { c.tree.Regex, c.tree.KeepAsDirectory = true, true }},
		{"all root", []string{"-all-root"}, nil, func(c *config) { c.tree.AllRoot = true }},
		{"root owned", []string{"-root-owned"}, nil, func(c *config) { c.tree.AllRoot = true }},
		{"force ids numeric", []string{"-force-uid", "1000", "-force-gid", "100"}, nil, func(c *config) {
			c.tree.ForceUID, c.tree.ForceGID = u32(1000), u32(100)
		}},
		{"force ids by name", []string{"-force-uid", "root", "-force-gid", "root"}, nil, func(c *config) {
			c.tree.ForceUID, c.tree.ForceGID = u32(0), u32(0)
		}},
		{"times", []string{"-all-time", "100", "-mkfs-time", "200"}, nil, func(c *config) {
			c.tree.AllTime, c.writer.MkfsTime, c.mkfsTimeSet = u32(100), 200, true
		}},
		{"fstime", []string{"-fstime", "4294967295"}, nil, func(c *config) { c.writer.MkfsTime, c.mkfsTimeSet = 4294967295, true }},
		{"source date epoch", nil, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, func(c *config) {
			c.writer.MkfsTime, c.mkfsTimeSet, c.tree.ClampTime = 1700000000, true, u32(1700000000)
		}},
		{"processors mem", []string{"-processors", "3", "-mem", "512M"}, nil, func(c *config) {
			c.writer.Workers = 3
			c.notes = []string{"-mem ignored: memory use is bounded internally"}
		}},
		{"output flags", []string{"-quiet", "-no-progress", "-progress", "-info", "-reproducible", "-no-recovery", "-exit-on-error"}, nil, func(c *config) {
			c.quiet, c.noProgress, c.progress, c.info = true, true, true, true
		}},
		{"not reproducible noted", []string{"-not-reproducible"}, nil, func(c *config) {
			c.notes = []string{"-not-reproducible ignored: images are always reproducible"}
		}},
		{"root attributes", []string{"-root-mode", "1750", "-root-uid", "12", "-root-gid", "root", "-root-time", "5000"}, nil, func(c *config) {
			m := fs.ModeSticky | 0o750
			c.tree.RootMode, c.tree.RootUID, c.tree.RootGID, c.tree.RootTime = &m, u32(12), u32(0), u32(5000)
		}},
		{"root mode setuid", []string{"-root-mode", "4700"}, nil, func(c *config) {
			m := fs.ModeSetuid | 0o700
			c.tree.RootMode = &m
		}},
		{"hard links file systems sparse", []string{"-no-hardlinks", "-one-file-system", "-no-sparse"}, nil, func(c *config) {
			c.tree.NoHardlinks, c.tree.OneFileSystem, c.writer.NoSparse = true, true, true
		}},
		{"nopad drops the block sums", []string{"-nopad"}, nil, func(c *config) {
			c.writer.NoPad, c.writer.BlockSums = true, false
			c.notes = []string{"-nopad: no block sum record either (it follows the padding); a first persist from this image decodes the blocks it keeps"}
		}},
		{"offset", []string{"-offset", "4K"}, nil, func(c *config) { c.offset = 4096 }},
		{"tar defaults", []string{"-tar"}, nil, func(c *config) {
			c.sources, c.tar, c.writer.NoExports, c.writer.AlwaysFragments = []string{"-"}, true, true, true
		}},
		{"tar strip", []string{"-tar", "-strip-components", "2"}, nil, func(c *config) {
			c.sources, c.tar, c.writer.NoExports, c.writer.AlwaysFragments = []string{"-"}, true, true, true
			c.tree.StripComponents = 2
		}},
		{"tar with exports and no tail ends", []string{"-exports", "-tar", "-no-tailends"}, nil, func(c *config) {
			c.sources, c.tar = []string{"-"}, true
		}},
		{"o", []string{"-o", "12345"}, nil, func(c *config) { c.offset = 12345 }},
		{"nopad without block sums", []string{"-nopad", "-no-block-sums"}, nil, func(c *config) {
			c.writer.NoPad, c.writer.BlockSums = true, false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			source := "src"
			if slices.Contains(tc.args, "-tar") {
				source = "-"
			}
			got, err := parseArgs(append([]string{source, "out.img"}, tc.args...), env)
			if err != nil {
				t.Fatal(err)
			}
			want := base()
			tc.want(want)
			got.layout = nil // TestAppendAgainstMksquashfs covers what an append ignores
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseArgsPositionals(t *testing.T) {
	c, err := parseArgs([]string{"a", "b/", "c", "out", "-quiet"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.sources, []string{"a", "b/", "c"}) || c.dest != "out" {
		t.Errorf("sources %q dest %q", c.sources, c.dest)
	}
	for _, args := range [][]string{{"-help"}, {"-h"}, {"--help"}, {"src", "dst", "--help"}, {"src", "-version"}} {
		if _, err := parseArgs(args, noEnv); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"src"}, nil, "need at least one SOURCE and a DEST"},
		{[]string{}, nil, "need at least one SOURCE and a DEST"},
		{[]string{"s", "d", "-foo"}, nil, "unknown option -foo"},
		{[]string{"s", "d", "-sort", "/nonexistent/sort"}, nil, "sort file"},
		{[]string{"s", "d", "-action", "x"}, nil, "-action is not supported"},
		{[]string{"s", "d", "-recover", "x"}, nil, "leaves DEST as it was"},
		{[]string{"s", "d", "-pd", "f 644 0 0 true"}, nil, "-pd"},
		{[]string{"s", "d", "-cpiostyle"}, nil, "SOURCE must be -"},
		{[]string{"-", "d", "-cpiostyle", "-tar"}, nil, "exclude each other"},
		{[]string{"-", "d", "-cpiostyle0", "-e", "x"}, nil, "excludes are not supported"},
		{[]string{"s", "d", "-no-strip", "-e", "x"}, nil, "excludes are not supported"},
		{[]string{"s", "d", "-force-file-mode", "u+q"}, nil, "-force-file-mode"},
		{[]string{"s", "d", "-force-dir-mode", "17777"}, nil, "-force-dir-mode"},
		{[]string{"s", "d", "-uid-gid-offset", "-1"}, nil, "-uid-gid-offset"},
		{[]string{"s", "d", "-max-depth", "x"}, nil, "-max-depth"},
		{[]string{"s", "d", "-xattrs-exclude", "("}, nil, "-xattrs-exclude"},
		{[]string{"s", "d", "-xattrs-add", "novalue"}, nil, "NAME=VALUE"},
		{[]string{"s", "d", "-xattrs-add", "system.x=1"}, nil, "user., trusted. and security."},
		{[]string{"s", "d", "-xattrs-add", "user.x=0xZZ"}, nil, "-xattrs-add"},
		{[]string{"s", "d", "-xattrs-add", `user.x=0t\9`}, nil, "octal"},
		{[]string{"s", "d", "-repro"}, map[string]string{"SOURCE_DATE_EPOCH": "5"}, "can't be used together"},
		{[]string{"s", "d", "-small-readers", "many"}, nil, "-small-readers"},
		{[]string{"s", "d", "-quiet", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"s", "d", "-comp"}, nil, "-comp: missing argument"},
		{[]string{"s", "d", "-comp", "bogus"}, nil, "-comp:"},
		{[]string{"s", "d", "-b"}, nil, "-b: missing argument"},
		{[]string{"s", "d", "-b", "3000"}, nil, "-b:"},
		{[]string{"s", "d", "-b", "2M"}, nil, "-b:"},
		{[]string{"s", "d", "-b", "2K"}, nil, "-b:"},
		{[]string{"s", "d", "-b", "12x"}, nil, "-b:"},
		{[]string{"s", "d", "-Xcompression-level", "0"}, nil, "-Xcompression-level"},
		{[]string{"s", "d", "-Xcompression-level", "10"}, nil, "compression level"},
		{[]string{"s", "d", "-comp", "zstd", "-Xcompression-level", "23"}, nil, "compression level"},
		{[]string{"s", "d", "-Xwindow-size", "16"}, nil, "-Xwindow-size"},
		{[]string{"s", "d", "-comp", "xz", "-Xwindow-size", "10"}, nil, "-Xwindow-size is not an option of compressor xz"},
		{[]string{"s", "d", "-Xhc"}, nil, "-Xhc is not an option of compressor gzip"},
		{[]string{"s", "d", "-Xbcj", "x86"}, nil, "-Xbcj is not an option"},
		{[]string{"s", "d", "-comp", "xz", "-Xbcj", "mips"}, nil, "-Xbcj"},
		{[]string{"s", "d", "-comp", "xz", "-Xdict-size", "4K"}, nil, "dictionary"},
		{[]string{"s", "d", "-comp", "xz", "-Xdict-size", "40K"}, nil, "dictionary"},
		{[]string{"s", "d", "-comp", "xz", "-Xdict-size", "200%"}, nil, "-Xdict-size"},
		{[]string{"s", "d", "-comp", "xz", "-Xdict-size", "lots"}, nil, "-Xdict-size"},
		{[]string{"s", "d", "-force-uid", "no-such-user-here"}, nil, "-force-uid"},
		{[]string{"s", "d", "-force-gid", "no-such-group-here"}, nil, "-force-gid"},
		{[]string{"s", "d", "-all-time", "-1"}, nil, "-all-time"},
		{[]string{"s", "d", "-mkfs-time", "4294967296"}, nil, "-mkfs-time"},
		{[]string{"s", "d", "-root-mode", "0999"}, nil, "-root-mode"},
		{[]string{"s", "d", "-root-mode", "17777"}, nil, "-root-mode"},
		{[]string{"s", "d", "-root-mode"}, nil, "-root-mode: missing argument"},
		{[]string{"s", "d", "-root-uid", "no-such-user-here"}, nil, "-root-uid"},
		{[]string{"s", "d", "-root-gid", "no-such-group-here"}, nil, "-root-gid"},
		{[]string{"s", "d", "-root-time", "soon"}, nil, "-root-time"},
		{[]string{"s", "d", "-offset", "lots"}, nil, "-offset: \"lots\" is not a size"},
		{[]string{"s", "d", "-o", "-1"}, nil, "-o:"},
		{[]string{"s", "d", "-throttle", "10"}, nil, "-throttle is not supported"},
		{[]string{"s", "d", "-p", "dev q 1 2 3"}, nil, "-p: pseudo definition"},
		{[]string{"s", "d", "-tar"}, nil, "the SOURCE must be -"},
		{[]string{"-", "-", "d", "-tar"}, nil, "the SOURCE must be -"},
		{[]string{"-", "d", "-tar", "-e", "x"}, nil, "excludes are not supported"},
		{[]string{"s", "d", "-strip-components", "1"}, nil, "applies to -tar only"},
		{[]string{"-", "d", "-tar", "-strip-components", "-1"}, nil, "-strip-components"},
		{[]string{"s", "d", "-p"}, nil, "-p: missing argument"},
		{[]string{"s", "d", "-pf", "/nonexistent/pseudo"}, nil, "-pf:"},
		{[]string{"s", "d", "-processors", "0"}, nil, "-processors"},
		{[]string{"s", "d", "-mem", "lots"}, nil, "-mem"},
		{[]string{"s", "d", "-ef", "/nonexistent/excludes"}, nil, "-ef"},
		{[]string{"s", "d", "-mkfs-time", "5"}, map[string]string{"SOURCE_DATE_EPOCH": "10"}, "SOURCE_DATE_EPOCH"},
		{[]string{"s", "d", "-all-time", "5"}, map[string]string{"SOURCE_DATE_EPOCH": "10"}, "SOURCE_DATE_EPOCH"},
		{[]string{"s", "d"}, map[string]string{"SOURCE_DATE_EPOCH": "soon"}, "SOURCE_DATE_EPOCH"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			_, err := parseArgs(tc.args, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseExcludeFile(t *testing.T) {
	ef := filepath.Join(t.TempDir(), "ex")
	if err := os.WriteFile(ef, []byte("one\n\ntwo/three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseArgs([]string{"s", "d", "-ef", ef, "-e", "four"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"four", "one", "two/three"}; !reflect.DeepEqual(c.tree.Excludes, want) {
		t.Errorf("excludes %q, want %q", c.tree.Excludes, want)
	}
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		stdout   string
		stderrRe string
	}{
		{[]string{"-help"}, 0, "Usage: squashportage mksquashfs", ""},
		{[]string{"--help"}, 0, "Usage: squashportage mksquashfs", ""},
		{[]string{"s", "d", "-comp", "xz", "--help"}, 0, "-Xcompression-level N   1..9 (default 9", ""},
		{[]string{"-version"}, 0, "squashportage mksquashfs", ""},
		{[]string{"s", "d", "-foo"}, 1, "", "mksquashfs: unknown option -foo; see 'squashportage mksquashfs -help'"},
		{[]string{"s", "d", "-b"}, 1, "", "mksquashfs: -b: missing argument; see"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderrRe) {
			t.Errorf("Main(%q) = %d\nstdout %q\nstderr %q", tc.args, code, out.String(), errb.String())
		}
	}
}

func TestHelpMentionsEveryOption(t *testing.T) {
	for _, opt := range []string{"-comp", "-b ", "-Xcompression-level", "-Xwindow-size", "-Xdict-size", "-Xbcj", "-Xhc",
		"-noI", "-noD", "-noF", "-noX", "-noInodeCompression", "-noDataCompression", "-noFragmentCompression",
		"-noXattrCompression", "-no-fragments", "-always-use-fragments", "-no-duplicates", "-exports", "-no-exports",
		"-no-xattrs", "-xattrs", "-noappend", "-e ", "-ef", "-wildcards", "-regex", "-keep-as-directory", "-all-root",
		"-root-owned", "-force-uid", "-force-gid", "-all-time", "-mkfs-time", "-fstime", "-processors", "-mem",
		"-quiet", "-no-progress", "-progress", "-info", "-version", "-help", "--help", "-tailends", "-no-tailends", "SOURCE_DATE_EPOCH",
		"-root-mode", "-root-uid", "-root-gid", "-root-time", "-no-hardlinks", "-one-file-system", "-no-sparse", "-nopad",
		"-exit-on-error", "-not-reproducible", "-offset", "-o SIZE", "-p DEFINITION", "-pf FILE", "-tar", "-strip-components", "-reproducible", "-no-recovery", "-block-sums", "-no-block-sums",
		"-no-compression", "-max-depth", "-xattrs-exclude", "-xattrs-include", "-xattrs-add", "-inode-time", "-force-file-mode",
		"-force-dir-mode", "-uid-gid-offset", "-repro", "-repro-time", "-info-file", "-single-reader", "-small-readers",
		"-block-readers", "-overcommit", "-mem-percent", "-mem-default", "-no-pager", "-cols", "-help-all", "-root-becomes",
		"-numeric-owner", "-default-mode", "-default-uid", "-default-gid", "-cpiostyle", "-cpiostyle0", "-no-strip", "-tarstyle", "-one-file-system-x", "-sort FILE", "-pd ", "-pseudo-dir", "-pseudo-override", "-percentage", "-ignore-zeros"} {
		if !strings.Contains(helpText, opt) {
			t.Errorf("help text does not mention %s", opt)
		}
	}
}
