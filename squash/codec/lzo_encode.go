package codec

import (
	"encoding/binary"

	"github.com/squashportage/squashportage/squash/codec/internal/lz"
)

// lzoEncoder writes LZO1X streams, the format every lzo1x_* compressor of
// mksquashfs emits and the kernel's lzo1x_decompress_safe reads, from the
// same bitstream description as the decoder. Matches come from hash chains
// of four-byte prefixes, chosen for what they save over their instruction's
// size, with one position of lazy evaluation (the next position's match is
// taken instead when it saves more). mksquashfs's default, lzo1x_999,
// parses harder. zstd makes smaller images and lz4 faster ones (the
// README's tables), so lzo is here for images that must be lzo (appending
// to one, a kernel built with it alone).
type lzoEncoder struct {
	head [1 << lzoHashLog]int32
	prev []int32 // per position: the previous one with the same hash
	next int     // positions before this are in the chains
}

const (
	lzoHashLog = 15
	lzoDepth   = 32 // candidates looked at per position
	// The instructions' reach: M2 (two bytes, 3 to 8 long) 2048 back, M3
	// 16384, M4 49151.
	lzoM2Dist  = 2048
	lzoM3Dist  = 16384
	lzoMaxDist = 49151
	// lzoFirstLits is the most literals the first byte of a stream can
	// announce (17 + n, n up to 238).
	lzoFirstLits = 238
)

func lzoHash(src []byte, p int) uint32 {
	return (binary.LittleEndian.Uint32(src[p:]) * 2654435761) >> (32 - lzoHashLog)
}

// insertTo puts the positions before p into the chains.
func (e *lzoEncoder) insertTo(src []byte, p int) {
	for ; e.next < p && e.next+4 <= len(src); e.next++ {
		h := lzoHash(src, e.next)
		e.prev[e.next] = e.head[h]
		e.head[h] = int32(e.next)
	}
}

// lzoCost is the size of the instruction for a match of l bytes d back.
func lzoCost(d, l int) int {
	switch {
	case l <= 8 && d <= lzoM2Dist:
		return 2
	case d <= lzoM3Dist && l <= 33, d > lzoM3Dist && l <= 9:
		return 3
	}
	return 4 + (l-34)/255
}

// find returns the match at p that saves the most over its instruction
// (length, distance and bytes saved; saved <= 0 when none pays).
func (e *lzoEncoder) find(src []byte, p int) (l, d, saved int) {
	e.insertTo(src, p)
	if p+4 > len(src) {
		return 0, 0, 0
	}
	c := int(e.head[lzoHash(src, p)])
	for depth := lzoDepth; depth > 0 && c >= 0 && p-c <= lzoMaxDist; depth-- {
		if ml := lz.MatchLen(src, c, p, len(src)); ml >= 3 {
			dist := p - c
			if ml == 3 && dist > lzoM2Dist {
				c = int(e.prev[c])
				continue
			}
			if s := ml - lzoCost(dist, ml); s > saved {
				l, d, saved = ml, dist, s
			}
		}
		c = int(e.prev[c])
	}
	return l, d, saved
}

func (e *lzoEncoder) Compress(dst, src []byte) ([]byte, error) {
	for i := range e.head {
		e.head[i] = -1
	}
	if cap(e.prev) < len(src) {
		e.prev = make([]int32, len(src))
	}
	e.prev = e.prev[:len(src)]
	e.next = 0
	out := dst
	n := len(src)
	// patch is where the two low bits that count the (up to three)
	// literals after the last match go; -1 before the first match.
	patch := -1
	lit := 0 // the first literal not yet written
	ip := 0
	l, d, saved := e.find(src, ip)
	for ip+4 <= n {
		if saved <= 0 {
			ip++
			l, d, saved = e.find(src, ip)
			continue
		}
		// A match one further on that saves more wins over this one.
		if l2, d2, s2 := e.find(src, ip+1); s2 > saved {
			ip++
			l, d, saved = l2, d2, s2
			continue
		}
		out = lzoLiterals(out, src[lit:ip], patch)
		out, patch = lzoMatch(out, d, l)
		ip += l
		lit = ip
		l, d, saved = e.find(src, ip)
	}
	out = lzoLiterals(out, src[lit:], patch)
	return append(out, 0x11, 0, 0), nil // end of stream: M4 with distance 16384
}

// lzoLiterals writes a run of literals: after a match, one to three of them
// are counted in its low bits (at patch); more take an instruction of their
// own, as does any run at the start of the stream.
func lzoLiterals(out, lits []byte, patch int) []byte {
	k := len(lits)
	switch {
	case k == 0:
		return out
	case patch < 0 && k <= lzoFirstLits:
		out = append(out, byte(17+k))
	case patch >= 0 && k <= 3:
		out[patch] |= byte(k)
	case k-3 <= 15:
		out = append(out, byte(k-3))
	default:
		out = lzoPutLength(append(out, 0), k-3-15)
	}
	return append(out, lits...)
}

// lzoPutLength writes what an instruction's length field could not hold:
// zero bytes worth 255 each, then the rest (1 to 255).
func lzoPutLength(out []byte, rest int) []byte {
	for ; rest > 255; rest -= 255 {
		out = append(out, 0)
	}
	return append(out, byte(rest))
}

// lzoMatch writes a match of l bytes (at least 3) d bytes back, in the
// shortest instruction that reaches it, and returns where the count of the
// literals after it goes.
func lzoMatch(out []byte, d, l int) ([]byte, int) {
	switch {
	case l <= 8 && d <= lzoM2Dist:
		at := len(out)
		return append(out, byte((l-1)<<5|((d-1)&7)<<2), byte((d-1)>>3)), at
	case d <= lzoM3Dist:
		if l <= 33 {
			out = append(out, byte(32|(l-2)))
		} else {
			out = lzoPutLength(append(out, 32), l-33)
		}
		v := (d - 1) << 2
		at := len(out)
		return append(out, byte(v), byte(v>>8)), at
	default:
		dd := d - lzoM3Dist
		t := byte(16 | (dd>>11)&8)
		if l <= 9 {
			out = append(out, t|byte(l-2))
		} else {
			out = lzoPutLength(append(out, t), l-9)
		}
		v := (dd & 0x3fff) << 2
		at := len(out)
		return append(out, byte(v), byte(v>>8)), at
	}
}
