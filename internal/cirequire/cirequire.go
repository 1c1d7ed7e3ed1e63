// Package cirequire lets a test do without a tool, a privilege or a
// filesystem feature on a developer's machine but never under CI, so that
// a CI run cannot pass with a part of it left out. It imports nothing of
// the project, so test helpers at any depth can use it.
package cirequire

import (
	"os"
	"testing"
)

// Unavailable reports something a test can do without: logged on a
// developer's machine, but under CI (CI=true) the test fails.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: required)", args...)
	}
	t.Logf(format, args...)
}
