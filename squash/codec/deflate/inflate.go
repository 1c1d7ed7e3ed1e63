package deflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// The decoder: squashfs blocks are zlib streams inflated whole into a
// buffer of known capacity (at most the block size), so the output itself
// is the window. A match is a copy within one slice, with no 32 KiB ring
// to pass every byte through, and the bit reader loads eight bytes at a
// time while at least eight remain. It treats its input as hostile: a
// malformed stream ends in an error, never a panic, a hang or an
// allocation, and it rejects what zlib (the kernel's inflate) rejects.

var (
	// ErrTruncated reports a stream that ends before its last block does.
	ErrTruncated = errors.New("inflate: truncated input")
	// ErrOutputFull reports a stream that decodes to more than len(dst)
	// bytes.
	ErrOutputFull = errors.New("inflate: output too large")
	// ErrCorrupt reports any other malformed stream.
	ErrCorrupt = errors.New("inflate: corrupt input")
)

var (
	errHeader     = corrupt("invalid zlib header")
	errDict       = corrupt("zlib stream needs a preset dictionary")
	errChecksum   = corrupt("Adler-32 checksum mismatch")
	errTrailing   = corrupt("data after the end of the stream")
	errBlockType  = corrupt("invalid block type")
	errStored     = corrupt("stored block length does not match its complement")
	errCounts     = corrupt("too many length or distance symbols")
	errCodeLens   = corrupt("invalid code length code")
	errRepeat     = corrupt("invalid code length repeat")
	errLitLenCode = corrupt("invalid literal/length code lengths")
	errDistCode   = corrupt("invalid distance code lengths")
	errNoEnd      = corrupt("no code for the end of a block")
	errSymbol     = corrupt("invalid literal/length or distance symbol")
	errDistance   = corrupt("distance too far back")
)

// corrupt is an error matching ErrCorrupt in errors.Is, with its detail.
func corrupt(s string) error { return fmt.Errorf("%w: %s", ErrCorrupt, s) }

// Table sizes: the first bits of a code index the main table; longer
// codes continue in subtables. The most entries any valid (complete or
// single-code) code needs, for 288 and 32 symbols of at most 15 bits, are
// 2342 and 402 (zlib's examples/enough.c computes them).
const (
	litLenBits   = 11
	distBits     = 8
	clBits       = maxCLBits // the code-length code fits one table
	litLenEnough = 2342
	distEnough   = 402
	numLitLenAll = 288 // 286 and 287 exist in the fixed code only, invalid
	numDistAll   = 32  // 30 and 31 likewise
)

// An entry of a decoding table: the code's length (or, for a subtable
// pointer, the main table's bits) in bits 0-4, flags in 5-7 and 15, the
// extra bits to read after the code (or a subtable's index bits) in 8-12,
// and the value in 16-31: a literal byte, a length or distance base, or a
// subtable's offset.
const (
	entLiteral = 1 << 5
	entEnd     = 1 << 6
	entSub     = 1 << 7
	entInvalid = 1 << 15
)

func mkEntry(n, extra, flags, value uint32) uint32 {
	return value<<16 | extra<<8 | flags | n
}

// Decoder inflates streams; it holds the tables of the block being
// decoded, so a Decoder allocates nothing and serves one goroutine at a
// time.
type Decoder struct {
	litLen [litLenEnough]uint32
	dist   [distEnough]uint32
	cl     [1 << clBits]uint32
	lens   [numLitLenAll + numDistAll]uint8
	// fixedBuilt: the tables hold the fixed code.
	fixedBuilt bool
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// DecodeZlib inflates the zlib stream src, which must end where the
// stream does, into dst and returns the bytes written. The Adler-32 of
// the output is checked.
func (d *Decoder) DecodeZlib(dst, src []byte) (int, error) {
	if len(src) < 2 {
		return 0, ErrTruncated
	}
	cmf, flg := src[0], src[1]
	if cmf&0x0f != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
		return 0, errHeader
	}
	if flg&0x20 != 0 {
		return 0, errDict
	}
	n, used, err := d.Decode(dst, src[2:])
	if err != nil {
		return n, err
	}
	rest := src[2+used:]
	switch {
	case len(rest) < 4:
		return n, ErrTruncated
	case len(rest) > 4:
		return n, errTrailing
	case binary.BigEndian.Uint32(rest) != adler(dst[:n]):
		return n, errChecksum
	}
	return n, nil
}

