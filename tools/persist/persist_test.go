package persist

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/overlay"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func call(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "Usage: squashportage persist"},
		{[]string{"--bogus"}, 2, "--bogus"},
		{[]string{"--processors", "0"}, 2, "--processors"},
		{[]string{"--state-dir", dir}, 0, "no managed mounts"},
		{[]string{"--state-dir", dir, "--json"}, 0, "[]"},
		{[]string{"--state-dir", dir, "/not/managed"}, 3, "/not/managed: not managed"},
		{[]string{"--state-dir", dir, "relative/not/managed"}, 3, "/relative/not/managed: not managed"},
		{[]string{"--state-dir", dir, "--if-managed", dir}, 3, ""},
	} {
		code, out, errOut := call(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.out) || tc.out == "" && out+errOut != "" {
			t.Errorf("%v: exit %d, %q %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.out)
		}
	}
}

// TestPersistCommand persists a real mount through the command line.
func TestPersistCommand(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "cat/pkg"), 0o755)
	os.WriteFile(filepath.Join(src, "cat/pkg/pkg-1.ebuild"), []byte("EAPI=8\n"), 0o644)
	img := filepath.Join(dir, "gentoo.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	target, state := filepath.Join(dir, "target"), filepath.Join(dir, "state")
	os.Mkdir(target, 0o755)
	spec, err := overlay.ParseSpec(img + ":" + target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := overlay.Mount(spec, overlay.MountOptions{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	defer overlay.Umount(target, overlay.UmountOptions{StateDir: state, Lazy: true})
	if err := os.WriteFile(filepath.Join(target, "cat/pkg/pkg-2.ebuild"), []byte("EAPI=8\n# new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// /usr/portage -> /var/db/repos/gentoo
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := call("--state-dir", state, "--json", link)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var res []struct {
		Written, Remounted bool
		Error              string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 || !res[0].Written || !res[0].Remounted {
		t.Fatalf("json %q: %+v %v", out, res, err)
	}
	if _, err := os.Stat(img + ".old"); err != nil {
		t.Errorf("no previous generation: %v", err)
	}
	// `persist target` in the target's parent directory.
	if err := os.WriteFile(filepath.Join(target, "cat/pkg/pkg-3.ebuild"), []byte("EAPI=8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, out, errOut = call("--state-dir", state, "target")
	if code != 0 || !strings.Contains(out, target+": wrote "+img) {
		t.Errorf("relative target: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = call("--state-dir", state)
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Errorf("second persist: exit %d, %q", code, out)
	}
}
