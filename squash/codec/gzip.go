package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zlib"

	"github.com/squashportage/squashportage/squash/codec/deflate"
)

// appendWriter lets stream compressors append straight into the caller's
// dst slice, so a Compress call allocates nothing once dst has capacity.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// gzipEncoder writes zlib (RFC 1950) streams, which is what squashfs calls
// "gzip". The levels package deflate has (deflate.MinLevel up) are its;
// lower ones are klauspost's, whose fast encoders persist's metadata uses. Both always
// use a 32 KiB window: Options.WindowSize is only recorded in the options
// blob. That is safe because every squashfs reader (kernel and
// unsquashfs) inflates with the maximum window.
type gzipEncoder struct {
	own *deflate.Encoder
	w   *zlib.Writer
	out appendWriter
}

func newGzipEncoder(c Config) (*gzipEncoder, error) {
	e := &gzipEncoder{}
	lv := c.gzipLevel()
	if lv >= deflate.MinLevel {
		e.own = deflate.NewEncoder(lv)
		return e, nil
	}
	w, err := zlib.NewWriterLevel(&e.out, lv)
	if err != nil {
		return nil, fmt.Errorf("gzip: new compressor: %w", err)
	}
	e.w = w
	return e, nil
}

func (e *gzipEncoder) Compress(dst, src []byte) ([]byte, error) {
	if e.own != nil {
		return e.own.Encode(dst, src), nil
	}
	e.out.b = dst
	e.w.Reset(&e.out)
	if _, err := e.w.Write(src); err != nil {
		return dst, fmt.Errorf("gzip: compress: %w", err)
	}
	if err := e.w.Close(); err != nil {
		return dst, fmt.Errorf("gzip: compress: %w", err)
	}
	out := e.out.b
	e.out.b = nil
	return out, nil
}

type gzipDecoder struct {
	src bytes.Reader
	r   io.ReadCloser
}

func newGzipDecoder() *gzipDecoder { return &gzipDecoder{} }

func (d *gzipDecoder) Decompress(dst, src []byte) (int, error) {
	d.src.Reset(src)
	if d.r == nil {
		r, err := zlib.NewReader(&d.src)
		if err != nil {
			return 0, fmt.Errorf("gzip: decompress: %w", err)
		}
		d.r = r
	} else if err := d.r.(zlib.Resetter).Reset(&d.src, nil); err != nil {
		return 0, fmt.Errorf("gzip: decompress: %w", err)
	}
	n, err := readAllInto(d.r, dst)
	if err != nil {
		return n, fmt.Errorf("gzip: decompress: %w", err)
	}
	if d.src.Len() != 0 {
		return n, fmt.Errorf("gzip: decompress: %d bytes of trailing garbage", d.src.Len())
	}
	return n, nil
}

// readAllInto fills dst from r until EOF, failing if r has more data than
// fits. Reading to EOF matters: stream checksums are verified only there.
func readAllInto(r io.Reader, dst []byte) (int, error) {
	n := 0
	for n < len(dst) {
		k, err := r.Read(dst[n:])
		n += k
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.ErrNoProgress
		}
	}
	var one [1]byte
	for {
		k, err := r.Read(one[:])
		if k > 0 {
			return n, ErrOutputLimit
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.ErrNoProgress
		}
	}
}
