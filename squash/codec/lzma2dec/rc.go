package lzma2dec

// The range decoder lives in the callers' local variables (rng, code, ip)
// and these helpers take and return them by value: the compiler inlines
// them and keeps the state in registers, which a method on a struct
// pointer would force into memory on every bit.

const (
	rcTop      = 1 << 24
	probBits   = 11
	probInit   = 1 << (probBits - 1)
	probTotal  = 1 << probBits
	probShiftM = 5
)

// bit decodes one bit with the adaptive probability *p. It does not
// normalize; every caller follows it with norm.
func bit(p *uint16, rng, code uint32) (uint32, uint32, uint32) {
	v := uint32(*p)
	bound := (rng >> probBits) * v
	if code < bound {
		*p = uint16(v + (probTotal-v)>>probShiftM)
		return 0, bound, code
	}
	*p = uint16(v - v>>probShiftM)
	return 1, rng - bound, code - bound
}

// norm shifts in the next input byte when the range got too small. Past
// the end of the chunk it shifts in zeros and still counts ip, so the
// hot loops need no error path; the chunk is rejected afterwards because
// ip overshot the declared compressed size.
func norm(rng, code uint32, in []byte, ip int) (uint32, uint32, int) {
	if rng < rcTop {
		rng <<= 8
		code <<= 8
		if uint(ip) < uint(len(in)) {
			code |= uint32(in[ip])
		}
		ip++
	}
	return rng, code, ip
}

// tree decodes an n-bit symbol, most significant bit first, from the
// bit-tree probs (indexed from 1).
func tree(probs []uint16, n uint, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	m := uint32(1)
	for range n {
		var b uint32
		b, rng, code = bitNB(&probs[m], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		m = m<<1 | b
	}
	return m - 1<<n, rng, code, ip
}

// revTree decodes an n-bit symbol, least significant bit first.
func revTree(probs []uint16, n uint, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	m := uint32(1)
	var sym uint32
	for i := range n {
		var b uint32
		b, rng, code = bitNB(&probs[m], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		m = m<<1 | b
		sym |= b << i
	}
	return sym, rng, code, ip
}

// bitNB is bit without branches, for the bits that are close to coin
// flips (literals, tree symbols): a mispredicted branch costs more than
// the few extra instructions.
func bitNB(p *uint16, rng, code uint32) (uint32, uint32, uint32) {
	v := uint32(*p)
	bound := (rng >> probBits) * v
	// All ones when code < bound, that is when the bit is 0.
	m := uint32((uint64(code) - uint64(bound)) >> 32)
	*p = uint16(int32(v) - (int32(v)-int32(m&(probTotal-31)))>>probShiftM)
	return m + 1, bound&m | (rng-bound)&^m, code - bound&^m
}
