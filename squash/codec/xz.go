package codec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"

	"github.com/squashportage/squashportage/squash/codec/lzma2"
	"github.com/squashportage/squashportage/squash/codec/lzma2dec"
)

// The xz container is written and parsed here rather than by
// github.com/ulikunitz/xz because that package can neither write BCJ
// filters nor limit the dictionary a hostile stream asks for. Raw LZMA2 is
// encoded by our own lzma2 package (ulikunitz's greedy encoder is 15%
// larger than liblzma -6 on kernel-source blocks, ours within 0.1%) and
// decoded by our lzma2dec, twice ulikunitz's speed and decoding straight
// into the caller's buffer.

const (
	xzFilterX86      = 0x04
	xzFilterPowerPC  = 0x05
	xzFilterIA64     = 0x06
	xzFilterARM      = 0x07
	xzFilterARMThumb = 0x08
	xzFilterSPARC    = 0x09
	xzFilterLZMA2    = 0x21

	xzCheckNone   = 0x00
	xzCheckCRC32  = 0x01
	xzCheckCRC64  = 0x04
	xzCheckSHA256 = 0x0a

	xzHeaderSize = 12

	// xzNiceLen is where the parser stops looking for longer matches.
	// Measured on the Portage-like tree (mksquashfs -comp xz: 113.3 MB,
	// 113 s of CPU): 16 gives 115.9 MB in 110 s, 32 110.9 MB in 149 s,
	// 64 109.5 MB in 175 s. 32 stays below mksquashfs's size for about
	// its build time on two cores.
	xzNiceLen = 32
)

var (
	xzMagic     = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	xzFooterMag = []byte{'Y', 'Z'}
	crc64Table  = crc64.MakeTable(crc64.ECMA)
)

// lzma2DictProp returns the smallest LZMA2 dictionary property byte whose
// size is >= d; sizes are 2^n and 3*2^(n-1) from 4 KiB.
func lzma2DictProp(d int) byte {
	for p := byte(0); p < 40; p++ {
		if lzma2DictSize(p) >= uint64(d) {
			return p
		}
	}
	return 40
}

func lzma2DictSize(p byte) uint64 {
	if p >= 40 {
		return 0xffffffff
	}
	return uint64(2|p&1) << (p/2 + 11)
}

type xzEncoder struct {
	dict    int
	filters uint32
	fast    bool
	enc     *lzma2.Encoder
	lz      []byte // raw LZMA2 output of one attempt
	filt    []byte // BCJ-filtered copy of the input
	best    []byte // smallest xz stream so far
	cur     []byte
}

func newXZEncoder(c Config) (*xzEncoder, error) {
	return &xzEncoder{dict: c.xzDict(), filters: c.Options.Filters, fast: c.Options.Fast}, nil
}

func (e *xzEncoder) Compress(dst, src []byte) ([]byte, error) {
	var err error
	// Like mksquashfs: try plain LZMA2 and every requested BCJ filter, keep
	// the smallest stream.
	if e.best, err = e.stream(e.best[:0], src, src, bcjFilter{}); err != nil {
		return dst, err
	}
	for bit, f := range bcjByBit {
		if e.filters&(1<<bit) == 0 {
			continue
		}
		e.filt = append(e.filt[:0], src...)
		f.conv(e.filt, true)
		if e.cur, err = e.stream(e.cur[:0], src, e.filt, f); err != nil {
			return dst, err
		}
		if len(e.cur) < len(e.best) {
			e.best, e.cur = e.cur, e.best
		}
	}
	return append(dst, e.best...), nil
}

// stream appends one complete single-block xz stream (CRC32 check) whose
// LZMA2 input is filtered and whose uncompressed content is orig.
func (e *xzEncoder) stream(out, orig, filtered []byte, f bcjFilter) ([]byte, error) {
	if e.enc == nil {
		e.enc = lzma2.NewEncoder(e.dict)
		e.enc.SetNiceLen(xzNiceLen)
		e.enc.SetFast(e.fast)
	}
	e.lz = e.enc.Encode(e.lz[:0], filtered)
	lz := e.lz

	base := len(out)
	out = append(out, xzMagic...)
	out = append(out, 0, xzCheckCRC32)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE([]byte{0, xzCheckCRC32}))

	// Block header, with both sizes so readers can check them.
	bh := len(out)
	nf := byte(0)
	if f.id != 0 {
		nf = 1
	}
	out = append(out, 0, 0xc0|nf)
	out = appendVLI(out, uint64(len(lz)))
	out = appendVLI(out, uint64(len(orig)))
	if f.id != 0 {
		out = appendVLI(out, f.id)
		out = append(out, 0) // no properties: start offset 0
	}
	out = append(out, xzFilterLZMA2, 1, lzma2DictProp(e.dict))
	for (len(out)-bh+4)%4 != 0 {
		out = append(out, 0)
	}
	bhSize := len(out) - bh + 4
	out[bh] = byte(bhSize/4 - 1)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out[bh:]))

	out = append(out, lz...)
	for (len(out)-base)%4 != 0 {
		out = append(out, 0)
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(orig))

	idx := len(out)
	out = append(out, 0, 1)
	out = appendVLI(out, uint64(bhSize+len(lz)+4))
	out = appendVLI(out, uint64(len(orig)))
	for (len(out)-idx)%4 != 0 {
		out = append(out, 0)
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out[idx:]))
	idxSize := len(out) - idx

	var foot [6]byte
	binary.LittleEndian.PutUint32(foot[:], uint32(idxSize/4-1))
	foot[5] = xzCheckCRC32
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(foot[:]))
	out = append(out, foot[:]...)
	out = append(out, xzFooterMag...)
	return out, nil
}

