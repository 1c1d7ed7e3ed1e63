//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kernel is a Debian kernel unpacked in the cache: its image and module
// tree.
type kernel struct {
	Release string // 6.1.0-NN-cloud-amd64
	Image   string // boot/vmlinuz-RELEASE
	Modules string // lib/modules/RELEASE, with modules.dep
}

// debianKernel fetches bookworm's cloud kernel into cache once: the
// metapackage names the current ABI (never hard-coded, it moves with
// security updates), apt-get download fetches the .deb, dpkg-deb -x
// unpacks it without installing, and depmod writes the modules.dep the
// package leaves out.
func debianKernel(t *testing.T, cache string) kernel {
	t.Helper()
	out := run(t, "", "apt-cache", "depends", "linux-image-cloud-amd64")
	m := regexp.MustCompile(`Depends: (linux-image-(\d+\.\d+\.\d+-\d+-cloud-amd64))\b`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("apt-cache depends linux-image-cloud-amd64 names no kernel (is apt-get update done?):\n%s", out)
	}
	pkg, release := m[1], m[2]
	dir := filepath.Join(cache, pkg)
	k := kernel{
		Release: release,
		Image:   filepath.Join(dir, "boot", "vmlinuz-"+release),
		Modules: filepath.Join(dir, "lib", "modules", release),
	}
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return k
	}
	t.Logf("fetching %s into %s", pkg, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	dl := filepath.Join(cache, "download")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dl, "apt-get", "download", pkg)
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	run(t, "", "dpkg-deb", "-x", debs[0], dir)
	run(t, "", "depmod", "-b", dir, release)
	for _, p := range []string{k.Image, filepath.Join(k.Modules, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("kernel package %s: %v", pkg, err)
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(debs[0])
	return k
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// requireTools fails, never skips, when a tool is missing: a skipped
// end-to-end test would look like a passing one.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	for tool, pkg := range map[string]string{
		"qemu-system-x86_64": "qemu-system-x86",
		"mkfs.ext4":          "e2fsprogs",
		"depmod":             "kmod",
		"apt-get":            "apt",
		"dpkg-deb":           "dpkg",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool, pkg))
		}
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		missing = append(missing, busyboxPath+" (apt-get install busybox-static)")
	}
	if len(missing) > 0 {
		t.Fatalf("cannot run the end-to-end test; missing: %s", strings.Join(missing, ", "))
	}
}
