package cliflag

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a decimal byte count with an optional single-letter
// suffix (either case) from suffixes, meaning K, M or G binary multiples,
// as mksquashfs and unsquashfs take sizes and offsets.
func ParseSize(s, suffixes string) (int64, error) {
	mult := int64(1)
	if s != "" {
		last := strings.ToUpper(s[len(s)-1:])
		if strings.Contains(suffixes, last) {
			mult = map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[last]
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}
