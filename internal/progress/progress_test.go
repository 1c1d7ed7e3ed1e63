package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	var b bytes.Buffer
	clock := time.Unix(1000, 0)
	bar := NewBar(&b, "B")
	bar.start, bar.now = clock, func() time.Time { return clock }
	clock = clock.Add(2 * time.Second)
	bar.Update(5<<20, 10<<20)
	got := b.String()
	for _, want := range []string{" 50%", "2.6 MB/s", "ETA 0:02", "[===============>"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar %q lacks %q", got, want)
		}
	}
	b.Reset()
	clock = clock.Add(10 * time.Millisecond)
	bar.Update(6<<20, 10<<20)
	if b.Len() != 0 {
		t.Errorf("redrawn within 100 ms: %q", b.String())
	}
	bar.Update(10<<20, 10<<20) // completion always draws
	bar.Done()
	if got := b.String(); !strings.Contains(got, "100%") || !strings.HasSuffix(got, "\n") {
		t.Errorf("final bar %q", got)
	}
	if IsTerminal(&b) {
		t.Error("a buffer is not a terminal")
	}
}

func TestPercent(t *testing.T) {
	var b strings.Builder
	p := NewPercent(&b)
	for _, d := range []int64{0, 1, 2, 50, 51, 99, 100} {
		p.Update(d, 100)
	}
	p.Update(0, 0) // nothing to do is all done
	if got, want := b.String(), "0\n1\n2\n50\n51\n99\n100\n"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