func appendVLI(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// readVLI decodes an xz variable-length integer (at most 9 bytes, minimal
// encoding) at b[*p].
func readVLI(b []byte, p *int) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if *p >= len(b) {
			return 0, errors.New("truncated integer")
		}
		c := b[*p]
		*p++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, errors.New("non-minimal integer")
			}
			return v, nil
		}
	}
	return 0, errors.New("integer too long")
}

type xzDecoder struct {
	dictMax int // largest LZMA2 dictionary accepted, like the kernel's dict_max
	lz      *lzma2dec.Decoder
}

func newXZDecoder(dictMax int) *xzDecoder { return &xzDecoder{dictMax: dictMax} }

func (d *xzDecoder) Decompress(dst, src []byte) (int, error) {
	n, err := d.decode(dst, src)
	if err != nil {
		return 0, fmt.Errorf("xz: decompress: %w", err)
	}
	return n, nil
}

func xzCheckSize(check byte) int {
	switch {
	case check == 0:
		return 0
	case check <= 3:
		return 4
	case check <= 6:
		return 8
	case check <= 9:
		return 16
	case check <= 12:
		return 32
	}
	return 64
}

type xzRecord struct{ unpadded, uncompressed uint64 }

func (d *xzDecoder) decode(dst, src []byte) (int, error) {
	le := binary.LittleEndian
	if len(src) < 2*xzHeaderSize {
		return 0, errors.New("stream too short")
	}
	if !bytes.Equal(src[:6], xzMagic) {
		return 0, errors.New("bad stream header magic")
	}
	if src[6] != 0 || src[7]&0xf0 != 0 {
		return 0, errors.New("unsupported stream flags")
	}
	if crc32.ChecksumIEEE(src[6:8]) != le.Uint32(src[8:]) {
		return 0, errors.New("stream header checksum mismatch")
	}
	check := src[7]
	csz := xzCheckSize(check)

	foot := src[len(src)-xzHeaderSize:]
	if !bytes.Equal(foot[10:], xzFooterMag) {
		return 0, errors.New("bad stream footer magic (multiple streams or padding are not supported)")
	}
	if crc32.ChecksumIEEE(foot[4:10]) != le.Uint32(foot) {
		return 0, errors.New("stream footer checksum mismatch")
	}
	if !bytes.Equal(foot[8:10], src[6:8]) {
		return 0, errors.New("stream footer flags differ from header")
	}
	idxSize := (uint64(le.Uint32(foot[4:])) + 1) * 4
	if idxSize > uint64(len(src)-2*xzHeaderSize) {
		return 0, errors.New("index size out of range")
	}
	idxStart := len(src) - xzHeaderSize - int(idxSize)

	var recs []xzRecord
	var recBuf [4]xzRecord
	recs = recBuf[:0]
	pos, op := xzHeaderSize, 0
	for pos < idxStart && src[pos] != 0 {
		blockStart := pos
		hsize := (int(src[pos]) + 1) * 4
		if hsize > idxStart-pos {
			return op, errors.New("block header out of range")
		}
		hdr := src[pos : pos+hsize]
		if crc32.ChecksumIEEE(hdr[:hsize-4]) != le.Uint32(hdr[hsize-4:]) {
			return op, errors.New("block header checksum mismatch")
		}
		body := hdr[:hsize-4]
		flags := body[1]
		if flags&0x3c != 0 {
			return op, errors.New("reserved block flags set")
		}
		p := 2
		var csize, usize uint64
		haveC, haveU := flags&0x40 != 0, flags&0x80 != 0
		var err error
		if haveC {
			if csize, err = readVLI(body, &p); err != nil {
				return op, fmt.Errorf("block compressed size: %w", err)
			}
			if csize == 0 {
				return op, errors.New("block compressed size is zero")
			}
		}
		if haveU {
			if usize, err = readVLI(body, &p); err != nil {
				return op, fmt.Errorf("block uncompressed size: %w", err)
			}
		}
		var bcj bcjFilter
		dictProp := byte(0xff)
		nf := int(flags&3) + 1
		for i := 0; i < nf; i++ {
			id, err := readVLI(body, &p)
			if err != nil {
				return op, fmt.Errorf("filter id: %w", err)
			}
			psz, err := readVLI(body, &p)
			if err != nil {
				return op, fmt.Errorf("filter properties size: %w", err)
			}
			if psz > uint64(len(body)-p) {
				return op, errors.New("filter properties out of range")
			}
			props := body[p : p+int(psz)]
			p += int(psz)
			last := i == nf-1
			switch {
			case id == xzFilterLZMA2 && last:
				if psz != 1 || props[0] > 40 {
					return op, errors.New("bad lzma2 properties")
				}
				dictProp = props[0]
			case !last && i == 0 && nf == 2:
				f, ok := bcjByID(id)
				if !ok {
					return op, fmt.Errorf("unsupported filter %#x", id)
				}
				if psz == 4 && le.Uint32(props) != 0 {
					return op, errors.New("bcj filter start offset is not supported")
				} else if psz != 0 && psz != 4 {
					return op, errors.New("bad bcj filter properties")
				}
				bcj = f
			default:
				return op, fmt.Errorf("unsupported filter chain (filter %#x at position %d of %d)", id, i, nf)
			}
		}
		for _, c := range body[p:] {
			if c != 0 {
				return op, errors.New("non-zero block header padding")
			}
		}
		dict := lzma2DictSize(dictProp)
		if dict > uint64(d.dictMax) {
			return op, fmt.Errorf("lzma2 dictionary %d exceeds the allowed %d", dict, d.dictMax)
		}
		pos += hsize

		// LZMA2 data.
		region := src[pos:idxStart]
		if haveC {
			if csize > uint64(len(region)) {
				return op, errors.New("block compressed size out of range")
			}
			region = region[:csize]
		}
		room := len(dst) - op
		if haveU && usize > uint64(room) {
			return op, ErrOutputLimit
		}
		if d.lz == nil {
			d.lz = lzma2dec.NewDecoder()
		}
		// The output is the dictionary window: no allocation of the
		// declared size, and nothing past len(dst).
		got, used, err := d.lz.Decode(dst[op:op:len(dst)], region, int(dict))
		if err != nil {
			if errors.Is(err, lzma2dec.ErrOutputTooLarge) {
				return op, fmt.Errorf("lzma2: %w: %w", ErrOutputLimit, err)
			}
			return op, fmt.Errorf("lzma2: %w", err)
		}
		n := len(got)
		if n > 0 && &got[0] != &dst[op] {
			copy(dst[op:], got)
		}
		if haveC && used != len(region) {
			return op, errors.New("block compressed size mismatch")
		}
		if haveU && uint64(n) != usize {
			return op, errors.New("block uncompressed size mismatch")
		}
		out := dst[op : op+n]
		if bcj.conv != nil {
			bcj.conv(out, false)
		}
		pos += used
		unpadded := uint64(pos-blockStart) + uint64(csz)
		for pos%4 != 0 {
			if pos >= idxStart || src[pos] != 0 {
				return op, errors.New("bad block padding")
			}
			pos++
		}
		if csz > idxStart-pos {
			return op, errors.New("truncated block check")
		}
		if err := verifyCheck(check, out, src[pos:pos+csz]); err != nil {
			return op, err
		}
		pos += csz
		op += n
		recs = append(recs, xzRecord{unpadded, uint64(n)})
	}
	if pos != idxStart {
		return op, errors.New("index not where the footer says")
	}
	if err := checkIndex(src[idxStart:len(src)-xzHeaderSize], recs); err != nil {
		return op, err
	}
	return op, nil
}

