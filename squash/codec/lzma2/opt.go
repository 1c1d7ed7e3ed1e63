package lzma2

// optsSize bounds how far ahead one parse looks: prices assume the model
// of the parse start, so looking much further buys little.
const optsSize = 1 << 12

// optNode is the cheapest known way to reach one position of the parse
// window. It is reached from prev by up to three ops: the op [prev, mid)
// with dist (absent when mid == prev), and, when mid is not the node
// itself, a literal at mid followed by a rep0 match up to the node.
type optNode struct {
	price uint32
	prev  int32
	mid   int32
	dist  uint32
	state uint32    // coder state on arrival, set when the parse reaches it
	reps  [4]uint32 // rep distances on arrival
}

func (n *optNode) set(price uint32, prev, mid int, dist uint32) {
	n.price = price
	n.prev = int32(prev)
	n.mid = int32(mid)
	n.dist = dist
}

func applyOp(st uint32, reps [4]uint32, dist, l uint32) (uint32, [4]uint32) {
	switch {
	case dist == 0:
		return litNext(st), reps
	case l == 1:
		return shortRepNext(st), reps
	}
	for i, r := range reps {
		if r == dist {
			copy(reps[1:i+1], reps[:i])
			reps[0] = dist
			return repNext(st), reps
		}
	}
	return matchNext(st), [4]uint32{dist, reps[0], reps[1], reps[2]}
}

func litPrice(probs *[0x300]prob, b byte) uint32 {
	var price uint32
	m := uint32(1)
	for i := 7; i >= 0; i-- {
		bit := uint32(b>>i) & 1
		price += priceBit(probs[m], bit)
		m = m<<1 | bit
	}
	return price
}

func matchedLitPrice(probs *[0x300]prob, b, mb byte) uint32 {
	var price uint32
	m := uint32(1)
	i := 7
	for ; i >= 0; i-- {
		bit := uint32(b>>i) & 1
		mbit := uint32(mb>>i) & 1
		price += priceBit(probs[(1+mbit)<<8+m], bit)
		m = m<<1 | bit
		if mbit != bit {
			i--
			break
		}
	}
	for ; i >= 0; i-- {
		bit := uint32(b>>i) & 1
		price += priceBit(probs[m], bit)
		m = m<<1 | bit
	}
	return price
}

func (e *Encoder) pureRepPrice(i int, st, ps uint32) uint32 {
	m := &e.m
	if i == 0 {
		return price0(m.isRepG0[st]) + price1(m.isRep0Long[st][ps])
	}
	p := price1(m.isRepG0[st])
	if i == 1 {
		return p + price0(m.isRepG1[st])
	}
	return p + price1(m.isRepG1[st]) + priceBit(m.isRepG2[st], uint32(i-2))
}

func (e *Encoder) rep0Price(l int, st, ps uint32) uint32 {
	return price0(e.m.isRepG0[st]) + price1(e.m.isRep0Long[st][ps]) + e.repLenPrices[ps][l-minLen]
}

func (e *Encoder) distPrice(d uint32, l int) uint32 {
	ls := min(l-minLen, 3)
	d--
	if d < 128 {
		return e.distPrices[ls][d]
	}
	return e.distSlotPrices[ls][distSlot(d)] + e.alignPrices[d&15]
}

func (e *Encoder) push(l int, dist uint32) {
	e.ops = append(e.ops, op{uint32(l), dist})
}

