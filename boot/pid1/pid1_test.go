package pid1

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/boot/cmdline"
	"github.com/squashportage/squashportage/boot/klog"
)

func TestInitCandidates(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}},
		{"init=/sbin/init", []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}},
		{"init=/lib/systemd/systemd", []string{"/lib/systemd/systemd"}},
	}
	for _, tt := range tests {
		got := initCandidates(cmdline.ParseConfig(cmdline.Parse(tt.in)))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRemoveTree empties a tree without following symlinks out of it, and
// leaves entries on another device (mount points) alone.
func TestRemoveTree(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"init", "bin/busybox", "lib/modules/x/a.ko"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "bin/link")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	n, err := removeTree(dir, st.Dev)
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Errorf("removed %d entries, want 8", n)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("followed a symlink out of the tree: %v", err)
	}
	// A different device number stands for a mount point: nothing under
	// it is touched.
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := removeTree(dir, st.Dev+1); err != nil || n != 0 {
		t.Errorf("foreign device: removed %d, %v", n, err)
	}
}

func TestFreeInitramfsRefusesDisk(t *testing.T) {
	// The test runs on a real root filesystem (or an overlay), never a
	// ramfs: freeInitramfs must refuse without touching anything.
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Type == unix.RAMFS_MAGIC || sfs.Type == unix.TMPFS_MAGIC {
		// Running freeInitramfs on a real initramfs root would delete it:
		// nothing safe to check here.
		t.Log("/ is a ramfs or tmpfs here: the refusal cannot be checked safely")
		return
	}
	if _, err := freeInitramfs(); err == nil || !strings.Contains(err.Error(), "not an initramfs") {
		t.Fatalf("err = %v", err)
	}
}

func TestMountSpecsSkipsFailures(t *testing.T) {
	var console strings.Builder
	var calls []string
	b := &booter{
		log:      klog.New(&console),
		stateDir: t.TempDir(),
		opts: Options{MountSpec: func(spec, root, stateDir string, logf func(string, ...any)) error {
			calls = append(calls, spec)
			switch spec {
			case "bad":
				return errors.New("no such image")
			case "panics":
				panic("boom")
			}
			return nil
		}},
	}
	b.cfg = cmdline.ParseConfig(cmdline.Parse("squashportage=bad squashportage=panics squashportage=good"))
	b.mountSpecs()
	sort.Strings(calls)
	if !reflect.DeepEqual(calls, []string{"bad", "good", "panics"}) {
		t.Errorf("calls %q", calls)
	}
	out := console.String()
	for _, want := range []string{
		"squashportage: error: squashportage=bad skipped: no such image",
		"squashportage: error: squashportage=panics skipped: internal error: boom",
		"squashportage: squashportage=good mounted in",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestMountSpecsDisabled(t *testing.T) {
	var console strings.Builder
	called := false
	b := &booter{log: klog.New(&console), stateDir: t.TempDir(), opts: Options{MountSpec: func(string, string, string, func(string, ...any)) error {
		called = true
		return nil
	}}}
	b.cfg = cmdline.ParseConfig(cmdline.Parse("squashportage.disable squashportage=/a:/b"))
	b.mountSpecs()
	if called || !strings.Contains(console.String(), "squashportage.disable: leaving 1 spec(s) unmounted") {
		t.Errorf("called=%v log=%q", called, console.String())
	}
}

func TestKmsgExecToMark(t *testing.T) {
	// /dev/kmsg gives one record per read; a file gives it all at once,
	// so the test feeds a FIFO-like sequence through parseKmsg directly
	// and the reader through a file of one record.
	recs := []string{
		"6,320,1601600,-;Run /init as init process\n",
		"4,321,1849081,-;tsc: Refined TSC clocksource calibration: 2596.106 MHz\n SUBSYSTEM=x\n",
		"7,322,1850296,-;squashportage: starting; kernel command line: console=ttyS0\n",
	}
	var run, mark time.Duration = -1, -1
	for _, r := range recs {
		ts, msg, ok := parseKmsg(r)
		if !ok {
			t.Fatalf("parseKmsg(%q) failed", r)
		}
		if strings.HasPrefix(msg, "Run ") {
			run = ts
		}
		if strings.HasPrefix(msg, startMarker) {
			mark = ts
		}
	}
	if run != 1601600*time.Microsecond || mark-run != 248696*time.Microsecond {
		t.Errorf("run %v, mark-run %v", run, mark-run)
	}
	if _, _, ok := parseKmsg("garbage"); ok {
		t.Error("garbage parsed")
	}
	p := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(p, []byte(recs[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := kmsgExecToMark(p); err == nil {
		t.Error("no start record: no error")
	}
	var c *execClock
	if _, ok := c.sinceExec(); ok {
		t.Error("nil clock: ok")
	}
}

func TestShellName(t *testing.T) {
	dir := t.TempDir()
	for link, want := range map[string]string{
		"../bbin/gosh": "(u-root's gosh)",
		"busybox":      "(busybox)",
		"bb":           "(u-root's ",
	} {
		p := filepath.Join(dir, "sh")
		os.Remove(p)
		if err := os.Symlink(link, p); err != nil {
			t.Fatal(err)
		}
		if got := shellName(p); !strings.Contains(got, want) {
			t.Errorf("shellName(-> %s) = %q, want %q", link, got, want)
		}
	}
}
