package initramfs

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// record is one parsed newc entry.
type record struct {
	ino, mode, nlink, mtime, rmaj, rmin uint64
	name                                string
	data                                string
}

// parseNewc is an independent reader for the tests: it checks magic,
// padding and the trailer.
func parseNewc(t *testing.T, b []byte) []record {
	t.Helper()
	var recs []record
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field at %d: %v", off, err)
		}
		return v
	}
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		r := record{ino: field(0), mode: field(1), nlink: field(4), mtime: field(5), rmaj: field(9), rmin: field(10)}
		size, namesize := int(field(6)), int(field(11))
		r.name = string(b[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		r.data = string(b[off : off+size])
		off = (off + size + 3) &^ 3
		if r.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			return recs
		}
		recs = append(recs, r)
	}
}

func TestArchiveLayout(t *testing.T) {
	a := NewArchive()
	a.File("init", 0o755, []byte("abcde"))
	a.CharDev("dev/console", 0o600, 5, 1)
	a.Symlink("bin/sh", "busybox")
	a.Dir("dev", 0o700) // overrides the implicit parent
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	want := []record{
		{ino: 1, mode: TypeDir | 0o755, nlink: 2, name: "bin"},
		{ino: 2, mode: TypeSymlink | 0o777, nlink: 1, name: "bin/sh", data: "busybox"},
		{ino: 3, mode: TypeDir | 0o700, nlink: 2, name: "dev"},
		{ino: 4, mode: TypeChar | 0o600, nlink: 1, rmaj: 5, rmin: 1, name: "dev/console"},
		{ino: 5, mode: TypeFile | 0o755, nlink: 1, name: "init", data: "abcde"},
	}
	if got := parseNewc(t, buf.Bytes()); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestArchiveCpioTool cross-checks the archive with GNU cpio when present.
func TestArchiveCpioTool(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("cpio not installed")
	}
	a := NewArchive()
	a.File("a/b/c.txt", 0o644, []byte("hello\n"))
	a.Symlink("a/l", "b/c.txt")
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-i", "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	if got, want := string(out), "a\na/b\na/b/c.txt\na/l\n"; got != want {
		t.Errorf("cpio -t lists %q, want %q", got, want)
	}
}

