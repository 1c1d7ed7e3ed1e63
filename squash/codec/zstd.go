package codec

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"

	"github.com/squashportage/squashportage/squash/codec/zstdenc"
)

// windowFor is the largest window a squashfs zstd reader accepts: the kernel
// sizes its window to max(block size, metadata block size).
func windowFor(blockSize int) int { return max(blockSize, metadataSize) }

// zstdEncoder compresses with our own encoder (squash/codec/zstdenc) at
// mksquashfs's levels, where klauspost's best level is 5.8% larger than C
// zstd -15 on 128 KiB kernel-source blocks and ours 3.1% larger at its
// level 2, at over three times C's speed; levels below 10, asked for speed, go to
// klauspost's faster encoders.
type zstdEncoder struct {
	kp  *zstd.Encoder
	own *zstdenc.Encoder
}

// ownZstdLevel maps a zstd level (1..22) to our encoder's effort, 0 for
// levels left to klauspost. mksquashfs's default, 15, gets level 4: 1.5%
// larger than C -15 on 128 KiB kernel-source blocks at 1.4-1.8 times its
// speed. Whole builds at 2 processors, against squashfs-tools 4.7.5 in
// the same run: Linux 6.1 46.9 s and 1.016x its size (level 2: 32.1 s,
// 1.025x) against 77.1 s; the Portage-like tree 28.3 s and 0.965x (level
// 2: 23.3 s, 0.984x) against 50.9 s. Builds are to stay within 0.8x of
// the fastest peer's time; level 5 would leave little margin.
func ownZstdLevel(level int) int {
	switch {
	case level < 10:
		return 0
	case level < 12:
		return 1
	case level < 14:
		return 2
	case level < 15:
		return 3
	case level < 18:
		return zstdenc.DefaultLevel
	case level < 21:
		return 5
	}
	return zstdenc.MaxLevel
}

func newZstdEncoder(c Config) (*zstdEncoder, error) {
	if l := ownZstdLevel(c.zstdLevel()); l != 0 {
		return &zstdEncoder{own: zstdenc.NewEncoder(l)}, nil
	}
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
	return &zstdEncoder{kp: enc}, nil
}

func (e *zstdEncoder) Compress(dst, src []byte) ([]byte, error) {
	if e.own != nil {
		return e.own.Encode(dst, src), nil
	}
	return e.kp.EncodeAll(src, dst), nil
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
