package codec

import (
	"errors"
	"fmt"
)

// lzoDecoder decodes LZO1X streams (every lzo1x_* compressor mksquashfs
// offers emits this one format). Written from the bitstream description in
// the kernel's Documentation/staging/lzo.rst; every read and write is bounds
// checked because images are untrusted.
type lzoDecoder struct{}

var (
	errLZOInput    = errors.New("truncated input")
	errLZODistance = errors.New("match distance before start of output")
)

func (lzoDecoder) Decompress(dst, src []byte) (int, error) {
	n, err := lzo1xDecompress(dst, src)
	if err != nil {
		return 0, fmt.Errorf("lzo: decompress: %w", err)
	}
	return n, nil
}

// lzoLength decodes the variable-length extension used when an opcode's
// length bits are all zero: a run of zero bytes each worth 255, then a
// non-zero byte added as is.
func lzoLength(src []byte, ip *int, base int) (int, error) {
	n := base
	i := *ip
	for {
		if i >= len(src) {
			return 0, errLZOInput
		}
		b := src[i]
		i++
		if b != 0 {
			n += int(b)
			break
		}
		n += 255
		// No block is anywhere near this long; stop hostile runs early.
		if n > 1<<24 {
			return 0, errors.New("length overflow")
		}
	}
	*ip = i
	return n, nil
}

func lzo1xDecompress(dst, src []byte) (int, error) {
	ip, op := 0, 0
	// state is how many literals the previous instruction copied (4 = "4 or
	// more"); it changes the meaning of opcodes 0..15.
	state := 0

	copyLit := func(n int) error {
		if n > len(src)-ip {
			return errLZOInput
		}
		if n > len(dst)-op {
			return ErrOutputLimit
		}
		copy(dst[op:], src[ip:ip+n])
		ip += n
		op += n
		return nil
	}

	if len(src) == 0 {
		return 0, errLZOInput
	}
	// Linux's decompressor treats a leading 17 as a bitstream version marker
	// (version 1 is zram's lzo-rle, which squashfs never produces).
	if len(src) >= 5 && src[0] == 17 {
		if src[1] != 0 {
			return 0, fmt.Errorf("unsupported lzo bitstream version %d", src[1])
		}
		ip = 2
	}
	if ip < len(src) && src[ip] > 17 {
		t := int(src[ip]) - 17
		ip++
		if err := copyLit(t); err != nil {
			return 0, err
		}
		state = min(t, 4)
	}

	for {
		if ip >= len(src) {
			return 0, errLZOInput
		}
		t := int(src[ip])
		ip++
		var length, dist, next int
		switch {
		case t >= 64:
			if ip >= len(src) {
				return 0, errLZOInput
			}
			if t >= 128 {
				length = 5 + (t>>5)&3
			} else {
				length = 3 + (t>>5)&1
			}
			dist = int(src[ip])<<3 + (t>>2)&7 + 1
			ip++
			next = t & 3
		case t >= 32:
			length = t & 31
			if length == 0 {
				var err error
				if length, err = lzoLength(src, &ip, 31); err != nil {
					return 0, err
				}
			}
			length += 2
			if len(src)-ip < 2 {
				return 0, errLZOInput
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = v>>2 + 1
			next = v & 3
		case t >= 16:
			length = t & 7
			if length == 0 {
				var err error
				if length, err = lzoLength(src, &ip, 7); err != nil {
					return 0, err
				}
			}
			length += 2
			if len(src)-ip < 2 {
				return 0, errLZOInput
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = 16384 + (t&8)<<11 + v>>2
			next = v & 3
			if dist == 16384 {
				// End of stream; the only valid form is 0x11 0x00 0x00 and
				// it must be the last input byte.
				if length != 3 || next != 0 {
					return 0, errors.New("malformed end of stream marker")
				}
				if ip != len(src) {
					return 0, fmt.Errorf("%d bytes of trailing garbage", len(src)-ip)
				}
				return op, nil
			}
		default: // 0..15: meaning depends on state
			if state == 0 {
				length = t
				if length == 0 {
					var err error
					if length, err = lzoLength(src, &ip, 15); err != nil {
						return 0, err
					}
				}
				if err := copyLit(length + 3); err != nil {
					return 0, err
				}
				state = 4
				continue
			}
			if ip >= len(src) {
				return 0, errLZOInput
			}
			if state == 4 {
				length = 3
				dist = int(src[ip])<<2 + (t>>2)&3 + 2049
			} else {
				length = 2
				dist = int(src[ip])<<2 + (t>>2)&3 + 1
			}
			ip++
			next = t & 3
		}

		if dist > op {
			return 0, errLZODistance
		}
		if length > len(dst)-op {
			return 0, ErrOutputLimit
		}
		from := op - dist
		if dist >= length {
			copy(dst[op:op+length], dst[from:from+length])
			op += length
		} else {
			// Overlapping copy repeats the last dist bytes; byte order matters.
			for i := 0; i < length; i++ {
				dst[op] = dst[from+i]
				op++
			}
		}
		if err := copyLit(next); err != nil {
			return 0, err
		}
		state = next
	}
}
