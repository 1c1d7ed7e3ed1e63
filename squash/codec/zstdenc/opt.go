package zstdenc

import (
	"encoding/binary"

	"github.com/squashportage/squashportage/squash/codec/internal/lz"
)

// The parser is a forward dynamic program over the positions of a window,
// in the manner of zstd's btopt: each position keeps the cheapest known way
// to reach it (price in 1/256 bits under the running statistics of
// priceModel), the repeat offsets along that way, and the literal run
// length. Matches found at a position relax every length they cover. The
// window closes when no pending path reaches further, or early when a match
// of at least params.sufficient bytes is found, which is then taken as is.

const (
	// optNum bounds the positions one DP window spans, which bounds memory.
	optNum = 4096
	// minRepMatch: a repeat match of 3 bytes often beats 3 literals.
	minRepMatch = 3
	// new3Cost (1/256 bit) is added to a 3-byte match at a new offset: its
	// coded cost is about an average sequence's, more than the running
	// statistics predict. At level 4, 128 KiB blocks of the first 64 MiB of
	// Linux 6.1's sources and of the Portage-like tree: without 3-byte
	// matches 14,216,114 and 16,137,112 bytes; with them and this surcharge
	// -0.50% and -0.18%; with them and none, the Portage-like blocks grow
	// 1.4% (hex digests in Manifests). 256 is 0.1% better on fs/ alone.
	new3Cost = 768
	priceInf = 1 << 30
)

type match struct {
	length uint32
	off    uint32
	ov     uint32 // Offset_Value at the position searched
}

type optNode struct {
	price  int32
	mlen   uint32 // length of the match ending here, 0 for a literal
	off    uint32
	litlen uint32 // literals since the last match, counting this one
	reps   [3]uint32
}

// findMatches lists candidate matches at p, each longer than the previous:
// repeat offsets first (cheapest to code), then the 3-byte and short
// tables, then the chain or tree. limit is the block end.
func (e *Encoder) findMatches(src []byte, p, limit int, reps *[3]uint32, ll uint32) []match {
	out := e.matches[:0]
	best := minRepMatch - 1
	var cands [3]uint32
	if ll != 0 {
		cands = *reps
	} else {
		// After a match, code 1 means rep2 and code 3 means rep1-1: a
		// repeat of rep1 itself would have extended the previous match.
		cands = [3]uint32{reps[1], reps[2], reps[0] - 1}
	}
	cur4 := binary.LittleEndian.Uint32(src[p:])
	for i, d := range cands {
		if d == 0 || int(d) > p {
			continue
		}
		if (binary.LittleEndian.Uint32(src[p-int(d):])^cur4)&0xFFFFFF != 0 {
			continue
		}
		if l := lz.MatchLen(src, p-int(d), p, limit); l > best {
			best = l
			out = append(out, match{length: uint32(l), off: d, ov: uint32(i + 1)})
		}
	}
	m := &e.m
	var short, c3 int
	if m.p.tree {
		m.insertTo(src, p)
		short = int(m.short[shortHash(cur4)])
		c3 = int(m.h3[hash3(cur4)])
	} else {
		short, c3 = m.insertChain(src, p)
	}
	// C zstd -15 codes kernel source with fewer literals and more, shorter
	// sequences (first 64 MiB, level 4: 4.42M literals in 4.64M sequences
	// against our 4.99M in 4.49M); the finders start at 4 bytes, so the
	// 3-byte table supplies the shortest.
	if best < minMatch && c3 >= 0 {
		if l := lz.MatchLen(src, c3, p, min(limit, p+maxCompare)); l > best {
			best = l
			out = append(out, match{length: uint32(l), off: uint32(p - c3), ov: uint32(p-c3) + 3})
		}
	}
	if c := short; c >= 0 && p-c <= maxShortDist {
		if l := lz.MatchLen(src, c, p, min(limit, p+maxCompare)); l > best && l >= minMatch {
			best = l
			out = append(out, match{length: uint32(l), off: uint32(p - c), ov: uint32(p-c) + 3})
		}
	}
	if m.p.tree {
		out = m.btInsert(src, p, limit, max(best, minMatch-1), true, out)
		m.next = p + 1
	} else {
		out = m.hcFind(src, p, limit, max(best, minMatch-1), out)
	}
	// Finder matches need no repeat-code check: at a repeat distance they
	// would be no longer than the repeat match above, so were not reported.
	e.matches = out
	return out
}

// fullLen re-measures a match that may have been cut at maxCompare.
func fullLen(src []byte, p, limit int, mm match) uint32 {
	if mm.length < maxCompare {
		return mm.length
	}
	return uint32(lz.MatchLen(src, p-int(mm.off), p, limit))
}

