package codec

import (
	"errors"
	"fmt"

	"github.com/pierrec/lz4/v4"

	"github.com/squashportage/squashportage/squash/codec/lz4enc"
)

// lz4Encoder writes raw LZ4 blocks (no frame), as the kernel's
// LZ4_decompress_safe expects.
type lz4Encoder struct {
	hc   bool
	fast lz4enc.Encoder
	high lz4.CompressorHC
}

func newLZ4Encoder(c Config) *lz4Encoder {
	// Level 9 is LZ4_compressHC's default (what mksquashfs -Xhc uses); the
	// library's unlimited depth is ~70x slower for a few percent.
	return &lz4Encoder{hc: c.Options.HC, high: lz4.CompressorHC{Level: lz4.Level9}}
}

func (e *lz4Encoder) Compress(dst, src []byte) ([]byte, error) {
	if !e.hc {
		out, ok := e.fast.Encode(dst, src)
		if !ok {
			// Incompressible: hand back something not smaller than src so
			// the caller stores the block uncompressed.
			return append(dst, src...), nil
		}
		return out, nil
	}
	bound := lz4.CompressBlockBound(len(src))
	start := len(dst)
	dst = grow(dst, bound)
	n, err := e.high.CompressBlock(src, dst[start:start+bound])
	if err != nil {
		return dst[:start], fmt.Errorf("lz4: compress: %w", err)
	}
	if n == 0 {
		// Incompressible: hand back something not smaller than src so the
		// caller stores the block uncompressed.
		return append(dst[:start], src...), nil
	}
	return dst[:start+n], nil
}

// grow makes room for n more bytes after len(b) without changing len(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

type lz4Decoder struct{}

// Decompress cannot detect a stream truncated at a sequence boundary (raw
// LZ4 blocks have no end marker or length); callers that know the expected
// size should compare it with the returned count.
func (lz4Decoder) Decompress(dst, src []byte) (int, error) {
	if len(src) == 0 {
		return 0, errors.New("lz4: decompress: empty input")
	}
	n, err := lz4.UncompressBlock(src, dst)
	if err != nil {
		// The library reports a too-small dst and corrupt input alike;
		// either way the block cannot be decoded within the limit.
		return 0, fmt.Errorf("lz4: decompress: %w", err)
	}
	return n, nil
}