// Decode inflates the raw deflate stream at the start of src into dst. It
// returns the bytes written and the bytes of src the stream took (up to
// the byte its last block ends in).
func (d *Decoder) Decode(dst, src []byte) (written, used int, err error) {
	br := bitReader{in: src}
	op := 0
	for {
		br.refill()
		final := br.bits & 1
		typ := br.bits >> 1 & 3
		br.drop(3)
		switch typ {
		case 0:
			op, err = br.stored(dst, op)
		case 1:
			d.fixed()
			op, err = d.block(&br, dst, op)
		case 2:
			if err = d.dynamic(&br); err == nil {
				op, err = d.block(&br, dst, op)
			}
		default:
			err = errBlockType
		}
		if err == nil && br.overrun() {
			err = ErrTruncated
		}
		if err != nil {
			return op, br.used(), err
		}
		if final == 1 {
			return op, br.used(), nil
		}
	}
}

// bitReader reads bits LSB first. Near the end of its input it pretends
// to read zero bytes past it, so the fast paths need no bounds checks of
// their own; overrun tells whether a stream consumed any of them.
type bitReader struct {
	in    []byte
	ip    int    // next byte of in to load
	extra int    // zero bytes loaded past the end
	bits  uint64 // loaded bits, next first
	n     uint   // how many
}

// refill loads bits until at least 56 are loaded.
func (br *bitReader) refill() {
	if br.ip+8 <= len(br.in) {
		br.bits |= binary.LittleEndian.Uint64(br.in[br.ip:]) << br.n
		br.ip += int(63-br.n) >> 3
		br.n |= 56
		return
	}
	for br.n <= 56 {
		if br.ip < len(br.in) {
			br.bits |= uint64(br.in[br.ip]) << br.n
			br.ip++
		} else {
			br.extra++
		}
		br.n += 8
	}
}

func (br *bitReader) drop(n uint) {
	br.bits >>= n
	br.n -= n
}

// used is how many bytes of the input the bits taken so far reach into.
func (br *bitReader) used() int {
	return br.ip + br.extra - int(br.n>>3)
}

func (br *bitReader) overrun() bool { return br.used() > len(br.in) }

// stored copies a stored block.
func (br *bitReader) stored(dst []byte, op int) (int, error) {
	br.drop(br.n & 7) // to a byte boundary
	br.refill()
	if br.used()+4 > len(br.in) {
		return op, ErrTruncated
	}
	length := int(br.bits & 0xffff)
	if uint16(br.bits>>16) != ^uint16(length) {
		return op, errStored
	}
	br.drop(32)
	// Hand the whole bytes still loaded back to the input.
	ip := br.used() // within the input: checked above
	br.bits, br.n, br.extra = 0, 0, 0
	if length > len(br.in)-ip {
		return op, ErrTruncated
	}
	if length > len(dst)-op {
		return op, ErrOutputFull
	}
	copy(dst[op:], br.in[ip:ip+length])
	br.ip = ip + length
	return op + length, nil
}

// fixed builds the tables of the fixed Huffman code (RFC 1951 3.2.6),
// unless the last block's were those.
func (d *Decoder) fixed() {
	if d.fixedBuilt {
		return
	}
	d.fixedBuilt = true
	l := d.lens[:numLitLenAll+numDistAll]
	for i := range 144 {
		l[i] = 8
	}
	for i := 144; i < 256; i++ {
		l[i] = 9
	}
	for i := 256; i < 280; i++ {
		l[i] = 7
	}
	for i := 280; i < 288; i++ {
		l[i] = 8
	}
	for i := 288; i < 320; i++ {
		l[i] = 5
	}
	// Fixed codes are complete: building them cannot fail.
	buildTable(d.litLen[:], l[:numLitLenAll], litLenBits, litLenInfo)
	buildTable(d.dist[:], l[numLitLenAll:], distBits, distInfo)
}