func (e *Encoder) parse(src []byte, start, end int) {
	pm := &e.pm
	pm.initBlock(src[start:end])
	if cap(e.opt) < optNum+e.p.sufficient+2 {
		e.opt = make([]optNode, optNum+e.p.sufficient+2)
	}
	opt := e.opt
	suff := uint32(e.p.sufficient)
	anchor := start
	ip := start
	ilimit := end - 4 // searches read 4 bytes at the position
	for ip <= ilimit {
		litlen0 := uint32(ip - anchor)
		ms := e.findMatches(src, ip, end, &e.reps, litlen0)
		if len(ms) == 0 {
			ip++
			continue
		}
		if lm := ms[len(ms)-1]; lm.length >= suff {
			l := fullLen(src, ip, end, lm)
			e.commit(src, anchor, ip, l, lm.off)
			ip += int(l)
			anchor = ip
			continue
		}
		opt[0] = optNode{price: pm.llTotal(litlen0), litlen: litlen0, reps: e.reps}
		last := e.relax(opt, 0, 0, ms)

		// stretch is a long match that closes the window early.
		stretchAt, stretchLen, stretchOff := -1, uint32(0), uint32(0)
		for cur := 1; cur <= last; cur++ {
			prev := &opt[cur-1]
			ll := prev.litlen + 1
			lp := prev.price + pm.litPrice(src[ip+cur-1]) + pm.llInc(ll)
			n := &opt[cur]
			if lp <= n.price {
				*n = optNode{price: lp, litlen: ll, reps: prev.reps}
			} else {
				// Final now: derive the repeat offsets after its match.
				from := &opt[cur-int(n.mlen)]
				n.reps = from.reps
				offsetValue(&n.reps, from.litlen, n.off)
			}
			if cur == last {
				break
			}
			p := ip + cur
			if p > ilimit {
				continue
			}
			if e.p.skipMargin >= 0 && opt[cur+1].price <= n.price+int32(e.p.skipMargin) {
				continue
			}
			ms := e.findMatches(src, p, end, &n.reps, n.litlen)
			if len(ms) == 0 {
				continue
			}
			if lm := ms[len(ms)-1]; lm.length >= suff || cur+int(lm.length) >= optNum {
				stretchAt, stretchLen, stretchOff = cur, fullLen(src, p, end, lm), lm.off
				break
			}
			last = e.relax(opt, cur, last, ms)
		}

		// Walk back from the end to collect the chosen matches.
		pos := last
		if stretchAt >= 0 {
			pos = stretchAt
		}
		path := e.path[:0]
		for pos > 0 {
			n := &opt[pos]
			if n.mlen == 0 {
				pos--
				continue
			}
			pos -= int(n.mlen)
			path = append(path, match{length: n.mlen, off: n.off, ov: uint32(pos)})
		}
		for i := len(path) - 1; i >= 0; i-- {
			mstart := ip + int(path[i].ov)
			e.commit(src, anchor, mstart, path[i].length, path[i].off)
			anchor = mstart + int(path[i].length)
		}
		e.path = path
		if stretchAt >= 0 {
			mstart := ip + stretchAt
			e.commit(src, anchor, mstart, stretchLen, stretchOff)
			anchor = mstart + int(stretchLen)
			ip = anchor
		} else {
			// Trailing literals of the window stay pending (anchor).
			ip += last
		}
	}
	e.lits = append(e.lits, src[anchor:end]...)
}

// relax offers every length of every match at cur to the nodes it reaches;
// for each length the shortest-offset match that covers it is used.
func (e *Encoder) relax(opt []optNode, cur int, last int, ms []match) int {
	pm := &e.pm
	base := opt[cur].price + pm.llTotal(0)
	if end := cur + int(ms[len(ms)-1].length); end > last {
		for i := last + 1; i <= end; i++ {
			opt[i].price = priceInf
		}
		last = end
	}
	prevLen := uint32(minRepMatch - 1)
	for _, mm := range ms {
		oc := ofCode(mm.ov)
		mb := base + pm.ofPrice(oc) + int32(oc)<<8
		for l := prevLen + 1; l <= mm.length; l++ {
			price := mb + pm.mlTotal(l)
			if l == 3 && mm.ov > 3 {
				price += new3Cost
			}
			if t := &opt[cur+int(l)]; price < t.price {
				t.price, t.mlen, t.off, t.litlen = price, l, mm.off, 0
			}
		}
		prevLen = mm.length
	}
	return last
}

// commit records a chosen sequence and feeds it to the price statistics.
func (e *Encoder) commit(src []byte, anchor, mstart int, ml, off uint32) {
	e.addSeq(src, anchor, mstart, ml, off)
	e.pm.addSeq(src[anchor:mstart], e.seqs[len(e.seqs)-1])
}
