package mksquashfs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := newProgressBar(&b, 10<<20)
	p.start = time.Now().Add(-2 * time.Second)
	b.Reset()
	p.update(5 << 20)
	if b.Len() != 0 {
		t.Errorf("redrawn within %v: %q", progressInterval, b.String())
	}
	p.last = time.Time{}
	p.update(5 << 20)
	got := b.String()
	for _, want := range []string{" 50%", "5.0/10.0 MB", "MB/s", "ETA 0:02"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar %q lacks %q", got, want)
		}
	}
	b.Reset()
	p.finish(true)
	if got := b.String(); !strings.Contains(got, "100%") || !strings.HasSuffix(got, "\n") {
		t.Errorf("final bar %q", got)
	}
	if isTerminal(&b) {
		t.Error("a buffer is not a terminal")
	}
}
