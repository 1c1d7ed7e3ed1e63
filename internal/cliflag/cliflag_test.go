package cliflag

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args, rest []string
		force      bool
		err        string
	}{
		{[]string{"a", "--force", "b"}, []string{"a", "b"}, true, ""},
		{[]string{"--force", "a"}, []string{"a"}, true, ""},
		{[]string{"a", "--", "--force"}, []string{"a", "--force"}, false, ""},
		{[]string{"a", "--bogus"}, nil, false, "unknown option --bogus"},
		{[]string{"-x"}, nil, false, "unknown option --x"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		force := fs.Bool("force", false, "")
		rest, err := Parse(fs, tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(rest, tc.rest) || *force != tc.force {
			t.Errorf("%v: %v %v %v, want %v %v", tc.args, rest, *force, err, tc.rest, tc.force)
		}
	}
}
