package fetch

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/squashportage/squashportage/internal/httpserve"
	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testimage"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/blockindex"
	"github.com/squashportage/squashportage/tools/keygen"
	"github.com/squashportage/squashportage/tools/publish"
)

func TestMain(m *testing.M) { privileged.Main(m) }

func call(t *testing.T, main func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := main(args, &out, &errb)
	return code, out.String() + errb.String()
}

func fetchCmd(args []string, out, errb *bytes.Buffer) int   { return Main(args, out, errb) }
func publishCmd(args []string, out, errb *bytes.Buffer) int { return publish.Main(args, out, errb) }
func keygenCmd(args []string, out, errb *bytes.Buffer) int  { return keygen.Main(args, out, errb) }

// writeImage writes the tree at src into image with our writer.
func writeImage(t *testing.T, src, image string) {
	t.Helper()
	testimage.Write(t, src, image, squash.WriterOptions{})
}

func portageTree(t *testing.T, scale float64) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	os.Mkdir(src, 0o755)
	if _, err := testtree.GeneratePortage(src, testtree.PortageOptions{Scale: scale, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return src
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// keys makes a key pair with the keygen command.
func keys(t *testing.T) (secret, public string) {
	t.Helper()
	dir := t.TempDir()
	secret, public = filepath.Join(dir, "fleet.key"), filepath.Join(dir, "fleet.pub")
	if code, out := call(t, keygenCmd, secret, public); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	return secret, public
}

func publishImage(t *testing.T, secret, image, dir string) {
	t.Helper()
	if code, out := call(t, publishCmd, "--key", secret, image, dir); code != 0 {
		t.Fatalf("publish: %d %s", code, out)
	}
}

var fetchedRe = regexp.MustCompile(`fetched (\d+) bytes for a (\d+)-byte image`)

// fetched parses fetch's report: bytes received and the image's size.
func fetched(t *testing.T, out string) (int64, int64) {
	t.Helper()
	m := fetchedRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no byte count in %q", out)
	}
	a, _ := strconv.ParseInt(m[1], 10, 64)
	b, _ := strconv.ParseInt(m[2], 10, 64)
	return a, b
}

// TestFleet: one publisher syncs (1% of the tree changes), persists and
// publishes; three clients (a managed mount, an image file, and one with
// nothing yet) fetch, the first two only what changed.
func TestFleet(t *testing.T) {
	dir := t.TempDir()
	secret, public := keys(t)
	// SQUASHPORTAGE_FLEET_SCALE measures a larger tree (e.g. 0.3).
	scale := 0.05
	if v, err := strconv.ParseFloat(os.Getenv("SQUASHPORTAGE_FLEET_SCALE"), 64); err == nil {
		scale = v
	}
	src := portageTree(t, scale)
	pubImage := filepath.Join(dir, "gentoo.sqfs")
	writeImage(t, src, pubImage)
	state := filepath.Join(dir, "state")
	mount := func(img, target string) {
		os.MkdirAll(target, 0o755)
		spec, err := overlay.ParseSpec(img + ":" + target + ":layers=0") // a publisher persists whole images
		if err != nil {
			t.Fatal(err)
		}
		if _, err := overlay.Mount(spec, overlay.MountOptions{StateDir: state}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			overlay.Umount(target, overlay.UmountOptions{StateDir: state, Lazy: true, Discard: true})
		})
	}
	pubTarget := filepath.Join(dir, "publisher")
	mount(pubImage, pubTarget)
	www := filepath.Join(dir, "www")
	publishImage(t, secret, pubImage, www)
	srv := httpserve.Start(t, www, httpserve.Options{})

	// Client A: a managed mount of the first generation; B: an image
	// file of it; C: nothing yet, fetches everything.
	imgA, targetA := filepath.Join(dir, "a", "gentoo.sqfs"), filepath.Join(dir, "a", "gentoo")
	imgB := filepath.Join(dir, "b", "gentoo.sqfs")
	imgC := filepath.Join(dir, "c", "gentoo.sqfs")
	for _, d := range []string{"a", "b", "c"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	copyFile(t, pubImage, imgA)
	copyFile(t, pubImage, imgB)
	mount(imgA, targetA)
	code, out := call(t, fetchCmd, "--key", public, srv.URL(), imgC)
	if code != 0 || sum(t, imgC) != sum(t, pubImage) {
		t.Fatalf("first fetch of C: %d %s", code, out)
	}
	if code, out := call(t, fetchCmd, "--key", public, "--state-dir", state, srv.URL(), targetA); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("A already up to date: %d %s", code, out)
	}

	// The publisher's sync: 1% of the packages change.
	ms, err := testtree.MutatePortage(pubTarget, 0.01, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sync: %v", ms)
	st, err := overlay.Load(state, pubTarget)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := overlay.Persist(st, overlay.PersistOptions{Force: true, PowerRoot: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	publishImage(t, secret, pubImage, www)
	want := sum(t, pubImage)

	for _, c := range []struct{ name, dest string }{{"A", targetA}, {"B", imgB}, {"C", imgC}} {
		code, out := call(t, fetchCmd, "-v", "--key", public, "--state-dir", state, srv.URL(), c.dest)
		if code != 0 {
			t.Fatalf("fetch %s: %d %s", c.name, code, out)
		}
		got, size := fetched(t, out)
		t.Logf("client %s: %s", c.name, strings.TrimSpace(out))
		if got*100 > size*5 {
			t.Errorf("client %s fetched %d bytes of a %d-byte image: more than 5%%", c.name, got, size)
		}
	}
	for _, img := range []string{imgA, imgB, imgC} {
		if sum(t, img) != want {
			t.Errorf("%s differs from the published image", img)
		}
		if _, err := os.Stat(img + ".old"); err != nil {
			t.Errorf("%s: previous generation not kept: %v", img, err)
		}
	}
	if d := testtree.CompareWith(pubTarget, targetA, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 3}); len(d) > 0 {
		t.Errorf("client A's target after the remount differs from the publisher's: %v", d)
	}

	// A change in A's overlay: a fetch would hide it, so it is refused.
	if err := os.WriteFile(filepath.Join(targetA, "local-change"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testtree.MutatePortage(pubTarget, 0.01, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := overlay.Persist(st, overlay.PersistOptions{Force: true, PowerRoot: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	publishImage(t, secret, pubImage, www)
	before := sum(t, imgA)
	code, out = call(t, fetchCmd, "--key", public, "--state-dir", state, srv.URL(), targetA)
	if code != 1 || !strings.Contains(out, "persist first") || sum(t, imgA) != before {
		t.Errorf("fetch into a changed overlay: %d %s", code, out)
	}
}

// pair is a published first generation, a client holding it and a
// second generation published over it.
type pair struct {
	secret, public string
	www, client    string
	v1             [32]byte
	srv            *httpserve.Server
}

func newPair(t *testing.T, scale float64, opts httpserve.Options) *pair {
	t.Helper()
	dir := t.TempDir()
	p := &pair{www: filepath.Join(dir, "www")}
	p.secret, p.public = keys(t)
	src := portageTree(t, scale)
	img := filepath.Join(dir, "gentoo.sqfs")
	writeImage(t, src, img)
	p.client = filepath.Join(dir, "client.sqfs")
	copyFile(t, img, p.client)
	p.v1 = sum(t, img)
	if _, err := testtree.MutatePortage(src, 0.05, 3); err != nil {
		t.Fatal(err)
	}
	writeImage(t, src, img)
	publishImage(t, p.secret, img, p.www)
	p.srv = httpserve.Start(t, p.www, opts)
	return p
}

// untouched checks that the client's image is still the first generation.
func (p *pair) untouched(t *testing.T) {
	t.Helper()
	if sum(t, p.client) != p.v1 {
		t.Errorf("the client's image changed")
	}
	if _, err := os.Stat(p.client + ".old"); err == nil {
		t.Errorf("something was installed")
	}
}

func published(t *testing.T, www, ext string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(www, "*"+ext))
	if len(m) != 1 {
		t.Fatalf("published %s: %v", ext, m)
	}
	return m[0]
}

func TestTamperedBlock(t *testing.T) {
	p := newPair(t, 0.02, httpserve.Options{})
	img := published(t, p.www, ".sqfs")
	// A block of the new image the client does not have.
	index := func(path string) *blockindex.Index {
		ix, err := blockindex.BuildFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	have := index(p.client).BySum()
	var victim *blockindex.Block
	for _, bl := range index(img).Blocks {
		if _, ok := have[bl.Sum]; !ok && bl.Kind == blockindex.KindFragment {
			victim = &bl
			break
		}
	}
	if victim == nil {
		t.Fatal("no new fragment block")
	}
	b, _ := os.ReadFile(img)
	b[victim.Off+uint64(victim.Len)/2] ^= 0x40
	os.WriteFile(img, b, 0o644)
	code, out := call(t, fetchCmd, "--key", p.public, p.srv.URL(), p.client)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("block at offset %d", victim.Off)) || !strings.Contains(out, "does not match its hash in the signed index") {
		t.Errorf("tampered block: %d %s", code, out)
	}
	p.untouched(t)
}

// TestRejected: a manifest or index changed on the server, or a client
// configured with another key: a clear error, nothing installed.
func TestRejected(t *testing.T) {
	p := newPair(t, 0.02, httpserve.Options{})
	_, other := keys(t)
	for _, tc := range []struct {
		name, file string
		damage     func([]byte) []byte
		key, want  string
	}{
		{"tampered manifest", filepath.Join(p.www, "manifest"),
			func(b []byte) []byte { return bytes.Replace(b, []byte("image-size "), []byte("image-size 1"), 1) },
			p.public, "signature does not match"},
		{"tampered index", published(t, p.www, ".idx"),
			func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
			p.public, "does not match its hash in the signed manifest"},
		{"wrong key", "", nil, other, "signature does not match the public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.file != "" {
				orig, err := os.ReadFile(tc.file)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(tc.file, tc.damage(bytes.Clone(orig)), 0o644)
				defer os.WriteFile(tc.file, orig, 0o644)
			}
			code, out := call(t, fetchCmd, "--key", tc.key, p.srv.URL(), p.client)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d: %s", code, out)
			}
			p.untouched(t)
		})
	}
}

// during runs fetch with args and, 1.5 s into it, then; it returns
// fetch's output.
func during(args []string, then func()) string {
	done := make(chan string, 1)
	go func() {
		var out, errb bytes.Buffer
		Main(args, &out, &errb)
		done <- out.String() + errb.String()
	}()
	time.Sleep(1500 * time.Millisecond)
	then()
	return <-done
}

var resumedRe = regexp.MustCompile(`(\d+) resumed`)

// TestServerDies: a server that stops sending, then one killed in the
// middle of a transfer; each fetch fails clearly, keeps what it
// verified, and the next one resumes.
func TestServerDies(t *testing.T) {
	p := newPair(t, 0.02, httpserve.Options{KBytesPerSecond: 64})
	img := published(t, p.www, ".sqfs")
	out := during([]string{"--timeout", "1s", "--key", p.public, p.srv.URL(), p.client}, func() { p.srv.Signal(syscall.SIGSTOP) })
	if !strings.Contains(out, "the server sent nothing for 1s") || !strings.Contains(out, "run fetch again to resume") {
		t.Fatalf("stalled server: %s", out)
	}
	p.untouched(t)
	p.srv.Signal(syscall.SIGCONT)
	out = during([]string{"--key", p.public, p.srv.URL(), p.client}, p.srv.Stop)
	if !strings.Contains(out, "transfer broke off") || !strings.Contains(out, "run fetch again to resume") {
		t.Fatalf("server died: %s", out)
	}
	p.untouched(t)
	if _, err := os.Stat(p.client + ".new.fetch"); err != nil {
		t.Fatalf("no record of the verified ranges: %v", err)
	}
	p.srv.Restart(httpserve.Options{})
	code, out := call(t, fetchCmd, "--key", p.public, p.srv.URL(), p.client)
	if code != 0 {
		t.Fatalf("resume: %d %s", code, out)
	}
	t.Logf("resumed: %s", strings.TrimSpace(out))
	m := resumedRe.FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Errorf("nothing resumed: %s", out)
	}
	got, size := fetched(t, out)
	if got >= size {
		t.Errorf("the resumed fetch downloaded %d bytes of %d", got, size)
	}
	if sum(t, p.client) != sum(t, img) {
		t.Errorf("the resumed image differs from the published one")
	}
	if _, err := os.Stat(p.client + ".new.fetch"); err == nil {
		t.Errorf("the record outlived the fetch")
	}
}

// TestFullDisk: the client's disk has no room for the new image.
func TestFullDisk(t *testing.T) {
	p := newPair(t, 0.02, httpserve.Options{})
	fi, err := os.Stat(p.client)
	if err != nil {
		t.Fatal(err)
	}
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, fmt.Sprintf("size=%d", fi.Size()+256<<10)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(disk, unix.MNT_DETACH) })
	client := filepath.Join(disk, "gentoo.sqfs")
	copyFile(t, p.client, client)
	p.client = client
	code, out := call(t, fetchCmd, "--key", p.public, p.srv.URL(), client)
	if code != 1 || !strings.Contains(out, "no room for the new image") || !strings.Contains(out, "no space left") {
		t.Errorf("full disk: %d %s", code, out)
	}
	p.untouched(t)
	if _, err := os.Stat(client + ".new"); err == nil {
		t.Errorf("%s.new left behind, filling the disk", client)
	}
}

