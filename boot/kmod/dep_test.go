package kmod

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A slice of the Debian 6.1 cloud kernel's modules.dep.
const debianDep = `kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/block/loop.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/btrfs/btrfs.ko.zst: kernel/lib/zstd/zstd_compress.ko.xz kernel/crypto/xor.ko
kernel/lib/zstd/zstd_compress.ko.xz:
kernel/crypto/xor.ko:
`

func TestName(t *testing.T) {
	tests := map[string]string{
		"kernel/fs/squashfs/squashfs.ko": "squashfs",
		"a/virtio-pci.ko.xz":             "virtio_pci",
		"b/btrfs.ko.zst":                 "btrfs",
		"virtio-blk":                     "virtio_blk",
		"c/x.ko.gz":                      "x",
	}
	for in, want := range tests {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrder(t *testing.T) {
	d, err := ParseDep(strings.NewReader(debianDep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mods    []string
		want    []string
		wantErr string
	}{
		{"no deps", []string{"squashfs", "loop"},
			[]string{"kernel/fs/squashfs/squashfs.ko", "kernel/drivers/block/loop.ko"}, ""},
		{"deps first, shared once", []string{"virtio-pci", "virtio_blk"}, []string{
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
			"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
			"kernel/drivers/virtio/virtio_pci.ko",
			"kernel/drivers/block/virtio_blk.ko",
		}, ""},
		{"dependency named after its user", []string{"virtio_blk", "virtio"}, []string{
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/block/virtio_blk.ko",
		}, ""},
		{"compressed", []string{"btrfs"}, []string{
			"kernel/crypto/xor.ko", "kernel/lib/zstd/zstd_compress.ko.xz", "kernel/fs/btrfs/btrfs.ko.zst",
		}, ""},
		{"unknown", []string{"ext4"}, nil, "module ext4: not in modules.dep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Order(tt.mods)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestWriteDepRoundTrip(t *testing.T) {
	d, err := ParseDep(strings.NewReader(debianDep))
	if err != nil {
		t.Fatal(err)
	}
	files, err := d.Order([]string{"virtio_blk", "loop"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := d.WriteDep(&b, files); err != nil {
		t.Fatal(err)
	}
	want := `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/loop.ko:
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	d2, err := ParseDep(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := d2.Order([]string{"virtio_blk", "loop"})
	if err != nil || !reflect.DeepEqual(got, files) {
		t.Errorf("reparsed order %q, %v; want %q", got, err, files)
	}
}

func TestParseDepError(t *testing.T) {
	if _, err := ParseDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("want error for a line without colon")
	}
}

// TestLoaderSkips covers the paths that never reach the kernel: modules
// that are built in (absent from modules.dep) and modules already loaded.
func TestLoaderSkips(t *testing.T) {
	d, err := ParseDep(strings.NewReader(debianDep))
	if err != nil {
		t.Fatal(err)
	}
	sys := t.TempDir()
	for _, m := range []string{"virtio", "virtio_ring", "virtio_blk"} {
		if err := os.MkdirAll(filepath.Join(sys, m), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, m, "initstate"), []byte("live\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	l := &Loader{Dir: t.TempDir(), Dep: d, SysModule: sys, Log: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}}
	if err := l.Load("ext4", "virtio-blk"); err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []string{"module ext4: not in the initramfs, assuming it is built in"}
	if !reflect.DeepEqual(logs, want) {
		t.Errorf("logs %q, want %q", logs, want)
	}
	// A module whose file is missing reports an error naming it, and the
	// others are still tried.
	err = l.Load("squashfs", "virtio_blk")
	if err == nil || !strings.Contains(err.Error(), "module squashfs") {
		t.Errorf("err = %v, want one naming squashfs", err)
	}
}

// A pruned tree stores modules decompressed, so its modules.dep names
// them, and their dependencies, as plain .ko files.
func TestWriteDepPlainNames(t *testing.T) {
	d, err := ParseDep(strings.NewReader(debianDep))
	if err != nil {
		t.Fatal(err)
	}
	files, err := d.Order([]string{"btrfs"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := d.WriteDep(&b, files); err != nil {
		t.Fatal(err)
	}
	want := `kernel/crypto/xor.ko:
kernel/lib/zstd/zstd_compress.ko:
kernel/fs/btrfs/btrfs.ko: kernel/lib/zstd/zstd_compress.ko kernel/crypto/xor.ko
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
