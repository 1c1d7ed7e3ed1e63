package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fetchScript  = "fleet/squashportage-fetch"
	fetchService = "fleet/squashportage-fetch.service"
	fetchTimer   = "fleet/squashportage-fetch.timer"
	fleetConf    = "fleet/fleet.conf.example"
)

// runWithConf runs script with args against a stub squashportage, conf
// ("" for none) being the file confVar names; it returns the exit status
// and the stub's calls.
func runWithConf(t *testing.T, script, confVar, conf string, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	bin, log := stub(t, dir, "", nil)
	cf := filepath.Join(dir, "conf")
	if conf != "" {
		os.WriteFile(cf, []byte(conf), 0o644)
	}
	cmd := exec.Command("./"+script, args...)
	cmd.Env = append(os.Environ(), "SQUASHPORTAGE="+bin, confVar+"="+cf)
	out, _ := cmd.CombinedOutput()
	calls, _ := os.ReadFile(log)
	return cmd.ProcessState.ExitCode(), strings.TrimSpace(string(calls)), string(out)
}

// TestFetchScript runs the client's script against a stub squashportage.
func TestFetchScript(t *testing.T) {
	if out, err := exec.Command("sh", "-n", fetchScript).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v %s", err, out)
	}
	if fi, err := os.Stat(fetchScript); err != nil || fi.Mode()&0o111 != 0o111 {
		t.Fatalf("%s not executable: %v", fetchScript, err)
	}
	example := read(t, fleetConf)
	for _, tc := range []struct {
		name, conf, calls string
		status            int
	}{
		{"example", example, "fetch --key /etc/squashportage/fleet.pub http://portage.example.lan/gentoo/ /var/db/repos/gentoo", 0},
		{"gentoo snapshot", strings.NewReplacer("#FLEET_URL", "FLEET_URL", "#FLEET_GPG", "FLEET_GPG").Replace(example),
			"fetch --gpg-key /usr/share/openpgp-keys/gentoo-release.asc https://distfiles.gentoo.org/snapshots/squashfs/gentoo-current.xz.sqfs /var/db/repos/gentoo", 0},
		{"incomplete", "FLEET_URL=http://x/\n", "", 2},
		{"no config", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, calls, out := runWithConf(t, fetchScript, "SQUASHPORTAGE_FLEET_CONF", tc.conf)
			if status != tc.status || calls != tc.calls {
				t.Errorf("exit %d, calls %q, output %s", status, calls, out)
			}
		})
	}
}

func TestFetchTimerVerify(t *testing.T) {
	analyzeVerify(t, map[string]string{
		"squashportage-fetch.service": strings.ReplaceAll(read(t, fetchService), "/usr/local/sbin/squashportage-fetch", "/bin/true"),
		"squashportage-fetch.timer":   read(t, fetchTimer),
	})
}

// TestPublishHook runs the publisher's postsync hook against a stub.
func TestPublishHook(t *testing.T) {
	const hook = "fleet/60-squashportage-publish"
	if out, err := exec.Command("sh", "-n", hook).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v %s", err, out)
	}
	conf := "PUBLISH_IMAGE=/var/cache/squashportage/gentoo.sqfs\nPUBLISH_DIR=/var/www/portage/gentoo\n"
	for _, tc := range []struct {
		name, repo, conf, calls string
		status                  int
	}{
		{"gentoo", "gentoo", conf, "publish --key /etc/squashportage/fleet.key /var/cache/squashportage/gentoo.sqfs /var/www/portage/gentoo", 0},
		{"another repository", "guru", conf, "", 0},
		{"no config", "gentoo", "", "", 0},
		{"incomplete", "gentoo", "PUBLISH_DIR=/x\n", "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, calls, out := runWithConf(t, hook, "SQUASHPORTAGE_PUBLISH_CONF", tc.conf,
				tc.repo, "rsync://example.invalid/gentoo-portage", "/var/db/repos/"+tc.repo)
			if status != tc.status || calls != tc.calls {
				t.Errorf("exit %d, calls %q, output %s", status, calls, out)
			}
		})
	}
}
