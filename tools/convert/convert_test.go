package convert

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/privileged"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func tree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gentoo")
	if err := os.MkdirAll(filepath.Join(dir, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "profiles/repo_name"), []byte("gentoo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string // in stdout
		wantErr    string // in stderr
	}{
		{"help", []string{"--help"}, 0, "Usage: squashportage convert", ""},
		{"short help", []string{"-h"}, 0, "--remove-source", ""},
		{"no arguments", nil, 2, "", "want DIR and IMAGE, got 0"},
		{"three arguments", []string{"/a", "/b", "/c"}, 2, "", "got 3"},
		{"unknown option", []string{"--bogus", "/a", "/b"}, 2, "", "bogus"},
		{"bad compressor", []string{"--comp", "lzma", "/a", "/b"}, 2, "", "is not a compressor images can be written with (gzip, xz, zstd, lz4, lzo)"},
		{"bad block", []string{"--block", "3k", "/a", "/b"}, 2, "", "power of two"},
		{"bad processors", []string{"--processors", "0", "/a", "/b"}, 2, "", "at least 1"},
		{"missing source", []string{"/nonexistent/tree", "/tmp/x.sqfs"}, 1, "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := Main(tc.args, &out, &errb); got != tc.wantStatus {
				t.Errorf("status %d, want %d; stderr %s", got, tc.wantStatus, errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.wantErr)
			}
		})
	}
}

// convertTree runs convert on a fresh tree with extra options, and fails
// the test unless it succeeds.
func convertTree(t *testing.T, extra ...string) (dir, img string, stdout, stderr *bytes.Buffer) {
	t.Helper()
	dir = tree(t)
	img = filepath.Join(t.TempDir(), "gentoo.sqfs")
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	args := append([]string{dir, img, "--state-dir", t.TempDir()}, extra...)
	if got := Main(args, stdout, stderr); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	return dir, img, stdout, stderr
}

func TestMainConverts(t *testing.T) {
	tests := []struct {
		name     string
		extra    []string
		wantSpec string // after IMAGE:DIR
		removed  bool
	}{
		{"defaults", nil, "", false},
		{"options after the arguments", []string{"--comp", "zstd", "--block", "256k", "--spec-options", "size=512m", "-v"}, ":size=512m", false},
		{"remove source", []string{"--remove-source"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, img, out, _ := convertTree(t, tc.extra...)
			spec := img + ":" + dir + tc.wantSpec
			for _, want := range []string{
				"\n    squashportage=" + spec + "\n",
				"/etc/squashportage.conf:\n    " + spec + "\n",
				"squashportage mount " + spec,
				"verified by mounting it",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			_, err := os.Stat(filepath.Join(dir, "profiles"))
			if tc.removed != os.IsNotExist(err) {
				t.Errorf("removed=%v but stat of the source says %v", tc.removed, err)
			}
			if tc.removed != strings.Contains(out.String(), "emptied "+dir) {
				t.Errorf("stdout does not say whether %s was emptied:\n%s", dir, out.String())
			}
		})
	}
}

func TestParseBlock(t *testing.T) {
	tests := []struct {
		in   string
		want int // 0: error
	}{
		{"4k", 4096}, {"128K", 131072}, {"1m", 1 << 20}, {"65536", 65536},
		{"2m", 0}, {"3k", 0}, {"0", 0}, {"-4k", 0}, {"k", 0}, {"2048", 0},
	}
	for _, tc := range tests {
		got, err := parseBlock(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("parseBlock(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestMainProgress: on a terminal convert tells its phases and draws a bar
// while writing and verifying; --no-progress and a pipe keep it quiet.
func TestMainProgress(t *testing.T) {
	defer func(f func(io.Writer) bool) { isTerminal = f }(isTerminal)
	for _, tc := range []struct {
		name  string
		tty   bool
		extra []string
		want  []string // in order in stderr; nil: stderr empty
	}{
		{"terminal", true, nil, []string{"convert: scanning ", "convert: writing ", "\r[", "100%", "\nsquashportage convert: verifying: ",
			"\r[", "100%", "\nsquashportage convert: wrote "}},
		{"terminal, --no-progress", true, []string{"--no-progress"}, nil},
		{"pipe", false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isTerminal = func(io.Writer) bool { return tc.tty }
			_, _, _, errb := convertTree(t, tc.extra...)
			rest := errb.String()
			if tc.want == nil && rest != "" {
				t.Errorf("stderr %q, want nothing", rest)
			}
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stderr lacks %q (in order) in:\n%q", w, errb.String())
				}
				rest = rest[i+len(w):]
			}
			if tc.want != nil && !strings.HasSuffix(errb.String(), "\n") {
				t.Errorf("stderr does not end its last line: %q", errb.String())
			}
		})
	}
}
