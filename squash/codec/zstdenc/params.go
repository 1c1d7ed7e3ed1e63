package zstdenc

// DefaultLevel is the level squashfs images should use: on 128 KiB blocks
// of kernel source it lands within 1.6% of C zstd -15 at twice its speed
// (see levelParams).
const DefaultLevel = 4

// MinLevel and MaxLevel bound the effort scale; other levels are clamped.
const (
	MinLevel = 1
	MaxLevel = 6
)

// params is what a level selects. Every level runs the same price-driven
// optimal parse; levels differ in how hard they look for matches and at how
// many positions they look.
type params struct {
	// tree selects the binary-tree match finder: slower, since every
	// position is a full search, but it finds the longest matches.
	// Otherwise hash chains are used.
	tree bool
	// depth bounds the candidates examined per search.
	depth int
	// sufficient: a match at least this long is taken without weighing
	// alternatives, which bounds work on repetitive input.
	sufficient int
	// hashLen is how many bytes the chain/tree hash covers (4..8). Longer
	// keeps chains free of short candidates; 4-byte matches still come from
	// repeat offsets and the single-candidate short table.
	hashLen int
	// skipMargin >= 0: do not search at a position when the next one is
	// already reached for at most this much more (1/256 bit). Such
	// positions sit inside a good match; searching them rarely pays.
	skipMargin int
}

// levelParams maps the public effort scale. Measured on 128 KiB blocks of
// the first 32 MiB of Linux 6.1's fs/ and of its generated AMD register
// headers (drivers/gpu/drm/amd/include/asic_reg/dcn, long runs of near-
// identical #define lines) against C zstd -15 (1.5.4): size difference, and
// speed multiple, each the best of two runs (see TestKernelCorpus):
//
//	   fs/                asic_reg/dcn
//	1: +3.8%, 3.4x       +20.0%, 10x      hash chains, fewest positions searched
//	2: +2.1%, 2.4x        +2.6%, 2.8x
//	3: +1.6%, 2.2x        +1.9%, 2.6x
//	4: +1.1%, 1.8x        +1.6%, 2.0x     default
//	5: +0.8%, 1.6x        +0.9%, 1.3x
//	6: -0.2%, 0.8x        -2.2%, 0.4x     binary tree, every position searched
//
// Between 4 and 6 there is no cheap step: chains searched at more
// positions and deeper (depth 48, hashLen 5, skipMargin 192) give +0.7%
// on fs/ at 1.5x C's speed (level 4: 1.8x), and the tree costs its
// insertions at every position whether searched or not (skipMargin 128:
// +0.2% at 0.75x C's speed on the first 64 MiB of the sources).
//
// sufficient below 96 is what loses the register headers: a field's MASK
// line repeats its SHIFT line's name hundreds of bytes back, and a shorter
// match taken early hides it (level 1 keeps 24 for speed).
// (klauspost's SpeedBestCompression: +7.1%, 2.8-2.9x and +16.6%, 9-11x.)
func levelParams(level int) params {
	switch {
	case level <= 1:
		return params{depth: 12, sufficient: 24, hashLen: 6, skipMargin: 1024}
	case level == 2:
		return params{depth: 16, sufficient: 96, hashLen: 6, skipMargin: 384}
	case level == 3:
		return params{depth: 32, sufficient: 96, hashLen: 6, skipMargin: 384}
	case level == 4:
		return params{depth: 32, sufficient: 96, hashLen: 6, skipMargin: 256}
	case level == 5:
		return params{depth: 64, sufficient: 128, hashLen: 6, skipMargin: 256}
	default:
		return params{tree: true, depth: 32, sufficient: 128, hashLen: 5, skipMargin: -1}
	}
}