// parse queues the ops for the next stretch of input starting at e.pos,
// which the match finder has reached (or just passed, with the matches
// kept in stored).
func (e *Encoder) parse() {
	e.updatePrices()
	start := e.pos
	data := e.data
	avail := len(data) - start
	var ms []match
	if e.haveStored && e.storedPos == start {
		ms = append(e.matches[:0], e.stored...)
	} else {
		ms = e.mf.find(e.matches[:0])
	}
	e.haveStored = false
	e.matches = ms
	if avail < 2 {
		e.push(1, 0)
		return
	}
	reps := e.reps
	cur := data[start:]
	var repLens [4]int
	best := 0
	for i, d := range reps {
		if int(d) > start {
			continue
		}
		src := data[start-int(d):]
		if src[0] != cur[0] || src[1] != cur[1] {
			continue
		}
		repLens[i] = matchLen(src, cur, 2, min(avail, maxLen))
		if repLens[i] > repLens[best] {
			best = i
		}
	}
	// A long enough match is taken outright: searching past it costs time
	// and rarely finds anything better.
	if repLens[best] >= e.nice {
		e.push(repLens[best], reps[best])
		e.mf.skip(repLens[best] - 1)
		return
	}
	mainLen := 0
	if len(ms) > 0 {
		mainLen = int(ms[len(ms)-1].len)
	}
	if mainLen >= e.nice {
		e.push(mainLen, ms[len(ms)-1].dist)
		e.mf.skip(mainLen - 1)
		return
	}
	if mainLen < 2 && repLens[best] < 2 && (int(reps[0]) > start || data[start-int(reps[0])] != cur[0]) {
		e.push(1, 0)
		return
	}

	opts := e.opts
	opts[0] = optNode{state: e.state, reps: reps}
	opts[1].price = infPrice
	lenEnd := e.expand(0, 1, ms)
	c := 1
	for ; c < lenEnd; c++ {
		n := &opts[c]
		reachable := n.price < infPrice
		if reachable {
			p := &opts[n.prev]
			st, rs := p.state, p.reps
			if n.mid > n.prev {
				st, rs = applyOp(st, rs, n.dist, uint32(n.mid-n.prev))
			}
			if int(n.mid) != c {
				st = repNext(litNext(st))
			}
			n.state, n.reps = st, rs
		}
		ms = e.mf.find(e.matches[:0])
		e.matches = ms
		if !reachable {
			continue
		}
		if len(ms) > 0 && int(ms[len(ms)-1].len) >= e.nice {
			e.stored = append(e.stored[:0], ms...)
			e.storedPos = start + c
			e.haveStored = true
			break
		}
		lenEnd = e.expand(c, lenEnd, ms)
	}
	e.backward(c)
}

// backward queues the ops of the cheapest path to end, last op first.
func (e *Encoder) backward(end int) {
	opts := e.opts
	e.ops = e.ops[:0]
	for i := end; i > 0; {
		n := &opts[i]
		if int(n.mid) != i {
			d0 := n.dist
			if n.mid == n.prev {
				d0 = opts[n.prev].reps[0]
			}
			e.push(i-int(n.mid)-1, d0)
			e.push(1, 0)
		}
		if n.mid > n.prev {
			e.push(int(n.mid-n.prev), n.dist)
		}
		i = int(n.prev)
	}
}