// dynamic reads a dynamic block's header and builds its tables.
func (d *Decoder) dynamic(br *bitReader) error {
	d.fixedBuilt = false
	br.refill()
	nlit := int(br.bits&31) + 257
	ndist := int(br.bits>>5&31) + 1
	ncl := int(br.bits>>10&15) + 4
	br.drop(14)
	if nlit > numLitLen || ndist > numDist {
		return errCounts
	}
	var clLens [numCL]uint8
	for i := range ncl {
		if br.n < 3 {
			br.refill()
		}
		clLens[clOrder[i]] = uint8(br.bits & 7)
		br.drop(3)
	}
	if !buildTable(d.cl[:], clLens[:], clBits, clInfo) {
		return errCodeLens
	}
	l := d.lens[:nlit+ndist]
	for i := 0; i < len(l); {
		br.refill()
		if br.overrun() {
			return ErrTruncated
		}
		e := d.cl[br.bits&(1<<clBits-1)]
		br.drop(uint(e & 31))
		sym := e >> 16
		if sym < 16 {
			l[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errRepeat
			}
			val = l[i-1]
			rep = 3 + int(br.bits&3)
			br.drop(2)
		case 17:
			rep = 3 + int(br.bits&7)
			br.drop(3)
		default:
			rep = 11 + int(br.bits&127)
			br.drop(7)
		}
		if rep > len(l)-i {
			return errRepeat
		}
		for range rep {
			l[i] = val
			i++
		}
	}
	if l[endBlock] == 0 {
		return errNoEnd
	}
	if !buildTable(d.litLen[:], l[:nlit], litLenBits, litLenInfo) {
		return errLitLenCode
	}
	if !buildTable(d.dist[:], l[nlit:], distBits, distInfo) {
		return errDistCode
	}
	return nil
}

// Symbol infos: what an entry says besides the code's length.
func litLenInfo(sym int) (extra, flags, value uint32) {
	switch {
	case sym < endBlock:
		return 0, entLiteral, uint32(sym)
	case sym == endBlock:
		return 0, entEnd, 0
	case sym < endBlock+1+len(lenBase):
		k := sym - endBlock - 1
		return uint32(lenExtra[k]), 0, uint32(lenBase[k])
	}
	return 0, entInvalid, 0
}

func distInfo(sym int) (extra, flags, value uint32) {
	if sym < len(distBase) {
		return uint32(distExtra[sym]), 0, uint32(distBase[sym])
	}
	return 0, entInvalid, 0
}

func clInfo(sym int) (extra, flags, value uint32) { return 0, 0, uint32(sym) }

// buildTable fills table with the canonical Huffman code of lens, main
// table first (rootBits), subtables after it. It reports false for an
// over-subscribed code and for an incomplete one, except that zlib allows
// a literal/length or distance code of a single one-bit code, and a
// distance code with no codes at all. Entries no code reaches are marked
// invalid.
func buildTable(table []uint32, lens []uint8, rootBits uint, info func(int) (uint32, uint32, uint32)) bool {
	var count [maxCodeBits + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	maxLen := 0
	left := 1
	for l := 1; l <= maxCodeBits; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return false // over-subscribed
		}
		if count[l] > 0 {
			maxLen = l
		}
	}
	invalid := mkEntry(0, 0, entInvalid, 0)
	rootSize := 1 << rootBits
	if left > 0 {
		isCL := rootBits == clBits
		if isCL || maxLen > 1 {
			return false // incomplete
		}
		// No code at all, or one of one bit: its other half is invalid.
		for i := range rootSize {
			table[i] = invalid
		}
		for sym, l := range lens {
			if l == 1 {
				extra, flags, value := info(sym)
				e := mkEntry(1, extra, flags, value)
				for i := 0; i < rootSize; i += 2 {
					table[i] = e
				}
			}
		}
		return true
	}
	// Symbols sorted by code length, then by symbol: canonical order.
	var offs [maxCodeBits + 2]int
	for l := 1; l <= maxCodeBits; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [numLitLenAll]uint16
	for sym, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	// Codes in canonical order count upward, MSB first; the table is
	// indexed by bits read LSB first, so each code is reversed.
	rem := count // codes of each length not yet placed
	code := 0
	next := rootSize // where the next subtable goes
	subPrefix := -1  // the main entry of the current subtable
	subStart, subBits := 0, uint(0)
	i := 0
	for l := 1; l <= maxLen; l++ {
		for range count[l] {
			sym := int(sorted[i])
			i++
			extra, flags, value := info(sym)
			rev := int(bits.Reverse16(uint16(code)) >> (16 - l))
			if uint(l) <= rootBits {
				e := mkEntry(uint32(l), extra, flags, value)
				for j := rev; j < rootSize; j += 1 << l {
					table[j] = e
				}
			} else {
				prefix := rev & (rootSize - 1)
				if prefix != subPrefix {
					// A new subtable, as deep as the codes below this
					// prefix need: it grows while the codes left of this
					// length and the next ones do not fill it.
					subPrefix = prefix
					subBits = uint(l) - rootBits
					room := 1<<subBits - rem[l]
					for room > 0 && int(rootBits+subBits) < maxLen {
						subBits++
						room = room<<1 - rem[rootBits+subBits]
					}
					subStart = next
					next += 1 << subBits
					if next > len(table) {
						return false // cannot happen for a complete code
					}
					table[prefix] = mkEntry(uint32(rootBits), uint32(subBits), entSub, uint32(subStart))
				}
				sl := uint(l) - rootBits
				e := mkEntry(uint32(sl), extra, flags, value)
				for j := rev >> rootBits; j < 1<<subBits; j += 1 << sl {
					table[subStart+j] = e
				}
			}
			rem[l]--
			code++
		}
		code <<= 1
	}
	return true
}