// fakeELF writes a minimal x86-64 ELF header; interp adds a PT_INTERP
// program header, as a dynamically linked program has.
func fakeELF(t *testing.T, path string, interp bool) {
	t.Helper()
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], 2)  // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 62) // EM_X86_64
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	if interp {
		binary.LittleEndian.PutUint64(h[32:], 64) // e_phoff
		binary.LittleEndian.PutUint16(h[54:], 56) // e_phentsize
		binary.LittleEndian.PutUint16(h[56:], 1)  // e_phnum
		ph := make([]byte, 56)
		binary.LittleEndian.PutUint32(ph[0:], 3) // PT_INTERP
		h = append(h, ph...)
	}
	if err := os.WriteFile(path, h, 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeModules lays out a module tree with a dependency chain.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.1.0-99-test")
	files := map[string]string{
		"modules.dep": "kernel/fs/squashfs/squashfs.ko:\nkernel/drivers/block/loop.ko:\nkernel/fs/overlayfs/overlay.ko:\n" +
			"kernel/drivers/virtio/virtio.ko:\nkernel/drivers/virtio/virtio_ring.ko:\n" +
			"kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n" +
			"kernel/unused.ko:\n",
		"kernel/fs/squashfs/squashfs.ko":        "sq",
		"kernel/drivers/block/loop.ko":          "lo",
		"kernel/fs/overlayfs/overlay.ko":        "ov",
		"kernel/drivers/virtio/virtio.ko":       "v",
		"kernel/drivers/virtio/virtio_ring.ko":  "vr",
		"kernel/drivers/block/virtio_blk.ko.xz": xzString(t, "vb"),
		"kernel/unused.ko":                      "un",
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
	return dir
}

func xzString(t *testing.T, s string) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func buildBytes(t *testing.T, o Options) []byte {
	t.Helper()
	a, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	init, bb := filepath.Join(dir, "squashportage"), filepath.Join(dir, "busybox")
	fakeELF(t, init, false)
	fakeELF(t, bb, false)
	o := Options{Init: init, Busybox: bb, KModules: fakeModules(t), Modules: []string{"virtio-blk"}}
	out := buildBytes(t, o)
	if again := buildBytes(t, o); !bytes.Equal(out, again) {
		t.Fatal("two builds from the same inputs differ")
	}
	byName := gunzipRecords(t, out)
	for _, r := range byName {
		if r.mtime != 0 {
			t.Errorf("%s: mtime %d", r.name, r.mtime)
		}
	}
	mods := "lib/modules/6.1.0-99-test/"
	checks := []struct {
		name string
		mode uint64
		data string
	}{
		{"dev/console", TypeChar | 0o600, ""},
		{"dev/null", TypeChar | 0o666, ""},
		{"bin/sh", TypeSymlink | 0o777, "busybox"},
		{"newroot", TypeDir | 0o755, ""},
		// Stored decompressed, under its .ko name.
		{mods + "kernel/drivers/block/virtio_blk.ko", TypeFile | 0o644, "vb"},
		{mods + "squashportage.load", TypeFile | 0o644, "squashfs\nloop\noverlay\nvirtio\nvirtio_ring\nvirtio_blk\n"},
		{mods + "modules.dep", TypeFile | 0o644, "kernel/fs/squashfs/squashfs.ko:\nkernel/drivers/block/loop.ko:\n" +
			"kernel/fs/overlayfs/overlay.ko:\nkernel/drivers/virtio/virtio.ko:\nkernel/drivers/virtio/virtio_ring.ko:\n" +
			"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"},
	}
	if _, ok := byName[mods+"kernel/drivers/block/virtio_blk.ko.xz"]; ok {
		t.Error("virtio_blk.ko.xz stored compressed")
	}
	for _, c := range checks {
		r, ok := byName[c.name]
		if !ok {
			t.Errorf("%s missing", c.name)
			continue
		}
		if r.mode != c.mode || (c.data != "" && r.data != c.data) {
			t.Errorf("%s: mode %o data %q, want %o %q", c.name, r.mode, r.data, c.mode, c.data)
		}
	}
	if r := byName["dev/console"]; r.rmaj != 5 || r.rmin != 1 {
		t.Errorf("dev/console is %d:%d", r.rmaj, r.rmin)
	}
	if _, ok := byName[mods+"kernel/unused.ko"]; ok {
		t.Error("a module nobody asked for was copied")
	}
	if byName["init"].mode != TypeFile|0o755 {
		t.Errorf("init mode %o", byName["init"].mode)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	static, dynamic := filepath.Join(dir, "static"), filepath.Join(dir, "dynamic")
	fakeELF(t, static, false)
	fakeELF(t, dynamic, true)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"missing init", Options{Init: filepath.Join(dir, "nope")}, "reading init binary"},
		{"dynamic init", Options{Init: dynamic}, "dynamically linked"},
		{"dynamic busybox", Options{Init: static, Busybox: dynamic}, "dynamically linked"},
		{"no modules.dep", Options{Init: static, KModules: dir}, "run depmod"},
		{"unknown module", Options{Init: static, KModules: fakeModules(t), Modules: []string{"e1000"}}, "module e1000: not in modules.dep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// urootArchive writes a small archive shaped like u-root builder's
// output, with pkg/cpio's writer and host-like metadata (mtime, inode
// numbers) that the initramfs must not keep.
func urootArchive(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "uroot.cpio")
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory("bbin", 0o755),
		cpio.StaticRecord([]byte("bb-binary"), cpio.Info{Name: "bbin/bb", Mode: cpio.S_IFREG | 0o755, MTime: 1234, Ino: 77, NLink: 3}),
		cpio.Symlink("bbin/gosh", "bb"),
		cpio.Symlink("bbin/ls", "bb"),
		cpio.Directory("bin", 0o755),
		cpio.Symlink("bin/sh", "../bbin/gosh"),
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gunzipRecords(t *testing.T, gz []byte) map[string]record {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]record{}
	for _, r := range parseNewc(t, raw) {
		m[r.name] = r
	}
	return m
}

func TestBuildURoot(t *testing.T) {
	dir := t.TempDir()
	init, bb := filepath.Join(dir, "squashportage"), filepath.Join(dir, "busybox")
	fakeELF(t, init, false)
	fakeELF(t, bb, false)
	ur := urootArchive(t)

	o := Options{Init: init, URoot: ur}
	out := buildBytes(t, o)
	if again := buildBytes(t, o); !bytes.Equal(out, again) {
		t.Fatal("two builds from the same inputs differ")
	}
	recs := gunzipRecords(t, out)
	if r := recs["bbin/bb"]; r.data != "bb-binary" || r.mtime != 0 || r.nlink != 1 || r.mode != TypeFile|0o755 {
		t.Errorf("bbin/bb = %+v", r)
	}
	if r := recs["bin/sh"]; r.data != "../bbin/gosh" {
		t.Errorf("bin/sh -> %q, want u-root's gosh", r.data)
	}
	if _, ok := recs["init"]; !ok {
		t.Error("no /init")
	}
	if _, ok := recs["dev/console"]; !ok {
		t.Error("no /dev/console")
	}

	// With busybox too, its sh is /bin/sh and u-root's commands stay.
	recs = gunzipRecords(t, buildBytes(t, Options{Init: init, URoot: ur, Busybox: bb}))
	if r := recs["bin/sh"]; r.data != "busybox" {
		t.Errorf("bin/sh -> %q, want busybox", r.data)
	}
	if r := recs["bbin/gosh"]; r.data != "bb" {
		t.Errorf("bbin/gosh -> %q", r.data)
	}

	if _, err := Build(Options{Init: init, URoot: filepath.Join(dir, "nope.cpio")}); err == nil || !strings.Contains(err.Error(), "u-root archive") {
		t.Errorf("missing u-root archive: err = %v", err)
	}
}

// TestURootCommands reads the repository's own go.mod: the rescue
// toolset pinned there must have a shell and the basic tools.
func TestURootCommands(t *testing.T) {
	cmds, err := URootCommands("../..")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range cmds {
		have[strings.TrimPrefix(c, URootCmdPrefix+"core/")] = true
	}
	for _, want := range []string{URootShell, "ls", "cat", "mount", "dmesg", "insmod", "poweroff"} {
		if !have[want] {
			t.Errorf("go.mod pins no u-root command %s; has %v", want, cmds)
		}
	}
	if _, err := URootCommands(t.TempDir()); err == nil {
		t.Error("no go.mod: no error")
	}
}
