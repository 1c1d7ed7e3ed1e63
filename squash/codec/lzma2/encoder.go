// Package lzma2 is a raw LZMA2 encoder (lc=3, lp=0, pb=2) with a
// binary-tree match finder and a price-based optimal parser.
package lzma2

import "math/bits"

const (
	numStates  = 12
	minLen     = 2
	maxLen     = 273
	posBits    = 2
	posMask    = 1<<posBits - 1
	propsByte  = (posBits*5+0)*9 + 3 // (pb*5+lp)*9+lc
	endMarker  = 0x00
	maxChunkU  = 1 << 21 // uncompressed bytes per LZMA chunk
	maxChunkC  = 1 << 16 // compressed bytes per LZMA chunk
	maxRawU    = 1 << 16 // bytes per uncompressed chunk
	opMaxBytes = 64      // generous bound on the range coder output of one op
	// Positions are kept in uint32 with the dictionary size added, so very
	// large inputs are coded as independent segments behind dictionary
	// resets.
	maxSegment = 1 << 30
	maxDict    = 1 << 27
	// defaultNice matches liblzma's preset 6: 128 gains about 0.2% on
	// kernel sources for 12% more time.
	defaultNice = 64
)

type lenModel struct {
	choice, choice2 prob
	low, mid        [1 << posBits][8]prob
	high            [256]prob
}

// model holds every adaptive probability of the LZMA coder.
type model struct {
	isMatch     [numStates][1 << posBits]prob
	isRep       [numStates]prob
	isRepG0     [numStates]prob
	isRepG1     [numStates]prob
	isRepG2     [numStates]prob
	isRep0Long  [numStates][1 << posBits]prob
	literal     [8][0x300]prob
	distSlot    [4][64]prob
	distSpecial [115]prob
	align       [16]prob
	matchLen    lenModel
	repLen      lenModel
}

var initialModel = func() (m model) {
	fill := func(p []prob) {
		for i := range p {
			p[i] = probInit
		}
	}
	for s := 0; s < numStates; s++ {
		fill(m.isMatch[s][:])
		fill(m.isRep0Long[s][:])
	}
	fill(m.isRep[:])
	fill(m.isRepG0[:])
	fill(m.isRepG1[:])
	fill(m.isRepG2[:])
	for i := range m.literal {
		fill(m.literal[i][:])
	}
	for i := range m.distSlot {
		fill(m.distSlot[i][:])
	}
	fill(m.distSpecial[:])
	fill(m.align[:])
	for _, lm := range []*lenModel{&m.matchLen, &m.repLen} {
		lm.choice, lm.choice2 = probInit, probInit
		for p := range lm.low {
			fill(lm.low[p][:])
			fill(lm.mid[p][:])
		}
		fill(lm.high[:])
	}
	return m
}()

func litNext(s uint32) uint32 {
	switch {
	case s < 4:
		return 0
	case s < 10:
		return s - 3
	}
	return s - 6
}

func matchNext(s uint32) uint32 {
	if s < 7 {
		return 7
	}
	return 10
}

func repNext(s uint32) uint32 {
	if s < 7 {
		return 8
	}
	return 11
}

func shortRepNext(s uint32) uint32 {
	if s < 7 {
		return 9
	}
	return 11
}

// distSlot maps a zero-based distance to its slot: the position of its top
// bit and the bit below it.
func distSlot(d uint32) uint32 {
	if d < 4 {
		return d
	}
	n := uint32(bits.Len32(d)) - 1
	return n<<1 | (d>>(n-1))&1
}

// op is one coded decision: dist 0 is a literal, len 1 with a distance a
// short rep, otherwise a match or rep match (chosen when coding from the
// rep distances current then, so queued ops survive a state reset).
type op struct {
	len  uint32
	dist uint32
}

