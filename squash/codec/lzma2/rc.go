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

func (rc *rangeEncoder) reset(out []byte) {
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
			rc.out = append(rc.out, c+carry)
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

func (rc *rangeEncoder) bit(p *prob, b uint32) {
	bound := (rc.rng >> probBits) * uint32(*p)
	if b == 0 {
		rc.rng = bound
		*p += (probOne - *p) >> moveBits
	} else {
		rc.low += uint64(bound)
		rc.rng -= bound
		*p -= *p >> moveBits
	}
	// One shift suffices: the smallest probability keeps bound above 2^16.
	if rc.rng < 1<<24 {
		rc.rng <<= 8
		rc.shiftLow()
	}
}

func (rc *rangeEncoder) directBits(v uint32, n uint) {
	for n > 0 {
		n--
		rc.rng >>= 1
		if (v>>n)&1 != 0 {
			rc.low += uint64(rc.rng)
		}
		if rc.rng < 1<<24 {
			rc.rng <<= 8
			rc.shiftLow()
		}
	}
}

func (rc *rangeEncoder) bitTree(probs []prob, nbits uint, sym uint32) {
	m := uint32(1)
	for i := nbits; i > 0; i-- {
		b := (sym >> (i - 1)) & 1
		rc.bit(&probs[m], b)
		m = m<<1 | b
	}
}

func (rc *rangeEncoder) reverseBitTree(probs []prob, nbits uint, sym uint32) {
	m := uint32(1)
	for i := uint(0); i < nbits; i++ {
		b := sym & 1
		sym >>= 1
		rc.bit(&probs[m], b)
		m = m<<1 | b
	}
}
