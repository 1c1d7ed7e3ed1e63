package lzma2

import "encoding/binary"

const (
	// The head table is sized to the input so an 8 KiB block touches
	// 8K entries, not a dictionary's worth; the cap keeps big inputs from
	// growing it past what a greedy parser can use.
	fastMinHashBits = 8
	fastMaxHashBits = 16
	// The chain ring normally spans the whole window so chains are never
	// cut short; the cap bounds its memory for huge dictionaries.
	fastMaxChainBits = 20
	// fastDepth and fastNice trade ratio for speed: metadata gains little
	// from deeper chains.
	fastDepth = 4
	fastNice  = 48
	// Inside a match longer than 2*fastSkipEdge only the positions near
	// its ends are hashed: the interior rarely starts a better match, and
	// hashing it was a tenth of the time on metadata for 0.5% of size.
	fastSkipEdge = 4
)

// fastFinder is a hash-chain match finder on 4-byte hashes. Positions are
// stored as base+pos, and base moves past every earlier input, so entries
// left by previous calls read as out of range and the tables never need
// clearing between calls.
type fastFinder struct {
	data      []byte
	head      []uint32
	chain     []uint32
	hashShift uint
	chainMask uint32
	base      uint32
	end       uint32 // base of the next input
	dict      int
	next      int // next position to insert

	// The lazy check finds the match at pos+1 before deciding pos; it is
	// kept so the next parse need not search again.
	cachedPos             int
	cachedLen, cachedDist int
}

func (f *fastFinder) reset(data []byte, dictSize int) {
	n := len(data)
	f.data = data
	f.dict = dictSize
	f.next = 0
	f.cachedPos = -1
	hb := min(max(bitLen(n-1), fastMinHashBits), fastMaxHashBits)
	f.hashShift = 32 - hb
	if cap(f.head) < 1<<hb {
		f.head = make([]uint32, 1<<hb)
	}
	f.head = f.head[:1<<hb]
	cb := min(max(bitLen(min(n, dictSize)-1), fastMinHashBits), fastMaxChainBits)
	if cap(f.chain) < 1<<cb {
		f.chain = make([]uint32, 1<<cb)
	}
	f.chain = f.chain[:1<<cb]
	f.chainMask = 1<<cb - 1
	// Zero stays below every base, so a fresh table reads as empty.
	f.base = max(f.end, 1)
	if uint64(f.base)+uint64(n) >= 1<<32 {
		clear(f.head[:cap(f.head)])
		f.base = 1
	}
	f.end = f.base + uint32(n)
}

func (f *fastFinder) hash(p []byte) uint32 {
	return (binary.LittleEndian.Uint32(p) * 0x9E3779B1) >> f.hashShift
}

// insert links pos into its hash chain and returns the previous head.
func (f *fastFinder) insert(pos int) uint32 {
	h := f.hash(f.data[pos:])
	c := f.head[h]
	f.head[h] = f.base + uint32(pos)
	f.chain[uint32(pos)&f.chainMask] = c
	return c
}

// find returns the longest match at pos (the next position to insert)
// among the nearest fastDepth candidates, and inserts pos.
func (f *fastFinder) find(pos int) (bestLen, bestDist int) {
	data := f.data
	f.next = pos + 1
	if pos+4 > len(data) {
		return 0, 0
	}
	cur := data[pos:]
	cur4 := binary.LittleEndian.Uint32(cur)
	h := (cur4 * 0x9E3779B1) >> f.hashShift
	c := f.head[h]
	stored := f.base + uint32(pos)
	f.head[h] = stored
	f.chain[uint32(pos)&f.chainMask] = c
	limit := min(len(cur), maxLen)
	nice := min(fastNice, limit)
	ring := int(f.chainMask)
	for d := fastDepth; d > 0 && c >= f.base; d-- {
		dist := int(stored - c)
		if dist > f.dict {
			break
		}
		cand := data[pos-dist:]
		// A candidate must match four bytes (hash collisions do not) and
		// go past bestLen to be of use; most fail one of the two tests.
		if cand[bestLen] == cur[bestLen] && binary.LittleEndian.Uint32(cand) == cur4 {
			if l := matchLen(cand, cur, 4, limit); l > bestLen {
				bestLen, bestDist = l, dist
				if l >= nice {
					break
				}
			}
		}
		// The ring slot of a candidate further back may hold a newer
		// position.
		if dist > ring {
			break
		}
		c = f.chain[(c-f.base)&f.chainMask]
	}
	return bestLen, bestDist
}

