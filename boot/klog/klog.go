// Package klog is PID 1's logger: every line goes to the console and,
// once /dev is mounted, to the kernel log, each with a "squashportage:"
// prefix so it can be found among the kernel's messages.
package klog

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Prefix starts every line.
const Prefix = "squashportage: "

// Logger writes to the console and the kernel log. It is safe for
// concurrent use (the signal goroutine logs too).
type Logger struct {
	mu      sync.Mutex
	console io.Writer
	kmsg    io.Writer
	debug   bool
}

// New logs to console only until SetKmsg.
func New(console io.Writer) *Logger { return &Logger{console: console} }

// SetKmsg adds /dev/kmsg as a destination.
func (l *Logger) SetKmsg(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kmsg = w
}

// SetDebug turns Debugf output on.
func (l *Logger) SetDebug(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.debug = on
}

// Printf logs a step.
func (l *Logger) Printf(format string, args ...any) { l.write("", format, args...) }

// Errorf logs a failure; PID 1 goes on after it.
func (l *Logger) Errorf(format string, args ...any) { l.write("error: ", format, args...) }

// Debugf logs only with squashportage.debug.
func (l *Logger) Debugf(format string, args ...any) {
	l.mu.Lock()
	on := l.debug
	l.mu.Unlock()
	if on {
		l.write("debug: ", format, args...)
	}
}

func (l *Logger) write(kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		text := Prefix + kind + line
		// Errors writing to the console or kmsg have nowhere to be
		// reported; losing a log line must not stop the boot.
		io.WriteString(l.console, text+"\n")
		if l.kmsg != nil {
			// One write(2) per record, at KERN_DEBUG: the line is on
			// the console already, and a higher level would make the
			// kernel print it there a second time. dmesg and the
			// journal still keep it.
			io.WriteString(l.kmsg, "<7>"+text+"\n")
		}
	}
}
