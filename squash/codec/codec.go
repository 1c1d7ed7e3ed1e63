// Package codec implements the block compressors a SquashFS 4.0 image may use,
// with the exact stream framing and option layouts the Linux kernel's squashfs
// driver and squashfs-tools 4.5 expect.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/squashportage/squashportage/squash/codec/deflate"
)

// ID is the compressor id stored in the superblock.
type ID uint16

// Compressor ids as stored in the superblock (squashfs_fs.h: ZLIB 1, LZMA 2,
// LZO 3, XZ 4, LZ4 5, ZSTD 6; mksquashfs -comp lzo writes 3).
const (
	Gzip ID = 1
	LZMA ID = 2
	LZO  ID = 3
	XZ   ID = 4
	LZ4  ID = 5
	Zstd ID = 6
)

// names is indexed by ID; it is the set of -comp names mksquashfs accepts.
var names = [...]string{Gzip: "gzip", LZMA: "lzma", LZO: "lzo", XZ: "xz", LZ4: "lz4", Zstd: "zstd"}

func (id ID) String() string {
	if id >= Gzip && int(id) < len(names) {
		return names[id]
	}
	return fmt.Sprintf("unknown(%d)", uint16(id))
}

// ParseID maps a mksquashfs -comp name to its id.
func ParseID(name string) (ID, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for id := Gzip; int(id) < len(names); id++ {
		if names[id] == n {
			return id, nil
		}
	}
	return 0, fmt.Errorf("unknown compressor %q (supported: %s)", name, strings.Join(names[Gzip:], ", "))
}

// Options are a user's compressor settings (the -X options of mksquashfs 4.5).
// Zero values mean "default".
type Options struct {
	Level      int    // gzip: 1..9 (default 9, see Packed); zstd: 1..22 (default 15)
	WindowSize int    // gzip: 8..15 (default 15)
	DictSize   int    // xz: bytes; 0 = block size; must be >= 8192, <= block size, and 2^n or 2^n+2^(n-1)
	Filters    uint32 // xz BCJ filters, bit set: x86=1, powerpc=2, ia64=4, arm=8, armthumb=0x10, sparc=0x20
	HC         bool   // lz4 high compression
	// Fast asks xz, whose format has no level, for a quick greedy parse
	// (lzma2.Encoder.SetFast: on 8 KiB metadata blocks 3.6 times
	// ulikunitz's speed at its size, 6 times our optimal parser's): for
	// tables a persist rewrites each time. Not stored in the image.
	Fast bool
}

// BCJ filter bits of Options.Filters, in the order mksquashfs tries them.
const (
	FilterX86 uint32 = 1 << iota
	FilterPowerPC
	FilterIA64
	FilterARM
	FilterARMThumb
	FilterSPARC

	allFilters = FilterX86 | FilterPowerPC | FilterIA64 | FilterARM | FilterARMThumb | FilterSPARC
)

// filterNames follows bit order of Options.Filters (mksquashfs -Xbcj names).
var filterNames = [...]string{"x86", "powerpc", "ia64", "arm", "armthumb", "sparc"}

// ParseFilters turns a mksquashfs -Xbcj argument ("x86,arm") into a filter bit set.
func ParseFilters(list string) (uint32, error) {
	var f uint32
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		found := false
		for i, n := range filterNames {
			if n == name {
				f |= 1 << i
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown xz bcj filter %q (supported: %s)", name, strings.Join(filterNames[:], ", "))
		}
	}
	return f, nil
}

// Config is a compressor choice plus its settings for one image.
type Config struct {
	ID        ID
	BlockSize int // the image's data block size (4096..1048576, power of two)
	Options   Options
}

