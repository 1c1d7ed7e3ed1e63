package lzma2

import "math"

// prob is an adaptive binary probability: the chance of a 0 bit, scaled to
// 1<<probBits.
type prob uint16

const (
	probBits   = 11
	probOne    = 1 << probBits
	probInit   = probOne / 2
	moveBits   = 5
	priceShift = 4 // prices are in 1/16 bit so small differences still order candidates
	infPrice   = 1 << 30
)

// bitPrices[p>>4] is the cost in 1/16 bit of coding a bit whose
// probability is p/2048; the coarse index keeps the table tiny.
var bitPrices = func() (t [probOne >> 4]uint32) {
	for i := range t {
		p := (float64(i)*16 + 8) / probOne
		t[i] = uint32(math.Round(-math.Log2(p) * (1 << priceShift)))
	}
	return t
}()

func price0(p prob) uint32 { return bitPrices[p>>4] }
func price1(p prob) uint32 { return bitPrices[(probOne-p)>>4] }

func priceBit(p prob, b uint32) uint32 {
	if b == 0 {
		return bitPrices[p>>4]
	}
	return bitPrices[(probOne-p)>>4]
}

func bitTreePrice(probs []prob, nbits uint, sym uint32) uint32 {
	var price uint32
	m := uint32(1)
	for i := nbits; i > 0; i-- {
		b := (sym >> (i - 1)) & 1
		price += priceBit(probs[m], b)
		m = m<<1 | b
	}
	return price
}

func reverseBitTreePrice(probs []prob, nbits uint, sym uint32) uint32 {
	var price uint32
	m := uint32(1)
	for i := uint(0); i < nbits; i++ {
		b := sym & 1
		sym >>= 1
		price += priceBit(probs[m], b)
		m = m<<1 | b
	}
	return price
}

// rangeEncoder is the LZMA binary range coder. Output carries are resolved
// through cache/cacheSize: a byte is held back until it is known that no
// later addition can ripple into it.
type rangeEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int
	out       []byte
}

// rcSlack covers what the coder may write past the chunk limit it is
// checked against: the last op, the held-back bytes and the flush.
const rcSlack = 256

// reset starts a chunk. The output buffer gets room for a whole chunk up
// front so that shiftLow never grows it: an append there would put a call
// into the coding loops and force their state out of registers.
func (rc *rangeEncoder) reset(out []byte) {
	if cap(out)-len(out) < maxChunkC+rcSlack {
		out = append(make([]byte, 0, len(out)+maxChunkC+rcSlack), out...)
	}
	rc.low = 0
	rc.rng = 0xFFFFFFFF
	rc.cache = 0
	rc.cacheSize = 1
	rc.out = out
}

func (rc *rangeEncoder) shiftLow() {
	if uint32(rc.low) < 0xFF000000 || rc.low >= 1<<32 {
		carry := byte(rc.low >> 32)
		c := rc.cache
		for {
			n := len(rc.out)
			rc.out = rc.out[:n+1]
			rc.out[n] = c + carry
			c = 0xFF
			rc.cacheSize--
			if rc.cacheSize == 0 {
				break
			}
		}
		rc.cache = byte(rc.low >> 24)
	}
	rc.cacheSize++
	rc.low = (rc.low & 0x00FFFFFF) << 8
}

// pending is the number of bytes the stream would have if flushed now.
func (rc *rangeEncoder) pending() int {
	return len(rc.out) + rc.cacheSize + 4
}

func (rc *rangeEncoder) flush() {
	for i := 0; i < 5; i++ {
		rc.shiftLow()
	}
}

// code codes one binary decision on local coder state and leaves the
// renormalization to the caller, so that it inlines into the coding
// loops. It is written for conditional moves: most bits predict badly.
func code(rng uint32, low uint64, p *prob, b uint32) (uint32, uint64) {
	v := uint32(*p)
	bound := (rng >> probBits) * v
	r1, l1 := rng-bound, low+uint64(bound)
	np := v + (probOne-v)>>moveBits
	n1 := v - v>>moveBits
	rng = bound
	if b != 0 {
		rng, low, np = r1, l1, n1
	}
	*p = prob(np)
	return rng, low
}

