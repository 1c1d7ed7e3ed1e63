package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		argv   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"squashportage"}, 2, "", "Usage: squashportage COMMAND"},
		{[]string{"squashportage", "help"}, 0, "mksquashfs", ""},
		{[]string{"squashportage", "--help"}, 0, "Commands:", ""},
		{[]string{"squashportage", "help", "mksquashfs"}, 0, "Usage: squashportage mksquashfs", ""},
		{[]string{"squashportage", "help", "nope"}, 2, "", `unknown command "nope"`},
		{[]string{"squashportage", "version"}, 0, "squashportage ", ""},
		{[]string{"squashportage", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"squashportage", "mksquashfs", "-version"}, 0, "squashportage mksquashfs", ""},
		{[]string{"/usr/bin/mksquashfs", "-help"}, 0, "Usage: squashportage mksquashfs", ""},
		{[]string{"mksquashfs", "src"}, 1, "", "need at least one SOURCE and a DEST"},
		{[]string{"squashportage", "help"}, 0, "fetch", ""},
		{[]string{"squashportage", "help", "publish"}, 0, "Usage: squashportage publish", ""},
		{[]string{"squashportage", "help", "keygen"}, 0, "Usage: squashportage keygen", ""},
		{[]string{"squashportage", "fetch", "http://127.0.0.1:1/x.sqfs", "img"}, 2, "", "needs --gpg-key"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(tc.argv, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("run(%q) = %d\nstdout %q\nstderr %q", tc.argv, code, out.String(), errb.String())
		}
	}
}