// Encoder compresses whole buffers into raw LZMA2 streams. An Encoder is
// reused across calls to amortize its allocations; it is not safe for
// concurrent use.
type Encoder struct {
	dictSize int
	nice     int
	depth    int
	fast     bool // requested by SetFast
	fastOn   bool // in force for the current Encode

	ff fastFinder

	mf    matchFinder
	rc    rangeEncoder
	m     model
	state uint32
	reps  [4]uint32
	data  []byte
	pos   int // next position to code
	cbuf  []byte

	needDictReset, needProps, needStateReset bool

	// parser
	opts       []optNode
	ops        []op // pending decisions, last one first
	matches    []match
	stored     []match // matches already found at storedPos
	storedPos  int
	haveStored bool

	// prices
	pricesDirty      bool
	matchLenPrices   [1 << posBits][maxLen - minLen + 1]uint32
	repLenPrices     [1 << posBits][maxLen - minLen + 1]uint32
	matchLenCounters [1 << posBits]int
	repLenCounters   [1 << posBits]int
	distSlotPrices   [4][64]uint32
	distPrices       [4][128]uint32
	alignPrices      [16]uint32
	matchPriceCount  int
	alignPriceCount  int
}

// NewEncoder returns an encoder whose matches never reach further back
// than dictSize bytes.
func NewEncoder(dictSize int) *Encoder {
	dictSize = min(max(dictSize, 1), maxDict)
	e := &Encoder{dictSize: dictSize}
	e.SetNiceLen(defaultNice)
	return e
}

// SetNiceLen sets the match length (8..273) at which the parser stops
// looking for alternatives; longer is slower and compresses a little
// better. It takes effect with the next Encode.
func (e *Encoder) SetNiceLen(nice int) {
	e.nice = min(max(nice, 8), maxLen)
	e.depth = 16 + e.nice/2
}

// SetFast selects a greedy parser with one-step lazy matching over a
// short hash chain instead of the optimal parser: several times faster,
// above all on small inputs, for a few percent larger output. It takes
// effect with the next Encode.
func (e *Encoder) SetFast(fast bool) {
	e.fast = fast
}

// Encode appends to dst the complete raw LZMA2 stream (chunks and the end
// marker) of src and returns it.
func (e *Encoder) Encode(dst, src []byte) []byte {
	for len(src) > 0 {
		seg := src[:min(len(src), maxSegment)]
		e.startSegment(seg)
		dst = e.encodeSegment(dst)
		src = src[len(seg):]
	}
	e.data = nil
	e.mf.data = nil
	e.ff.data = nil
	return append(dst, endMarker)
}

func (e *Encoder) startSegment(data []byte) {
	e.data = data
	e.pos = 0
	e.fastOn = e.fast
	e.resetState()
	e.needDictReset, e.needProps, e.needStateReset = true, true, false
	e.ops = e.ops[:0]
	e.haveStored = false
	if e.fastOn {
		e.ff.reset(data, e.dictSize)
		return
	}
	e.mf.reset(data, e.dictSize, e.nice, e.depth)
	if e.opts == nil {
		e.opts = make([]optNode, optsSize)
	}
}

func (e *Encoder) resetState() {
	e.m = initialModel
	e.state = 0
	e.reps = [4]uint32{1, 1, 1, 1}
	e.pricesDirty = true
}

func (e *Encoder) encodeSegment(dst []byte) []byte {
	n := len(e.data)
	for e.pos < n {
		start := e.pos
		e.rc.reset(e.cbuf[:0])
		for e.pos < n {
			if len(e.ops) == 0 {
				if e.fastOn {
					e.parseFast()
				} else {
					e.parse()
				}
			}
			o := e.ops[len(e.ops)-1]
			if e.pos+int(o.len)-start > maxChunkU || e.rc.pending() > maxChunkC-opMaxBytes {
				break
			}
			e.ops = e.ops[:len(e.ops)-1]
			e.encodeOp(o)
		}
		e.rc.flush()
		e.cbuf = e.rc.out
		dst = e.writeChunk(dst, start)
	}
	return dst
}

