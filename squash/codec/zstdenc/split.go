package zstdenc

// Block splitting: a 128 KiB block of concatenated files often mixes
// content with different statistics (C, prose, tables). Each zstd block has
// its own Huffman and FSE tables, so cutting the sequence list where the
// statistics change pays for the extra headers. Sizes are estimated from
// histograms; the split is chosen recursively at midpoints.

// minSplitSeqs keeps sub-blocks large enough that table headers are amortized.
const minSplitSeqs = 300

type splitter struct {
	litStart []int // literal offset of each sequence, plus one past the end
	points   []int
	lit      [256]uint32
	ll       [maxLLCode + 1]uint32
	ml       [maxMLCode + 1]uint32
	of       [maxOFCode + 1]uint32
}

// entropyBits returns sum c*log2(total/c) in 1/256 bits and the number of
// distinct symbols.
func entropyBits(counts []uint32, total uint32) (uint64, int) {
	if total == 0 {
		return 0, 0
	}
	lt := log2Fix(total)
	var b uint64
	d := 0
	for _, c := range counts {
		if c != 0 {
			d++
			b += uint64(c) * uint64(lt-log2Fix(c))
		}
	}
	return b, d
}

// estimate returns the approximate coded size in bits of sequences [a,b)
// with their literals (and, if tail, the literals after b).
func (s *splitter) estimate(seqs []seq, lits []byte, a, b int, tail bool) uint64 {
	s.lit = [256]uint32{}
	s.ll = [maxLLCode + 1]uint32{}
	s.ml = [maxMLCode + 1]uint32{}
	s.of = [maxOFCode + 1]uint32{}
	le := s.litStart[b]
	if tail {
		le = len(lits)
	}
	for _, c := range lits[s.litStart[a]:le] {
		s.lit[c]++
	}
	for _, q := range seqs[a:b] {
		s.ll[llCode(q.litLen)]++
		s.ml[mlCode(q.matchLen)]++
		s.of[ofCode(q.offVal)]++
	}
	nl := uint32(le - s.litStart[a])
	lb, ld := entropyBits(s.lit[:], nl)
	// Huffman costs up to a bit over entropy per symbol for skewed data and
	// its description about 4 bits per symbol.
	total := lb + uint64(nl)*16 + uint64(ld)*4*256 + 5*8*256
	n := uint32(b - a)
	for _, c := range [][]uint32{s.ll[:], s.ml[:], s.of[:]} {
		e, d := entropyBits(c, n)
		total += e + uint64(d)*6*256
	}
	return total + 3*8*256
}

// split returns sequence indices bounding the sub-blocks: 0, ..., len(seqs).
func (s *splitter) split(seqs []seq, lits []byte) []int {
	s.points = append(s.points[:0], 0)
	if len(seqs) >= 2*minSplitSeqs {
		if cap(s.litStart) < len(seqs)+1 {
			s.litStart = make([]int, len(seqs)+1, len(seqs)+len(seqs)/4+1)
		}
		s.litStart = s.litStart[:len(seqs)+1]
		p := 0
		for i, q := range seqs {
			s.litStart[i] = p
			p += int(q.litLen)
		}
		s.litStart[len(seqs)] = p
		s.rec(seqs, lits, 0, len(seqs), true, 0)
	}
	return append(s.points, len(seqs))
}

func (s *splitter) rec(seqs []seq, lits []byte, a, b int, tail bool, depth int) {
	if b-a < 2*minSplitSeqs || depth >= 6 {
		return
	}
	mid := (a + b) / 2
	whole := s.estimate(seqs, lits, a, b, tail)
	left := s.estimate(seqs, lits, a, mid, false)
	right := s.estimate(seqs, lits, mid, b, tail)
	if left+right >= whole {
		return
	}
	s.rec(seqs, lits, a, mid, false, depth+1)
	s.points = append(s.points, mid)
	s.rec(seqs, lits, mid, b, tail, depth+1)
}
