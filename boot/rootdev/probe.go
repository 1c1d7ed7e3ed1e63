// Package rootdev finds the block device named by the kernel's root=
// parameter: a device path, MAJ:MIN, UUID=, LABEL=, PARTUUID= or
// PARTLABEL=. It reads filesystem superblocks and partition tables itself
// because u-root's pkg/mount/block knows neither filesystem labels nor MBR
// partition UUIDs, and there is no udev or blkid in the initramfs.
package rootdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// FS is what a superblock says about a filesystem.
type FS struct {
	Type  string // ext2, ext3, ext4, xfs, btrfs, vfat
	UUID  string // as blkid prints it
	Label string
}

// errUnknown means no known superblock was found; callers move on.
var errUnknown = errors.New("no known filesystem")

// ProbeFS identifies the filesystem on r by its superblock.
func ProbeFS(r io.ReaderAt) (FS, error) {
	for _, p := range []func(io.ReaderAt) (FS, bool){probeExt, probeXFS, probeBtrfs, probeVFAT} {
		if fs, ok := p(r); ok {
			return fs, nil
		}
	}
	return FS{}, errUnknown
}

// read returns n bytes at off, or nil if the device is shorter.
func read(r io.ReaderAt, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

func probeExt(r io.ReaderAt) (FS, bool) {
	sb := read(r, 1024, 256)
	if sb == nil || binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return FS{}, false
	}
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	roCompat := binary.LittleEndian.Uint32(sb[0x64:])
	typ := "ext2"
	// ext3 knows only the journal, filetype and recovery features
	// (incompat 0x2|0x4|0x8 for journal_dev); anything beyond, such as
	// extents, 64bit or flex_bg, or a ro_compat feature ext3 lacks,
	// needs ext4.
	const ext3Incompat = 0x2 | 0x4 | 0x8 | 0x10
	const ext3RoCompat = 0x1 | 0x2 | 0x4
	switch {
	case incompat&^ext3Incompat != 0 || roCompat&^ext3RoCompat != 0:
		typ = "ext4"
	case compat&0x4 != 0:
		typ = "ext3"
	}
	return FS{Type: typ, UUID: uuid(sb[0x68:0x78]), Label: cstr(sb[0x78:0x88])}, true
}

func probeXFS(r io.ReaderAt) (FS, bool) {
	sb := read(r, 0, 120)
	if sb == nil || string(sb[0:4]) != "XFSB" {
		return FS{}, false
	}
	return FS{Type: "xfs", UUID: uuid(sb[32:48]), Label: cstr(sb[108:120])}, true
}

func probeBtrfs(r io.ReaderAt) (FS, bool) {
	sb := read(r, 0x10000, 0x22B)
	if sb == nil || string(sb[0x40:0x48]) != "_BHRfS_M" {
		return FS{}, false
	}
	return FS{Type: "btrfs", UUID: uuid(sb[0x20:0x30]), Label: cstr(sb[0x12B:0x22B])}, true
}

func probeVFAT(r io.ReaderAt) (FS, bool) {
	bs := read(r, 0, 512)
	if bs == nil || bs[510] != 0x55 || bs[511] != 0xAA {
		return FS{}, false
	}
	// FAT32 keeps its extended boot record further in than FAT12/16.
	var serialOff, labelOff int
	switch {
	case string(bs[0x52:0x57]) == "FAT32":
		serialOff, labelOff = 0x43, 0x47
	case string(bs[0x36:0x39]) == "FAT":
		serialOff, labelOff = 0x27, 0x2B
	default:
		return FS{}, false
	}
	serial := binary.LittleEndian.Uint32(bs[serialOff:])
	label := strings.TrimRight(string(bs[labelOff:labelOff+11]), " \x00")
	if label == "NO NAME" {
		label = ""
	}
	return FS{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xFFFF), Label: label}, true
}

// uuid formats 16 bytes stored in RFC 4122 byte order.
func uuid(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// guid formats a GPT GUID, whose first three fields are little-endian.
func guid(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Part is what a partition table says about one partition.
type Part struct {
	UUID  string // PARTUUID: the GPT unique GUID, or MBR "SSSSSSSS-NN"
	Label string // PARTLABEL: GPT only
}

// ProbePart reads the partition table of the whole disk r and describes
// partition number n (1-based, as in /sys/class/block/X/partition).
func ProbePart(r io.ReaderAt, n int) (Part, error) {
	for _, sector := range []int64{512, 4096} {
		if p, ok, err := gptPart(r, sector, n); ok || err != nil {
			return p, err
		}
	}
	mbr := read(r, 0, 512)
	if mbr == nil || mbr[510] != 0x55 || mbr[511] != 0xAA {
		return Part{}, errors.New("no GPT or MBR partition table")
	}
	// The kernel names MBR partitions by disk signature and number, and
	// logical partitions by their number too (5 and up).
	sig := binary.LittleEndian.Uint32(mbr[0x1B8:])
	return Part{UUID: fmt.Sprintf("%08x-%02x", sig, n)}, nil
}

func gptPart(r io.ReaderAt, sector int64, n int) (Part, bool, error) {
	h := read(r, sector, 92)
	if h == nil || string(h[0:8]) != "EFI PART" {
		return Part{}, false, nil
	}
	entLBA := int64(binary.LittleEndian.Uint64(h[0x48:]))
	count := int(binary.LittleEndian.Uint32(h[0x50:]))
	size := int64(binary.LittleEndian.Uint32(h[0x54:]))
	if n < 1 || n > count || size < 128 {
		return Part{}, true, fmt.Errorf("GPT has no partition %d", n)
	}
	e := read(r, entLBA*sector+int64(n-1)*size, 128)
	if e == nil {
		return Part{}, true, fmt.Errorf("GPT entry %d: short read", n)
	}
	u16 := make([]uint16, 36)
	for i := range u16 {
		u16[i] = binary.LittleEndian.Uint16(e[56+2*i:])
	}
	name := string(utf16.Decode(u16))
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return Part{UUID: guid(e[16:32]), Label: name}, true, nil
}
