package rootdev

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

var testUUID = []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}

// image builds a sparse in-memory device of size bytes with writes applied.
func image(size int, writes map[int][]byte) []byte {
	b := make([]byte, size)
	for off, w := range writes {
		copy(b[off:], w)
	}
	return b
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func extImage(compat, incompat, roCompat uint32, label string) []byte {
	return image(4096, map[int][]byte{
		1024 + 0x38: le16(0xEF53),
		1024 + 0x5C: le32(compat),
		1024 + 0x60: le32(incompat),
		1024 + 0x64: le32(roCompat),
		1024 + 0x68: testUUID,
		1024 + 0x78: []byte(label),
	})
}

func TestProbeFS(t *testing.T) {
	fat32 := image(512, map[int][]byte{0x43: le32(0xA1B2C3D4), 0x47: []byte("BOOT       "), 0x52: []byte("FAT32   "), 510: {0x55, 0xAA}})
	fat16 := image(512, map[int][]byte{0x27: le32(0x00FF1234), 0x2B: []byte("NO NAME    "), 0x36: []byte("FAT16   "), 510: {0x55, 0xAA}})
	tests := []struct {
		name    string
		img     []byte
		want    FS
		wantErr bool
	}{
		{"ext4", extImage(0x4, 0x2|0x40|0x200, 0x1, "gentoo-root"), FS{"ext4", "12345678-9abc-def0-0123-456789abcdef", "gentoo-root"}, false},
		{"ext3", extImage(0x4, 0x2, 0x1, ""), FS{"ext3", "12345678-9abc-def0-0123-456789abcdef", ""}, false},
		{"ext2", extImage(0, 0x2, 0x1, "old"), FS{"ext2", "12345678-9abc-def0-0123-456789abcdef", "old"}, false},
		{"ext4 by ro_compat", extImage(0x4, 0x2, 0x8, ""), FS{"ext4", "12345678-9abc-def0-0123-456789abcdef", ""}, false},
		{"full-length ext label", extImage(0, 0, 0, "0123456789abcdef"), FS{"ext2", "12345678-9abc-def0-0123-456789abcdef", "0123456789abcdef"}, false},
		{"xfs", image(4096, map[int][]byte{0: []byte("XFSB"), 32: testUUID, 108: []byte("data")}),
			FS{"xfs", "12345678-9abc-def0-0123-456789abcdef", "data"}, false},
		{"btrfs", image(0x10000+4096, map[int][]byte{0x10000 + 0x20: testUUID, 0x10000 + 0x40: []byte("_BHRfS_M"), 0x10000 + 0x12B: []byte("pool")}),
			FS{"btrfs", "12345678-9abc-def0-0123-456789abcdef", "pool"}, false},
		{"vfat32", fat32, FS{"vfat", "A1B2-C3D4", "BOOT"}, false},
		{"vfat16 no name", fat16, FS{"vfat", "00FF-1234", ""}, false},
		{"zeros", image(128<<10, nil), FS{}, true},
		{"tiny", []byte{1, 2, 3}, FS{}, true},
		{"boot signature but not FAT", image(512, map[int][]byte{510: {0x55, 0xAA}}), FS{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProbeFS(bytes.NewReader(tt.img))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// gptDisk builds a disk with a protective MBR and a GPT holding one named
// partition at index 2 (partition number 2).
func gptDisk(sector int) []byte {
	name := make([]byte, 72)
	for i, u := range utf16.Encode([]rune("gentoo-root")) {
		binary.LittleEndian.PutUint16(name[2*i:], u)
	}
	ent := 2 * sector
	return image(ent+4*128, map[int][]byte{
		510:            {0x55, 0xAA},
		sector:         []byte("EFI PART"),
		sector + 0x48:  le64(2),
		sector + 0x50:  le32(4),
		sector + 0x54:  le32(128),
		ent + 128 + 16: testUUID,
		ent + 128 + 56: name,
	})
}

func TestProbePart(t *testing.T) {
	mbr := image(512, map[int][]byte{0x1B8: le32(0x1234abcd), 510: {0x55, 0xAA}})
	tests := []struct {
		name    string
		disk    []byte
		n       int
		want    Part
		wantErr bool
	}{
		{"gpt 512", gptDisk(512), 2, Part{"78563412-bc9a-f0de-0123-456789abcdef", "gentoo-root"}, false},
		{"gpt 4096", gptDisk(4096), 2, Part{"78563412-bc9a-f0de-0123-456789abcdef", "gentoo-root"}, false},
		{"gpt empty slot", gptDisk(512), 1, Part{"00000000-0000-0000-0000-000000000000", ""}, false},
		{"gpt out of range", gptDisk(512), 5, Part{}, true},
		{"mbr primary", mbr, 2, Part{UUID: "1234abcd-02"}, false},
		{"mbr logical", mbr, 5, Part{UUID: "1234abcd-05"}, false},
		{"no table", image(1024, nil), 1, Part{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProbePart(bytes.NewReader(tt.disk), tt.n)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr bool
	}{
		{"/dev/vda1", Spec{Kind: "path", Value: "/dev/vda1"}, false},
		{"sda2", Spec{Kind: "path", Value: "/dev/sda2"}, false},
		{"8:1", Spec{Kind: "devnum", Value: "8:1"}, false},
		{"UUID=abc", Spec{Kind: "UUID", Value: "abc"}, false},
		{"LABEL=my root", Spec{Kind: "LABEL", Value: "my root"}, false},
		{"PARTUUID=1234abcd-02", Spec{Kind: "PARTUUID", Value: "1234abcd-02"}, false},
		{"PARTUUID=1234abcd-01/PARTNROFF=1", Spec{Kind: "PARTUUID", Value: "1234abcd-01", PartOffset: 1}, false},
		{"PARTLABEL=root", Spec{Kind: "PARTLABEL", Value: "root"}, false},
		{"", Spec{}, true},
		{"UUID=", Spec{}, true},
		{"PARTUUID=x/PARTNROFF=y", Spec{}, true},
		{"a=b", Spec{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// fakeSystem lays out a sysfs and /dev with a GPT disk vda whose second
// partition holds an ext4 superblock, and an MBR disk vdb.
func fakeSystem(t *testing.T) Finder {
	t.Helper()
	dir := t.TempDir()
	f := Finder{
		SysBlock:    filepath.Join(dir, "sys/class/block"),
		SysDevBlock: filepath.Join(dir, "sys/dev/block"),
		Dev:         filepath.Join(dir, "dev"),
	}
	devices := filepath.Join(dir, "sys/devices/pci0000:00")
	mkdir := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	mkdir(f.SysBlock)
	mkdir(f.SysDevBlock)
	mkdir(f.Dev)
	for _, d := range []struct {
		disk string
		img  []byte
		part []byte
		dev  string
	}{
		{"vda", gptDisk(512), extImage(0x4, 0x40, 0, "gentoo-root"), "254:2"},
		{"vdb", image(512, map[int][]byte{0x1B8: le32(0xdeadbeef), 510: {0x55, 0xAA}}), image(4096, nil), "254:17"},
	} {
		part := d.disk + map[string]string{"vda": "2", "vdb": "1"}[d.disk]
		mkdir(filepath.Join(devices, d.disk, part))
		write(filepath.Join(devices, d.disk, part, "partition"), []byte(strings.TrimPrefix(part, d.disk)+"\n"))
		link(filepath.Join(devices, d.disk), filepath.Join(f.SysBlock, d.disk))
		link(filepath.Join(devices, d.disk, part), filepath.Join(f.SysBlock, part))
		link(filepath.Join(devices, d.disk, part), filepath.Join(f.SysDevBlock, d.dev))
		write(filepath.Join(f.Dev, d.disk), d.img)
		write(filepath.Join(f.Dev, part), d.part)
	}
	return f
}

func TestFind(t *testing.T) {
	f := fakeSystem(t)
	tests := []struct {
		root    string
		want    string
		wantErr bool
	}{
		{"UUID=12345678-9ABC-DEF0-0123-456789ABCDEF", "vda2", false},
		{"LABEL=gentoo-root", "vda2", false},
		{"PARTUUID=78563412-bc9a-f0de-0123-456789abcdef", "vda2", false},
		{"PARTLABEL=gentoo-root", "vda2", false},
		{"PARTUUID=DEADBEEF-01", "vdb1", false},
		{"PARTUUID=deadbeef-00/PARTNROFF=1", "", true},
		{"254:17", "vdb1", false},
		{"LABEL=nope", "", true},
		{"UUID=00000000-0000-0000-0000-000000000000", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			spec, err := ParseSpec(tt.root)
			if err != nil {
				t.Fatal(err)
			}
			d, err := f.Find(spec)
			if tt.wantErr {
				if !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("err = %v, want not-exist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != tt.want || d.Path != filepath.Join(f.Dev, tt.want) {
				t.Errorf("found %+v, want %s", d, tt.want)
			}
		})
	}
	spec, _ := ParseSpec("LABEL=gentoo-root")
	if d, _ := f.Find(spec); d.FS.Type != "ext4" {
		t.Errorf("type %q, want ext4", d.FS.Type)
	}
}

func TestWaitTimesOut(t *testing.T) {
	f := fakeSystem(t)
	spec, _ := ParseSpec("LABEL=absent")
	start := time.Now()
	_, err := f.Wait(context.Background(), spec, 300*time.Millisecond, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("waited %s", el)
	}
}

func TestWaitSeesLateDevice(t *testing.T) {
	f := fakeSystem(t)
	spec, _ := ParseSpec("/late")
	spec.Value = filepath.Join(f.Dev, "late")
	go func() {
		time.Sleep(200 * time.Millisecond)
		// Rename so the device appears whole, as a device node would.
		tmp := spec.Value + ".tmp"
		if err := os.WriteFile(tmp, extImage(0, 0, 0, "late"), 0o644); err == nil {
			os.Rename(tmp, spec.Value)
		}
	}()
	d, err := f.Wait(context.Background(), spec, 5*time.Second, nil)
	if err != nil || d.FS.Label != "late" {
		t.Fatalf("got %+v, %v", d, err)
	}
}

// TestProbeRealExt4 checks the ext4 reader against mke2fs's own output.
func TestProbeRealExt4(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatal("mkfs.ext4 not installed (e2fsprogs)")
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	out, err := exec.Command(mkfs, "-q", "-F", "-U", "0b7e3c5a-1d2e-4f60-8a9b-c0d1e2f30415", "-L", "rootfs", img, "4M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	got, err := probePath(img)
	if err != nil {
		t.Fatal(err)
	}
	want := FS{"ext4", "0b7e3c5a-1d2e-4f60-8a9b-c0d1e2f30415", "rootfs"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
