package lzma2dec

import (
	"bytes"
	"testing"
)

const fuzzCap = 1 << 18

func FuzzDecode(f *testing.F) {
	seeds := [][]byte{
		pseudoText(3000, 51),
		cat(pseudoText(2000, 52), randomBytes(1500, 53), pseudoText(2000, 52)),
		make([]byte, 5000),
		{'a'},
	}
	for _, s := range seeds {
		f.Add(ourEncode(s, 1<<16), uint32(1<<16))
		f.Add(ulikunitzEncode(f, s, 1<<16), uint32(1<<16))
		f.Add(xzRaw(f, s, "preset=6,dict=64KiB"), uint32(1<<16))
		f.Add(xzRaw(f, s, "preset=1,dict=4KiB,lc=0,lp=2,pb=0"), uint32(4<<10))
	}
	f.Add([]byte{0}, uint32(4096))
	d := NewDecoder()
	dst := make([]byte, 0, fuzzCap)
	f.Fuzz(func(t *testing.T, src []byte, dict uint32) {
		dictSize := int(dict % (1<<20 + 1))
		out, n, err := d.Decode(dst, src, dictSize)
		if len(out) > fuzzCap || n < 0 || n > len(src) {
			t.Fatalf("out %d bytes, n %d of %d, err %v", len(out), n, len(src), err)
		}
		if err != nil {
			return
		}
		if n == 0 || src[n-1] != 0 {
			t.Fatalf("success without consuming the end marker (n %d)", n)
		}
		// Wherever ulikunitz also succeeds on the same bytes, the output
		// must agree. It reads a dictionary of at least 4 KiB, so only
		// compare when that cannot make a difference.
		if dictSize < 4096 {
			return
		}
		ref, rerr := ulikunitzDecode(src[:n], dictSize, fuzzCap)
		if rerr == nil && !bytes.Equal(out, ref) {
			t.Fatalf("output differs from ulikunitz: %d vs %d bytes", len(out), len(ref))
		}
	})
}
