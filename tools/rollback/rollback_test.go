package rollback

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain_(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.sqfs")
	// Not squashfs, but superblock-sized: rollback names generations by it.
	pad := strings.Repeat(".", 200)
	for name, content := range map[string]string{img: "new" + pad, img + ".old": "old" + pad} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"--help"}, 0, "Usage: squashportage rollback", ""},
		{nil, 2, "", "give one IMAGE"},
		{[]string{"--state-dir", dir + "/state", img}, 0, "previous generation", ""},
		{[]string{"--state-dir", dir + "/state", img}, 1, "", "nothing to roll back to"},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.errOut) {
			t.Errorf("%q: exit %d, %q, %q", tc.args, code, out.String(), errb.String())
		}
	}
	if b, _ := os.ReadFile(img); !strings.HasPrefix(string(b), "old") {
		t.Errorf("IMAGE after rollback: %q", b)
	}
	if b, _ := os.ReadFile(img + ".rolled-back"); !strings.HasPrefix(string(b), "new") {
		t.Errorf("the newer generation was not kept: %q", b)
	}
}
