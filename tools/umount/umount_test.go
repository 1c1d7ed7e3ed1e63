package umount

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/overlay"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func makeImage(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

// chdir is set by TestMainCLI to t.Chdir, for the cases' args.
var chdir func(string)

func TestMainCLI(t *testing.T) {
	img := makeImage(t)
	tests := []struct {
		name     string
		mount    []string // targets under dir to mount first
		busy     string   // target under dir a sleep keeps busy
		change   string   // target under dir to write a file in
		args     func(dir string) []string
		code     int
		stdout   []string
		stderr   []string
		remained []string // targets still mounted afterwards
	}{
		{name: "help", args: func(string) []string { return []string{"-h"} }, code: 0,
			stdout: []string{"Usage: squashportage umount", "--lazy", "--lazy"}},
		{name: "no target", args: func(string) []string { return nil }, code: 2,
			stderr: []string{"give either TARGET... or --all"}},
		{name: "target and --all", args: func(string) []string { return []string{"--all", "/x"} }, code: 2,
			stderr: []string{"give either TARGET... or --all"}},
		{name: "unknown flag", args: func(string) []string { return []string{"--force", "/x"} }, code: 2,
			stderr: []string{"unknown option --force"}},
		{name: "relative target, not managed", args: func(d string) []string { return []string{"--state-dir", d + "/state", "x"} }, code: 1,
			stderr: []string{"/x: not managed by squashportage"}},
		{name: "relative target", mount: []string{"t1", "t2"}, args: func(d string) []string {
			chdir(d + "/t2/..")
			return []string{"--state-dir", d + "/state", "t1"}
		}, code: 0, stdout: []string{"unmounted " + "/"}, remained: []string{"t2"}},
		{name: "target through a symlink", mount: []string{"t1"}, args: func(d string) []string {
			if err := os.Symlink(d+"/t1", d+"/link"); err != nil {
				panic(err)
			}
			return []string{"--state-dir", d + "/state", d + "/link"}
		}, code: 0, stdout: []string{"/t1\n"}},
		{name: "not managed", args: func(d string) []string { return []string{"--state-dir", d + "/state", d + "/t1"} }, code: 1,
			stderr: []string{"not managed by squashportage"}},
		{name: "one", mount: []string{"t1", "t2"}, args: func(d string) []string {
			return []string{d + "/t1", "--state-dir", d + "/state"}
		}, code: 0, stdout: []string{"unmounted "}, remained: []string{"t2"}},
		{name: "all", mount: []string{"t1", "t2"}, args: func(d string) []string {
			return []string{"--all", "--state-dir", d + "/state"}
		}, code: 0, stdout: []string{"/t2\nunmounted ", "/t1\n"}},
		{name: "busy", mount: []string{"t1"}, busy: "t1", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", d + "/t1"}
		}, code: 1, stderr: []string{"is busy (use --lazy", "(sleep): cwd"}, remained: []string{"t1"}},
		{name: "pending", mount: []string{"t1"}, change: "t1", args: func(d string) []string {
			return []string{"--state-dir", d + "/state", d + "/t1"}
		}, code: 1, stderr: []string{"holds changes no persist has written (0 changed, 1 new", "squashportage persist ", "--discard"}, remained: []string{"t1"}},
		{name: "pending discard", mount: []string{"t1"}, change: "t1", args: func(d string) []string {
			return []string{"--discard", "--state-dir", d + "/state", "--all"}
		}, code: 0, stdout: []string{"unmounted "}},
		{name: "busy lazy", mount: []string{"t1"}, busy: "t1", args: func(d string) []string {
			return []string{"--lazy", "--state-dir", d + "/state", d + "/t1"}
		}, code: 0, stdout: []string{"unmounted "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			stateDir := dir + "/state"
			chdir = t.Chdir
			t.Cleanup(func() {
				states, _ := overlay.List(stateDir)
				for _, st := range states {
					if err := overlay.Umount(st.Target, overlay.UmountOptions{StateDir: stateDir, Lazy: true, Discard: true}); err != nil {
						t.Error(err)
					}
				}
			})
			for _, d := range []string{"t1", "t2"} {
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i, m := range tt.mount {
				image := img
				if i > 0 { // one image serves one target
					image = filepath.Join(dir, m+".sqfs")
					if out, err := exec.Command("cp", img, image).CombinedOutput(); err != nil {
						t.Fatalf("cp: %v: %s", err, out)
					}
				}
				sp, err := overlay.ParseSpec(image + ":" + filepath.Join(dir, m))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := overlay.Mount(sp, overlay.MountOptions{StateDir: stateDir}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.change != "" {
				if err := os.WriteFile(filepath.Join(dir, tt.change, "new"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := tt.stderr
			if tt.busy != "" {
				cmd := exec.Command("sleep", "60")
				cmd.Dir = filepath.Join(dir, tt.busy, "sub")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				if tt.code != 0 {
					want = append(want, fmt.Sprintf("pid %d (sleep)", cmd.Process.Pid))
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
			for _, w := range want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
			states, _ := overlay.List(stateDir)
			var left []string
			for _, st := range states {
				left = append(left, filepath.Base(st.Target))
			}
			if strings.Join(left, ",") != strings.Join(tt.remained, ",") {
				t.Errorf("still mounted: %v, want %v", left, tt.remained)
			}
		})
	}
}
