package codec

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func benchConfigs() []Config {
	const bs = 131072
	return []Config{
		{ID: Gzip, BlockSize: bs},
		{ID: Gzip, BlockSize: bs, Options: Options{Level: 6}},
		{ID: LZ4, BlockSize: bs},
		{ID: LZ4, BlockSize: bs, Options: Options{HC: true}},
		{ID: Zstd, BlockSize: bs},
		{ID: Zstd, BlockSize: bs, Options: Options{Level: 3}},
		{ID: XZ, BlockSize: bs},
		{ID: XZ, BlockSize: bs, Options: Options{Filters: FilterX86}},
	}
}

func benchName(c Config) string {
	s := c.ID.String()
	switch {
	case c.Options.Level != 0:
		s += fmt.Sprintf("-l%d", c.Options.Level)
	case c.Options.HC:
		s += "-hc"
	case c.Options.Filters != 0:
		s += "-x86"
	}
	return s
}

// benchInput is 128 KiB of Go sources (real text) when GOROOT is readable,
// else synthetic text, whose tiny vocabulary makes gzip -9 pathologically slow.
func benchInput() []byte {
	var b []byte
	files, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", "net", "http", "*.go"))
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err == nil {
			b = append(b, d...)
		}
		if len(b) >= 131072 {
			return b[:131072]
		}
	}
	return textData(131072, 61)
}

// BenchmarkCompress measures one 128 KiB block of text per op, the writer's
// hot path.
func BenchmarkCompress(b *testing.B) {
	in := benchInput()
	for _, c := range benchConfigs() {
		b.Run(benchName(c), func(b *testing.B) {
			enc, err := c.NewEncoder()
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, len(in)+1024)
			out, _ := enc.Compress(dst[:0], in)
			b.ReportMetric(float64(len(out))/float64(len(in)), "ratio")
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := enc.Compress(dst[:0], in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	in := benchInput()
	for _, c := range benchConfigs() {
		b.Run(benchName(c), func(b *testing.B) {
			enc, _ := c.NewEncoder()
			dec, err := c.NewDecoder()
			if err != nil {
				b.Fatal(err)
			}
			comp, _ := enc.Compress(nil, in)
			out := make([]byte, len(in))
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := dec.Decompress(out, comp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
