// Package kmsg reads what the kernel logged about a failed operation: a
// mount's EINVAL does not say which option overlayfs disliked, its log
// line does.
package kmsg

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Tail is /dev/kmsg opened at its end.
type Tail struct{ f *os.File }

// Open opens /dev/kmsg at its end, so that Lines returns only what is
// logged afterwards; nil when it cannot be read (no /dev/kmsg, no right).
func Open() *Tail {
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_END); err != nil {
		f.Close()
		return nil
	}
	return &Tail{f}
}

// Lines returns up to max messages logged since Open that contain one of
// keys (all of them without keys), without their record prefixes.
func (t *Tail) Lines(max int, keys ...string) []string {
	if t == nil {
		return nil
	}
	var out []string
	buf := make([]byte, 8192)
	for range 1000 {
		if len(out) >= max {
			break
		}
		n, err := unix.Read(int(t.f.Fd()), buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records were overwritten; keep reading
		}
		if err != nil || n <= 0 {
			break
		}
		// Records are "prio,seq,usec,flags;message\n continuation".
		rec := string(buf[:n])
		if _, msg, ok := strings.Cut(rec, ";"); ok {
			rec = msg
		}
		msg, _, _ := strings.Cut(rec, "\n")
		if len(keys) == 0 {
			out = append(out, msg)
			continue
		}
		for _, k := range keys {
			if strings.Contains(msg, k) {
				out = append(out, msg)
				break
			}
		}
	}
	return out
}

// Close closes the file; a nil Tail is fine.
func (t *Tail) Close() error {
	if t == nil {
		return nil
	}
	return t.f.Close()
}