const (
	minBlockSize = 4096
	maxBlockSize = 1 << 20
	// metadataSize is the uncompressed size of a metadata block; every
	// decoder must accept blocks this large even when BlockSize is 4096.
	metadataSize = 8192

	// squashfsGzipLevel is the level an image without gzip options was made
	// with (mksquashfs's default), and ours: full data blocks are
	// compressed at it (by package deflate, whose level 9 is 0.9% smaller
	// than klauspost's 9 on a kernel tree's large files for half its CPU).
	// packedGzipLevel is what blocks packed from many small pieces
	// (fragment blocks, metadata) get at the default level: deflate's
	// DefaultLevel, chosen for them. A level asked for with
	// -Xcompression-level applies to every block.
	squashfsGzipLevel = 9
	defGzipLevel      = squashfsGzipLevel
	packedGzipLevel   = deflate.DefaultLevel
	defGzipWindow     = 15
	defZstdLevel      = 15
	maxZstdLevel      = 22
	minXZDict         = 8192

	lz4Version = 1 // LZ4_LEGACY: the only block format squashfs knows
	lz4FlagHC  = 1

	lzoAlgo999     = 4 // lzo1x_999, mksquashfs's default
	lzoNumAlgos    = 5
	defLZOLevel    = 8
	lzoOptionsSize = 8
)

// Validate checks the settings as mksquashfs 4.5 would before writing an image.
func (c Config) Validate() error {
	if err := validateBlockSize(c.BlockSize); err != nil {
		return err
	}
	o := c.Options
	if err := c.rejectForeign(); err != nil {
		return err
	}
	switch c.ID {
	case Gzip:
		if o.Level != 0 && (o.Level < 1 || o.Level > 9) {
			return fmt.Errorf("gzip: compression level %d out of range (allowed 1..9)", o.Level)
		}
		if o.WindowSize != 0 && (o.WindowSize < 8 || o.WindowSize > 15) {
			return fmt.Errorf("gzip: window size %d out of range (allowed 8..15)", o.WindowSize)
		}
	case Zstd:
		if o.Level != 0 && (o.Level < 1 || o.Level > maxZstdLevel) {
			return fmt.Errorf("zstd: compression level %d out of range (allowed 1..%d)", o.Level, maxZstdLevel)
		}
	case XZ:
		if o.DictSize != 0 {
			if err := checkDictForm(o.DictSize); err != nil {
				return err
			}
			if o.DictSize < minXZDict {
				return fmt.Errorf("xz: dictionary size %d too small (minimum %d)", o.DictSize, minXZDict)
			}
			if o.DictSize > c.BlockSize {
				return fmt.Errorf("xz: dictionary size %d larger than block size %d", o.DictSize, c.BlockSize)
			}
		}
		if o.Filters&^allFilters != 0 {
			return fmt.Errorf("xz: unknown bcj filter bits %#x (allowed: x86=1, powerpc=2, ia64=4, arm=8, armthumb=0x10, sparc=0x20)", o.Filters&^allFilters)
		}
	case LZ4, LZO, LZMA:
	default:
		return fmt.Errorf("unknown compressor id %d", uint16(c.ID))
	}
	return nil
}

// rejectForeign refuses settings that belong to another compressor, the way
// mksquashfs refuses e.g. -Xhc together with -comp gzip.
func (c Config) rejectForeign() error {
	o := c.Options
	bad := func(opt string) error {
		return fmt.Errorf("%s: option %s is not supported by this compressor", c.ID, opt)
	}
	if o.Level != 0 && c.ID != Gzip && c.ID != Zstd {
		return bad("compression level")
	}
	if o.WindowSize != 0 && c.ID != Gzip {
		return bad("window size")
	}
	if o.DictSize != 0 && c.ID != XZ {
		return bad("dictionary size")
	}
	if o.Filters != 0 && c.ID != XZ {
		return bad("bcj filters")
	}
	if o.HC && c.ID != LZ4 {
		return bad("high compression (hc)")
	}
	if o.Fast && c.ID != XZ {
		return bad("fast")
	}
	return nil
}

func validateBlockSize(bs int) error {
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d invalid (must be a power of two from %d to %d)", bs, minBlockSize, maxBlockSize)
	}
	return nil
}

// checkDictForm enforces the kernel's rule that an xz dictionary is 2^n or
// 2^n + 2^(n-1), since those are the sizes LZMA2 properties can express.
func checkDictForm(d int) error {
	if d > 0 {
		low := d & -d
		if d == low || d == 3*low {
			return nil
		}
	}
	return fmt.Errorf("xz: dictionary size %d invalid (must be 2^n or 2^n+2^(n-1))", d)
}