// renorm shifts out a byte; one shift suffices after a bit since the
// smallest probability keeps bound above 2^16. It is out of line and
// works on the callers' local state, which stays in registers.
//
//go:noinline
func (rc *rangeEncoder) renorm(rng uint32, low uint64) (uint32, uint64) {
	rc.low = low
	rc.shiftLow()
	return rng << 8, rc.low
}

func (rc *rangeEncoder) bit(p *prob, b uint32) {
	rng, low := code(rc.rng, rc.low, p, b)
	if rng < 1<<24 {
		rng, low = rc.renorm(rng, low)
	}
	rc.rng, rc.low = rng, low
}

func (rc *rangeEncoder) directBits(v uint32, n uint) {
	rng, low := rc.rng, rc.low
	for n > 0 {
		n--
		rng >>= 1
		low += uint64(rng & -((v >> n) & 1))
		if rng < 1<<24 {
			rng, low = rc.renorm(rng, low)
		}
	}
	rc.rng, rc.low = rng, low
}

func (rc *rangeEncoder) bitTree(probs []prob, nbits uint, sym uint32) {
	rng, low := rc.rng, rc.low
	m := uint32(1)
	for i := nbits; i > 0; i-- {
		b := (sym >> (i - 1)) & 1
		rng, low = code(rng, low, &probs[m], b)
		if rng < 1<<24 {
			rng, low = rc.renorm(rng, low)
		}
		m = m<<1 | b
	}
	rc.rng, rc.low = rng, low
}

func (rc *rangeEncoder) reverseBitTree(probs []prob, nbits uint, sym uint32) {
	rng, low := rc.rng, rc.low
	m := uint32(1)
	for i := uint(0); i < nbits; i++ {
		b := sym & 1
		sym >>= 1
		rng, low = code(rng, low, &probs[m], b)
		if rng < 1<<24 {
			rng, low = rc.renorm(rng, low)
		}
		m = m<<1 | b
	}
	rc.rng, rc.low = rng, low
}

// literal codes the is-match bit (0) at isMatch and then the 8 bits of b
// through the bit tree probs, in one call: literals are most of the ops.
func (rc *rangeEncoder) literal(isMatch *prob, probs *[0x300]prob, b uint32) {
	rng, low := code(rc.rng, rc.low, isMatch, 0)
	if rng < 1<<24 {
		rng, low = rc.renorm(rng, low)
	}
	m := uint32(1)
	for i := 7; i >= 0; i-- {
		bit := (b >> uint(i)) & 1
		rng, low = code(rng, low, &probs[m&0xff], bit)
		if rng < 1<<24 {
			rng, low = rc.renorm(rng, low)
		}
		m = m<<1 | bit
	}
	rc.rng, rc.low = rng, low
}

// matchedLiteral is literal coded against the byte mb at rep0: while
// their bits agree the probabilities come from the matched half of probs.
func (rc *rangeEncoder) matchedLiteral(isMatch *prob, probs *[0x300]prob, b, mb uint32) {
	rng, low := code(rc.rng, rc.low, isMatch, 0)
	if rng < 1<<24 {
		rng, low = rc.renorm(rng, low)
	}
	m := uint32(1)
	// offs is 0x100 while b and mb agree so far, then 0.
	offs := uint32(0x100)
	for i := 7; i >= 0; i-- {
		bit := (b >> uint(i)) & 1
		mbit := (mb >> uint(i)) & 1
		rng, low = code(rng, low, &probs[(offs+(offs&(mbit<<8))+m)%0x300], bit)
		if rng < 1<<24 {
			rng, low = rc.renorm(rng, low)
		}
		offs &^= (bit ^ mbit) << 8
		m = m<<1 | bit
	}
	rc.rng, rc.low = rng, low
}
