package codec

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

var words = []string{"the", "squashfs", "inode", "block", "fragment", "directory", "table",
	"compressed", "metadata", "kernel", "portage", "ebuild", "license", "KEYWORDS", "amd64",
	"x86", "DEPEND", "RDEPEND", "src_compile", "{", "}", "=", "\"", "#", "if", "then", "fi"}

// textData mimics the source trees squashportage packs: words, numbers,
// indentation and line breaks, deterministic per seed.
func textData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	var b bytes.Buffer
	for b.Len() < n {
		for i := r.IntN(4); i > 0; i-- {
			b.WriteByte('\t')
		}
		for w := 3 + r.IntN(8); w > 0; w-- {
			if r.IntN(8) == 0 {
				b.WriteString(strconv.Itoa(r.IntN(100000)))
			} else {
				b.WriteString(words[r.IntN(len(words))])
			}
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

func randData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// binaryData returns up to n bytes of a real executable (so BCJ filters see
// real call instructions), or nil when none is readable.
func binaryData(t testing.TB, n int) []byte {
	self, _ := os.Executable() // the test binary: always there
	for _, p := range []string{"/usr/bin/bash", "/bin/bash", "/usr/bin/ls", "/bin/ls", self} {
		b, err := os.ReadFile(p)
		if err == nil && len(b) >= n {
			return b[len(b)/4 : len(b)/4+n]
		}
	}
	t.Log("no executable found for binary test data")
	return nil
}
