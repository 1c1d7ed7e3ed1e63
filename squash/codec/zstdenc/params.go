package zstdenc

// DefaultLevel is the level squashfs images should use: on 128 KiB blocks
// of kernel source it lands within 2% of C zstd -15 at more than twice its
// speed (see TestKernelCorpus).
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
// kernel source against C zstd -15 (size difference, speed multiple; see
// TestKernelCorpus):
//
//	1: +3.9%, 3.8x   hash chains, fewest positions searched
//	2: +3.1%, 3.3x
//	3: +2.0%, 2.3x
//	4: +1.7%, 2.2x   default
//	5: +1.4%, 2.0x
//	6: +0.2%, 0.7x   binary tree, every position searched
//
// (klauspost's SpeedBestCompression: +5.8%, 3.0x.)
func levelParams(level int) params {
	switch {
	case level <= 1:
		return params{depth: 12, sufficient: 24, hashLen: 6, skipMargin: 1024}
	case level == 2:
		return params{depth: 16, sufficient: 24, hashLen: 6, skipMargin: 384}
	case level == 3:
		return params{depth: 32, sufficient: 48, hashLen: 6, skipMargin: 384}
	case level == 4:
		return params{depth: 32, sufficient: 48, hashLen: 6, skipMargin: 256}
	case level == 5:
		return params{depth: 64, sufficient: 64, hashLen: 6, skipMargin: 256}
	default:
		return params{tree: true, depth: 32, sufficient: 128, hashLen: 5, skipMargin: -1}
	}
}
