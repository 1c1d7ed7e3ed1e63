package publish

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/tools/keygen"
)

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	secret, public := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	var out, errb bytes.Buffer
	if code := keygen.Main([]string{secret, public}, &out, &errb); code != 0 || !strings.Contains(out.String(), "key ") {
		t.Fatalf("keygen: %d %s %s", code, out.String(), errb.String())
	}
	if code := keygen.Main([]string{secret, public}, &out, &errb); code != 1 {
		t.Errorf("keygen over an existing secret key: exit %d", code)
	}
	notImage := filepath.Join(dir, "not.sqfs")
	os.WriteFile(notImage, []byte("hello"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--help"}, 0, "Usage: squashportage publish"},
		{[]string{"img", "dir"}, 2, "--key SECRET is required"},
		{[]string{"--key", secret, "img"}, 2, "need IMAGE and DIR"},
		{[]string{"--key", secret, "--keep", "0", "img", "dir"}, 2, "--keep"},
		{[]string{"--key", public, "img", "dir"}, 1, "not a squashportage-secret-key file"},
		{[]string{"--key", secret, notImage, filepath.Join(dir, "www")}, 1, "index " + notImage},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.msg) {
			t.Errorf("%v: exit %d %q %q", tc.args, code, out.String(), errb.String())
		}
	}
}
