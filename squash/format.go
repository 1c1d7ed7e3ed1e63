// Package squash reads and writes SquashFS 4.0 images, the format the Linux
// kernel mounts with -t squashfs.
//
// The on-disk types live in this file; reader.go holds the Reader (an io/fs.FS
// over any io.ReaderAt) and writer.go the Writer you feed entries.
// Compressors live in the codec subpackage.
package squash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/squashportage/squashportage/squash/codec"
)

// Magic is the first word of every image ("hsqs" on disk).
const Magic = 0x73717368

// SuperblockSize is the size of the superblock at offset 0.
const SuperblockSize = 96

// MetadataSize is the uncompressed size of a metadata block.
const MetadataSize = 8192

// Block size limits of the format.
const (
	MinBlockSize     = 4096
	MaxBlockSize     = 1 << 20
	DefaultBlockSize = 128 << 10
)

// metaUncompressed marks a metadata block stored uncompressed in its 16-bit header.
const metaUncompressed = 0x8000

// dataUncompressed marks a data or fragment block stored uncompressed in its
// 32-bit size word.
const dataUncompressed = 1 << 24

// NoFragment is the fragment index of a file without a tail in a fragment block.
const NoFragment = 0xFFFFFFFF

// NoXattr is the xattr index of an inode without extended attributes.
const NoXattr = 0xFFFFFFFF

// NoTable is the superblock position of an absent optional table.
const NoTable = ^uint64(0)

// Superblock flags.
const (
	FlagUncompressedInodes    = 0x0001
	FlagUncompressedData      = 0x0002
	FlagCheck                 = 0x0004
	FlagUncompressedFragments = 0x0008
	FlagNoFragments           = 0x0010
	FlagAlwaysFragments       = 0x0020
	FlagDuplicates            = 0x0040
	FlagExportable            = 0x0080
	FlagUncompressedXattrs    = 0x0100
	FlagNoXattrs              = 0x0200
	FlagCompressorOptions     = 0x0400
	FlagUncompressedIDs       = 0x0800
)

// Inode types. Extended types are the basic ones plus 7.
const (
	TypeDir      = 1
	TypeFile     = 2
	TypeSymlink  = 3
	TypeBlockDev = 4
	TypeCharDev  = 5
	TypeFifo     = 6
	TypeSocket   = 7
	TypeLDir     = 8
	TypeLFile    = 9
	TypeLSymlink = 10
	TypeLBlock   = 11
	TypeLChar    = 12
	TypeLFifo    = 13
	TypeLSocket  = 14
)

// Superblock is the 96-byte header of an image.
type Superblock struct {
	Magic         uint32
	Inodes        uint32
	MkfsTime      uint32
	BlockSize     uint32
	Fragments     uint32
	Compression   codec.ID
	BlockLog      uint16
	Flags         uint16
	IDs           uint16
	VersionMajor  uint16
	VersionMinor  uint16
	RootInode     uint64
	BytesUsed     uint64
	IDTable       uint64
	XattrTable    uint64
	InodeTable    uint64
	DirTable      uint64
	FragmentTable uint64
	ExportTable   uint64
}

// MarshalBinary encodes the superblock in its on-disk form.
func (sb *Superblock) MarshalBinary() ([]byte, error) {
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], sb.Magic)
	le.PutUint32(b[4:], sb.Inodes)
	le.PutUint32(b[8:], sb.MkfsTime)
	le.PutUint32(b[12:], sb.BlockSize)
	le.PutUint32(b[16:], sb.Fragments)
	le.PutUint16(b[20:], uint16(sb.Compression))
	le.PutUint16(b[22:], sb.BlockLog)
	le.PutUint16(b[24:], sb.Flags)
	le.PutUint16(b[26:], sb.IDs)
	le.PutUint16(b[28:], sb.VersionMajor)
	le.PutUint16(b[30:], sb.VersionMinor)
	le.PutUint64(b[32:], sb.RootInode)
	le.PutUint64(b[40:], sb.BytesUsed)
	le.PutUint64(b[48:], sb.IDTable)
	le.PutUint64(b[56:], sb.XattrTable)
	le.PutUint64(b[64:], sb.InodeTable)
	le.PutUint64(b[72:], sb.DirTable)
	le.PutUint64(b[80:], sb.FragmentTable)
	le.PutUint64(b[88:], sb.ExportTable)
	return b, nil
}