// gpgKey makes an OpenPGP signing key in its own GNUPGHOME and returns
// the home and the armored public key's file.
func gpgKey(t *testing.T, name string) (home, pub string) {
	t.Helper()
	home = t.TempDir()
	gpg := func(args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run() })
	gpg("--quick-gen-key", name+" <"+name+"@example.org>", "ed25519", "sign", "never")
	pub = filepath.Join(home, "key.asc")
	if err := os.WriteFile(pub, gpg("--armor", "--export"), 0o644); err != nil {
		t.Fatal(err)
	}
	return home, pub
}

// TestGentooSnapshot fetches a snapshot laid out as Gentoo's mirrors do,
// its clearsigned sha512sum.txt checked with gpgv.
func TestGentooSnapshot(t *testing.T) {
	home, pub := gpgKey(t, "snapshots")
	_, otherPub := gpgKey(t, "someone")
	www := t.TempDir()
	src := portageTree(t, 0.01)
	dated := filepath.Join(www, "gentoo-20261203.xz.sqfs")
	writeImage(t, src, dated)
	copyFile(t, dated, filepath.Join(www, "gentoo-current.xz.sqfs"))
	b, _ := os.ReadFile(dated)
	h := sha512.Sum512(b)
	sums := fmt.Sprintf("# SHA512 HASH\n%x  gentoo-20261203.xz.sqfs\n%x  gentoo-current.xz.sqfs\n", h, h)
	os.WriteFile(filepath.Join(home, "sums"), []byte(sums), 0o644)
	cmd := exec.Command("gpg", "--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", "",
		"--yes", "--output", filepath.Join(www, "sha512sum.txt"), "--clearsign", filepath.Join(home, "sums"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clearsign: %v %s", err, out)
	}
	srv := httpserve.Start(t, www, httpserve.Options{KBytesPerSecond: 128})
	url := srv.URL() + "gentoo-current.xz.sqfs"
	client := filepath.Join(t.TempDir(), "gentoo.sqfs")

	code, out := call(t, fetchCmd, "--gpg-key", otherPub, url, client)
	if code != 1 || !strings.Contains(out, "OpenPGP signature does not verify") {
		t.Errorf("wrong OpenPGP key: %d %s", code, out)
	}
	if _, err := os.Stat(client); err == nil {
		t.Fatalf("installed with the wrong key")
	}
	// The server dies in the middle; the next fetch resumes.
	out = during([]string{"--gpg-key", pub, url, client}, srv.Stop)
	if !strings.Contains(out, "transfer broke off") || !strings.Contains(out, "run fetch again to resume") {
		t.Fatalf("snapshot server died: %s", out)
	}
	srv.Restart(httpserve.Options{})
	code, out = call(t, fetchCmd, "--gpg-key", pub, url, client)
	if code != 0 || sum(t, client) != sha256.Sum256(b) {
		t.Fatalf("snapshot fetch: %d %s", code, out)
	}
	if m := resumedRe.FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("snapshot download not resumed: %s", out)
	}
	t.Logf("snapshot: %s", strings.TrimSpace(out))

	// A snapshot that does not match its signed hash.
	b[len(b)/2] ^= 1
	os.WriteFile(filepath.Join(www, "gentoo-current.xz.sqfs"), b, 0o644)
	before := sum(t, client)
	code, out = call(t, fetchCmd, "--gpg-key", pub, url, client)
	if code != 1 || !strings.Contains(out, "does not match the signed") || sum(t, client) != before {
		t.Errorf("tampered snapshot: %d %s", code, out)
	}
}