// expand relaxes every op (and the op+literal+rep0 chains) that can start
// at node c, whose state is final, and returns the new end of the window.
func (e *Encoder) expand(c, lenEnd int, ms []match) int {
	opts := e.opts
	data := e.data
	m := &e.m
	node := &opts[c]
	pos := e.pos + c
	st := node.state
	reps := node.reps
	ps := uint32(pos) & posMask
	price := node.price
	cur := data[pos:]
	b := cur[0]
	rep0 := int(reps[0])
	rep0ok := rep0 <= pos
	var mb byte
	if rep0ok {
		mb = data[pos-rep0]
	}
	var prev byte
	if pos > 0 {
		prev = data[pos-1]
	}
	litProbs := &m.literal[prev>>5]
	litTotal := price + price0(m.isMatch[st][ps])
	if st < 7 {
		litTotal += litPrice(litProbs, b)
	} else {
		litTotal += matchedLitPrice(litProbs, b, mb)
	}
	next := &opts[c+1]
	nextIsLit := false
	if litTotal < next.price {
		next.set(litTotal, c, c+1, 0)
		nextIsLit = true
	}
	matchPrice := price + price1(m.isMatch[st][ps])
	repMatchPrice := matchPrice + price1(m.isRep[st])
	if rep0ok && mb == b {
		p := repMatchPrice + price0(m.isRepG0[st]) + price0(m.isRep0Long[st][ps])
		if p <= next.price {
			next.set(p, c, c+1, reps[0])
			nextIsLit = true
		}
	}
	availFull := min(len(data)-pos, optsSize-1-c)
	if availFull < 2 {
		return lenEnd
	}
	availNice := min(availFull, e.nice)

	// A literal and then rep0: only worth a look when the literal did not
	// win node c+1, otherwise node c+1 tries rep0 itself.
	if !nextIsLit && rep0ok && mb != b {
		l2 := matchLen(data[pos-rep0:], cur, 1, min(availFull, e.nice+1)) - 1
		if l2 >= 2 {
			st2 := litNext(st)
			psn := (ps + 1) & posMask
			p := litTotal + price1(m.isMatch[st2][psn]) + price1(m.isRep[st2]) + e.rep0Price(l2, st2, psn)
			off := c + 1 + l2
			for lenEnd < off {
				lenEnd++
				opts[lenEnd].price = infPrice
			}
			if p < opts[off].price {
				opts[off].set(p, c, c, 0)
			}
		}
	}

	startLen := 2
	for i := 0; i < 4; i++ {
		d := int(reps[i])
		if d > pos || (i > 0 && (reps[i] == reps[0] || (i > 1 && (reps[i] == reps[1] || (i > 2 && reps[i] == reps[2]))))) {
			continue
		}
		src := data[pos-d:]
		if src[0] != cur[0] || src[1] != cur[1] {
			continue
		}
		l := matchLen(src, cur, 2, availNice)
		for lenEnd < c+l {
			lenEnd++
			opts[lenEnd].price = infPrice
		}
		base := repMatchPrice + e.pureRepPrice(i, st, ps)
		tbl := &e.repLenPrices[ps]
		for k := l; k >= 2; k-- {
			if p := base + tbl[k-minLen]; p < opts[c+k].price {
				opts[c+k].set(p, c, c+k, uint32(d))
			}
		}
		if i == 0 {
			startLen = l + 1
		}
		if l+3 <= availFull {
			l2 := matchLen(src, cur, l+1, min(availFull, l+1+e.nice)) - (l + 1)
			if l2 >= 2 {
				st2 := repNext(st)
				psn := uint32(pos+l) & posMask
				p := base + tbl[l-minLen] + price0(m.isMatch[st2][psn]) +
					matchedLitPrice(&m.literal[cur[l-1]>>5], cur[l], src[l])
				st2 = litNext(st2)
				psn = (psn + 1) & posMask
				p += price1(m.isMatch[st2][psn]) + price1(m.isRep[st2]) + e.rep0Price(l2, st2, psn)
				off := c + l + 1 + l2
				for lenEnd < off {
					lenEnd++
					opts[lenEnd].price = infPrice
				}
				if p < opts[off].price {
					opts[off].set(p, c, c+l, uint32(d))
				}
			}
		}
	}

	if len(ms) == 0 {
		return lenEnd
	}
	newLen := int(ms[len(ms)-1].len)
	if newLen > availNice {
		k := 0
		for int(ms[k].len) < availNice {
			k++
		}
		ms = ms[:k+1]
		ms[k].len = uint32(availNice)
		newLen = availNice
	}
	if newLen < startLen {
		return lenEnd
	}
	nmp := matchPrice + price0(m.isRep[st])
	for lenEnd < c+newLen {
		lenEnd++
		opts[lenEnd].price = infPrice
	}
	tbl := &e.matchLenPrices[ps]
	l := startLen
	for _, mt := range ms {
		ml := int(mt.len)
		if ml < l {
			continue
		}
		d := mt.dist
		// Lengths of 5 and up share one distance price.
		far := e.distPrice(d, 5)
		for ; l <= ml; l++ {
			dp := far
			if l < 5 {
				dp = e.distPrice(d, l)
			}
			if p := nmp + tbl[l-minLen] + dp; p < opts[c+l].price {
				opts[c+l].set(p, c, c+l, d)
			}
		}
		if ml+3 > availFull {
			continue
		}
		src := data[pos-int(d):]
		l2 := matchLen(src, cur, ml+1, min(availFull, ml+1+e.nice)) - (ml + 1)
		if l2 < 2 {
			continue
		}
		dp := far
		if ml < 5 {
			dp = e.distPrice(d, ml)
		}
		st2 := matchNext(st)
		psn := uint32(pos+ml) & posMask
		p := nmp + tbl[ml-minLen] + dp + price0(m.isMatch[st2][psn]) +
			matchedLitPrice(&m.literal[cur[ml-1]>>5], cur[ml], src[ml])
		st2 = litNext(st2)
		psn = (psn + 1) & posMask
		p += price1(m.isMatch[st2][psn]) + price1(m.isRep[st2]) + e.rep0Price(l2, st2, psn)
		off := c + ml + 1 + l2
		for lenEnd < off {
			lenEnd++
			opts[lenEnd].price = infPrice
		}
		if p < opts[off].price {
			opts[off].set(p, c, c+ml, d)
		}
	}
	return lenEnd
}
