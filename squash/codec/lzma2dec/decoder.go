// Package lzma2dec decodes raw LZMA2 streams (the payload of an xz LZMA2
// filter) straight into a caller-sized output buffer.
//
// Squashfs blocks are decoded whole into a buffer of known capacity, so
// the output itself serves as the dictionary window: no circular buffer,
// no flushing, and a match copy is a copy within one slice. The decoder
// treats its input as hostile: every malformed stream ends in an error,
// never a panic, a hang or an allocation.
package lzma2dec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var (
	// ErrTruncated reports a stream that ends before its end marker.
	ErrTruncated = errors.New("lzma2: truncated input")
	// ErrOutputTooLarge reports a stream that decodes to more than
	// cap(dst) bytes.
	ErrOutputTooLarge = errors.New("lzma2: output too large")
	// ErrCorrupt reports any other malformed stream.
	ErrCorrupt = errors.New("lzma2: corrupt input")
)

var (
	errControl    = corrupt("invalid chunk control byte")
	errDictReset  = corrupt("first chunk does not reset the dictionary")
	errNeedProps  = corrupt("LZMA chunk without required properties")
	errProps      = corrupt("invalid LZMA properties")
	errRangeInit  = corrupt("invalid range coder start")
	errDistance   = corrupt("match distance out of range")
	errChunkSize  = corrupt("chunk size mismatch")
	errDictSize   = corrupt("negative dictionary size")
	errChunkMatch = corrupt("match crosses chunk end")
)

// corrupt is an error matching ErrCorrupt in errors.Is, with its detail.
func corrupt(s string) error { return fmt.Errorf("%w: %s", ErrCorrupt, s) }

const (
	numStates    = 12
	maxPB        = 4
	posStatesMax = 1 << maxPB
	// litStride spaces the literal coders at a power of two so an
	// index masked with litStride-1 needs no bounds check.
	litStride    = 0x400
	maxLcLp      = 4
	lenLowBits   = 3
	lenHighBits  = 8
	minMatch     = 2
	distSlotBits = 6
	lenToPos     = 4
	startPosMdl  = 4
	endPosMdl    = 14
	fullDists    = 1 << (endPosMdl >> 1)
	alignBits    = 4
)

type lenDec struct {
	choice  uint16
	choice2 uint16
	low     [posStatesMax][1 << lenLowBits]uint16
	mid     [posStatesMax][1 << lenLowBits]uint16
	high    [1 << lenHighBits]uint16
}

// probs holds every adaptive probability except the literal coders, so a
// state reset is a single loop over it.
type probs struct {
	isMatch    [numStates << maxPB]uint16
	isRep      [numStates]uint16
	isRepG0    [numStates]uint16
	isRepG1    [numStates]uint16
	isRepG2    [numStates]uint16
	isRep0Long [numStates << maxPB]uint16
	distSlot   [lenToPos][1 << distSlotBits]uint16
	distSpec   [1 + fullDists - endPosMdl]uint16
	align      [1 << alignBits]uint16
	matchLen   lenDec
	repLen     lenDec
}

// Decoder decodes raw LZMA2 streams. It is reused across calls, keeping
// its probability tables, and is not safe for concurrent use.
type Decoder struct {
	lc, lp, pb uint
	state      uint32
	rep        [4]uint32
	p          probs
	lit        [litStride << maxLcLp]uint16
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	return &Decoder{}
}

// Decode decodes the complete raw LZMA2 stream src (chunks through the
// 0x00 end marker) into dst[:0:cap(dst)]; cap(dst) bounds the output.
// dictSize is the dictionary size declared by the container: no match may
// reach further back than that, nor before the last dictionary reset.
// It returns the decoded bytes, a prefix of dst's backing array, and the
// number of bytes of src consumed through the end marker; what follows
// the end marker is left to the caller.
func (d *Decoder) Decode(dst []byte, src []byte, dictSize int) (out []byte, n int, err error) {
	if dictSize < 0 {
		return dst[:0], 0, errDictSize
	}
	out = dst[:cap(dst)]
	pos, base, ip := 0, 0, 0
	needDictReset, needProps := true, true
	for {
		if ip >= len(src) {
			return out[:pos], ip, ErrTruncated
		}
		c := src[ip]
		if c == 0 {
			return out[:pos], ip + 1, nil
		}
		if c >= 3 && c < 0x80 {
			return out[:pos], ip, errControl
		}
		if c == 1 || c >= 0xe0 {
			base = pos
			needDictReset = false
			needProps = true
		} else if needDictReset {
			return out[:pos], ip, errDictReset
		}
		if c < 0x80 {
			if len(src)-ip < 3 {
				return out[:pos], ip, ErrTruncated
			}
			size := int(binary.BigEndian.Uint16(src[ip+1:])) + 1
			ip += 3
			if len(out)-pos < size {
				return out[:pos], ip, ErrOutputTooLarge
			}
			if len(src)-ip < size {
				return out[:pos], ip, ErrTruncated
			}
			copy(out[pos:], src[ip:ip+size])
			pos += size
			ip += size
			continue
		}

		hdr := 5
		reset := c >> 5 & 3
		if reset >= 2 {
			hdr = 6
		}
		if len(src)-ip < hdr {
			return out[:pos], ip, ErrTruncated
		}
		usize := int(c&0x1f)<<16 + int(binary.BigEndian.Uint16(src[ip+1:])) + 1
		csize := int(binary.BigEndian.Uint16(src[ip+3:])) + 1
		switch {
		case reset >= 2:
			if err := d.setProps(src[ip+5]); err != nil {
				return out[:pos], ip, err
			}
			needProps = false
			d.resetState()
		case needProps:
			return out[:pos], ip, errNeedProps
		case reset == 1:
			d.resetState()
		}
		// An LZMA chunk without state reset after an uncompressed one
		// continues the model from before it. liblzma and the kernel
		// accept that, and ulikunitz's Writer2 (our greedy xz path)
		// emits it, so rejecting it would reject our own images.
		ip += hdr
		if len(out)-pos < usize {
			return out[:pos], ip, ErrOutputTooLarge
		}
		if len(src)-ip < csize {
			return out[:pos], ip, ErrTruncated
		}
		if err := d.decodeChunk(out[:pos+usize], pos, base, src[ip:ip+csize], dictSize); err != nil {
			return out[:pos], ip, err
		}
		pos += usize
		ip += csize
	}
}

