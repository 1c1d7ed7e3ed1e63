package squash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
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

// ErrHasBlockSums is what AddBlockSums returns for an image that has a
// record already.
var ErrHasBlockSums = errors.New("the image has a block sum record already")

// AddBlockSums verifies the image in f as Verify does, decoding every data
// and fragment block, and, if it is sound, records their sums after it
// (mksquashfs's images have none): a fold then reads the blocks it keeps
// instead of decompressing them all, which the first persist from such
// an image otherwise does. It returns the number of blocks recorded.
//
// Only what lies past the image's 4 KiB padding is written, which the
// kernel and other tools never read, so f may be mounted meanwhile; a
// record cut short by a crash does not check out and is ignored. It
// refuses f if it is not a regular file (on a device, the bytes after the
// image may be something else's) or if anything but padding follows the
// image, and returns ErrHasBlockSums if a record is there. It syncs f.
func AddBlockSums(ctx context.Context, f *os.File, opts VerifyOptions) (int, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file: what follows the image on it may be another's", f.Name())
	}
	r, err := NewReader(f, fi.Size())
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if _, ok := r.BlockSums(); ok {
		return 0, ErrHasBlockSums
	}
	start := sumsStart(r.size)
	if uint64(fi.Size()) > start {
		return 0, fmt.Errorf("%s: %d bytes follow the image's padding and are no block sum record; not overwriting them", f.Name(), uint64(fi.Size())-start)
	}
	opts.TrustedBelow = 0 // every block is decoded: the record vouches for them
	sums, err := r.verify(ctx, opts, true)
	if err != nil {
		return 0, err
	}
	var sb [SuperblockSize]byte
	if err := readFullAt(r.ra, sb[:], 0); err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(appendSums(nil, sb[:], sums), int64(start)); err != nil {
		return 0, fmt.Errorf("%s: write block sums: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("%s: sync: %w", f.Name(), err)
	}
	return len(sums), nil
}