// ErrNotSquashfs is returned for data that does not start with the magic.
var ErrNotSquashfs = errors.New("not a squashfs image (bad magic)")

// UnmarshalBinary decodes and sanity-checks a superblock.
func (sb *Superblock) UnmarshalBinary(b []byte) error {
	if len(b) < SuperblockSize {
		return fmt.Errorf("superblock: %d bytes, need %d", len(b), SuperblockSize)
	}
	le := binary.LittleEndian
	*sb = Superblock{
		Magic:         le.Uint32(b[0:]),
		Inodes:        le.Uint32(b[4:]),
		MkfsTime:      le.Uint32(b[8:]),
		BlockSize:     le.Uint32(b[12:]),
		Fragments:     le.Uint32(b[16:]),
		Compression:   codec.ID(le.Uint16(b[20:])),
		BlockLog:      le.Uint16(b[22:]),
		Flags:         le.Uint16(b[24:]),
		IDs:           le.Uint16(b[26:]),
		VersionMajor:  le.Uint16(b[28:]),
		VersionMinor:  le.Uint16(b[30:]),
		RootInode:     le.Uint64(b[32:]),
		BytesUsed:     le.Uint64(b[40:]),
		IDTable:       le.Uint64(b[48:]),
		XattrTable:    le.Uint64(b[56:]),
		InodeTable:    le.Uint64(b[64:]),
		DirTable:      le.Uint64(b[72:]),
		FragmentTable: le.Uint64(b[80:]),
		ExportTable:   le.Uint64(b[88:]),
	}
	if sb.Magic != Magic {
		return ErrNotSquashfs
	}
	if sb.VersionMajor != 4 || sb.VersionMinor != 0 {
		return fmt.Errorf("superblock: version %d.%d, only 4.0 is supported", sb.VersionMajor, sb.VersionMinor)
	}
	if sb.BlockSize < MinBlockSize || sb.BlockSize > MaxBlockSize || sb.BlockSize&(sb.BlockSize-1) != 0 {
		return fmt.Errorf("superblock: bad block size %d", sb.BlockSize)
	}
	if 1<<sb.BlockLog != sb.BlockSize {
		return fmt.Errorf("superblock: block log %d does not match block size %d", sb.BlockLog, sb.BlockSize)
	}
	return nil
}

// Xattr is one extended attribute with its full name ("user.foo").
type Xattr struct {
	Name  string
	Value []byte
}

// Xattr name prefixes, indexed by their on-disk type.
var xattrPrefixes = [...]string{"user.", "trusted.", "security."}

// xattrOutOfLine marks a key whose value is a reference to another value.
const xattrOutOfLine = 0x0100

// StorableXattr reports whether an image can hold the attribute name:
// only the user., trusted. and security. namespaces have an on-disk type.
func StorableXattr(name string) bool {
	_, _, ok := splitXattrName(name)
	return ok
}

// splitXattrName returns the on-disk prefix type and the rest of the name.
func splitXattrName(name string) (uint16, string, bool) {
	for i, p := range xattrPrefixes {
		if len(name) > len(p) && name[:len(p)] == p {
			return uint16(i), name[len(p):], true
		}
	}
	return 0, "", false
}

