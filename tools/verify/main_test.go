package verify

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/overlay"
)

func smallImage(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("squash"), 50000), 0o644)
	os.Symlink("f", filepath.Join(src, "l"))
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

func TestMain_(t *testing.T) {
	img := smallImage(t)
	notImg := filepath.Join(t.TempDir(), "text")
	os.WriteFile(notImg, bytes.Repeat([]byte("not an image\n"), 20), 0o644)
	data, _ := os.ReadFile(img)
	truncated := filepath.Join(t.TempDir(), "trunc.sqfs")
	// mksquashfs pads to 4 KiB; cut inside the bytes the superblock counts.
	os.WriteFile(truncated, data[:300], 0o644)

	for _, tc := range []struct {
		args   []string
		rc     int
		stdout string
		stderr string
	}{
		{[]string{img}, 0, ": OK: ", ""},
		{[]string{"-q", img}, 0, "", ""},
		{[]string{notImg}, 1, "", "not a squashfs image"},
		{[]string{truncated}, 1, "", "verify: "},
		{[]string{"/nonexistent"}, 1, "", "no such file"},
		{[]string{}, 1, "", "no image given"},
		{[]string{"-x", img}, 1, "", "unknown option -x"},
		{[]string{img, img}, 1, "", "exactly one image"},
	} {
		var out, errb bytes.Buffer
		rc := Main(tc.args, &out, &errb)
		if rc != tc.rc || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) ||
			(tc.stdout == "" && out.Len() != 0) {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, rc, out.String(), errb.String(), tc.rc, tc.stdout, tc.stderr)
		}
	}
}

// TestMainNamesDamagedFiles damages a data block and a fragment block: the
// report names the file of the one and every file with a tail in the other.
func TestMainNamesDamagedFiles(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
	src := t.TempDir()
	var all []string
	add := func(name string, data []byte) {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		all = append(all, "/"+name)
	}
	add("dev-lang/big/data", testtree.Text(0, 300<<10))
	if err := os.Link(filepath.Join(src, "dev-lang/big/data"), filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	all = append(all, "/link")
	// About 200 KiB of small files: two fragment blocks or more.
	for i := range 70 {
		add(fmt.Sprintf("cat%d/pkg/file%02d", i%3, i), testtree.Text(i+1, 3000))
	}
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	damaged, err := testtree.DamageBlocks(img, "dev-lang/big/data", "cat1/pkg/file40")
	if err != nil {
		t.Fatal(err)
	}
	if len(damaged) < 3 || len(damaged) == len(all) || !slices.Contains(damaged, "/link") {
		t.Fatalf("want a fragment holding some of the files, not all: %v", damaged)
	}
	var out, errb bytes.Buffer
	rc := Main([]string{"-n", img}, &out, &errb)
	t.Logf("verify:\n%s", errb.String())
	if rc != 1 || out.Len() != 0 {
		t.Fatalf("verify of a damaged image: rc %d, stdout %q", rc, out.String())
	}
	named := map[string]bool{}
	for _, l := range strings.Split(errb.String(), "\n") {
		if p := strings.TrimSpace(l); strings.HasPrefix(p, "/") {
			named[p] = true
		}
	}
	for _, p := range all {
		if want := slices.Contains(damaged, p); named[p] != want {
			t.Errorf("%s: named %v, damaged %v", p, named[p], want)
		}
	}
	if !strings.Contains(errb.String(), "data block 0 at") || !strings.Contains(errb.String(), "fragment block") {
		t.Errorf("report does not say which blocks")
	}
}

// TestMainRecordSums records block sums for mksquashfs's image once, finds
// them the second time, and leaves a damaged image and one with bytes
// after its padding alone.
func TestMainRecordSums(t *testing.T) {
	img := smallImage(t)
	data, _ := os.ReadFile(img)
	damaged := filepath.Join(t.TempDir(), "damaged.sqfs")
	bad := bytes.Clone(data)
	for i := 200; i < 400; i++ { // blocks and tables follow the 96-byte superblock
		bad[i] ^= 0x55
	}
	os.WriteFile(damaged, bad, 0o644)
	trailing := filepath.Join(t.TempDir(), "trailing.sqfs")
	os.WriteFile(trailing, append(bytes.Clone(data), "other data"...), 0o644)

	for _, tc := range []struct {
		args   []string
		rc     int
		stdout string
		stderr string
	}{
		{[]string{"-n", "--record-sums", img}, 0, "; block sums recorded for 3 blocks", ""},
		{[]string{"-n", "--record-sums", img}, 0, "; it had block sums already", ""},
		{[]string{"-n", img}, 0, ": OK: ", ""},
		{[]string{"-n", "--record-sums", damaged}, 1, "", "FAULT"},
		{[]string{"-n", "--record-sums", trailing}, 1, "", "no block sums recorded: "},
	} {
		var out, errb bytes.Buffer
		rc := Main(tc.args, &out, &errb)
		if rc != tc.rc || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, rc, out.String(), errb.String(), tc.rc, tc.stdout, tc.stderr)
		}
	}
	if got, _ := os.ReadFile(damaged); !bytes.Equal(got, bad) {
		t.Error("the damaged image changed")
	}
	if got, _ := os.ReadFile(trailing); len(got) != len(data)+len("other data") {
		t.Error("the image with bytes after it changed")
	}
	if got, _ := os.ReadFile(img); len(got) <= len(data) || !bytes.Equal(got[:len(data)], data) {
		t.Errorf("the image is %d bytes, was %d: the record should follow it", len(got), len(data))
	}
}

func TestMain(m *testing.M) { privileged.Main(m) }

// TestMainVerifiesLayers: verify checks the delta layers IMAGE.layers
// names too, and names a layer that was changed behind its back.
func TestMainVerifiesLayers(t *testing.T) {
	img := smallImage(t)
	dir := t.TempDir()
	target, state := filepath.Join(dir, "t"), filepath.Join(dir, "state")
	os.Mkdir(target, 0o755)
	sp, err := overlay.ParseSpec(img + ":" + target + ":layers=4,compact=1000%")
	if err != nil {
		t.Fatal(err)
	}
	st, err := overlay.Mount(sp, overlay.MountOptions{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(target, "g"), []byte("layer"), 0o644)
	res, err := overlay.Persist(st, overlay.PersistOptions{})
	if err != nil || res.Layer == "" {
		t.Fatalf("persist: %+v, %v", res, err)
	}
	if err := overlay.Umount(target, overlay.UmountOptions{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"-n", img}, &out, &errb); code != 0 || strings.Count(out.String(), ": OK:") != 2 || !strings.Contains(out.String(), res.Layer+": OK") {
		t.Fatalf("verify of a stack: exit %d\n%s%s", code, &out, &errb)
	}
	f, err := os.OpenFile(res.Layer, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	f.Close()
	out.Reset()
	errb.Reset()
	if code := Main([]string{"-n", img}, &out, &errb); code != 1 || !strings.Contains(errb.String(), res.Layer) || !strings.Contains(errb.String(), "damaged or replaced") {
		t.Fatalf("verify of a changed layer: exit %d\n%s%s", code, &out, &errb)
	}
}
