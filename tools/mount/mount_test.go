package mount

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/overlay"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func makeImage(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

func TestMainCLI(t *testing.T) {
	img := makeImage(t)
	img2 := makeImage(t) // one image serves one target
	tests := []struct {
		name       string
		args       func(dir string) []string
		config     string // written to dir/conf, with DIR replaced
		premount   string // spec mounted before, with DIR replaced
		code       int
		stdout     []string
		stderr     []string
		mounted    []string // targets (under dir) mounted afterwards
		notMounted []string
	}{
		{name: "help", args: func(string) []string { return []string{"--help"} }, code: 0,
			stdout: []string{"Usage: squashportage mount", "IMAGE:TARGET[:OPTIONS]", "upper=DIR", "--force"}},
		{name: "unknown flag", args: func(string) []string { return []string{"--bogus", "/a:/b"} }, code: 2,
			stderr: []string{"unknown option --bogus", "--help"}},
		{name: "bad spec", args: func(string) []string { return []string{"/a.sqfs:/x:sise=1g"} }, code: 2,
			stderr: []string{`unknown option "sise" (allowed: ro,`}},
		{name: "no spec, no config", args: func(d string) []string { return []string{"--config", d + "/none"} }, code: 0,
			stdout: []string{"/none: nothing to mount"}},
		{name: "config unreadable", args: func(d string) []string { return []string{"--config", d + "/t1"} }, code: 3,
			stderr: []string{"/t1: is a directory"}},
		{name: "one spec, flag after it", args: func(d string) []string {
			return []string{img + ":" + d + "/t1", "--state-dir", d + "/state"}
		}, code: 0, stdout: []string{"mounted " + img + " at ", "/t1 (changes in RAM, up to 25%, persist=shutdown)"}, mounted: []string{"t1"}},
		{name: "missing image", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", d + "/no.sqfs:" + d + "/t1"}
		}, code: 1, stderr: []string{"no.sqfs: no such file"}, notMounted: []string{"t1"}},
		{name: "not empty without --force", args: func(d string) []string {
			os.WriteFile(d+"/t1/x", nil, 0o644)
			return []string{"--state-dir", d + "/state", img + ":" + d + "/t1"}
		}, code: 1, stderr: []string{"is not empty (x)", "--force"}, notMounted: []string{"t1"}},
		{name: "not empty with --force", args: func(d string) []string {
			os.WriteFile(d+"/t1/x", nil, 0o644)
			return []string{"--force", "--state-dir", d + "/state", img + ":" + d + "/t1:ro"}
		}, code: 0, stdout: []string{"(read-only)"}, mounted: []string{"t1"}},
		{name: "config, one already mounted", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", "--config", d + "/conf"}
		}, config: "# test\n" + img + ":DIR/t1\n" + img2 + ":DIR/t2:persist=never\n", premount: img + ":DIR/t1",
			code: 0, stdout: []string{"/t2 (changes in RAM, up to 25%, persist=never)"}, mounted: []string{"t1", "t2"}},
		{name: "config error", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", "--config", d + "/conf"}
		}, config: "\n" + img + ":DIR/t1:bad\n", code: 3, stderr: []string{"conf:2: spec"}, notMounted: []string{"t1"}},
		{name: "config: bad line and missing image do not stop the good spec", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", "--config", d + "/conf"}
		}, config: img + ":DIR/t1:sise=1g\nDIR/no.sqfs:DIR/t1\n" + img + ":DIR/t2\n" + img + ":DIR/t2:ro\n", code: 3,
			stderr: []string{`conf:1: spec "` + img, `unknown option "sise"`, "no.sqfs: no such file", "conf:4: target ", "/t2 already configured on line 3"},
			stdout: []string{"/t2 (changes in RAM"}, mounted: []string{"t2"}, notMounted: []string{"t1"}},
		{name: "spec target through a symlink", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", img + ":" + d + "/link"}
		}, code: 0, stdout: []string{"/t1 (changes in RAM"}, mounted: []string{"t1"}, notMounted: []string{"link"}},
		{name: "config target through a symlink, already mounted", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", "--config", d + "/conf"}
		}, config: img + ":DIR/link\n", premount: img + ":DIR/t1", code: 0, mounted: []string{"t1"}, notMounted: []string{"link"}},
		{name: "config target mounted under a symlink before", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", "--config", d + "/conf"}
		}, config: img + ":DIR/t1\n", premount: img + ":DIR/link", code: 0, mounted: []string{"link"}, notMounted: []string{"t1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			stateDir := dir + "/state"
			for _, d := range []string{"t1", "t2"} {
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink("t1", dir+"/link"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				states, _ := overlay.List(stateDir)
				for _, st := range states {
					if err := overlay.Umount(st.Target, overlay.UmountOptions{StateDir: stateDir, Lazy: true, Discard: true}); err != nil {
						t.Error(err)
					}
				}
				// A record kept under the symlink does not find the
				// overlay at t1 in the mount table.
				_ = unix.Unmount(filepath.Join(dir, "t1"), unix.MNT_DETACH)
			})
			if tt.config != "" {
				if err := os.WriteFile(dir+"/conf", []byte(strings.ReplaceAll(tt.config, "DIR", dir)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.premount != "" {
				sp, err := overlay.ParseSpec(strings.ReplaceAll(tt.premount, "DIR", dir))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := overlay.Mount(sp, overlay.MountOptions{StateDir: stateDir}); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			code := Main(tt.args(dir), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, &stdout, &stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
			for _, d := range tt.mounted {
				if _, err := overlay.Load(stateDir, filepath.Join(dir, d)); err != nil {
					t.Errorf("%s not mounted: %v", d, err)
				}
			}
			for _, d := range tt.notMounted {
				if _, err := overlay.Load(stateDir, filepath.Join(dir, d)); err == nil {
					t.Errorf("%s mounted", d)
				}
			}
		})
	}
}
