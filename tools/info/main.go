// Package info is the "squashportage info" subcommand: describe an image's
// superblock, compressor and contents, for people or (with --json) scripts.
package info

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
	"github.com/squashportage/squashportage/squash/extract"
)

const usage = `Usage: squashportage info [--json] IMAGE

Describes a squashfs image: the superblock (compressor and its options,
block size, flags by name, creation time, bytes used, table positions),
where the bytes go (files' blocks, fragment blocks, inode table,
directory table, the other tables) and counts of inodes, ids,
fragments, and of files, directories, symlinks, devices, fifos and
sockets found by walking the tree.

Options:
  --json      print JSON
  -h, --help  show this help
`

// Report is what info prints; its JSON form is a stable interface.
type Report struct {
	Image         string            `json:"image"`
	Version       string            `json:"version"`
	Compressor    string            `json:"compressor"`
	CompressorOpt []string          `json:"compressor_options,omitempty"`
	BlockSize     uint32            `json:"block_size"`
	Flags         []string          `json:"flags"`
	FlagsRaw      uint16            `json:"flags_raw"`
	MkfsTime      time.Time         `json:"mkfs_time"`
	MkfsTimeUnix  uint32            `json:"mkfs_time_unix"`
	BytesUsed     uint64            `json:"bytes_used"`
	Inodes        uint32            `json:"inodes"`
	IDs           uint16            `json:"ids"`
	Fragments     uint32            `json:"fragments"`
	XattrIDs      uint32            `json:"xattr_ids"`
	Tables        map[string]*int64 `json:"tables"` // null when absent
	Space         Space             `json:"space"`
	Counts        Counts            `json:"counts"`
}

// Space is where the image's bytes go, as stored (compressed): what
// compares two writers' images part by part.
type Space struct {
	FileBlocks     uint64 `json:"file_blocks"`     // files' blocks other than fragment blocks
	FragmentBlocks uint64 `json:"fragment_blocks"` // blocks of packed tails and small files
	InodeTable     uint64 `json:"inode_table"`
	DirectoryTable uint64 `json:"directory_table"`
	// Other is the superblock, the compressor options and the fragment,
	// export, id and xattr tables.
	Other uint64 `json:"other"`
}

// Counts are the entries found by walking the tree (the root included).
type Counts struct {
	Entries     int64  `json:"entries"`
	Files       int64  `json:"files"`
	Directories int64  `json:"directories"`
	Symlinks    int64  `json:"symlinks"`
	BlockDevs   int64  `json:"block_devices"`
	CharDevs    int64  `json:"char_devices"`
	Fifos       int64  `json:"fifos"`
	Sockets     int64  `json:"sockets"`
	HardLinks   int64  `json:"hard_links"` // entries beyond the first for an inode
	FileBytes   uint64 `json:"file_bytes"`
	WithXattrs  int64  `json:"inodes_with_xattrs"`
}

var flagNames = []struct {
	bit  uint16
	name string
}{
	{squash.FlagUncompressedInodes, "uncompressed-inodes"},
	{squash.FlagUncompressedData, "uncompressed-data"},
	{squash.FlagCheck, "check"},
	{squash.FlagUncompressedFragments, "uncompressed-fragments"},
	{squash.FlagNoFragments, "no-fragments"},
	{squash.FlagAlwaysFragments, "always-fragments"},
	{squash.FlagDuplicates, "duplicates-removed"},
	{squash.FlagExportable, "exportable"},
	{squash.FlagUncompressedXattrs, "uncompressed-xattrs"},
	{squash.FlagNoXattrs, "no-xattrs"},
	{squash.FlagCompressorOptions, "compressor-options"},
	{squash.FlagUncompressedIDs, "uncompressed-ids"},
}

// Main runs "squashportage info" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	var image string
	asJSON := false
	for _, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			io.WriteString(stdout, usage)
			return 0
		case a == "--json" || a == "-json":
			asJSON = true
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "info: unknown option %s\n%s", a, usage)
			return 1
		case image != "":
			fmt.Fprint(stderr, "info: expected exactly one image\n"+usage)
			return 1
		default:
			image = a
		}
	}
	if image == "" {
		fmt.Fprint(stderr, "info: no image given\n"+usage)
		return 1
	}
	rep, err := Describe(image)
	if err != nil {
		fmt.Fprintf(stderr, "info: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "info: %v\n", err)
			return 1
		}
		return 0
	}
	printText(stdout, rep)
	return 0
}

