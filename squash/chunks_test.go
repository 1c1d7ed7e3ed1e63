package squash

import (
	"bytes"
	"testing"
)

func TestChunks(t *testing.T) {
	for _, n := range []int{0, 1, chunkLen - 1, chunkLen, chunkLen + 1, 3*chunkLen + 17} {
		var c chunks[byte]
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		// Appends of uneven sizes that cross chunk boundaries.
		for rest, k := want, 1; len(rest) > 0; k = k*3 + 1 {
			k = min(k, len(rest))
			c.append(rest[:k]...)
			rest = rest[k:]
		}
		var got []byte
		c.pieces(func(p []byte) error { got = append(got, p...); return nil })
		if c.len() != n || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: pieces give %d bytes, len %d, equal %v", n, len(got), c.len(), bytes.Equal(got, want))
		}
	}
	var r chunks[uint64]
	r.grow(5)
	r.set(4, 40)
	r.grow(2*chunkLen + 3) // a number far ahead: the ones between read 0
	r.set(2*chunkLen+2, 99)
	r.grow(3) // never shrinks
	if r.len() != 2*chunkLen+3 || r.at(4) != 40 || r.at(2*chunkLen+2) != 99 || r.at(chunkLen) != 0 {
		t.Errorf("refs: len %d, at(4) %d, at(last) %d, at(chunkLen) %d", r.len(), r.at(4), r.at(2*chunkLen+2), r.at(chunkLen))
	}
}
