// Package progress draws a progress bar on a terminal for the long
// commands (unsquashfs, verify, persist).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether w is a terminal, the only place a progress bar
// that redraws itself with \r makes sense.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Bar draws "[=====>    ]  42%  12.3 MB/s  ETA 0:07" on one line.
// Update is cheap to call often: it redraws at most every 100 ms.
type Bar struct {
	w     io.Writer
	unit  string // "B" for bytes, "" for plain counts
	start time.Time
	now   func() time.Time

	mu      sync.Mutex
	last    time.Time
	drawn   bool
	lastLen int
}

// NewBar returns a bar writing to w; unit "B" shows rates in bytes.
func NewBar(w io.Writer, unit string) *Bar {
	return &Bar{w: w, unit: unit, start: time.Now(), now: time.Now}
}

// Update redraws the bar if enough time passed or the work is complete.
func (b *Bar) Update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.now()
	if done < total && t.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = t
	line := b.render(done, total, t.Sub(b.start))
	pad := ""
	if n := b.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
	b.lastLen = len(line)
	b.drawn = true
}

// Done ends the bar's line so later output starts on a fresh one.
func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

func (b *Bar) render(done, total int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	fill := int(frac * width)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	s := fmt.Sprintf("[%s] %3d%%", bar, int(frac*100))
	secs := elapsed.Seconds()
	if secs > 0 && done > 0 {
		rate := float64(done) / secs
		s += "  " + humanRate(rate, b.unit)
		if done < total {
			eta := time.Duration(float64(total-done) / rate * float64(time.Second))
			s += "  ETA " + clock(eta)
		}
	}
	return s
}

func humanRate(r float64, unit string) string {
	if unit == "" {
		return fmt.Sprintf("%.0f/s", r)
	}
	for _, p := range []string{"", "k", "M", "G"} {
		if r < 1000 || p == "G" {
			return fmt.Sprintf("%.1f %s%s/s", r, p, unit)
		}
		r /= 1000
	}
	return ""
}

func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// Percent writes the whole percentage done, one a line, each time it
// changes: the -percentage form of mksquashfs and unsquashfs 4.6, for
// dialog --gauge and the like.
type Percent struct {
	w    io.Writer
	mu   sync.Mutex
	last int
}

// NewPercent returns a Percent writing to w.
func NewPercent(w io.Writer) *Percent { return &Percent{w: w, last: -1} }

// Update writes the percentage if it changed.
func (p *Percent) Update(done, total int64) {
	pct := 100
	if total > 0 && done < total {
		pct = int(done * 100 / total)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pct != p.last {
		p.last = pct
		fmt.Fprintf(p.w, "%d\n", pct)
	}
}

// Done does nothing: each percentage has its line.
func (p *Percent) Done() {}

// Reporter is a Bar or a Percent.
type Reporter interface {
	Update(done, total int64)
	Done()
}
