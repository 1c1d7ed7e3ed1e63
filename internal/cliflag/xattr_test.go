package cliflag

import (
	"regexp"
	"testing"
)

func TestXattrFilter(t *testing.T) {
	re := regexp.MustCompile
	if XattrFilter(nil, nil) != nil {
		t.Error("no patterns: a filter")
	}
	for _, tc := range []struct {
		incl, excl []*regexp.Regexp
		keep, drop []string
	}{
		{nil, []*regexp.Regexp{re(`^user\.`)}, []string{"trusted.a", "security.b"}, []string{"user.a"}},
		{[]*regexp.Regexp{re(`^user\.`)}, nil, []string{"user.a"}, []string{"trusted.a"}},
		{[]*regexp.Regexp{re(`^user\.`), re(`^trusted\.`)}, []*regexp.Regexp{re(`secret`)}, []string{"user.a", "trusted.b"}, []string{"user.secret", "security.c"}},
	} {
		f := XattrFilter(tc.incl, tc.excl)
		for _, n := range tc.keep {
			if !f(n) {
				t.Errorf("%v %v: %s dropped", tc.incl, tc.excl, n)
			}
		}
		for _, n := range tc.drop {
			if f(n) {
				t.Errorf("%v %v: %s kept", tc.incl, tc.excl, n)
			}
		}
	}
}
