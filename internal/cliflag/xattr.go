package cliflag

import "regexp"

// XattrFilter is what -xattrs-include and -xattrs-exclude (mksquashfs and
// unsquashfs 4.6 and later) let through: no name an exclude matches, and
// with includes only names one matches; nil when neither was given.
func XattrFilter(include, exclude []*regexp.Regexp) func(name string) bool {
	if len(include) == 0 && len(exclude) == 0 {
		return nil
	}
	return func(name string) bool {
		for _, re := range exclude {
			if re.MatchString(name) {
				return false
			}
		}
		for _, re := range include {
			if re.MatchString(name) {
				return true
			}
		}
		return len(include) == 0
	}
}