func (c Config) gzipLevel() int { return orDefault(c.Options.Level, defGzipLevel) }

// Packed returns the settings for blocks packed from many small pieces,
// fragment blocks and metadata: the same as c except at gzip's default
// level (see packedGzipLevel). Any level decodes the same.
func (c Config) Packed() Config {
	if c.ID == Gzip && c.Options.Level == 0 {
		c.Options.Level = packedGzipLevel
	}
	return c
}
func (c Config) gzipWindow() int { return orDefault(c.Options.WindowSize, defGzipWindow) }
func (c Config) zstdLevel() int  { return orDefault(c.Options.Level, defZstdLevel) }
func (c Config) xzDict() int     { return orDefault(c.Options.DictSize, c.BlockSize) }

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// OptionsBlob returns the compressor options to store after the superblock, or
// nil when mksquashfs 4.5 would write none (all settings default). LZ4 always
// has options because the kernel refuses LZ4 images without them.
func (c Config) OptionsBlob() []byte {
	le := binary.LittleEndian
	switch c.ID {
	case Gzip:
		if c.gzipLevel() == squashfsGzipLevel && c.gzipWindow() == defGzipWindow {
			return nil
		}
		b := make([]byte, 8)
		le.PutUint32(b, uint32(c.gzipLevel()))
		le.PutUint16(b[4:], uint16(c.gzipWindow()))
		return b
	case XZ:
		if c.xzDict() == c.BlockSize && c.Options.Filters == 0 {
			return nil
		}
		b := make([]byte, 8)
		le.PutUint32(b, uint32(c.xzDict()))
		le.PutUint32(b[4:], c.Options.Filters)
		return b
	case LZ4:
		b := make([]byte, 8)
		le.PutUint32(b, lz4Version)
		if c.Options.HC {
			le.PutUint32(b[4:], lz4FlagHC)
		}
		return b
	case Zstd:
		if c.zstdLevel() == defZstdLevel {
			return nil
		}
		b := make([]byte, 4)
		le.PutUint32(b, uint32(c.zstdLevel()))
		return b
	}
	return nil
}

// FromImage rebuilds a Config from an image's compressor id, its options
// blob (nil when the superblock lacks flag 0x0400) and its block size. The
// blob is untrusted. Reading is slightly more lenient than Validate where the
// kernel is (an xz dictionary need not be <= the block size, unknown xz
// filter bits are ignored since the streams name their own filters).
func FromImage(id ID, blob []byte, blockSize int) (Config, error) {
	c := Config{ID: id, BlockSize: blockSize}
	if err := validateBlockSize(blockSize); err != nil {
		return Config{}, fmt.Errorf("image: %w", err)
	}
	le := binary.LittleEndian
	short := func(n int) error {
		return fmt.Errorf("%s: compressor options are %d bytes, need %d", id, len(blob), n)
	}
	switch id {
	case Gzip:
		if blob == nil {
			// Made at the format's default level: new data for this
			// image (persist) gets our default, which matches it.
			return c, nil
		}
		if len(blob) < 8 {
			return Config{}, short(8)
		}
		lvl, win := int(le.Uint32(blob)), int(le.Uint16(blob[4:]))
		if lvl < 1 || lvl > 9 {
			return Config{}, fmt.Errorf("gzip: compression level %d in image out of range (1..9)", lvl)
		}
		if win < 8 || win > 15 {
			return Config{}, fmt.Errorf("gzip: window size %d in image out of range (8..15)", win)
		}
		// Strategies only steered the compressor; any value decodes the same.
		c.Options.Level, c.Options.WindowSize = lvl, win
	case XZ:
		if blob == nil {
			return c, nil
		}
		if len(blob) < 8 {
			return Config{}, short(8)
		}
		d := le.Uint32(blob)
		if d > 1<<30 {
			return Config{}, fmt.Errorf("xz: dictionary size %d in image too large", d)
		}
		if err := checkDictForm(int(d)); err != nil {
			return Config{}, fmt.Errorf("image: %w", err)
		}
		c.Options.DictSize = int(d)
		c.Options.Filters = le.Uint32(blob[4:]) & allFilters
	case LZ4:
		if blob == nil {
			return Config{}, errors.New("lz4: image has no compressor options (lz4 images always carry them)")
		}
		if len(blob) < 8 {
			return Config{}, short(8)
		}
		if v := le.Uint32(blob); v != lz4Version {
			return Config{}, fmt.Errorf("lz4: unsupported format version %d in image (only %d)", v, lz4Version)
		}
		f := le.Uint32(blob[4:])
		if f&^lz4FlagHC != 0 {
			return Config{}, fmt.Errorf("lz4: unknown flags %#x in image", f)
		}
		c.Options.HC = f&lz4FlagHC != 0
	case Zstd:
		if blob == nil {
			return c, nil
		}
		if len(blob) < 4 {
			return Config{}, short(4)
		}
		lvl := le.Uint32(blob)
		if lvl < 1 || lvl > maxZstdLevel {
			return Config{}, fmt.Errorf("zstd: compression level %d in image out of range (1..%d)", lvl, maxZstdLevel)
		}
		c.Options.Level = int(lvl)
	case LZO:
		if blob == nil {
			return c, nil
		}
		// The algorithm and level only describe how the image was made; every
		// variant is decoded by the same lzo1x decompressor, so nothing is kept.
		if len(blob) < lzoOptionsSize {
			return Config{}, short(lzoOptionsSize)
		}
		algo, lvl := le.Uint32(blob), le.Uint32(blob[4:])
		if algo >= lzoNumAlgos {
			return Config{}, fmt.Errorf("lzo: unknown algorithm %d in image", algo)
		}
		if algo == lzoAlgo999 && (lvl < 1 || lvl > 9) {
			return Config{}, fmt.Errorf("lzo: compression level %d in image out of range (1..9)", lvl)
		}
		if algo != lzoAlgo999 && lvl != 0 {
			return Config{}, fmt.Errorf("lzo: compression level %d given for an algorithm without levels", lvl)
		}
	case LZMA:
	default:
		return Config{}, fmt.Errorf("unknown compressor id %d in image", uint16(id))
	}
	return c, nil
}

