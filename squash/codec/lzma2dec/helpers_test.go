package lzma2dec

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz/lzma"

	"github.com/squashportage/squashportage/squash/codec/lzma2"
)

// xzRaw compresses data with xz-utils to a raw LZMA2 stream; opts is the
// --lzma2 option string.
func xzRaw(tb testing.TB, data []byte, opts string) []byte {
	tb.Helper()
	path, err := exec.LookPath("xz")
	if err != nil {
		tb.Fatal("xz not installed (apt-get install xz-utils)")
	}
	cmd := exec.Command(path, "--format=raw", "--lzma2="+opts, "-c")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("xz %s: %v: %s", opts, err, stderr.String())
	}
	return out
}

func ourEncode(data []byte, dict int) []byte {
	return lzma2.NewEncoder(dict).Encode(nil, data)
}

func ulikunitzEncode(tb testing.TB, data []byte, dict int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := lzma.Writer2Config{DictCap: dict}.NewWriter2(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// ulikunitzDecode decodes the way squash/codec did before this package,
// reading at most limit+1 bytes so a hostile stream cannot run away.
func ulikunitzDecode(src []byte, dict, limit int) ([]byte, error) {
	r, err := lzma.Reader2Config{DictCap: max(dict, lzma.MinDictCap)}.NewReader2(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, int64(limit)+1))
}

var words = strings.Fields(`the of and to in is that for it as with was on be by
	this are or from at which an have not has but were they their its also
	kernel struct return int static void const unsigned long if else while
	ebuild DEPEND RDEPEND SLOT KEYWORDS amd64 x86 arm64 LICENSE GPL-2 IUSE
	src_configure econf emake DESCRIPTION HOMEPAGE https://example.org`)

// pseudoText is deterministic word salad with line structure, close
// enough to source and metadata for the literal and match coders.
func pseudoText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		w := words[r.IntN(len(words))]
		b.WriteString(w)
		switch r.IntN(10) {
		case 0:
			b.WriteString("\n\t")
		case 1:
			fmt.Fprintf(&b, "=%d ", r.IntN(1000))
		default:
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// repoText returns this repository's Go sources next to the package: real
// code, stable while the tests run.
func repoText(tb testing.TB) []byte {
	tb.Helper()
	files, _ := filepath.Glob("../*.go")
	var b []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		b = append(b, data...)
	}
	if len(b) == 0 {
		tb.Fatal("no Go sources found in ..")
	}
	return b
}

// rcEnc is a minimal LZMA range encoder for crafting streams bit by bit;
// probabilities are keyed by name so a test only names the ones it uses.
type rcEnc struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int
	out       []byte
	probs     map[string]*uint16
}

func newRCEnc() *rcEnc {
	return &rcEnc{rng: 0xffffffff, cacheSize: 1, probs: map[string]*uint16{}}
}

func (e *rcEnc) prob(key string) *uint16 {
	p := e.probs[key]
	if p == nil {
		p = new(uint16)
		*p = probInit
		e.probs[key] = p
	}
	return p
}

func (e *rcEnc) bit(key string, b uint32) {
	p := e.prob(key)
	bound := (e.rng >> probBits) * uint32(*p)
	if b == 0 {
		e.rng = bound
		*p += (probTotal - *p) >> probShiftM
	} else {
		e.low += uint64(bound)
		e.rng -= bound
		*p -= *p >> probShiftM
	}
	for e.rng < rcTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (e *rcEnc) shiftLow() {
	if uint32(e.low) < 0xff000000 || e.low >= 1<<32 {
		carry := byte(e.low >> 32)
		t := e.cache
		for {
			e.out = append(e.out, t+carry)
			t = 0xff
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = (e.low & 0x00ffffff) << 8
}

func (e *rcEnc) tree(key string, n uint, v uint32) {
	m := uint32(1)
	for i := int(n) - 1; i >= 0; i-- {
		b := v >> uint(i) & 1
		e.bit(fmt.Sprintf("%s/%d", key, m), b)
		m = m<<1 | b
	}
}

func (e *rcEnc) finish() []byte {
	for range 5 {
		e.shiftLow()
	}
	return e.out
}

// The crafting helpers below assume lc=3, lp=0, pb=0 (props byte 3) and
// track only what the tests need: the state and the previous byte.
type crafter struct {
	*rcEnc
	state int
	prev  byte
	n     int
}

func newCrafter() *crafter { return &crafter{rcEnc: newRCEnc()} }

func (c *crafter) literal(b byte) {
	c.bit(fmt.Sprintf("isMatch/%d", c.state), 0)
	if c.state >= 7 {
		panic("crafter: matched literals not supported")
	}
	c.tree(fmt.Sprintf("lit/%d", c.prev>>5), 8, uint32(b))
	c.state = int(litNext[c.state])
	c.prev = b
	c.n++
}

func (c *crafter) length(key string, l int) {
	l -= minMatch
	switch {
	case l < 8:
		c.bit(key+"/choice", 0)
		c.tree(key+"/low", 3, uint32(l))
	case l < 16:
		c.bit(key+"/choice", 1)
		c.bit(key+"/choice2", 0)
		c.tree(key+"/mid", 3, uint32(l-8))
	default:
		c.bit(key+"/choice", 1)
		c.bit(key+"/choice2", 1)
		c.tree(key+"/high", 8, uint32(l-16))
	}
}

// match encodes a new match of length l with a distance slot below 4,
// i.e. distance slot+1.
func (c *crafter) match(l int, slot uint32) {
	c.bit(fmt.Sprintf("isMatch/%d", c.state), 1)
	c.bit(fmt.Sprintf("isRep/%d", c.state), 0)
	c.length("matchLen", l)
	c.tree(fmt.Sprintf("slot/%d", min(l-minMatch, 3)), 6, slot)
	c.state = map[bool]int{true: 7, false: 10}[c.state < 7]
	c.n += l
}

// rep0 encodes a match of length l at the last distance.
func (c *crafter) rep0(l int) {
	c.bit(fmt.Sprintf("isMatch/%d", c.state), 1)
	c.bit(fmt.Sprintf("isRep/%d", c.state), 1)
	c.bit(fmt.Sprintf("isRepG0/%d", c.state), 0)
	c.bit(fmt.Sprintf("isRep0Long/%d", c.state), 1)
	c.length("repLen", l)
	c.state = map[bool]int{true: 8, false: 11}[c.state < 7]
	c.n += l
}

// lzmaChunk wraps compressed data in an LZMA2 chunk header.
func lzmaChunk(ctrl byte, usize, csize int, props int, data []byte) []byte {
	u, c := usize-1, csize-1
	b := []byte{ctrl | byte(u>>16), byte(u >> 8), byte(u), byte(c >> 8), byte(c)}
	if props >= 0 {
		b = append(b, byte(props))
	}
	return append(b, data...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
