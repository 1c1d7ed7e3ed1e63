package blockindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// A delta encodes an index against the index of an earlier image, for a
// client that holds that image: a persist keeps the unchanged blocks in
// their order, so the new index is mostly runs of the old one's entries.
// Little-endian:
//
//	"SPIDXD01"   magic
//	[32]byte     SHA-256 of the base index's encoding
//	u64          size of the new image
//	[32]byte     SHA-256 of the new image
//	u32          number of operations
//	operations:  'c' u32 first u32 count   (entries of the base)
//	             'l' u32 count, count entries as in the index
//
// Patch rebuilds the new index's encoding exactly; the client checks it
// against the index's signed hash like a downloaded one.
const deltaMagic = "SPIDXD01"

// Diff encodes next against base.
func Diff(base, next *Index) []byte {
	baseEnc, _ := base.MarshalBinary()
	pos := make(map[[entrySize]byte]uint32, len(base.Blocks))
	for i := len(base.Blocks) - 1; i >= 0; i-- {
		pos[entryOf(base.Blocks[i])] = uint32(i)
	}
	le := binary.LittleEndian
	var ops []byte
	nops := uint32(0)
	var lits []Block
	flushLits := func() {
		if len(lits) == 0 {
			return
		}
		ops = append(ops, 'l')
		ops = le.AppendUint32(ops, uint32(len(lits)))
		for _, bl := range lits {
			e := entryOf(bl)
			ops = append(ops, e[:]...)
		}
		nops++
		lits = lits[:0]
	}
	for i := 0; i < len(next.Blocks); {
		j, ok := pos[entryOf(next.Blocks[i])]
		if !ok {
			lits = append(lits, next.Blocks[i])
			i++
			continue
		}
		n := uint32(1)
		for i+int(n) < len(next.Blocks) && int(j+n) < len(base.Blocks) && entryOf(next.Blocks[i+int(n)]) == entryOf(base.Blocks[j+n]) {
			n++
		}
		flushLits()
		ops = append(ops, 'c')
		ops = le.AppendUint32(ops, j)
		ops = le.AppendUint32(ops, n)
		nops++
		i += int(n)
	}
	flushLits()
	bsum := sha256.Sum256(baseEnc)
	b := append([]byte(deltaMagic), bsum[:]...)
	b = le.AppendUint64(b, next.Size)
	b = append(b, next.SHA256[:]...)
	b = le.AppendUint32(b, nops)
	return append(b, ops...)
}

func entryOf(bl Block) [entrySize]byte {
	var e [entrySize]byte
	binary.LittleEndian.PutUint32(e[:], bl.Len)
	e[4] = bl.Kind
	copy(e[5:], bl.Sum[:])
	return e
}

// ErrBase is returned by Patch when the delta was made against another
// index than base.
var ErrBase = errors.New("the delta's base is another index")

// Patch applies delta to base and returns the new index's encoding.
func Patch(base *Index, delta []byte) ([]byte, error) {
	le := binary.LittleEndian
	const head = 8 + 32 + 8 + 32 + 4
	if len(delta) < head || !bytes.Equal(delta[:8], []byte(deltaMagic)) {
		return nil, errors.New("not an index delta (bad magic)")
	}
	baseEnc, _ := base.MarshalBinary()
	if sha256.Sum256(baseEnc) != [32]byte(delta[8:40]) {
		return nil, ErrBase
	}
	nops := le.Uint32(delta[80:])
	ops := delta[head:]
	var entries []byte
	count := uint32(0)
	bad := errors.New("index delta: damaged")
	for range nops {
		if len(ops) < 5 {
			return nil, bad
		}
		switch ops[0] {
		case 'c':
			if len(ops) < 9 {
				return nil, bad
			}
			from, n := uint64(le.Uint32(ops[1:])), uint64(le.Uint32(ops[5:]))
			if from+n > uint64(len(base.Blocks)) {
				return nil, fmt.Errorf("index delta: copies entries %d..%d of %d", from, from+n, len(base.Blocks))
			}
			entries = append(entries, baseEnc[headSize+from*entrySize:headSize+(from+n)*entrySize]...)
			count += uint32(n)
			ops = ops[9:]
		case 'l':
			n := uint64(le.Uint32(ops[1:]))
			if uint64(len(ops)-5) < n*entrySize {
				return nil, bad
			}
			entries = append(entries, ops[5:5+n*entrySize]...)
			count += uint32(n)
			ops = ops[5+n*entrySize:]
		default:
			return nil, bad
		}
	}
	if len(ops) != 0 {
		return nil, bad
	}
	b := append([]byte(magic), delta[40:80]...) // size, SHA-256
	b = le.AppendUint32(b, count)
	return append(b, entries...), nil
}
