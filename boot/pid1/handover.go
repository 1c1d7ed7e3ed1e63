package pid1

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The handover time is measured from the kernel's exec of /init, which
// main cannot see (the Go runtime starts first): the kernel logs "Run
// /init as init process" just before that exec, and PID 1 logs its first
// line to /dev/kmsg too. Both records carry the kernel's timestamp, so
// their difference is the time from exec to that line in one clock; the
// rest, to the exec of the real init, is measured with Go's monotonic
// clock from the moment that line was written.

// handover is what the handover line is made of.
type handover struct {
	start  time.Time // main's start
	clock  *execClock
	waited waits
}

// waits is the part of main's time spent blocked on the kernel rather
// than in PID 1's own work: module loading (the kernel checks each
// module's signature and runs its init) and the root device's
// appearance. The line names them apart, as they are the kernel's cost:
// under QEMU's instruction clock nine signed modules of Debian's kernel
// take most of the handover.
type waits struct {
	modules time.Duration // blocked on module loading
	nmod    int           // modules loaded
	rootDev time.Duration // waiting for the root device
}

// line is the handover line for an exec of init, inMain after main
// started.
func (h handover) line(init string, inMain time.Duration) string {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	fromExec := "?"
	if d, ok := h.clock.sinceExec(); ok {
		fromExec = ms(d)
	}
	own := max(inMain-h.waited.modules-h.waited.rootDev, 0)
	return fmt.Sprintf("handover: %s from the start of /init to the exec of %s (%s in main: %s loading %d modules, %s waiting for the root device, %s of our own)",
		fromExec, init, ms(inMain), ms(h.waited.modules), h.waited.nmod, ms(h.waited.rootDev), ms(own))
}

// startMarker is the start of PID 1's first log line.
const startMarker = "squashportage: starting; "

// execClock is the time from the kernel's exec of /init to PID 1's
// first line (the mark), once read from /dev/kmsg.
type execClock struct {
	mark   time.Time
	toMark chan time.Duration // one value; negative if unknown
}

// startExecClock records the mark (call right after the first line went
// to /dev/kmsg) and reads the kernel log in the background.
func startExecClock() *execClock {
	c := &execClock{mark: time.Now(), toMark: make(chan time.Duration, 1)}
	go func() {
		defer func() {
			if recover() != nil {
				c.toMark <- -1
			}
		}()
		d, err := kmsgExecToMark("/dev/kmsg")
		if err != nil {
			d = -1
		}
		c.toMark <- d
	}()
	return c
}

// sinceExec returns the time since the kernel's exec of /init, or false
// when the kernel log did not tell (no /dev/kmsg, records overwritten).
func (c *execClock) sinceExec() (time.Duration, bool) {
	if c == nil {
		return 0, false
	}
	var d time.Duration
	select {
	case d = <-c.toMark:
		c.toMark <- d // keep it for a later attempt
	case <-time.After(time.Second):
		return 0, false
	}
	if d < 0 {
		return 0, false
	}
	return d + time.Since(c.mark), true
}

// kmsgExecToMark reads the kernel log from its oldest record and returns
// the time from "Run ... as init process" to the first record starting
// with startMarker.
func kmsgExecToMark(path string) (time.Duration, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	var run time.Duration = -1
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records overwritten while reading: go on
		}
		if err != nil || n <= 0 {
			return 0, errors.New("no exec and start records in the kernel log")
		}
		ts, msg, ok := parseKmsg(string(buf[:n]))
		if !ok {
			continue
		}
		switch {
		case run < 0 && strings.HasPrefix(msg, "Run ") && strings.HasSuffix(msg, " as init process"):
			run = ts
		case run >= 0 && strings.HasPrefix(msg, startMarker):
			return ts - run, nil
		}
	}
}

// parseKmsg splits one /dev/kmsg record, "PRI,SEQ,USEC,FLAGS;MESSAGE\n"
// plus continuation lines, into its timestamp and first message line.
func parseKmsg(rec string) (time.Duration, string, bool) {
	head, msg, ok := strings.Cut(rec, ";")
	if !ok {
		return 0, "", false
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return 0, "", false
	}
	us, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return 0, "", false
	}
	msg, _, _ = strings.Cut(msg, "\n")
	return time.Duration(us) * time.Microsecond, msg, true
}
