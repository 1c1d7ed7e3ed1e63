package deflate

import "encoding/binary"

// bitWriter packs deflate's LSB-first bit stream, appending to out.
type bitWriter struct {
	out []byte
	acc uint64
	n   uint // bits held in acc, < 32 between calls
}

// bits writes the low nb (<= 32) bits of v.
func (w *bitWriter) bits(v uint32, nb uint) {
	w.acc |= uint64(v) << w.n
	w.n += nb
	if w.n >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.acc))
		w.acc >>= 32
		w.n -= 32
	}
}

// align pads with zero bits to a byte boundary and flushes every whole byte.
func (w *bitWriter) align() {
	w.n = (w.n + 7) &^ 7
	for w.n > 0 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
	w.acc = 0
}
