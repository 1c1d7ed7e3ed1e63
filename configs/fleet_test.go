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
			dir := t.TempDir()
			bin, log := stub(t, dir, "", nil)
			conf := filepath.Join(dir, "fleet.conf")
			if tc.conf != "" {
				os.WriteFile(conf, []byte(tc.conf), 0o644)
			}
			cmd := exec.Command("./" + fetchScript)
			cmd.Env = append(os.Environ(), "SQUASHPORTAGE="+bin, "SQUASHPORTAGE_FLEET_CONF="+conf)
			out, _ := cmd.CombinedOutput()
			calls, _ := os.ReadFile(log)
			if cmd.ProcessState.ExitCode() != tc.status || strings.TrimSpace(string(calls)) != tc.calls {
				t.Errorf("exit %d, calls %q, output %s", cmd.ProcessState.ExitCode(), calls, out)
			}
		})
	}
}

func TestFetchTimerVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze (%v)", err)
		return
	}
	dir := t.TempDir()
	b := strings.ReplaceAll(read(t, fetchService), "/usr/local/sbin/squashportage-fetch", "/bin/true")
	os.WriteFile(filepath.Join(dir, "squashportage-fetch.service"), []byte(b), 0o644)
	os.WriteFile(filepath.Join(dir, "squashportage-fetch.timer"), []byte(read(t, fetchTimer)), 0o644)
	cmd := exec.Command(sa, "verify", filepath.Join(dir, "squashportage-fetch.service"), filepath.Join(dir, "squashportage-fetch.timer"))
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
