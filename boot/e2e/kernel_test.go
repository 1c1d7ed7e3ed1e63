//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/vmtest"
)

// kernel is a Debian kernel unpacked in the cache (internal/vmtest).
type kernel = vmtest.Kernel

// debianKernel fetches the cloud kernel into cache once.
func debianKernel(t *testing.T, cache string) kernel {
	t.Helper()
	k, err := vmtest.DebianKernel(cache, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// requireTools fails, never skips, when a tool is missing: a skipped
// end-to-end test would look like a passing one.
func requireTools(t *testing.T) {
	t.Helper()
	if missing := vmtest.Missing(); len(missing) > 0 {
		t.Fatalf("cannot run the end-to-end test; missing: %s", strings.Join(missing, ", "))
	}
}
