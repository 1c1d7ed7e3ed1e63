package lzma2dec

import "encoding/binary"

// Next state after a literal, indexed by the current state.
var litNext = [16]uint32{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 4, 5}

// decodeChunk decodes the LZMA data in (one chunk's compressed bytes)
// into out[pos:], which must end up exactly full. base is where the
// dictionary was last reset: positions for the pb/lp contexts count from
// there, and no match reaches before it.
func (d *Decoder) decodeChunk(out []byte, pos, base int, in []byte, dictSize int) error {
	if len(in) < 5 || in[0] != 0 {
		return errRangeInit
	}
	rng, code, ip := uint32(0xffffffff), binary.BigEndian.Uint32(in[1:]), 5

	state := d.state
	rep0, rep1, rep2, rep3 := d.rep[0], d.rep[1], d.rep[2], d.rep[3]
	lc := d.lc
	lpMask := uint32(1)<<d.lp - 1
	pbMask := uint32(1)<<d.pb - 1
	p := &d.p
	lit := d.lit[:litStride<<(d.lc+d.lp)]
	end := len(out)

	for pos < end {
		// Overshooting the chunk means corruption; stopping here bounds
		// the work a hostile chunk can cause beyond its input.
		if ip > len(in) {
			return errChunkSize
		}
		rel := uint32(pos - base)
		posState := rel & pbMask
		var b uint32
		b, rng, code = bit(&p.isMatch[state<<maxPB|posState], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		if b == 0 {
			prev := uint32(0)
			if pos > base {
				prev = uint32(out[pos-1])
			}
			off := litStride * ((rel&lpMask)<<lc + prev>>(8-lc))
			probs := (*[litStride]uint16)(lit[off : off+litStride])
			var sym uint32
			if state < 7 {
				sym, rng, code, ip = literal(probs, rng, code, in, ip)
			} else {
				sym, rng, code, ip = matchedLiteral(probs, uint32(out[pos-int(rep0)-1]), rng, code, in, ip)
			}
			out[pos] = byte(sym)
			pos++
			state = litNext[state&15]
			continue
		}

		var l uint32
		b, rng, code = bit(&p.isRep[state], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		if b == 0 {
			l, rng, code, ip = decodeLen(&p.matchLen, posState, rng, code, in, ip)
			rep3, rep2, rep1 = rep2, rep1, rep0
			rep0, rng, code, ip = d.decodeDist(l, rng, code, in, ip)
			if state < 7 {
				state = 7
			} else {
				state = 10
			}
		} else {
			b, rng, code = bit(&p.isRepG0[state], rng, code)
			rng, code, ip = norm(rng, code, in, ip)
			if b == 0 {
				b, rng, code = bit(&p.isRep0Long[state<<maxPB|posState], rng, code)
				rng, code, ip = norm(rng, code, in, ip)
				if b == 0 {
					if uint(rep0) >= uint(pos-base) || uint(rep0) >= uint(dictSize) {
						return errDistance
					}
					out[pos] = out[pos-int(rep0)-1]
					pos++
					if state < 7 {
						state = 9
					} else {
						state = 11
					}
					continue
				}
			} else {
				var dist uint32
				b, rng, code = bit(&p.isRepG1[state], rng, code)
				rng, code, ip = norm(rng, code, in, ip)
				if b == 0 {
					dist = rep1
				} else {
					b, rng, code = bit(&p.isRepG2[state], rng, code)
					rng, code, ip = norm(rng, code, in, ip)
					if b == 0 {
						dist = rep2
					} else {
						dist = rep3
						rep3 = rep2
					}
					rep2 = rep1
				}
				rep1 = rep0
				rep0 = dist
			}
			l, rng, code, ip = decodeLen(&p.repLen, posState, rng, code, in, ip)
			if state < 7 {
				state = 8
			} else {
				state = 11
			}
		}

		// rep0 is 0xffffffff for the end-of-payload marker, which LZMA2
		// chunks (sized in their header) must not contain; the range
		// check rejects it with every other bad distance.
		if uint(rep0) >= uint(pos-base) || uint(rep0) >= uint(dictSize) {
			return errDistance
		}
		n := int(l) + minMatch
		if n > end-pos {
			return errChunkMatch
		}
		src := pos - int(rep0) - 1
		if n <= int(rep0)+1 {
			copy(out[pos:pos+n], out[src:src+n])
			pos += n
			continue
		}
		// Overlapping: out[src:pos] repeats with period rep0+1, so
		// copying all of it keeps the period and doubles what is there.
		for n > 0 {
			k := copy(out[pos:pos+n], out[src:pos])
			pos += k
			n -= k
		}
	}

	d.state = state
	d.rep = [4]uint32{rep0, rep1, rep2, rep3}
	// The encoder flushed its range coder so that the decoder ends on
	// the last byte with nothing left over.
	if ip != len(in) || code != 0 {
		return errChunkSize
	}
	return nil
}

// literal decodes a byte with the coder probs. It is a function of its
// own because in the large decodeChunk the register allocator spills the
// range coder state inside this hottest loop.
func literal(probs *[litStride]uint16, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	// Both children's probabilities are loaded before the bit is known,
	// so the next multiply waits for a select, not for a load whose
	// address depends on this bit.
	sym := uint32(1)
	v := uint32(probs[1])
	for sym < 0x100 {
		c0 := uint32(probs[(sym<<1)&(litStride-1)])
		c1 := uint32(probs[(sym<<1|1)&(litStride-1)])
		bound := (rng >> probBits) * v
		m := uint32((uint64(code) - uint64(bound)) >> 32) // all ones for a 0 bit
		probs[sym&(litStride-1)] = uint16(int32(v) - (int32(v)-int32(m&(probTotal-31)))>>probShiftM)
		rng = bound&m | (rng-bound)&^m
		code -= bound &^ m
		sym = sym<<1 | (m + 1)
		v = c0&m | c1&^m
		rng, code, ip = norm(rng, code, in, ip)
	}
	return sym & 0xff, rng, code, ip
}

// matchedLiteral decodes a byte right after a match: the byte mb at rep0
// predicts it until the first bit that differs. offs is 0x100 while they
// agree and 0 after, selecting the matched or the plain probabilities
// without a branch.
func matchedLiteral(probs *[litStride]uint16, mb uint32, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	sym := uint32(1)
	offs := uint32(0x100)
	for sym < 0x100 {
		mb <<= 1
		mbit := mb & offs
		var b uint32
		b, rng, code = bitNB(&probs[(offs+mbit+sym)&(litStride-1)], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		sym = sym<<1 | b
		offs &^= b<<8 ^ mbit
	}
	return sym & 0xff, rng, code, ip
}