func verifyCheck(check byte, data, want []byte) error {
	le := binary.LittleEndian
	switch check {
	case xzCheckCRC32:
		if crc32.ChecksumIEEE(data) != le.Uint32(want) {
			return errors.New("crc32 mismatch")
		}
	case xzCheckCRC64:
		if crc64.Checksum(data, crc64Table) != le.Uint64(want) {
			return errors.New("crc64 mismatch")
		}
	case xzCheckSHA256:
		sum := sha256.Sum256(data)
		if !bytes.Equal(sum[:], want) {
			return errors.New("sha256 mismatch")
		}
	}
	// Other check types are reserved ids xz itself cannot compute; skipping
	// them matches xz's behaviour for unsupported checks.
	return nil
}

func checkIndex(idx []byte, recs []xzRecord) error {
	if len(idx) < 8 || idx[0] != 0 {
		return errors.New("bad index")
	}
	body := idx[:len(idx)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(idx[len(idx)-4:]) {
		return errors.New("index checksum mismatch")
	}
	p := 1
	n, err := readVLI(body, &p)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if n != uint64(len(recs)) {
		return errors.New("index record count mismatch")
	}
	for _, r := range recs {
		u, err := readVLI(body, &p)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		s, err := readVLI(body, &p)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		if u != r.unpadded || s != r.uncompressed {
			return errors.New("index record mismatch")
		}
	}
	if len(body)-p > 3 {
		return errors.New("index too long")
	}
	for _, c := range body[p:] {
		if c != 0 {
			return errors.New("non-zero index padding")
		}
	}
	return nil
}