// block decodes the symbols of one Huffman-coded block with the tables
// built for it. The bit reader's state lives in locals here: this loop is
// where inflating spends its time.
func (d *Decoder) block(br *bitReader, dst []byte, op int) (int, error) {
	lt, dt := &d.litLen, &d.dist
	in, ip := br.in, br.ip
	b, n := br.bits, br.n
	save := func() { br.ip, br.bits, br.n = ip, b, n }
	for {
		// One refill gives the 48 bits a length and distance can take.
		if ip+8 <= len(in) {
			b |= binary.LittleEndian.Uint64(in[ip:]) << n
			ip += int(63-n) >> 3
			n |= 56
		} else {
			save()
			br.refill()
			if br.used() > len(in) {
				return op, ErrTruncated
			}
			ip, b, n = br.ip, br.bits, br.n
		}
		e := lt[b&(1<<litLenBits-1)]
		if e&entSub != 0 {
			b >>= litLenBits
			n -= litLenBits
			e = lt[e>>16+uint32(b)&(1<<(e>>8&31)-1)]
		}
		b >>= e & 31
		n -= uint(e & 31)
		if e&entLiteral != 0 {
			if op >= len(dst) {
				save()
				return op, ErrOutputFull
			}
			dst[op] = byte(e >> 16)
			op++
			// At least 41 bits are left: a second literal (of a code
			// that fits the main table) needs no refill.
			e = lt[b&(1<<litLenBits-1)]
			if e&(entLiteral|entSub) == entLiteral && op < len(dst) {
				b >>= e & 31
				n -= uint(e & 31)
				dst[op] = byte(e >> 16)
				op++
			}
			continue
		}
		if e&(entEnd|entInvalid) != 0 {
			save()
			if e&entEnd != 0 {
				return op, nil
			}
			return op, errSymbol
		}
		extra := e >> 8 & 31
		length := int(e>>16) + int(b&(1<<extra-1))
		b >>= extra
		n -= uint(extra)

		e = dt[b&(1<<distBits-1)]
		if e&entSub != 0 {
			b >>= distBits
			n -= distBits
			e = dt[e>>16+uint32(b)&(1<<(e>>8&31)-1)]
		}
		b >>= e & 31
		n -= uint(e & 31)
		if e&entInvalid != 0 {
			save()
			return op, errSymbol
		}
		extra = e >> 8 & 31
		dist := int(e>>16) + int(b&(1<<extra-1))
		b >>= extra
		n -= uint(extra)

		if dist > op {
			save()
			return op, errDistance
		}
		if length > len(dst)-op {
			save()
			return op, ErrOutputFull
		}
		from := op - dist
		switch {
		case dist >= length && length >= 32:
			copy(dst[op:op+length], dst[from:])
		case dist >= 16 && len(dst)-op >= length+16:
			// Sixteen bytes at a time, each at least sixteen behind what
			// it writes, up to fifteen past the match: later output
			// covers them.
			for k := 0; k < length; k += 16 {
				w0 := binary.LittleEndian.Uint64(dst[from+k:])
				w1 := binary.LittleEndian.Uint64(dst[from+k+8:])
				binary.LittleEndian.PutUint64(dst[op+k:], w0)
				binary.LittleEndian.PutUint64(dst[op+k+8:], w1)
			}
		case dist >= 8 && len(dst)-op >= length+8:
			// Likewise eight at a time.
			for k := 0; k < length; k += 8 {
				binary.LittleEndian.PutUint64(dst[op+k:], binary.LittleEndian.Uint64(dst[from+k:]))
			}
		case len(dst)-op >= length+8:
			// A run of a pattern shorter than eight bytes: its first
			// bytes one at a time, then words from a whole number of
			// patterns back, at least eight.
			d2 := dist * ((8 + dist - 1) / dist)
			k := 0
			for ; k < d2-dist && k < length; k++ {
				dst[op+k] = dst[from+k]
			}
			for ; k < length; k += 8 {
				binary.LittleEndian.PutUint64(dst[op+k:], binary.LittleEndian.Uint64(dst[op+k-d2:]))
			}
		default:
			for k := range length {
				dst[op+k] = dst[from+k]
			}
		}
		op += length
	}
}
