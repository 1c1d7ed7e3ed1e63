package klog

import (
	"strings"
	"testing"
)

func TestLogger(t *testing.T) {
	tests := []struct {
		name        string
		debug       bool
		kmsg        bool
		log         func(*Logger)
		wantConsole string
		wantKmsg    string
	}{
		{"printf", false, true, func(l *Logger) { l.Printf("mounted %s", "/x") },
			"squashportage: mounted /x\n", "<7>squashportage: mounted /x\n"},
		{"error", false, false, func(l *Logger) { l.Errorf("bad %d", 1) },
			"squashportage: error: bad 1\n", ""},
		{"debug off", false, true, func(l *Logger) { l.Debugf("hidden") }, "", ""},
		{"debug on", true, true, func(l *Logger) { l.Debugf("shown") },
			"squashportage: debug: shown\n", "<7>squashportage: debug: shown\n"},
		{"multi-line split", false, true, func(l *Logger) { l.Printf("a\nb\n") },
			"squashportage: a\nsquashportage: b\n", "<7>squashportage: a\n<7>squashportage: b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var console, kmsg strings.Builder
			l := New(&console)
			if tt.kmsg {
				l.SetKmsg(&kmsg)
			}
			l.SetDebug(tt.debug)
			tt.log(l)
			if console.String() != tt.wantConsole || kmsg.String() != tt.wantKmsg {
				t.Errorf("console %q kmsg %q, want %q %q", console.String(), kmsg.String(), tt.wantConsole, tt.wantKmsg)
			}
		})
	}
}