// skipTo inserts every position before end not yet inserted.
func (f *fastFinder) skipTo(end int) {
	last := min(end, len(f.data)-3)
	p := f.next
	if last-p > 2*fastSkipEdge {
		for ; p < f.next+fastSkipEdge; p++ {
			f.insert(p)
		}
		p = last - fastSkipEdge
	}
	for ; p < last; p++ {
		f.insert(p)
	}
	f.next = max(f.next, end)
}

// parseFast queues the op at e.pos, chosen greedily with a one-step lazy
// check: a match is put off by a literal when the next position has a
// clearly better one.
func (e *Encoder) parseFast() {
	f := &e.ff
	pos := e.pos
	data := e.data
	avail := len(data) - pos
	var mainLen, mainDist int
	if f.cachedPos == pos {
		mainLen, mainDist = f.cachedLen, f.cachedDist
	} else {
		mainLen, mainDist = f.find(pos)
	}
	if avail < 2 {
		e.push(1, 0)
		return
	}
	cur := data[pos:]
	limit := min(avail, maxLen)
	// Only rep0 is tried: on metadata rep1-3 matches were rare enough that
	// checking them cost more time than they saved bytes.
	repLen, repDist := 0, int(e.reps[0])
	if repDist <= pos {
		src := data[pos-repDist:]
		if binary.LittleEndian.Uint16(src) == binary.LittleEndian.Uint16(cur) {
			repLen = matchLen(src, cur, 2, limit)
		}
	}
	if repLen >= fastNice || repLen >= 2 && (repLen+1 >= mainLen ||
		repLen+2 >= mainLen && mainDist > 1<<9 || repLen+3 >= mainLen && mainDist > 1<<15) {
		e.push(repLen, uint32(repDist))
		f.skipTo(pos + repLen)
		return
	}
	if mainLen < 2 {
		e.pushLiteral(pos)
		return
	}
	if mainLen < fastNice && avail > mainLen {
		nextLen, nextDist := f.find(pos + 1)
		f.cachedPos, f.cachedLen, f.cachedDist = pos+1, nextLen, nextDist
		if nextLen > mainLen+1 || nextLen == mainLen+1 && nextDist>>7 <= mainDist ||
			nextLen == mainLen && nextDist < mainDist {
			e.pushLiteral(pos)
			return
		}
	}
	e.push(mainLen, uint32(mainDist))
	f.skipTo(pos + mainLen)
}

// pushLiteral queues a literal, or a short rep when the byte at rep0
// matches and the current model prices the short rep lower: which wins
// depends on the state and on how well the literal coder has learnt the
// byte, and pricing the two costs a few table lookups.
func (e *Encoder) pushLiteral(pos int) {
	d := int(e.reps[0])
	data := e.data
	if d > pos || data[pos-d] != data[pos] {
		e.push(1, 0)
		return
	}
	m := &e.m
	st := e.state
	ps := uint32(pos) & posMask
	var prev byte
	if pos > 0 {
		prev = data[pos-1]
	}
	lit := &m.literal[prev>>5]
	var litP uint32
	if st < 7 {
		litP = litPrice(lit, data[pos])
	} else {
		litP = matchedLitPrice(lit, data[pos], data[pos])
	}
	repP := price1(m.isMatch[st][ps]) + price1(m.isRep[st]) + price0(m.isRepG0[st]) + price0(m.isRep0Long[st][ps])
	if repP < price0(m.isMatch[st][ps])+litP {
		e.push(1, uint32(d))
	} else {
		e.push(1, 0)
	}
}