func (e *Encoder) writeChunk(dst []byte, start int) []byte {
	unc := e.pos - start
	comp := len(e.cbuf)
	if comp >= unc || comp > maxChunkC {
		for p := start; p < e.pos; {
			sz := min(e.pos-p, maxRawU)
			ctrl := byte(2)
			if e.needDictReset {
				ctrl = 1
				e.needDictReset = false
			}
			dst = append(dst, ctrl, byte((sz-1)>>8), byte(sz-1))
			dst = append(dst, e.data[p:p+sz]...)
			p += sz
		}
		// The decoder never saw the model updates of this chunk, so the
		// next LZMA chunk starts from a reset state.
		e.resetState()
		e.needStateReset = true
		return dst
	}
	var ctrl byte
	switch {
	case e.needDictReset:
		ctrl = 0xE0
	case e.needProps:
		ctrl = 0xC0
	case e.needStateReset:
		ctrl = 0xA0
	default:
		ctrl = 0x80
	}
	u, c := unc-1, comp-1
	dst = append(dst, ctrl|byte(u>>16), byte(u>>8), byte(u), byte(c>>8), byte(c))
	if ctrl >= 0xC0 {
		dst = append(dst, propsByte)
	}
	dst = append(dst, e.cbuf...)
	e.needDictReset, e.needProps, e.needStateReset = false, false, false
	return dst
}

func (e *Encoder) encodeOp(o op) {
	pos := e.pos
	ps := uint32(pos) & posMask
	st := e.state
	rc := &e.rc
	m := &e.m
	if o.dist == 0 || (o.len == 1 && (o.dist != e.reps[0] || int(o.dist) > pos)) {
		var prev byte
		if pos > 0 {
			prev = e.data[pos-1]
		}
		probs := &m.literal[prev>>5]
		b := uint32(e.data[pos])
		if st < 7 {
			rc.literal(&m.isMatch[st][ps], probs, b)
		} else {
			rc.matchedLiteral(&m.isMatch[st][ps], probs, b, uint32(e.data[pos-int(e.reps[0])]))
		}
		e.state = litNext(st)
		e.pos++
		return
	}
	rc.bit(&m.isMatch[st][ps], 1)
	if o.len == 1 {
		rc.bit(&m.isRep[st], 1)
		rc.bit(&m.isRepG0[st], 0)
		rc.bit(&m.isRep0Long[st][ps], 0)
		e.state = shortRepNext(st)
		e.pos++
		return
	}
	idx := 4
	for i, r := range e.reps {
		if r == o.dist {
			idx = i
			break
		}
	}
	if idx < 4 {
		rc.bit(&m.isRep[st], 1)
		if idx == 0 {
			rc.bit(&m.isRepG0[st], 0)
			rc.bit(&m.isRep0Long[st][ps], 1)
		} else {
			rc.bit(&m.isRepG0[st], 1)
			if idx == 1 {
				rc.bit(&m.isRepG1[st], 0)
			} else {
				rc.bit(&m.isRepG1[st], 1)
				rc.bit(&m.isRepG2[st], uint32(idx-2))
			}
			copy(e.reps[1:idx+1], e.reps[:idx])
			e.reps[0] = o.dist
		}
		e.encodeLen(&m.repLen, o.len-minLen, ps)
		// The fast parser reads no length prices; the next normal-mode
		// call recomputes them all from its reset state.
		if e.repLenCounters[ps]--; e.repLenCounters[ps] <= 0 && !e.fastOn {
			e.fillLenPrices(&m.repLen, &e.repLenPrices[ps], ps)
			e.repLenCounters[ps] = e.nice - 1
		}
		e.state = repNext(st)
		e.pos += int(o.len)
		return
	}
	rc.bit(&m.isRep[st], 0)
	e.encodeLen(&m.matchLen, o.len-minLen, ps)
	if e.matchLenCounters[ps]--; e.matchLenCounters[ps] <= 0 && !e.fastOn {
		e.fillLenPrices(&m.matchLen, &e.matchLenPrices[ps], ps)
		e.matchLenCounters[ps] = e.nice - 1
	}
	ls := min(o.len-minLen, 3)
	d := o.dist - 1
	slot := distSlot(d)
	rc.bitTree(m.distSlot[ls][:], 6, slot)
	if slot >= 4 {
		footer := uint(slot>>1 - 1)
		base := (2 | slot&1) << footer
		red := d - base
		if slot < 14 {
			rc.reverseBitTree(m.distSpecial[base-slot:], footer, red)
		} else {
			rc.directBits(red>>4, footer-4)
			rc.reverseBitTree(m.align[:], 4, red&15)
			e.alignPriceCount++
		}
	}
	e.reps = [4]uint32{o.dist, e.reps[0], e.reps[1], e.reps[2]}
	e.state = matchNext(st)
	e.matchPriceCount++
	e.pos += int(o.len)
}

