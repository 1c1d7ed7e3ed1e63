package sourcetree

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/squashportage/squashportage/squash"
)

// TestScanPaths: whole paths as mksquashfs 4.7.5's -cpiostyle and
// -no-strip keep them (its images of the same trees, by hand; Debian's
// 4.5.1 -cpiostyle does not finish).
func TestScanPaths(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "a/b/c/f", "a/b/g", "d/h")
	must(t, os.Chmod(filepath.Join(dir, "a"), 0o700))
	must(t, os.Chtimes(filepath.Join(dir, "a"), time.Unix(978307200, 0), time.Unix(978307200, 0)))
	must(t, os.Link(filepath.Join(dir, "a/b/g"), filepath.Join(dir, "d/g2")))
	t.Chdir(dir)
	for _, tc := range []struct {
		paths     []string
		recursive bool
		want      string // name:mode, in Write's order
		wantErr   string
	}{
		{[]string{"a/b/g", "d", "a/b/c/f"}, false, "a:700 a/b:755 a/b/c:755 a/b/c/f:644 a/b/g:644 d:755", ""},
		{[]string{"a", "a/b", "a/b/g"}, false, "a:700 a/b:755 a/b/g:644", ""},
		{[]string{"./a/b/c/f"}, false, "a:700 a/b:755 a/b/c:755 a/b/c/f:644", ""},
		{[]string{"a/b/g", "d/g2"}, false, "a:700 a/b:755 a/b/g:644 d:755 d/g2:link", ""},
		{[]string{"a/b/c", "d"}, true, "a:700 a/b:755 a/b/c:755 a/b/c/f:644 d:755 d/g2:644 d/h:644", ""},
		{[]string{"a/b/g", "a/b/g"}, false, "", "given twice"},
		{[]string{"a/../d"}, false, "", "cannot have . or .."},
		{[]string{"a/b/g/x"}, false, "", "not a directory"},
		{[]string{"nope"}, false, "", "no such file"},
	} {
		tr, err := ScanPaths(tc.paths, tc.recursive, Options{})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: %v, want an error with %q", tc.paths, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.paths, err)
			continue
		}
		var got []string
		for _, h := range headers(tr)[1:] {
			m := "link"
			if h.Link == "" {
				m = strconv.FormatUint(uint64(squash.UnixPerm(h.Mode)), 8)
			}
			got = append(got, h.Name+":"+m)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.paths, g, tc.want)
		}
		tr.Close()
	}
}