func (d *Decoder) setProps(b byte) error {
	if b >= 9*5*5 {
		return errProps
	}
	lc, lp, pb := uint(b%9), uint(b/9%5), uint(b/45)
	if lc+lp > maxLcLp {
		return errProps
	}
	d.lc, d.lp, d.pb = lc, lp, pb
	return nil
}

func (d *Decoder) resetState() {
	d.state = 0
	d.rep = [4]uint32{}
	// probs is all uint16, so view it as one flat array to reset.
	p := &d.p
	resetProbs(p.isMatch[:])
	resetProbs(p.isRep[:])
	resetProbs(p.isRepG0[:])
	resetProbs(p.isRepG1[:])
	resetProbs(p.isRepG2[:])
	resetProbs(p.isRep0Long[:])
	for i := range p.distSlot {
		resetProbs(p.distSlot[i][:])
	}
	resetProbs(p.distSpec[:])
	resetProbs(p.align[:])
	resetLen(&p.matchLen)
	resetLen(&p.repLen)
	resetProbs(d.lit[:litStride<<(d.lc+d.lp)])
}

func resetLen(l *lenDec) {
	l.choice, l.choice2 = probInit, probInit
	for i := range l.low {
		resetProbs(l.low[i][:])
		resetProbs(l.mid[i][:])
	}
	resetProbs(l.high[:])
}

func resetProbs(p []uint16) {
	for i := range p {
		p[i] = probInit
	}
}

// decodeLen returns the match length minus minMatch.
func decodeLen(l *lenDec, posState uint32, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	var b, n uint32
	b, rng, code = bit(&l.choice, rng, code)
	rng, code, ip = norm(rng, code, in, ip)
	if b == 0 {
		return tree(l.low[posState&(posStatesMax-1)][:], lenLowBits, rng, code, in, ip)
	}
	b, rng, code = bit(&l.choice2, rng, code)
	rng, code, ip = norm(rng, code, in, ip)
	if b == 0 {
		n, rng, code, ip = tree(l.mid[posState&(posStatesMax-1)][:], lenLowBits, rng, code, in, ip)
		return n + 1<<lenLowBits, rng, code, ip
	}
	n, rng, code, ip = tree(l.high[:], lenHighBits, rng, code, in, ip)
	return n + 2<<lenLowBits, rng, code, ip
}

// decodeDist returns the distance minus one of a new match whose length
// minus minMatch is l.
func (d *Decoder) decodeDist(l uint32, rng, code uint32, in []byte, ip int) (uint32, uint32, uint32, int) {
	slot, rng, code, ip := tree(d.p.distSlot[min(l, lenToPos-1)][:], distSlotBits, rng, code, in, ip)
	if slot < startPosMdl {
		return slot, rng, code, ip
	}
	nd := uint(slot>>1 - 1)
	dist := (2 | slot&1) << nd
	var r uint32
	if slot < endPosMdl {
		// Slots below endPosMdl give dist < fullDists, so the window
		// dist-slot.. stays inside distSpec.
		r, rng, code, ip = revTree(d.p.distSpec[dist-slot:], nd, rng, code, in, ip)
		return dist + r, rng, code, ip
	}
	for range nd - alignBits {
		rng >>= 1
		code -= rng
		// All ones when code was below rng (the bit is 0): undo the
		// subtraction without a branch on this incompressible bit.
		t := 0 - code>>31
		code += rng & t
		rng, code, ip = norm(rng, code, in, ip)
		r = r<<1 | (t + 1)
	}
	dist += r << alignBits
	r, rng, code, ip = revTree(d.p.align[:], alignBits, rng, code, in, ip)
	return dist + r, rng, code, ip
}
