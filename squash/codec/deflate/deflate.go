// Package deflate encodes and decodes zlib (RFC 1950) streams of deflate
// (RFC 1951) data tuned for squashfs blocks: each Encode compresses one
// whole buffer into one independent stream, which is what squashfs's
// "gzip" compressor stores and what the kernel's zlib inflate reads, and
// each DecodeZlib inflates one whole stream into a buffer of known size
// (inflate.go).
//
// Knowing the whole input up front lets it tokenize the input completely
// before writing anything: lazy matching ("lazy2", lazy.go) over hash
// chains keyed by 5 bytes plus 3- and 4-byte tables and recent distances
// (match.go), with short matches weighed against their literals by
// running prices (price.go); then it chooses where deflate blocks begin
// and end from the tokens' statistics (split.go), and gives each block
// the cheapest of a dynamic Huffman, fixed Huffman or stored encoding
// (block.go, huffman.go, bitwriter.go).
package deflate

import (
	"encoding/binary"
)

const (
	// MinLevel and MaxLevel bound the effort scale; NewEncoder clamps.
	// Only the levels where this encoder beats klauspost's zlib exist:
	// package codec serves gzip levels below MinLevel with klauspost's
	// fast encoders.
	MinLevel = 7
	MaxLevel = 9
	// DefaultLevel is the level for fragment and metadata blocks (package
	// codec's default for them): on fragment blocks of a Linux source tree
	// it is 0.15% smaller than klauspost's zlib level 9 (and C zlib -9) at
	// about the CPU time of its level 8.
	DefaultLevel = 7

	// maxInput is the largest input parsed; longer inputs (squashfs
	// blocks are at most 1 MiB) are stored, as block splitting takes time
	// quadratic in the number of 4 KiB segments.
	maxInput = 16 << 20
)

// params are one level's search settings. Every search may run to the
// longest match (258 bytes); a match that long is taken at once.
type params struct {
	depth int // hash chain links walked per search
	// lazyDepth is the depth of the searches one or two positions after a
	// match: they only have to beat that match, and spending the effort
	// on the first search pays more.
	lazyDepth int
	// A match shorter than lazy2 is held back for a search two positions
	// later as well as one; 0 turns that second search off.
	lazy2 int
}

// levels differ in chain depth and in how far lazy matching looks. On
// squashfs fragment blocks of a Linux source tree, level 7 beats
// klauspost's zlib level 9 in size at about the CPU time of its level 8;
// on 128 KiB blocks of the kernel tree's files over 128 KiB, level 8
// beats its level 9 at 40% of the CPU time.
var levels = [MaxLevel + 1]params{
	7: {depth: 48, lazyDepth: 8, lazy2: 16},
	8: {depth: 64, lazyDepth: 16, lazy2: 32},
	9: {depth: 128, lazyDepth: 32, lazy2: maxMatch},
}

// Encoder compresses whole buffers into single zlib streams. It is
// reusable, keeping its buffers between calls, and not safe for concurrent
// use.
type Encoder struct {
	p    params
	m    matcher
	toks []uint32

	dyn dynCode
	hb  huffBuilder
	sp  splitter
	pm  priceModel
}

// NewEncoder returns an encoder for level, an effort scale from MinLevel
// (fastest) to MaxLevel (smallest output); levels outside it are clamped.
func NewEncoder(level int) *Encoder {
	level = min(max(level, MinLevel), MaxLevel)
	return &Encoder{p: levels[level]}
}

// Encode appends one complete zlib stream holding src to dst and returns
// the extended slice.
func (e *Encoder) Encode(dst, src []byte) []byte {
	// CMF 0x78: deflate with a 32 KiB window. FLG 0xDA: "maximum
	// compression" level hint, no dictionary, and 0x78DA%31 == 0.
	dst = append(dst, 0x78, 0xDA)
	w := bitWriter{out: dst}
	if len(src) > maxInput {
		writeStoredBlocks(&w, src, true)
	} else {
		e.m.reset(src)
		e.lazyParse(src)
		e.writeBlocks(&w, src)
	}
	w.align()
	return binary.BigEndian.AppendUint32(w.out, adler(src))
}
