package lz

import "testing"

func TestMatchLen(t *testing.T) {
	src := []byte("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012345XYZ")
	tests := []struct {
		name        string
		i, j, limit int
		want        int
	}{
		{"whole repeat up to the mismatch", 0, 36, len(src), 32},
		{"cut by limit inside the 8-byte loop", 0, 36, 36 + 10, 10},
		{"cut by limit in the byte loop", 0, 36, 36 + 3, 3},
		{"no match", 0, 1, len(src), 0},
		{"limit at j", 0, 36, 36, 0},
	}
	for _, tt := range tests {
		if got := MatchLen(src, tt.i, tt.j, tt.limit); got != tt.want {
			t.Errorf("%s: MatchLen(%d, %d, %d) = %d, want %d", tt.name, tt.i, tt.j, tt.limit, got, tt.want)
		}
	}
}
