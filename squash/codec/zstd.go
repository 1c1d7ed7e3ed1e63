package codec

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// windowFor is the largest window a squashfs zstd reader accepts: the kernel
// sizes its window to max(block size, metadata block size).
func windowFor(blockSize int) int { return max(blockSize, metadataSize) }

type zstdEncoder struct{ enc *zstd.Encoder }

func newZstdEncoder(c Config) (*zstdEncoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(c.zstdLevel())),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(windowFor(c.BlockSize)),
		// A single-segment frame declares its content size and needs no
		// window beyond it, so any reader can decode it into the block buffer.
		zstd.WithSingleSegment(true),
		zstd.WithEncoderCRC(false),
		// Empty input must still produce a frame a reader can decode.
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd: new compressor: %w", err)
	}
	return &zstdEncoder{enc: enc}, nil
}

func (e *zstdEncoder) Compress(dst, src []byte) ([]byte, error) {
	return e.enc.EncodeAll(src, dst), nil
}

type zstdDecoder struct{ dec *zstd.Decoder }

func newZstdDecoder(c Config) (*zstdDecoder, error) {
	w := windowFor(c.BlockSize)
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(w)),
		zstd.WithDecoderMaxWindow(uint64(w)),
		// Bound DecodeAll by cap(dst) so a frame lying about its size
		// cannot make the decoder allocate past the caller's buffer.
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd: new decompressor: %w", err)
	}
	return &zstdDecoder{dec: dec}, nil
}

func (d *zstdDecoder) Decompress(dst, src []byte) (int, error) {
	if len(src) == 0 {
		return 0, errors.New("zstd: decompress: empty input")
	}
	out, err := d.dec.DecodeAll(src, dst[:0:len(dst)])
	if err != nil {
		if len(out) > len(dst) || err == zstd.ErrDecoderSizeExceeded {
			return 0, fmt.Errorf("zstd: decompress: %w: %w", ErrOutputLimit, err)
		}
		return 0, fmt.Errorf("zstd: decompress: %w", err)
	}
	if len(out) > len(dst) {
		return 0, fmt.Errorf("zstd: decompress: %w", ErrOutputLimit)
	}
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out)
	}
	return len(out), nil
}