// Describe opens image and gathers its Report.
func Describe(image string) (*Report, error) {
	rc, err := squash.OpenFile(image)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	sb := rc.Superblock()
	rep := &Report{
		Image:        image,
		Version:      fmt.Sprintf("%d.%d", sb.VersionMajor, sb.VersionMinor),
		Compressor:   sb.Compression.String(),
		BlockSize:    sb.BlockSize,
		FlagsRaw:     sb.Flags,
		MkfsTime:     time.Unix(int64(sb.MkfsTime), 0).UTC(),
		MkfsTimeUnix: sb.MkfsTime,
		BytesUsed:    sb.BytesUsed,
		Inodes:       sb.Inodes,
		IDs:          sb.IDs,
		Fragments:    sb.Fragments,
		Flags:        []string{},
		Tables:       map[string]*int64{},
	}
	if sb.Flags&squash.FlagCompressorOptions != 0 {
		rep.CompressorOpt = codec.Describe(rc.Codec().ID).Lines(rc.Codec())
	}
	for _, f := range flagNames {
		if sb.Flags&f.bit != 0 {
			rep.Flags = append(rep.Flags, f.name)
		}
	}
	for name, pos := range map[string]uint64{
		"inode": sb.InodeTable, "directory": sb.DirTable, "fragment": sb.FragmentTable,
		"export": sb.ExportTable, "id": sb.IDTable, "xattr": sb.XattrTable,
	} {
		if pos == squash.NoTable {
			rep.Tables[name] = nil
			continue
		}
		v := int64(pos)
		rep.Tables[name] = &v
	}
	rep.XattrIDs = rc.XattrIDs()
	if rep.Space, err = space(rc); err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	c := &rep.Counts
	err = extract.Walk(rc.Reader, extract.Selection{}, func(_ string, ino *squash.Inode) error {
		c.Entries++
		if seen[ino.Number] {
			c.HardLinks++
			return nil
		}
		seen[ino.Number] = true
		if ino.XattrIndex != squash.NoXattr {
			c.WithXattrs++
		}
		switch ino.Type {
		case squash.TypeDir, squash.TypeLDir:
			c.Directories++
		case squash.TypeFile, squash.TypeLFile:
			c.Files++
			c.FileBytes += ino.Size
		case squash.TypeSymlink, squash.TypeLSymlink:
			c.Symlinks++
		case squash.TypeBlockDev, squash.TypeLBlock:
			c.BlockDevs++
		case squash.TypeCharDev, squash.TypeLChar:
			c.CharDevs++
		case squash.TypeFifo, squash.TypeLFifo:
			c.Fifos++
		case squash.TypeSocket, squash.TypeLSocket:
			c.Sockets++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", image, err)
	}
	return rep, nil
}

// space splits sb.BytesUsed: files' data runs from the reader's data
// start to the inode table, which the directory table follows; the
// directory table ends where the first metadata block of another table
// starts (the first word at each of their positions).
func space(rc *squash.ReadCloser) (Space, error) {
	sb := rc.Superblock()
	dataStart := rc.DataStart()
	var s Space
	for i := uint32(0); i < sb.Fragments; i++ {
		e, err := rc.Fragment(i)
		if err != nil {
			return Space{}, err
		}
		s.FragmentBlocks += uint64(squash.BlockSize(e.Size))
	}
	dirEnd := sb.BytesUsed
	for _, pos := range []uint64{sb.FragmentTable, sb.ExportTable, sb.IDTable, sb.XattrTable} {
		if pos == squash.NoTable {
			continue
		}
		var b [8]byte
		if _, err := rc.ReadAt(b[:], int64(pos)); err != nil {
			return Space{}, fmt.Errorf("table index at %d: %w", pos, err)
		}
		start := binary.LittleEndian.Uint64(b[:])
		if start > sb.DirTable && start < dirEnd {
			dirEnd = start
		}
	}
	if sb.InodeTable < dataStart+s.FragmentBlocks || sb.DirTable < sb.InodeTable || dirEnd < sb.DirTable {
		return Space{}, fmt.Errorf("tables out of the usual order (inode table at %d, directory table at %d)", sb.InodeTable, sb.DirTable)
	}
	s.FileBlocks = sb.InodeTable - dataStart - s.FragmentBlocks
	s.InodeTable = sb.DirTable - sb.InodeTable
	s.DirectoryTable = dirEnd - sb.DirTable
	s.Other = sb.BytesUsed - s.FileBlocks - s.FragmentBlocks - s.InodeTable - s.DirectoryTable
	return s, nil
}

func printText(w io.Writer, r *Report) {
	pf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	pf("Image:             %s\n", r.Image)
	pf("Format:            SquashFS %s\n", r.Version)
	pf("Compressor:        %s\n", r.Compressor)
	for _, o := range r.CompressorOpt {
		pf("                   %s\n", o)
	}
	pf("Block size:        %d\n", r.BlockSize)
	pf("Flags:             %s (%#04x)\n", strings.Join(r.Flags, ", "), r.FlagsRaw)
	pf("Created:           %s (%d)\n", r.MkfsTime.Format(time.RFC3339), r.MkfsTimeUnix)
	pf("Bytes used:        %d (%.2f MiB)\n", r.BytesUsed, float64(r.BytesUsed)/(1<<20))
	pf("Inodes:            %d\n", r.Inodes)
	pf("IDs:               %d\n", r.IDs)
	pf("Fragments:         %d\n", r.Fragments)
	pf("Xattr ids:         %d\n", r.XattrIDs)
	pf("Tables:\n")
	for _, name := range []string{"inode", "directory", "fragment", "export", "id", "xattr"} {
		if p := r.Tables[name]; p != nil {
			pf("  %-16s %d\n", name+":", *p)
		} else {
			pf("  %-16s absent\n", name+":")
		}
	}
	pf("Space (stored bytes):\n")
	for _, p := range []struct {
		name string
		n    uint64
	}{
		{"file blocks", r.Space.FileBlocks}, {"fragment blocks", r.Space.FragmentBlocks},
		{"inode table", r.Space.InodeTable}, {"directory table", r.Space.DirectoryTable},
		{"other", r.Space.Other},
	} {
		pf("  %-16s %d (%.1f%%)\n", p.name+":", p.n, 100*float64(p.n)/float64(max(r.BytesUsed, 1)))
	}
	c := r.Counts
	pf("Contents:\n")
	pf("  entries:         %d\n", c.Entries)
	pf("  files:           %d (%d bytes)\n", c.Files, c.FileBytes)
	pf("  directories:     %d\n", c.Directories)
	pf("  symlinks:        %d\n", c.Symlinks)
	pf("  block devices:   %d\n", c.BlockDevs)
	pf("  char devices:    %d\n", c.CharDevs)
	pf("  fifos:           %d\n", c.Fifos)
	pf("  sockets:         %d\n", c.Sockets)
	pf("  hard links:      %d\n", c.HardLinks)
	pf("  with xattrs:     %d\n", c.WithXattrs)
}