func (e *Encoder) encodeLen(lm *lenModel, l, ps uint32) {
	rc := &e.rc
	switch {
	case l < 8:
		rc.bit(&lm.choice, 0)
		rc.bitTree(lm.low[ps][:], 3, l)
	case l < 16:
		rc.bit(&lm.choice, 1)
		rc.bit(&lm.choice2, 0)
		rc.bitTree(lm.mid[ps][:], 3, l-8)
	default:
		rc.bit(&lm.choice, 1)
		rc.bit(&lm.choice2, 1)
		rc.bitTree(lm.high[:], 8, l-16)
	}
}

// fillLenPrices prices lengths minLen..nice, the longest the parser asks
// about.
func (e *Encoder) fillLenPrices(lm *lenModel, t *[maxLen - minLen + 1]uint32, ps uint32) {
	a0, a1 := price0(lm.choice), price1(lm.choice)
	b0, b1 := a1+price0(lm.choice2), a1+price1(lm.choice2)
	n := e.nice - minLen + 1
	for i := 0; i < n; i++ {
		l := uint32(i)
		switch {
		case l < 8:
			t[i] = a0 + bitTreePrice(lm.low[ps][:], 3, l)
		case l < 16:
			t[i] = b0 + bitTreePrice(lm.mid[ps][:], 3, l-8)
		default:
			t[i] = b1 + bitTreePrice(lm.high[:], 8, l-16)
		}
	}
}

func (e *Encoder) fillDistPrices() {
	for ls := range e.distSlotPrices {
		sp := &e.distSlotPrices[ls]
		for s := uint32(0); s < 64; s++ {
			sp[s] = bitTreePrice(e.m.distSlot[ls][:], 6, s)
			if s >= 14 {
				sp[s] += (s>>1 - 1 - 4) << priceShift
			}
		}
		dp := &e.distPrices[ls]
		for d := uint32(0); d < 128; d++ {
			slot := distSlot(d)
			dp[d] = sp[slot]
			if slot >= 4 {
				footer := uint(slot>>1 - 1)
				base := (2 | slot&1) << footer
				dp[d] += reverseBitTreePrice(e.m.distSpecial[base-slot:], footer, d-base)
			}
		}
	}
	e.matchPriceCount = 0
}

func (e *Encoder) fillAlignPrices() {
	for i := range e.alignPrices {
		e.alignPrices[i] = reverseBitTreePrice(e.m.align[:], 4, uint32(i))
	}
	e.alignPriceCount = 0
}

func (e *Encoder) updatePrices() {
	if e.pricesDirty {
		for ps := uint32(0); ps <= posMask; ps++ {
			e.fillLenPrices(&e.m.matchLen, &e.matchLenPrices[ps], ps)
			e.fillLenPrices(&e.m.repLen, &e.repLenPrices[ps], ps)
			e.matchLenCounters[ps] = e.nice - 1
			e.repLenCounters[ps] = e.nice - 1
		}
		e.fillDistPrices()
		e.fillAlignPrices()
		e.pricesDirty = false
		return
	}
	if e.matchPriceCount >= 128 {
		e.fillDistPrices()
	}
	if e.alignPriceCount >= 16 {
		e.fillAlignPrices()
	}
}