// Encoder compresses blocks.
type Encoder interface {
	// Compress appends the compressed form of src to dst and returns it. The
	// result may be no smaller than src (incompressible data); the caller then
	// stores the block uncompressed. Not safe for concurrent use: one Encoder
	// per goroutine.
	Compress(dst, src []byte) ([]byte, error)
}

// Decoder decompresses blocks.
type Decoder interface {
	// Decompress decompresses src into dst and returns the number of bytes
	// written. len(dst) is the maximum output size: output that would exceed
	// it is an error. Corrupt input is an error. Not safe for concurrent use:
	// one Decoder per goroutine.
	Decompress(dst, src []byte) (int, error)
}

// NewEncoder returns a compressor for c.
func (c Config) NewEncoder() (Encoder, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.ID {
	case Gzip:
		return newGzipEncoder(c)
	case XZ:
		return newXZEncoder(c)
	case LZ4:
		return newLZ4Encoder(c), nil
	case Zstd:
		return newZstdEncoder(c)
	case LZO:
		return &lzoEncoder{}, nil
	}
	return nil, fmt.Errorf("compressor %s is not supported for writing", c.ID)
}

// NewDecoder returns a decompressor for c.
func (c Config) NewDecoder() (Decoder, error) {
	if err := validateBlockSize(c.BlockSize); err != nil {
		return nil, err
	}
	switch c.ID {
	case Gzip:
		return newGzipDecoder(), nil
	case LZO:
		return lzoDecoder{}, nil
	case XZ:
		d := c.Options.DictSize
		if d == 0 {
			d = max(c.BlockSize, metadataSize)
		}
		return newXZDecoder(d), nil
	case LZ4:
		return lz4Decoder{}, nil
	case Zstd:
		return newZstdDecoder(c)
	case LZMA:
		return nil, errors.New("compressor lzma is not supported")
	}
	return nil, fmt.Errorf("compressor %s is not supported", c.ID)
}

// ErrOutputLimit is wrapped by every Decoder error caused by a block that
// decodes to more bytes than len(dst), so callers can tell it from corruption.
var ErrOutputLimit = errors.New("decompressed data exceeds output buffer")
