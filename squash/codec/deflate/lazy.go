package deflate

import "math/bits"

// lazyParse tokenizes src with lazy matching: a match found at i is held
// back while the next position or two offer a better one, in which case
// the skipped bytes go out as literals. Looking two ahead ("lazy2")
// catches the common text case where the match one byte later is no
// longer but the one two bytes later is. A short match must also cost
// less than its literals under the running prices of priceModel.
func (e *Encoder) lazyParse(src []byte) {
	m := &e.m
	p := &e.p
	pm := &e.pm
	sp := &e.sp
	pm.init(src)
	toks := e.toks[:0]
	n := len(src)
	h := sp.begin()
	segEnd := sp.nextEnd(0, n)
	i := 0
	for i < n {
		if i >= segEnd {
			pm.absorb(h)
			h = sp.cut(len(toks), i)
			segEnd = sp.nextEnd(i, n)
		}
		l, d := m.find(i, minMatch-1, p.depth)
		if l == 0 || l < shortMatch && pm.match(l, d) >= pm.lits(src[i:i+l]) {
			toks = append(toks, uint32(src[i]))
			h.lit[src[i]]++
			i++
			continue
		}
		for ahead := 1; i+ahead < n; {
			if ahead == 1 && l >= maxMatch || ahead == 2 && l >= p.lazy2 || ahead > 2 {
				break
			}
			l2, d2 := m.find(i+ahead, l, p.lazyDepth)
			if l2 != 0 && betterLater(l, d, l2, d2, ahead) {
				for _, b := range src[i : i+ahead] {
					toks = append(toks, uint32(b))
					h.lit[b]++
				}
				i += ahead
				l, d = l2, d2
				ahead = 1
				continue
			}
			ahead++
		}
		toks = append(toks, matchToken(l, d))
		h.addMatch(l, d)
		m.took(d)
		i += l
	}
	sp.end(len(toks), n)
	e.toks = toks
}

// betterLater reports whether a match (l2, d2) starting ahead bytes later
// beats (l, d), l2 > l. Scored in quarter bytes: each extra byte covered
// counts 4, each bit less of distance 1, and the later match must gain
// about one byte per literal it leaves behind (4*ahead, less 1: tuned on
// the test corpora).
func betterLater(l, d, l2, d2, ahead int) bool {
	gain := 4*(l2-l) + bits.Len32(uint32(d)) - bits.Len32(uint32(d2))
	return gain > 4*ahead-1
}

// shortMatch: matches shorter than this are checked against the price of
// their literals.
const shortMatch = 8
