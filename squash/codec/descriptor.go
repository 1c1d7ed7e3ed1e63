package codec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A Descriptor is what the command lines know of one compressor: its
// mksquashfs -X options (parsing and help), its defaults, and how
// unsquashfs -s describes the options an image stores. mksquashfs,
// unsquashfs and info ask it rather than keeping tables of their own.
type Descriptor struct {
	ID ID
	// Writes: images can be written with it; the others are read only.
	Writes bool
	// Summary is the help's line about it (defaults, what it is for).
	Summary  string
	XOptions []XOption
	describe func(Config) []string
}

// XOption is one -X option of mksquashfs.
type XOption struct {
	Flag string // "-Xcompression-level"
	Arg  string // the value's name in the help ("N"); "" for a switch
	Help string // what it does, one or more lines
	set  func(c *Config, value string) error
}

var descriptors = []*Descriptor{
	{ID: Gzip, Writes: true,
		Summary: "zlib streams (the default); level 9 as mksquashfs's: full data blocks at 9, fragment and metadata blocks at 7 of our own encoder, smaller than C zlib -9 on them and faster",
		XOptions: []XOption{
			{Flag: "-Xcompression-level", Arg: "N", Help: "1..9 (default 9; a level given applies to every block)", set: setLevel(1, 9)},
			{Flag: "-Xwindow-size", Arg: "N", Help: "window size 8..15 (default 15)", set: setWindow},
		},
		describe: func(c Config) []string {
			return []string{
				fmt.Sprintf("compression-level %d", c.gzipLevel()),
				fmt.Sprintf("window-size %d", c.gzipWindow()),
				"Strategies selected: default",
			}
		}},
	{ID: XZ, Writes: true,
		Summary: "our LZMA2 encoder (liblzma -6's size); smallest images, slowest",
		XOptions: []XOption{
			{Flag: "-Xdict-size", Arg: "SIZE", Help: "dictionary size, bytes with K/M suffix or a percentage of the block size (100%, 50%, 37.5%...); 2^n or 2^n+2^(n-1), 8K..block size", set: setDict},
			{Flag: "-Xbcj", Arg: "F1,F2,...", Help: "also try these branch filters, keeping the smallest result: " + strings.Join(filterNames[:], ", "), set: setBCJ},
		},
		describe: func(c Config) []string {
			l := []string{fmt.Sprintf("Dictionary size %d", c.xzDict())}
			if f := c.Options.Filters; f != 0 {
				var names []string
				for i, n := range filterNames {
					if f&(1<<i) != 0 {
						names = append(names, n)
					}
				}
				l = append(l, "Filters selected: "+strings.Join(names, " "))
			}
			return l
		}},
	{ID: Zstd, Writes: true,
		Summary: "our zstd encoder from level 10, klauspost's below",
		XOptions: []XOption{
			{Flag: "-Xcompression-level", Arg: "N", Help: fmt.Sprintf("1..%d (default %d)", maxZstdLevel, defZstdLevel), set: setLevel(1, maxZstdLevel)},
		},
		describe: func(c Config) []string { return []string{fmt.Sprintf("compression-level %d", c.zstdLevel())} }},
	{ID: LZ4, Writes: true,
		Summary: "fastest to write and read, largest images",
		XOptions: []XOption{
			{Flag: "-Xhc", Help: "high compression", set: func(c *Config, _ string) error { c.Options.HC = true; return nil }},
		},
		describe: func(c Config) []string {
			if c.Options.HC {
				return []string{"High Compression option specified (-Xhc)"}
			}
			return nil
		}},
	{ID: LZO, Writes: true, Summary: "LZO1X (hash chains, lazy by one): for images that must be lzo; lz4 is faster and zstd smaller"},
	{ID: LZMA, Summary: "not supported (squashfs 4.0 images from before xz)"},
}

// Descriptors lists every compressor, those that write first.
func Descriptors() []*Descriptor { return descriptors }

// ParseWritable parses the name of a compressor images can be written
// with; the error lists them.
func ParseWritable(name string) (ID, error) {
	id, err := ParseID(name)
	if d := Describe(id); err == nil && d != nil && d.Writes {
		return id, nil
	}
	var names []string
	for _, d := range descriptors {
		if d.Writes {
			names = append(names, d.ID.String())
		}
	}
	return 0, fmt.Errorf("%q is not a compressor images can be written with (%s)", name, strings.Join(names, ", "))
}

// Describe returns id's descriptor, nil for an unknown id.
func Describe(id ID) *Descriptor {
	for _, d := range descriptors {
		if d.ID == id {
			return d
		}
	}
	return nil
}

// Lines describe the options c stores the way unsquashfs -s prints them.
func (d *Descriptor) Lines(c Config) []string {
	if d == nil || d.describe == nil {
		return nil
	}
	return d.describe(c)
}

// IsXOption reports whether flag is an -X option of some compressor, and
// whether it takes a value.
func IsXOption(flag string) (ok, takesValue bool) {
	for _, d := range descriptors {
		for _, x := range d.XOptions {
			if x.Flag == flag {
				return true, x.Arg != ""
			}
		}
	}
	return false, false
}

// SetXOption applies a mksquashfs -X option to c, whose ID and BlockSize
// are set; an option of another compressor is an error that says so.
func SetXOption(c *Config, flag, value string) error {
	for _, x := range Describe(c.ID).xoptions() {
		if x.Flag == flag {
			if err := x.set(c, value); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s is not an option of compressor %s (see -help for each compressor's options)", flag, c.ID)
}

func (d *Descriptor) xoptions() []XOption {
	if d == nil {
		return nil
	}
	return d.XOptions
}

// Help describes every compressor and its -X options, indented for a
// command's help text.
func Help() string {
	var b strings.Builder
	for _, d := range descriptors {
		fmt.Fprintf(&b, "  %-24s  %s\n", d.ID, wrap(d.Summary, 28, 78))
		for _, x := range d.XOptions {
			flag := x.Flag
			if x.Arg != "" {
				flag += " " + x.Arg
			}
			fmt.Fprintf(&b, "    %-22s  %s\n", flag, wrap(x.Help, 28, 78))
		}
	}
	return b.String()
}

// wrap breaks s into lines of at most width columns, continuing at indent.
func wrap(s string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, w := range strings.Fields(s) {
		if i > 0 && col+1+len(w) > width {
			b.WriteString("\n" + strings.Repeat(" ", indent))
			col = indent
		} else if i > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}

func setLevel(lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not a compression level from %d to %d", v, lo, hi)
		}
		c.Options.Level = n
		return nil
	}
}

func setWindow(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 {
		return fmt.Errorf("%q is not a number from 8 to 15", v)
	}
	c.Options.WindowSize = n
	return nil
}

func setBCJ(c *Config, v string) error {
	f, err := ParseFilters(v)
	if err != nil {
		return err
	}
	c.Options.Filters |= f
	return nil
}

// setDict accepts "N", "NK", "NM" or a percentage of the block size
// ("50%", "37.5%"); Validate checks the form.
func setDict(c *Config, v string) error {
	bad := fmt.Errorf("%q is not a size (bytes with an optional K or M suffix, or a percentage of the block size)", v)
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return bad
		}
		c.Options.DictSize = int(float64(c.BlockSize) * f / 100)
		return nil
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"), strings.HasSuffix(v, "k"):
		mult, v = 1<<10, v[:len(v)-1]
	case strings.HasSuffix(v, "M"), strings.HasSuffix(v, "m"):
		mult, v = 1<<20, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n*mult > math.MaxInt32 {
		return bad
	}
	c.Options.DictSize = int(n * mult)
	return nil
}
