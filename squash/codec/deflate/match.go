package deflate

import (
	"encoding/binary"

	"github.com/squashportage/squashportage/squash/codec/internal/lz"
)

const (
	chainBits = 16
	hash4Bits = 14
	hash3Bits = 13
	// chainLen is how many bytes the chain hash covers; see matcher.
	chainLen = 5
	ringMask = windowSize - 1
	numReps  = 2
)

// matcher finds earlier occurrences of the bytes at a position.
//
// The searched structure is a hash chain keyed by chainLen (5) bytes: head
// holds the latest position for each hash and ring, per position, the
// distance back to the previous one with the same hash. Keying on 5 bytes
// rather than 3 or 4 keeps the chains free of the countless short
// coincidences of text (runs of tabs and spaces, " * ", "tion"), so a
// bounded walk reaches much further back among candidates that can
// actually give a long match. Matches of 3 and 4 bytes come instead from
// two small tables that remember only the latest position per hash, which
// for short matches is also the cheapest distance.
//
// Positions are stored as base+i. Each input advances base past the last
// one by more than the window, so stale entries from earlier inputs look
// too far away and the tables need no clearing between inputs. The ring's
// uint16 distances keep the walked state small (64 KiB) and cache-warm.
type matcher struct {
	head  [1 << chainBits]int32
	head4 [1 << hash4Bits]int32
	head3 [1 << hash3Bits]int32
	ring  [windowSize]uint16 // 0: no earlier position within reach
	// reps are the distances of the latest matches taken, tried before
	// any table: structured text (tables, generated headers) keeps reusing
	// the same distances, and a hit there is found without a chain walk.
	reps [numReps]int
	base int32
	next int // first position not yet inserted
	src  []byte
}

func hashChain(v uint64) uint32 {
	return uint32(((v << (64 - 8*chainLen)) * 0x9E3779B97F4A7C15) >> (64 - chainBits))
}
func hash4(v uint32) uint32 { return (v * 2654435761) >> (32 - hash4Bits) }
func hash3(v uint32) uint32 { return ((v << 8) * 2654435761) >> (32 - hash3Bits) }

func (m *matcher) reset(src []byte) {
	const limit = 1 << 30
	if m.base == 0 || int(m.base)+len(m.src)+2*windowSize+len(src) > limit {
		clear(m.head[:])
		clear(m.head4[:])
		clear(m.head3[:])
		m.base = windowSize + 1
	} else {
		m.base += int32(len(m.src) + windowSize + 1)
	}
	m.src = src
	m.next = 0
	m.reps = [numReps]int{}
}

// took records a match distance taken by the parser.
func (m *matcher) took(d int) {
	if d != m.reps[0] {
		copy(m.reps[1:], m.reps[:numReps-1])
		m.reps[0] = d
	}
}

// insertTo adds every position before p to the tables. The last 7
// positions of the input are never added: they start no useful match.
func (m *matcher) insertTo(p int) {
	src := m.src
	end := min(p, len(src)-7)
	if m.next < end {
		head, head4, head3, ring := &m.head, &m.head4, &m.head3, &m.ring
		base := m.base
		for i := m.next; i < end; i++ {
			v := binary.LittleEndian.Uint64(src[i:])
			cur := base + int32(i)
			h := hashChain(v)
			d := cur - head[h]
			if d > 0xFFFF {
				d = 0
			}
			ring[i&ringMask] = uint16(d)
			head[h] = cur
			head4[hash4(uint32(v))] = cur
			head3[hash3(uint32(v))] = cur
		}
	}
	m.next = max(m.next, p)
}

// find inserts every position up to p and returns the longest match at p
// longer than best, or length 0. It walks at most depth chain links and
// stops at the longest match deflate can send (or the input's end).
func (m *matcher) find(p, best, depth int) (length, dist int) {
	src := m.src
	if p+8 > len(src) {
		m.insertTo(p + 1)
		return 0, 0
	}
	if m.next < p {
		m.insertTo(p)
	}
	m.next = p + 1
	limit := min(len(src), p+maxMatch)
	v := binary.LittleEndian.Uint64(src[p:])
	cur := m.base + int32(p)
	h := hashChain(v)
	cand := m.head[h]
	dist0 := int(cur - cand)
	if dist0 > 0xFFFF {
		m.ring[p&ringMask] = 0
	} else {
		m.ring[p&ringMask] = uint16(dist0)
	}
	m.head[h] = cur
	h4 := hash4(uint32(v))
	c4 := m.head4[h4]
	m.head4[h4] = cur
	h3 := hash3(uint32(v))
	c3 := m.head3[h3]
	m.head3[h3] = cur
	if best >= limit-p {
		return 0, 0
	}

	// Recent distances.
	for _, d := range m.reps {
		if d == 0 || d > p {
			continue
		}
		c := p - d
		if best < 4 && binary.LittleEndian.Uint32(src[c:]) != uint32(v) ||
			best >= 4 && binary.LittleEndian.Uint32(src[c+best-3:]) != binary.LittleEndian.Uint32(src[p+best-3:]) {
			continue
		}
		if l := lz.MatchLen(src, c, p, limit); l > best {
			best, length, dist = l, l, d
			if p+l >= limit {
				return
			}
		}
	}
	if p+best >= limit {
		return
	}

	// The latest 3- and 4-byte candidates.
	if best < 4 {
		if d := int(cur - c4); d <= windowSize {
			c := p - d
			if binary.LittleEndian.Uint32(src[c:]) == uint32(v) {
				best = lz.MatchLen(src, c, p, limit)
				length, dist = best, d
			}
		}
		if best < minMatch {
			// Far 3-byte matches rarely beat their literals; the parser
			// weighs them with its prices (a fixed distance cap, as zlib
			// has, was worse on every test corpus).
			if d := int(cur - c3); d <= windowSize {
				c := p - d
				if binary.LittleEndian.Uint32(src[c:])&0xFFFFFF == uint32(v)&0xFFFFFF {
					best = lz.MatchLen(src, c, p, limit)
					length, dist = best, d
				}
			}
		}
		if p+best >= limit {
			return
		}
	}

	// Chain candidates at least chainLen long (bar hash collisions).
	best = max(best, chainLen-1)
	for d := dist0; depth > 0 && d <= windowSize; depth-- {
		c := p - d
		// A longer match must agree on the four bytes ending at best.
		if binary.LittleEndian.Uint32(src[c+best-3:]) == binary.LittleEndian.Uint32(src[p+best-3:]) {
			if l := lz.MatchLen(src, c, p, limit); l > best {
				best, length, dist = l, l, d
				if p+l >= limit {
					break
				}
			}
		}
		// At exactly the window size, c's ring slot now holds p's link.
		step := int(m.ring[c&ringMask])
		if step == 0 || d == windowSize {
			break
		}
		d += step
	}
	return
}
