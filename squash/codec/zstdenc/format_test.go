package zstdenc

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// decodeOffset is RFC 8878 section 3.1.2.5 written from the decoder's side,
// as an independent check of offsetValue.
func decodeOffset(reps *[3]uint32, ll, ov uint32) uint32 {
	if ov > 3 {
		off := ov - 3
		reps[0], reps[1], reps[2] = off, reps[0], reps[1]
		return off
	}
	idx := ov - 1
	if ll == 0 {
		idx++
	}
	var off uint32
	switch idx {
	case 0:
		return reps[0]
	case 1:
		off = reps[1]
		reps[0], reps[1] = off, reps[0]
		return off
	case 2:
		off = reps[2]
	default: // ll == 0 and Offset_Value 3
		off = reps[0] - 1
	}
	reps[0], reps[1], reps[2] = off, reps[0], reps[1]
	return off
}

func TestOffsetValue(t *testing.T) {
	cases := []struct {
		reps   [3]uint32
		ll     uint32
		off    uint32
		wantOV uint32
		want   [3]uint32
	}{
		{[3]uint32{1, 4, 8}, 5, 1, 1, [3]uint32{1, 4, 8}},
		{[3]uint32{1, 4, 8}, 5, 4, 2, [3]uint32{4, 1, 8}},
		{[3]uint32{1, 4, 8}, 5, 8, 3, [3]uint32{8, 1, 4}},
		{[3]uint32{1, 4, 8}, 5, 9, 12, [3]uint32{9, 1, 4}},
		{[3]uint32{10, 4, 8}, 0, 4, 1, [3]uint32{4, 10, 8}},
		{[3]uint32{10, 4, 8}, 0, 8, 2, [3]uint32{8, 10, 4}},
		{[3]uint32{10, 4, 8}, 0, 9, 3, [3]uint32{9, 10, 4}},
		// rep1 after a match cannot use a repeat code
		{[3]uint32{10, 4, 8}, 0, 10, 13, [3]uint32{10, 10, 4}},
	}
	for _, c := range cases {
		reps := c.reps
		ov := offsetValue(&reps, c.ll, c.off)
		if ov != c.wantOV || reps != c.want {
			t.Errorf("offsetValue(%v, ll=%d, off=%d) = %d, reps %v; want %d, %v", c.reps, c.ll, c.off, ov, reps, c.wantOV, c.want)
		}
	}
	r := rand.New(rand.NewPCG(9, 9))
	enc, dec := [3]uint32{1, 4, 8}, [3]uint32{1, 4, 8}
	for i := 0; i < 100000; i++ {
		ll := uint32(r.IntN(3))
		off := enc[r.IntN(3)] + uint32(r.IntN(3)) - 1
		if r.IntN(4) == 0 {
			off = 1 + uint32(r.IntN(20))
		}
		if off == 0 {
			off = 1
		}
		ov := offsetValue(&enc, ll, off)
		if got := decodeOffset(&dec, ll, ov); got != off || enc != dec {
			t.Fatalf("step %d: off %d ll %d coded %d decodes to %d; reps %v vs %v", i, off, ll, ov, got, enc, dec)
		}
	}
}

// TestCodeTables checks the length codes against their base/extra-bits
// definitions at every boundary.
func TestCodeTables(t *testing.T) {
	for ll := uint32(0); ll < 1<<17; ll++ { // a block holds at most 128 KiB
		c := llCode(ll)
		if ll < llBase[c] || ll-llBase[c] >= 1<<llBits[c] {
			t.Fatalf("llCode(%d) = %d: base %d bits %d", ll, c, llBase[c], llBits[c])
		}
	}
	for ml := uint32(3); ml < 1<<17; ml++ {
		c := mlCode(ml)
		if ml < mlBase[c] || ml-mlBase[c] >= 1<<mlBits[c] {
			t.Fatalf("mlCode(%d) = %d: base %d bits %d", ml, c, mlBase[c], mlBits[c])
		}
	}
}

// TestCodesExercised makes sure the round-trip data really reaches the
// unusual corners: every repeat code with and without literals, and the
// largest match-length code.
func TestCodesExercised(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	// Matches at alternating distances, with matches following matches.
	src := randBytes(r, 8192)
	dists := []int{400, 1000, 1500, 999, 3000}
	for len(src) < 120<<10 {
		if r.IntN(3) == 0 {
			src = append(src, randBytes(r, 1+r.IntN(3))...)
		}
		d := dists[r.IntN(len(dists))]
		s := len(src) - d
		for k := 0; k < 6+r.IntN(10); k++ {
			src = append(src, src[s+k])
		}
	}
	long := bytes.Repeat(randBytes(r, 333), 390) // one block, one long match
	d := newDecoder(t)
	type key struct {
		ll0 bool
		ov  uint32
	}
	seen := map[key]bool{}
	maxML := uint32(0)
	for _, lvl := range testLevels {
		e := NewEncoder(lvl)
		roundTrip(t, e, d, src, true)
		for _, s := range e.seqs {
			if s.offVal <= 3 {
				seen[key{s.litLen == 0, s.offVal}] = true
			}
		}
		roundTrip(t, e, d, long, true)
		for _, s := range e.seqs {
			maxML = max(maxML, s.matchLen)
		}
	}
	for _, ll0 := range []bool{false, true} {
		for ov := uint32(1); ov <= 3; ov++ {
			if !seen[key{ll0, ov}] {
				t.Errorf("repeat code %d with ll==0 %v never used", ov, ll0)
			}
		}
	}
	if mlCode(maxML) != maxMLCode {
		t.Errorf("longest match %d does not use the largest length code", maxML)
	}
}

// TestReuse checks that an encoder gives identical output when reused and
// that it does not depend on what it encoded before.
func TestReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	a := textLike(r, 200<<10)
	b := randBytes(r, 50<<10)
	e1 := NewEncoder(DefaultLevel)
	first := e1.Encode(nil, a)
	e1.Encode(nil, b)
	e1.Encode(nil, nil)
	again := e1.Encode(nil, a)
	fresh := NewEncoder(DefaultLevel).Encode(nil, a)
	if !bytes.Equal(first, again) || !bytes.Equal(first, fresh) {
		t.Fatal("output depends on encoder history")
	}
}

// TestLevelsClamp: any int is a valid level.
func TestLevelsClamp(t *testing.T) {
	d := newDecoder(t)
	src := textLike(rand.New(rand.NewPCG(1, 1)), 10000)
	for _, lvl := range []int{-100, 0, MinLevel, MaxLevel, 99} {
		roundTrip(t, NewEncoder(lvl), d, src, false)
	}
}

// FuzzEncode: any input must give a frame both decoders accept. The seeds
// run as part of the ordinary test.
func FuzzEncode(f *testing.F) {
	f.Add(byte(3), []byte{})
	f.Add(byte(1), []byte("a"))
	f.Add(byte(6), bytes.Repeat([]byte("abc"), 100))
	f.Add(byte(2), []byte("hello hello hello, hello world world"))
	f.Add(byte(4), append(bytes.Repeat([]byte{0}, 5000), 1, 2, 3, 0, 0, 0, 0))
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	encs := map[int]*Encoder{}
	f.Fuzz(func(t *testing.T, level byte, src []byte) {
		lvl := int(level)%MaxLevel + 1
		if encs[lvl] == nil {
			encs[lvl] = NewEncoder(lvl)
		}
		frame := encs[lvl].Encode(nil, src)
		got, err := d.DecodeAll(frame, nil)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("level %d, %d bytes: round trip failed: %v", lvl, len(src), err)
		}
	})
}
