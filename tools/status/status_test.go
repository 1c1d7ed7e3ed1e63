package status

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func TestMainCLI(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress", "-comp", "zstd").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	stateDir := dir + "/state"
	target := dir + "/repo"
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	noPortage := func() overlay.PortageDirs {
		return overlay.PortageDirs{DistDir: "/var/cache/distfiles", PkgDir: "/var/cache/binpkgs", Source: "defaults"}
	}
	call := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--state-dir", stateDir}, args...), &stdout, &stderr, noPortage)
		return code, stdout.String(), stderr.String()
	}

	if code, out, _ := call(); code != 0 || !strings.Contains(out, "nothing mounted by squashportage") {
		t.Errorf("empty: exit %d, %q", code, out)
	}
	if code, _, errOut := call("--bogus"); code != 2 || !strings.Contains(errOut, "unknown option --bogus") {
		t.Errorf("--bogus: exit %d, %q", code, errOut)
	}
	if code, _, errOut := call("extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("extra: exit %d, %q", code, errOut)
	}
	if code, out, _ := call("--help"); code != 0 || !strings.Contains(out, "Usage: squashportage status") || !strings.Contains(out, "--state-dir") {
		t.Errorf("--help: exit %d, %q", code, out)
	}

	sp, err := overlay.ParseSpec(img + ":" + target + ":size=4m")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := overlay.Mount(sp, overlay.MountOptions{StateDir: stateDir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := overlay.Umount(target, overlay.UmountOptions{StateDir: stateDir, Lazy: true, Discard: true}); err != nil {
			t.Error(err)
		}
	})
	if err := os.WriteFile(target+"/a", []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target+"/c", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(target + "/b"); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := call()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TARGET") ||
		!strings.HasPrefix(lines[2], "note: "+img+" has no block sums") || !strings.Contains(lines[2], "verify --record-sums "+img) {
		t.Fatalf("table and a note on mksquashfs's image:\n%s", out)
	}
	fields := strings.Fields(lines[1])
	// TARGET IMAGE COMP SIZE UPPER USED/LIMIT (PCT) CHANGED NEW DELETED PENDING LAST
	want := []string{target, img, "zstd"}
	for i, w := range want {
		if fields[i] != w {
			t.Errorf("column %d = %q, want %q\n%s", i, fields[i], w, out)
		}
	}
	if fields[4] != "0/8(0B<1.0K)" || fields[5] != "tmpfs" || !strings.HasSuffix(fields[6], "/4.0M") || fields[8] != "1" || fields[9] != "1" || fields[10] != "1" || fields[11] != "10B" || fields[12] != "never" {
		t.Errorf("row %q", fields)
	}

	code, out, errOut = call("--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errOut)
	}
	var got output
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(got.Mounts) != 1 || got.Mounts[0].Changed != 1 || got.Mounts[0].New != 1 || got.Mounts[0].Deleted != 1 ||
		got.Mounts[0].UpperLimit != 4<<20 || got.Mounts[0].Compressor != "zstd" || got.Mounts[0].BlockSums || len(got.Warnings) != 1 {
		t.Errorf("--json: %+v", got)
	}

	// Block sums recorded while the image is mounted: the note goes.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = squash.AddBlockSums(context.Background(), f, squash.VerifyOptions{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = call("--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !got.Mounts[0].BlockSums || len(got.Warnings) != 0 {
		t.Errorf("--json after recording block sums: %v\n%s", err, out)
	}

	// DISTDIR inside the target.
	var stdout, stderr bytes.Buffer
	inside := func() overlay.PortageDirs {
		return overlay.PortageDirs{DistDir: target + "/distfiles", PkgDir: "/var/cache/binpkgs", Source: "/etc/portage/make.conf"}
	}
	if code := run([]string{"--state-dir", stateDir}, &stdout, &stderr, inside); code != 0 {
		t.Fatalf("exit %d: %s", code, &stderr)
	}
	w := "warning: DISTDIR=" + target + "/distfiles (from /etc/portage/make.conf) is inside " + target
	if !strings.Contains(stdout.String(), w) || !strings.Contains(stdout.String(), "DISTDIR=/var/cache/distfiles") {
		t.Errorf("no DISTDIR warning in\n%s", &stdout)
	}

	// 90% of the 4m upper: a warning; full: another, and persist refuses.
	if err := os.WriteFile(target+"/big", bytes.Repeat([]byte("x"), 3800<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := call(); code != 0 || !strings.Contains(out, "warning: the upper of "+target+" is 9") || !strings.Contains(out, "% full: persist now") {
		t.Errorf("upper at 90%%: exit %d\n%s", code, out)
	}
	if err := os.WriteFile(target+"/big2", bytes.Repeat([]byte("x"), 1<<20), 0o644); err == nil {
		t.Fatal("writing past a full upper worked")
	}
	code, out, _ = call()
	if code != 0 || !strings.Contains(out, "warning: the upper of "+target+" ran full") || !strings.Contains(out, "persist --force") {
		t.Errorf("full upper: exit %d\n%s", code, out)
	}
	code, out, _ = call("--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !got.Mounts[0].UpperFull {
		t.Errorf("--json of a full upper: %v\n%s", err, out)
	}

	// A stack of delta layers: how many, their size, the fold's limit.
	img2 := filepath.Join(t.TempDir(), "img2.sqfs")
	if out, err := exec.Command("mksquashfs", src, img2, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	target2 := dir + "/layered"
	if err := os.Mkdir(target2, 0o755); err != nil {
		t.Fatal(err)
	}
	sp2, err := overlay.ParseSpec(img2 + ":" + target2 + ":layers=2")
	if err != nil {
		t.Fatal(err)
	}
	st2, err := overlay.Mount(sp2, overlay.MountOptions{StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { overlay.Umount(target2, overlay.UmountOptions{StateDir: stateDir, Lazy: true, Discard: true}) })
	if err := os.WriteFile(target2+"/x", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := overlay.Persist(st2, overlay.PersistOptions{}); err != nil || res.Layer == "" {
		t.Fatalf("persist of a layered mount: %+v, %v", res, err)
	}
	code, out, _ = call()
	row := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, target2+" ") {
			row = l
		}
	}
	if f := strings.Fields(row); code != 0 || len(f) < 5 || !strings.HasPrefix(f[4], "1/2") {
		t.Errorf("layered row %q\n%s", row, out)
	}
	code, out, _ = call("--json")
	got = output{}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("--json: %v", err)
	}
	for _, m := range got.Mounts {
		if m.Target == target2 && (len(m.Layers) != 1 || m.LayerLimit != 2 || m.CompactBytes == 0 || m.Layers[0].Size == 0) {
			t.Errorf("--json of a layered mount: %+v", m)
		}
	}
}
