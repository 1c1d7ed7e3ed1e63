package squash

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// A block sum record is what our writer appends, with WriterOptions.
// BlockSums, after an image's 4 KiB padding: a CRC-32C of the stored bytes
// of every data and fragment block. The kernel and other tools read only
// bytes_used bytes and never see it. A fold checks the blocks it copies
// verbatim against it, which costs a read of them instead of decompressing
// them all; images without one (mksquashfs's) are checked by decoding.
//
//	"SPBSUMS1"                   magic
//	u32 CRC-32C of the superblock (the record's image, not an older one's)
//	u32 count
//	u32 CRC-32C of the entries
//	u32 zero
//	count × {u64 position, u32 CRC-32C of the block's stored bytes}
const (
	sumsMagic      = "SPBSUMS1"
	sumsHeaderSize = 24
	sumsEntrySize  = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// blockSum is one entry of a record.
type blockSum struct {
	pos uint64
	crc uint32
}

// sumsStart is where an image's record starts: after the padding.
func sumsStart(bytesUsed uint64) uint64 { return (bytesUsed + 4095) &^ 4095 }

// appendSums encodes a record for the image whose superblock is sb.
func appendSums(b, sb []byte, sums []blockSum) []byte {
	le := binary.LittleEndian
	var ents []byte
	for _, s := range sums {
		ents = le.AppendUint64(ents, s.pos)
		ents = le.AppendUint32(ents, s.crc)
	}
	b = append(b, sumsMagic...)
	b = le.AppendUint32(b, blockCRC(sb[:SuperblockSize]))
	b = le.AppendUint32(b, uint32(len(sums)))
	b = le.AppendUint32(b, blockCRC(ents))
	b = le.AppendUint32(b, 0)
	return append(b, ents...)
}

// BlockSums returns the block sum record after the image, by block
// position; false when there is none, or one that does not check out
// (another image's, or damaged), which callers treat alike: decode.
func (r *Reader) BlockSums() (map[uint64]uint32, bool) {
	start := sumsStart(r.size)
	if r.fileSize < sumsHeaderSize || start > uint64(r.fileSize)-sumsHeaderSize {
		return nil, false
	}
	var head [sumsHeaderSize]byte
	if readFullAt(r.ra, head[:], int64(start)) != nil || !bytes.Equal(head[:8], []byte(sumsMagic)) {
		return nil, false
	}
	le := binary.LittleEndian
	var sb [SuperblockSize]byte
	if readFullAt(r.ra, sb[:], 0) != nil || le.Uint32(head[8:]) != blockCRC(sb[:]) {
		return nil, false
	}
	n := uint64(le.Uint32(head[12:]))
	if n*sumsEntrySize > uint64(r.fileSize)-start-sumsHeaderSize {
		return nil, false
	}
	ents := make([]byte, n*sumsEntrySize)
	if err := readFullAt(r.ra, ents, int64(start+sumsHeaderSize)); err != nil {
		return nil, false
	}
	if le.Uint32(head[16:]) != blockCRC(ents) {
		return nil, false
	}
	m := make(map[uint64]uint32, n)
	for i := uint64(0); i < n; i++ {
		e := ents[i*sumsEntrySize:]
		m[le.Uint64(e)] = le.Uint32(e[8:])
	}
	return m, true
}
