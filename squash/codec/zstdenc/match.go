package zstdenc

import (
	"encoding/binary"

	"github.com/squashportage/squashportage/squash/codec/internal/lz"
)

const (
	hashLog   = 16
	hashMul64 = 0xCF1BBCDCB7A56463
	hashMul32 = 2654435761

	shortLog = 14
	// h3Log sizes the 3-byte table; a block has at most 1<<17 positions,
	// and a 3-byte match only pays at a short distance anyway.
	h3Log = 14
	// maxShortDist: 4-byte matches from the short table only pay when the
	// offset is cheap enough; the price model decides, this bounds the scan.
	maxShortDist = 1 << 17

	// minMatch is the shortest chain/tree match reported.
	minMatch = 4
	// maxCompare bounds a single match comparison in the finders: without
	// it, periodic input would make every search scan the whole run. Longer
	// matches are re-measured when taken (fullLen).
	maxCompare = 4096
)

// matcher holds the match-finder state for one frame. Positions are inserted
// in increasing order; next is the first one not yet inserted.
type matcher struct {
	p     *params
	head  []int32 // most recent position per hash, -1 if none
	short []int32 // most recent position per 4-byte hash
	h3    []int32 // most recent position per 3-byte hash
	// links: for chains, the previous position with the same hash; for the
	// tree, two children (smaller, larger suffix) per position.
	links []int32
	next  int
}

func (m *matcher) reset(src []byte, p *params) {
	m.p = p
	if m.head == nil {
		m.head = make([]int32, 1<<hashLog)
		m.short = make([]int32, 1<<shortLog)
		m.h3 = make([]int32, 1<<h3Log)
	}
	for i := range m.h3 {
		m.h3[i] = -1
	}
	for i := range m.head {
		m.head[i] = -1
	}
	for i := range m.short {
		m.short[i] = -1
	}
	n := len(src)
	if p.tree {
		n *= 2
	}
	if cap(m.links) < n {
		m.links = make([]int32, n)
	}
	m.links = m.links[:n]
	m.next = 0
}

func (m *matcher) hash(v uint64) uint32 {
	return uint32(((v << (64 - 8*uint(m.p.hashLen))) * hashMul64) >> (64 - hashLog))
}

func shortHash(v uint32) uint32 { return (v * hashMul32) >> (32 - shortLog) }

// hash3 hashes the low three bytes of v.
func hash3(v uint32) uint32 { return ((v << 8) * hashMul32) >> (32 - h3Log) }

// insertTo inserts all positions before p.
func (m *matcher) insertTo(src []byte, p int) {
	if m.p.tree {
		for i := m.next; i < p; i++ {
			m.btInsert(src, i, 0, 0, false, nil)
		}
		m.next = max(m.next, p)
		return
	}
	links := m.links
	i := m.next
	for ; i < p && i+8 <= len(src); i++ {
		v := binary.LittleEndian.Uint64(src[i:])
		h := m.hash(v)
		links[i] = m.head[h]
		m.head[h] = int32(i)
		m.short[shortHash(uint32(v))] = int32(i)
		m.h3[hash3(uint32(v))] = int32(i)
	}
	// The last few positions cannot be hashed; they start no chain matches.
	for ; i < p && i < len(src); i++ {
		links[i] = -1
	}
	m.next = max(m.next, p)
}

// insertChain inserts positions up to and including p and returns the
// short and 3-byte tables' candidates for p from before p was inserted.
func (m *matcher) insertChain(src []byte, p int) (short, c3 int) {
	if m.next < p {
		m.insertTo(src, p)
	}
	if m.next > p || p+8 > len(src) {
		// Already inserted (cannot happen in a forward parse) or unhashable.
		m.insertTo(src, p+1)
		return -1, -1
	}
	v := binary.LittleEndian.Uint64(src[p:])
	h := m.hash(v)
	m.links[p] = m.head[h]
	m.head[h] = int32(p)
	sh := shortHash(uint32(v))
	c := m.short[sh]
	m.short[sh] = int32(p)
	h3 := hash3(uint32(v))
	c3 = int(m.h3[h3])
	m.h3[h3] = int32(p)
	m.next = p + 1
	return int(c), c3
}

// hcFind walks p's hash chain from the most recent position, reporting each
// candidate longer than all before it (clipped to limit). p must be inserted.
func (m *matcher) hcFind(src []byte, p, limit int, best int, out []match) []match {
	links := m.links
	cand := links[p]
	if best >= limit-p-1 {
		return out
	}
	for depth := m.p.depth; depth > 0 && cand >= 0; depth-- {
		c := int(cand)
		cand = links[c]
		// A longer match needs the four bytes ending at best+1 to agree;
		// that one load rejects most candidates.
		if binary.LittleEndian.Uint32(src[c+best-3:]) != binary.LittleEndian.Uint32(src[p+best-3:]) {
			continue
		}
		l := lz.MatchLen(src, c, p, min(limit, p+maxCompare))
		if l > best {
			best = l
			out = append(out, match{length: uint32(l), off: uint32(p - c), ov: uint32(p-c) + 3})
			if p+l >= limit || l >= maxCompare {
				break
			}
		}
	}
	return out
}

// btInsert adds p to the binary tree of its hash bucket and, if report,
// appends matches longer than best (clipped to limit) in increasing length
// order. The tree keeps each bucket's suffixes sorted, so one root-to-leaf
// walk visits the closest suffixes on both sides of p.
func (m *matcher) btInsert(src []byte, p, limit int, best int, report bool, out []match) []match {
	links := m.links
	if p+8 > len(src) {
		links[2*p], links[2*p+1] = -1, -1
		return out
	}
	v := binary.LittleEndian.Uint64(src[p:])
	h := m.hash(v)
	m.short[shortHash(uint32(v))] = int32(p)
	m.h3[hash3(uint32(v))] = int32(p)
	cand := m.head[h]
	m.head[h] = int32(p)
	smaller, larger := 2*p, 2*p+1
	lenS, lenL := 0, 0
	end := min(len(src), p+maxCompare)
	for depth := m.p.depth; depth > 0 && cand >= 0; depth-- {
		c := int(cand)
		l := min(lenS, lenL)
		l += lz.MatchLen(src, c+l, p+l, end)
		if report && l > best {
			if cl := min(l, limit-p); cl > best {
				best = cl
				out = append(out, match{length: uint32(cl), off: uint32(p - c), ov: uint32(p-c) + 3})
			}
		}
		if p+l >= end {
			// Cannot order the two suffixes; dropping cand keeps the tree
			// consistent at the price of forgetting its subtree.
			break
		}
		if src[c+l] < src[p+l] {
			links[smaller] = cand
			lenS = l
			smaller = 2*c + 1
			cand = links[smaller]
		} else {
			links[larger] = cand
			lenL = l
			larger = 2 * c
			cand = links[larger]
		}
	}
	links[smaller] = -1
	links[larger] = -1
	return out
}