// EncodeDev packs a device number the way the kernel's squashfs expects it
// (new_decode_dev): minor low byte, major, then the minor's upper bits.
func EncodeDev(major, minor uint32) uint32 {
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// DecodeDev is the inverse of EncodeDev.
func DecodeDev(dev uint32) (major, minor uint32) {
	return (dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00)
}

// basicType maps an inode type to the basic form stored in directory entries.
func basicType(t uint16) uint16 {
	if t > 7 {
		return t - 7
	}
	return t
}

// modeType converts a basic inode type to Go's file mode type bits.
func modeType(t uint16) fs.FileMode {
	switch basicType(t) {
	case TypeDir:
		return fs.ModeDir
	case TypeSymlink:
		return fs.ModeSymlink
	case TypeBlockDev:
		return fs.ModeDevice
	case TypeCharDev:
		return fs.ModeDevice | fs.ModeCharDevice
	case TypeFifo:
		return fs.ModeNamedPipe
	case TypeSocket:
		return fs.ModeSocket
	}
	return 0
}

// typeOf converts Go's file mode to the basic inode type.
func typeOf(m fs.FileMode) uint16 {
	switch {
	case m.IsDir():
		return TypeDir
	case m&fs.ModeSymlink != 0:
		return TypeSymlink
	case m&fs.ModeCharDevice != 0:
		return TypeCharDev
	case m&fs.ModeDevice != 0:
		return TypeBlockDev
	case m&fs.ModeNamedPipe != 0:
		return TypeFifo
	case m&fs.ModeSocket != 0:
		return TypeSocket
	}
	return TypeFile
}

// unixPerm converts Go's permission and special bits to the 12 Unix bits.
func unixPerm(m fs.FileMode) uint16 {
	p := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// goPerm converts the 12 Unix permission bits to Go's file mode bits.
func goPerm(p uint16) fs.FileMode {
	m := fs.FileMode(p & 0o777)
	if p&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// Inode is a decoded inode: what fs.FileInfo.Sys returns for entries of a
// Reader, and the layout of a file's data for code that reuses its blocks.
type Inode struct {
	Ref    uint64 // inode reference: block position << 16 | offset
	Type   uint16 // on-disk type, basic or extended
	Mode   fs.FileMode
	UID    uint32
	GID    uint32
	Mtime  uint32
	Number uint32
	Nlink  uint32

	Size       uint64 // file size, or directory listing size (+3 as stored)
	Rdev       uint32 // device number in squashfs encoding (see DecodeDev)
	Target     string // symlink target
	XattrIndex uint32 // NoXattr when none

	// Regular files.
	BlocksStart uint64
	BlockSizes  []uint32 // on-disk size words: bit 24 set = uncompressed; 0 = hole
	Fragment    uint32   // NoFragment when the file has no tail in a fragment
	FragOffset  uint32
	Sparse      uint64

	// Directories.
	DirBlock  uint32 // metadata block position relative to the directory table
	DirOffset uint16
	Parent    uint32
	DirIndex  []DirIndex
}

// HasStoredBlocks says whether a regular file has data blocks stored in
// the image: not none, and not holes only.
func (ino *Inode) HasStoredBlocks() bool {
	for _, w := range ino.BlockSizes {
		if BlockSize(w) != 0 {
			return true
		}
	}
	return false
}

// Clone returns a copy of ino that shares no memory with it.
func (ino *Inode) Clone() *Inode {
	c := *ino
	c.BlockSizes = slices.Clone(ino.BlockSizes)
	c.DirIndex = slices.Clone(ino.DirIndex)
	return &c
}

// DirIndex is one entry of an extended directory's lookup index.
type DirIndex struct {
	Index uint32 // byte offset of a header from the listing's start
	Start uint32 // directory table block holding that header
	Name  string // first name after that header
}

// FragmentEntry is one row of the fragment table.
type FragmentEntry struct {
	Start uint64
	Size  uint32 // on-disk size word; bit 24 set = uncompressed
}

// BlockSize returns the on-disk length of a block from its size word.
func BlockSize(word uint32) uint32 { return word &^ dataUncompressed }

// BlockCompressed reports whether a block's size word says it is compressed.
func BlockCompressed(word uint32) bool { return word&dataUncompressed == 0 }

// Unix st_mode file type bits.
const (
	unixTypeMask = 0o170000
	unixSocket   = 0o140000
	unixSymlink  = 0o120000
	unixBlock    = 0o060000
	unixDir      = 0o040000
	unixChar     = 0o020000
	unixFifo     = 0o010000
)

// FileModeFromUnix converts a Unix st_mode (type, permission, setuid,
// setgid and sticky bits) to Go's FileMode.
func FileModeFromUnix(m uint32) fs.FileMode {
	mode := goPerm(uint16(m & 0o7777))
	switch m & unixTypeMask {
	case unixDir:
		mode |= fs.ModeDir
	case unixSymlink:
		mode |= fs.ModeSymlink
	case unixChar:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unixBlock:
		mode |= fs.ModeDevice
	case unixFifo:
		mode |= fs.ModeNamedPipe
	case unixSocket:
		mode |= fs.ModeSocket
	}
	return mode
}

// UnixPerm returns the 12 Unix permission bits (setuid, setgid and sticky
// included) of a Go file mode.
func UnixPerm(m fs.FileMode) uint32 { return uint32(unixPerm(m)) }

// BasicType folds an extended inode type onto its basic one.
func BasicType(t uint16) uint16 { return basicType(t) }
