package codec

import "encoding/binary"

// BCJ filters rewrite relative branch targets in machine code to absolute
// ones (encode) and back (decode) so repeated calls to one function become
// repeated byte strings for LZMA2. They follow the xz file format's "simple"
// filters; every block is filtered in one call starting at offset 0, which is
// how a whole xz block is filtered.

// bcjFilter is one xz BCJ filter: its xz filter id and an in-place converter.
type bcjFilter struct {
	id   uint64
	conv func(buf []byte, encode bool)
}

// bcjByBit is indexed by the bit number in Options.Filters.
var bcjByBit = [...]bcjFilter{
	{xzFilterX86, bcjX86},
	{xzFilterPowerPC, bcjPowerPC},
	{xzFilterIA64, bcjIA64},
	{xzFilterARM, bcjARM},
	{xzFilterARMThumb, bcjARMThumb},
	{xzFilterSPARC, bcjSPARC},
}

func bcjByID(id uint64) (bcjFilter, bool) {
	for _, f := range bcjByBit {
		if f.id == id {
			return f, true
		}
	}
	return bcjFilter{}, false
}

func rel(v, pos uint32, encode bool) uint32 {
	if encode {
		return v + pos
	}
	return v - pos
}

// x86MSByteOK reports whether b looks like the top byte of a near 32-bit
// displacement (forward or backward), the only ones worth converting.
func x86MSByteOK(b byte) bool { return b == 0 || b == 0xff }

func bcjX86(buf []byte, encode bool) {
	// prevMask remembers which of the previous bytes were E8/E9 opcodes that
	// were left alone, to avoid converting operands of earlier instructions.
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	if len(buf) < 5 {
		return
	}
	prevPos := -5
	prevMask := uint32(0)
	for i := 0; i <= len(buf)-5; {
		b := buf[i]
		if b != 0xe8 && b != 0xe9 {
			i++
			continue
		}
		offset := i - prevPos
		prevPos = i
		if offset > 5 {
			prevMask = 0
		} else {
			for k := 0; k < offset; k++ {
				prevMask &= 0x77
				prevMask <<= 1
			}
		}
		b = buf[i+4]
		if x86MSByteOK(b) && allowed[(prevMask>>1)&7] && prevMask>>1 < 0x10 {
			src := binary.LittleEndian.Uint32(buf[i+1:])
			var dest uint32
			for {
				dest = rel(src, uint32(i+5), encode)
				if prevMask == 0 {
					break
				}
				n := bitNum[prevMask>>1]
				b = byte(dest >> (24 - n*8))
				if !x86MSByteOK(b) {
					break
				}
				src = dest ^ (1<<(32-n*8) - 1)
			}
			// Sign-extend bit 24 into the top byte so it stays 00 or FF.
			dest = dest&0x01ffffff | -(dest>>24&1)<<25
			binary.LittleEndian.PutUint32(buf[i+1:], dest)
			i += 5
			prevMask = 0
		} else {
			i++
			prevMask |= 1
			if x86MSByteOK(b) {
				prevMask |= 0x10
			}
		}
	}
}

func bcjPowerPC(buf []byte, encode bool) {
	for i := 0; i+4 <= len(buf); i += 4 {
		// "bl" with AA=0, LK=1 (big endian).
		if buf[i]>>2 != 0x12 || buf[i+3]&3 != 1 {
			continue
		}
		src := binary.BigEndian.Uint32(buf[i:]) & 0x03fffffc
		dest := rel(src, uint32(i), encode)
		binary.BigEndian.PutUint32(buf[i:], 0x48000000|dest&0x03fffffc|1)
	}
}

func bcjARM(buf []byte, encode bool) {
	for i := 0; i+4 <= len(buf); i += 4 {
		if buf[i+3] != 0xeb { // BL, condition "always"
			continue
		}
		src := (uint32(buf[i+2])<<16 | uint32(buf[i+1])<<8 | uint32(buf[i])) << 2
		dest := rel(src, uint32(i+8), encode) >> 2
		buf[i+2], buf[i+1], buf[i] = byte(dest>>16), byte(dest>>8), byte(dest)
	}
}

func bcjARMThumb(buf []byte, encode bool) {
	for i := 0; i+4 <= len(buf); i += 2 {
		// A Thumb BL is two halfwords: 11110 hi-offset, 11111 lo-offset.
		if buf[i+1]&0xf8 != 0xf0 || buf[i+3]&0xf8 != 0xf8 {
			continue
		}
		src := (uint32(buf[i+1]&7)<<19 | uint32(buf[i])<<11 | uint32(buf[i+3]&7)<<8 | uint32(buf[i+2])) << 1
		dest := rel(src, uint32(i+4), encode) >> 1
		buf[i+1] = 0xf0 | byte(dest>>19)&7
		buf[i] = byte(dest >> 11)
		buf[i+3] = 0xf8 | byte(dest>>8)&7
		buf[i+2] = byte(dest)
		i += 2
	}
}

func bcjSPARC(buf []byte, encode bool) {
	for i := 0; i+4 <= len(buf); i += 4 {
		// "call" whose 30-bit displacement is a sign-extended 22-bit value.
		if !(buf[i] == 0x40 && buf[i+1]&0xc0 == 0) && !(buf[i] == 0x7f && buf[i+1]&0xc0 == 0xc0) {
			continue
		}
		src := binary.BigEndian.Uint32(buf[i:]) << 2
		dest := rel(src, uint32(i), encode) >> 2
		dest = (-(dest>>22&1)<<22)&0x3fffffff | dest&0x3fffff | 0x40000000
		binary.BigEndian.PutUint32(buf[i:], dest)
	}
}

func bcjIA64(buf []byte, encode bool) {
	// Which of the three 41-bit slots of a 128-bit bundle may hold a branch,
	// per bundle template (low 5 bits of the bundle).
	branchSlots := [32]byte{
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		4, 4, 6, 6, 0, 0, 7, 7,
		4, 4, 0, 0, 4, 4, 0, 0,
	}
	for i := 0; i+16 <= len(buf); i += 16 {
		mask := branchSlots[buf[i]&0x1f]
		for slot, bitPos := 0, 5; slot < 3; slot, bitPos = slot+1, bitPos+41 {
			if mask>>slot&1 == 0 {
				continue
			}
			bytePos, bitRes := bitPos>>3, uint(bitPos&7)
			var instr uint64
			for j := 0; j < 6; j++ {
				instr |= uint64(buf[i+j+bytePos]) << (8 * j)
			}
			norm := instr >> bitRes
			if norm>>37&0xf != 0x5 || norm>>9&0x7 != 0 {
				continue
			}
			src := uint32(norm>>13&0xfffff) | uint32(norm>>36&1)<<20
			src <<= 4
			dest := rel(src, uint32(i), encode) >> 4
			norm &^= uint64(0x8fffff) << 13
			norm |= uint64(dest&0xfffff) << 13
			norm |= uint64(dest&0x100000) << (36 - 20)
			instr &= 1<<bitRes - 1
			instr |= norm << bitRes
			for j := 0; j < 6; j++ {
				buf[i+j+bytePos] = byte(instr >> (8 * j))
			}
		}
	}
}
