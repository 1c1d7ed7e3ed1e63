package lzma2

import (
	"encoding/binary"
	"math/bits"
)

type match struct {
	len  uint32
	dist uint32 // actual distance, >= 1
}

// matchFinder is a binary-tree match finder over 2-, 3- and 4-byte hashes.
// The tree of every hash-4 bucket is kept sorted by the suffixes of its
// positions, so one descent yields the nearest match of every length.
//
// Positions are stored biased by off (= cyc) so that the zero value of a
// fresh table decodes to a distance of at least cyc and is rejected by the
// same test that drops positions outside the dictionary window.
type matchFinder struct {
	data   []byte
	pos    int
	cyc    uint32 // window size + 1: son is a ring of cyc nodes
	cycPos uint32
	off    uint32
	nice   int
	depth  int

	h2Shift, h3Shift, h4Shift uint
	hash2, hash3, hash4       []uint32
	son                       []uint32
}

func bitLen(n int) uint { return uint(bits.Len(uint(n))) }

func (m *matchFinder) reset(data []byte, dictSize, nice, depth int) {
	m.data = data
	m.pos = 0
	m.nice = nice
	m.depth = depth
	w := min(dictSize, len(data))
	m.cyc = uint32(w + 1)
	m.off = m.cyc
	m.cycPos = 0
	b := bitLen(w - 1)
	h4 := min(max(b, 11)-1, 24)
	h3 := min(max(b, 10), 16)
	h2 := min(max(b, 8), 10)
	m.h2Shift, m.h3Shift, m.h4Shift = 32-h2, 32-h3, 32-h4
	m.hash2 = resize(m.hash2, 1<<h2)
	m.hash3 = resize(m.hash3, 1<<h3)
	m.hash4 = resize(m.hash4, 1<<h4)
	clear(m.hash2)
	clear(m.hash3)
	clear(m.hash4)
	// Tree nodes are always written when their position is inserted and
	// read only for inserted positions, so son needs no clearing.
	if cap(m.son) < int(2*m.cyc) {
		m.son = make([]uint32, 2*m.cyc)
	}
	m.son = m.son[:2*m.cyc]
}

func resize(s []uint32, n int) []uint32 {
	if cap(s) < n {
		return make([]uint32, n)
	}
	return s[:n]
}

func (m *matchFinder) advance() {
	m.pos++
	m.cycPos++
	if m.cycPos == m.cyc {
		m.cycPos = 0
	}
}

// matchLen extends a common prefix of a and b from l up to limit.
func matchLen(a, b []byte, l, limit int) int {
	for l+8 <= limit {
		x := binary.LittleEndian.Uint64(a[l:]) ^ binary.LittleEndian.Uint64(b[l:])
		if x != 0 {
			return l + bits.TrailingZeros64(x)>>3
		}
		l += 8
	}
	for l < limit && a[l] == b[l] {
		l++
	}
	return l
}

func (m *matchFinder) hashes(cur []byte) (h2, h3, h4 uint32) {
	v := binary.LittleEndian.Uint32(cur)
	h2 = ((v & 0xFFFF) * 0x9E3779B1) >> m.h2Shift
	h3 = ((v & 0xFFFFFF) * 0x9E3779B1) >> m.h3Shift
	h4 = (v * 0x9E3779B1) >> m.h4Shift
	return
}

// find appends to out the matches at m.pos in increasing length (each the
// nearest of its length), inserts the position and advances. A longest
// match that reaches nice is extended up to maxLen.
func (m *matchFinder) find(out []match) []match {
	pos := m.pos
	avail := len(m.data) - pos
	lenLimit := min(m.nice, avail)
	if lenLimit < 4 {
		m.advance()
		return out
	}
	data := m.data
	cur := data[pos:]
	h2, h3, h4 := m.hashes(cur)
	stored := uint32(pos) + m.off
	d2 := stored - m.hash2[h2]
	d3 := stored - m.hash3[h3]
	curMatch := m.hash4[h4]
	m.hash2[h2] = stored
	m.hash3[h3] = stored
	m.hash4[h4] = stored

	n0 := len(out)
	best := 1
	if d2 < m.cyc && data[pos-int(d2)] == cur[0] && data[pos-int(d2)+1] == cur[1] {
		best = 2
		out = append(out, match{2, d2})
	}
	if d2 != d3 && d3 < m.cyc && data[pos-int(d3)] == cur[0] && data[pos-int(d3)+1] == cur[1] && data[pos-int(d3)+2] == cur[2] {
		best = 3
		out = append(out, match{3, d3})
		d2 = d3
	}
	if len(out) > n0 {
		best = matchLen(data[pos-int(d2):], cur, best, lenLimit)
		out[len(out)-1].len = uint32(best)
		if best == lenLimit {
			m.treeFind(lenLimit, curMatch, stored, 0, nil, false)
			m.advance()
			return m.extendLast(out, n0)
		}
	}
	best = max(best, 3)
	out = m.treeFind(lenLimit, curMatch, stored, best, out, true)
	m.advance()
	return m.extendLast(out, n0)
}

func (m *matchFinder) extendLast(out []match, n0 int) []match {
	if len(out) > n0 {
		l := &out[len(out)-1]
		if int(l.len) == m.nice {
			pos := m.pos - 1
			limit := min(len(m.data)-pos, maxLen)
			l.len = uint32(matchLen(m.data[pos-int(l.dist):], m.data[pos:], int(l.len), limit))
		}
	}
	return out
}

// treeFind makes the current position the root of its hash chain's binary
// tree, re-linking the older positions under it, and when collect is set
// reports each match longer than best on the way. Skipping positions
// needs the same re-linking without the reports.
func (m *matchFinder) treeFind(lenLimit int, curMatch, stored uint32, best int, out []match, collect bool) []match {
	son := m.son
	cyc, cp := m.cyc, m.cycPos
	ptr0, ptr1 := cp*2+1, cp*2
	len0, len1 := 0, 0
	data := m.data
	pos := m.pos
	cur := data[pos:]
	for depth := m.depth; ; depth-- {
		delta := stored - curMatch
		if depth == 0 || delta >= cyc {
			son[ptr0] = 0
			son[ptr1] = 0
			return out
		}
		pair := cp - delta
		if delta > cp {
			pair += cyc
		}
		pair *= 2
		pb := data[pos-int(delta):]
		l := min(len0, len1)
		if pb[l] == cur[l] {
			l = matchLen(pb, cur, l+1, lenLimit)
			if collect && l > best {
				best = l
				out = append(out, match{uint32(l), delta})
			}
			if l == lenLimit {
				son[ptr1] = son[pair]
				son[ptr0] = son[pair+1]
				return out
			}
		}
		if pb[l] < cur[l] {
			son[ptr1] = curMatch
			ptr1 = pair + 1
			curMatch = son[ptr1]
			len1 = l
		} else {
			son[ptr0] = curMatch
			ptr0 = pair
			curMatch = son[ptr0]
			len0 = l
		}
	}
}

// skip inserts n positions without reporting matches.
func (m *matchFinder) skip(n int) {
	for ; n > 0; n-- {
		pos := m.pos
		avail := len(m.data) - pos
		lenLimit := min(m.nice, avail)
		if lenLimit < 4 {
			m.advance()
			continue
		}
		h2, h3, h4 := m.hashes(m.data[pos:])
		stored := uint32(pos) + m.off
		curMatch := m.hash4[h4]
		m.hash2[h2] = stored
		m.hash3[h3] = stored
		m.hash4[h4] = stored
		m.treeFind(lenLimit, curMatch, stored, 0, nil, false)
		m.advance()
	}
}