// TestDeltaLayersRefused: a client whose image carries delta layers
// (layers=) holds changes a fetched image would hide: refused.
func TestDeltaLayersRefused(t *testing.T) {
	p := newPair(t, 0.01, httpserve.Options{})
	dir := t.TempDir()
	target, state := filepath.Join(dir, "gentoo"), filepath.Join(dir, "state")
	os.Mkdir(target, 0o755)
	spec, err := overlay.ParseSpec(p.client + ":" + target + ":layers=2")
	if err != nil {
		t.Fatal(err)
	}
	st, err := overlay.Mount(spec, overlay.MountOptions{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { overlay.Umount(target, overlay.UmountOptions{StateDir: state, Lazy: true, Discard: true}) })
	os.WriteFile(filepath.Join(target, "local"), []byte("mine\n"), 0o644)
	if _, err := overlay.Persist(st, overlay.PersistOptions{Force: true, PowerRoot: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if n, err := overlay.DeltaLayers(p.client); err != nil || n != 1 {
		t.Fatalf("layers after persist: %d %v", n, err)
	}
	code, out := call(t, fetchCmd, "--key", p.public, "--state-dir", state, p.srv.URL(), target)
	if code != 1 || !strings.Contains(out, "delta layers") {
		t.Errorf("fetch over delta layers: %d %s", code, out)
	}
	p.untouched(t)
}
