package cliflag

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		s, suffixes string
		want        int64
		ok          bool
	}{
		{"0", "KMG", 0, true},
		{"4096", "KM", 4096, true},
		{"64K", "KM", 64 << 10, true},
		{"1m", "KM", 1 << 20, true},
		{"2G", "KMG", 2 << 30, true},
		{"2G", "KM", 0, false}, // G not allowed here
		{"", "KMG", 0, false},
		{"K", "KMG", 0, false},
		{"-1", "KMG", 0, false},
		{"12x", "KMG", 0, false},
		{"9223372036854775807", "", 1<<63 - 1, true},
		{"9007199254740992K", "K", 0, false}, // overflows
	} {
		got, err := ParseSize(tc.s, tc.suffixes)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q, %q) = %d, %v", tc.s, tc.suffixes, got, err)
		}
	}
}
