// Package configs holds what a Gentoo machine installs besides the binary:
// OpenRC and systemd services, the Portage postsync hook, the example
// config and the ebuild. These tests check them with the tools at hand
// (sh -n, systemd-analyze, the spec parser) and run the shell scripts
// against a stub squashportage.
package configs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/internal/cirequire"
	"github.com/squashportage/squashportage/overlay"
	"github.com/squashportage/squashportage/tools/mount"
)

const (
	initScript  = "openrc/init.d/squashportage"
	confD       = "openrc/conf.d/squashportage"
	unit        = "systemd/squashportage.service"
	postsync    = "portage/repo.postsync.d/50-squashportage"
	exampleConf = "squashportage.conf.example"
	ebuild      = "gentoo/sys-fs/squashportage/squashportage-9999.ebuild"
)

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSyntax(t *testing.T) {
	tests := []struct {
		file  string
		shell string
	}{
		{initScript, "sh"}, {initScript, "dash"}, {confD, "sh"},
		{postsync, "sh"}, {postsync, "dash"}, {ebuild, "bash"},
	}
	for _, tc := range tests {
		t.Run(tc.shell+" "+tc.file, func(t *testing.T) {
			sh, err := exec.LookPath(tc.shell)
			if err != nil {
				if tc.shell == "dash" {
					cirequire.Unavailable(t, "no dash: %v; sh -n covers the script", err)
					return
				}
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, "-n", tc.file).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", tc.shell, tc.file, err, out)
			}
		})
	}
}

func TestExecutable(t *testing.T) {
	for _, f := range []string{initScript, postsync} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o111 != 0o111 {
			t.Errorf("%s is not executable: %v", f, fi.Mode())
		}
	}
}

func TestInitScriptDeclarations(t *testing.T) {
	s := read(t, initScript)
	for _, want := range []string{
		"#!/sbin/openrc-run\n",
		"\tneed localmount\n",
		"\tkeyword -timeout\n",
		`"${SQUASHPORTAGE}" mount --config "${SQUASHPORTAGE_CONFIG}"`,
		`"${SQUASHPORTAGE}" persist`,
		`"${SQUASHPORTAGE}" umount --all`,
		`extra_commands="persist"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %q", initScript, want)
		}
	}
}

// stub writes a fake squashportage that logs its arguments to log, writes
// stderr to its standard error and exits with status.
func stub(t *testing.T, dir, stderr string, status map[string]int) (bin, log string) {
	t.Helper()
	bin, log = filepath.Join(dir, "squashportage"), filepath.Join(dir, "calls")
	var b strings.Builder
	b.WriteString("#!/bin/sh\necho \"$*\" >> '" + log + "'\n")
	if stderr != "" {
		b.WriteString("echo '" + stderr + "' >&2\n")
	}
	b.WriteString("case \"$1\" in\n")
	for cmd, st := range status {
		b.WriteString(cmd + ") exit " + string(rune('0'+st)) + ";;\n")
	}
	b.WriteString("esac\nexit 0\n")
	if err := os.WriteFile(bin, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// openrcStubs stand in for openrc-run's builtins.
const openrcStubs = `
ebegin() { echo "ebegin $*"; }
eend() { echo "eend $1"; return "$1"; }
einfo() { echo "einfo $*"; }
ewarn() { echo "ewarn $*"; }
eerror() { echo "eerror $*"; }
yesno() { case "$1" in [Yy][Ee][Ss]|1|[Tt][Rr][Uu][Ee]) return 0;; esac; return 1; }
depend() { :; }
`

func TestInitScriptRuns(t *testing.T) {
	tests := []struct {
		name       string
		action     string
		noConfig   bool
		cmdline    string
		status     map[string]int
		goingDown  string
		wantCalls  string
		wantStatus int
		wantOut    string
	}{
		{name: "start mounts the config", action: "start",
			wantCalls: "mount --config CONF"},
		{name: "start without a config", action: "start", noConfig: true},
		{name: "start with squashportage.disable", action: "start", cmdline: "root=/dev/sda2 squashportage.disable quiet"},
		{name: "start with another squashportage parameter", action: "start", cmdline: "squashportage.debug",
			wantCalls: "mount --config CONF"},
		{name: "start reports failed mounts", action: "start", status: map[string]int{"mount": 1},
			wantCalls: "mount --config CONF", wantStatus: 1},
		// mount's 3: some specs failed, the others are mounted. A failed
		// start would keep OpenRC from ever running stop(), the persist.
		{name: "start with some specs failed counts as started", action: "start", status: map[string]int{"mount": 3},
			wantCalls: "mount --config CONF", wantOut: "ewarn Some squashportage specs were not mounted"},
		{name: "stop persists, then unmounts", action: "stop",
			wantCalls: "persist\numount --all"},
		{name: "manual stop keeps mounts when persist fails", action: "stop", status: map[string]int{"persist": 1},
			wantCalls: "persist", wantStatus: 1},
		{name: "shutdown unmounts even when persist fails", action: "stop", status: map[string]int{"persist": 1},
			goingDown: "YES", wantCalls: "persist\numount --all --discard"},
		{name: "shutdown unmounts after a persist", action: "stop",
			goingDown: "YES", wantCalls: "persist\numount --all --discard"},
		// umount refuses unpersisted tmpfs changes: a manual stop fails
		// and keeps the mounts.
		{name: "manual stop keeps mounts umount refuses", action: "stop", status: map[string]int{"umount": 1},
			wantCalls: "persist\numount --all", wantStatus: 1},
		{name: "persist command", action: "persist", wantCalls: "persist"},
	}
	script, err := filepath.Abs(initScript)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin, log := stub(t, dir, "", tc.status)
			conf := filepath.Join(dir, "squashportage.conf")
			if !tc.noConfig {
				if err := os.WriteFile(conf, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmdline := filepath.Join(dir, "cmdline")
			if err := os.WriteFile(cmdline, []byte(tc.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// The script's body after the shebang, run like openrc-run
			// does: builtins defined, conf.d variables in the environment.
			sh := openrcStubs + ". '" + script + "'\n" + tc.action + "\n"
			cmd := exec.Command("sh", "-c", sh)
			cmd.Env = append(os.Environ(), "SQUASHPORTAGE="+bin, "SQUASHPORTAGE_CONFIG="+conf, "SQUASHPORTAGE_CMDLINE="+cmdline, "RC_GOINGDOWN="+tc.goingDown)
			out, err := cmd.CombinedOutput()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.wantStatus {
				t.Errorf("status %d, want %d; output:\n%s", status, tc.wantStatus, out)
			}
			if !strings.Contains(string(out), tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out)
			}
			calls, _ := os.ReadFile(log)
			got := strings.TrimSpace(strings.ReplaceAll(string(calls), conf, "CONF"))
			if got != tc.wantCalls {
				t.Errorf("calls:\n%s\nwant:\n%s\noutput:\n%s", got, tc.wantCalls, out)
			}
		})
	}
}

// withoutEnv drops the variables named from env.
func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			out = append(out, kv)
		}
	}
	return out
}

func TestPostsyncHook(t *testing.T) {
	tests := []struct {
		name         string
		notInstalled bool
		repoPath     string
		stderr       string
		status       int
		wantCalls    string
		wantStatus   int
		wantOut      string
	}{
		{name: "managed: persisted", repoPath: "/var/db/repos/gentoo",
			wantCalls: "persist --if-managed /var/db/repos/gentoo"},
		// Told by exit status 3, not by matching persist's words.
		{name: "not managed: nothing to do", repoPath: "/var/db/repos/guru", status: 3,
			wantCalls: "persist --if-managed /var/db/repos/guru"},
		{name: "persist fails", repoPath: "/var/db/repos/gentoo",
			stderr: "squashportage persist: no space left on device", status: 1,
			wantCalls: "persist --if-managed /var/db/repos/gentoo", wantStatus: 1,
			wantOut: "no space left on device\nsquashportage: gentoo at /var/db/repos/gentoo is synced, but its image was not updated (persist exited 1, see above)"},
		{name: "a failure that mentions 'not managed' is a failure", repoPath: "/var/db/repos/gentoo",
			stderr: "squashportage persist: remount: upper not managed by squashportage any more", status: 1,
			wantCalls: "persist --if-managed /var/db/repos/gentoo", wantStatus: 1, wantOut: "upper not managed by squashportage any more"},
		{name: "persist's warnings reach the user on success too", repoPath: "/var/db/repos/gentoo",
			stderr:    "squashportage persist: target busy: the new image is used from the next mount",
			wantCalls: "persist --if-managed /var/db/repos/gentoo", wantOut: "the new image is used from the next mount"},
		{name: "persist: bad usage", repoPath: "/var/db/repos/gentoo", status: 2,
			wantCalls: "persist --if-managed /var/db/repos/gentoo", wantStatus: 2, wantOut: "(persist exited 2, see above)"},
		{name: "no path given", repoPath: ""},
		{name: "squashportage not installed", repoPath: "/var/db/repos/gentoo", notInstalled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, log := stub(t, dir, tc.stderr, map[string]int{"persist": tc.status})
			cmd := exec.Command("./"+postsync, "gentoo", "rsync://example.invalid/gentoo-portage", tc.repoPath)
			// The fake squashportage is found on PATH, as Portage's hooks
			// find the installed one.
			path := dir + ":" + os.Getenv("PATH")
			if tc.notInstalled {
				path = filepath.Join(dir, "nothing-here") // the hook needs only sh's builtins then
			}
			cmd.Env = append(withoutEnv(os.Environ(), "SQUASHPORTAGE", "PATH"), "PATH="+path, "TMPDIR="+dir)
			out, err := cmd.CombinedOutput()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.wantStatus {
				t.Errorf("status %d, want %d; output:\n%s", status, tc.wantStatus, out)
			}
			if !strings.Contains(string(out), tc.wantOut) || (tc.wantOut == "" && len(out) > 0) {
				t.Errorf("output %q, want %q", out, tc.wantOut)
			}
			calls, _ := os.ReadFile(log)
			if got := strings.TrimSpace(string(calls)); got != tc.wantCalls {
				t.Errorf("calls %q, want %q", got, tc.wantCalls)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "squashportage-postsync.*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// units reads a systemd unit into section -> key -> values.
func units(t *testing.T, p string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", p, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := units(t, unit)
	tests := []struct{ section, key, want string }{
		{"Unit", "DefaultDependencies", "no"},
		{"Unit", "After", "local-fs.target"},
		{"Unit", "Before", "sysinit.target shutdown.target"},
		{"Unit", "Conflicts", "shutdown.target"},
		{"Unit", "ConditionKernelCommandLine", "!squashportage.disable"},
		{"Service", "Type", "oneshot"},
		{"Service", "RemainAfterExit", "yes"},
		{"Service", "ExecStart", "/usr/bin/squashportage mount"},
		{"Service", "SuccessExitStatus", "3"},
		{"Service", "ExecStop", "-/usr/bin/squashportage persist\n/usr/bin/squashportage umount --all"},
		{"Service", "TimeoutStopSec", "15min"},
		{"Install", "WantedBy", "sysinit.target"},
	}
	for _, tc := range tests {
		if got := strings.Join(u[tc.section][tc.key], "\n"); got != tc.want {
			t.Errorf("[%s] %s = %q, want %q", tc.section, tc.key, got, tc.want)
		}
	}
	for _, d := range []string{"systemd/run-squashportage-.mount.d/squashportage.conf", "systemd/var-db-repos-.mount.d/squashportage.conf"} {
		if got := units(t, d)["Unit"]["Before"]; len(got) != 1 || got[0] != "squashportage.service" {
			t.Errorf("%s: Before=%q, want squashportage.service", d, got)
		}
	}
}

// TestServicesStartDespiteBadSpecs runs the real `squashportage mount`
// the way the systemd unit's ExecStart and the OpenRC service's start()
// do, against configs that are not all good, and checks that both count
// the outcome as started: otherwise neither ever runs its stop, and what
// did mount (the good specs, the initramfs's) is never persisted.
func TestServicesStartDespiteBadSpecs(t *testing.T) {
	u := units(t, unit)
	var success []string
	for _, v := range u["Service"]["SuccessExitStatus"] {
		success = append(success, strings.Fields(v)...)
	}
	execStart := strings.Fields(u["Service"]["ExecStart"][0])
	if execStart[0] != "/usr/bin/squashportage" || execStart[1] != "mount" {
		t.Fatalf("ExecStart=%q", execStart)
	}
	script, err := filepath.Abs(initScript)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		config  string // "-" for none; DIR is the test's directory
		code    int    // want from mount
		wantErr []string
	}{
		{name: "no config (initramfs and service)", config: "-", code: 0},
		{name: "a missing image", config: "DIR/gone.sqfs:DIR/t1\n", code: 3, wantErr: []string{"gone.sqfs: no such file"}},
		{name: "a bad line beside a missing image", config: "# c\nDIR/a.sqfs:DIR/t1:sise=1g\nDIR/gone.sqfs:DIR/t2\n", code: 3,
			wantErr: []string{"squashportage.conf:2: spec", `unknown option "sise"`, "gone.sqfs: no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "squashportage.conf")
			if tc.config != "-" {
				if err := os.WriteFile(conf, []byte(strings.ReplaceAll(tc.config, "DIR", dir)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr strings.Builder
			args := append(execStart[2:], "--config", conf, "--state-dir", filepath.Join(dir, "state"))
			code := mount.Main(args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("mount: exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("mount's stderr %q lacks %q", &stderr, w)
				}
			}
			if code != 0 && !slices.Contains(success, strconv.Itoa(code)) {
				t.Errorf("systemd: exit %d of ExecStart fails the unit (SuccessExitStatus=%q): ExecStop would never persist", code, success)
			}
			// OpenRC's start() with a squashportage that exits as mount did.
			bin, _ := stub(t, dir, "", map[string]int{"mount": code})
			cmd := exec.Command("sh", "-c", openrcStubs+". '"+script+"'\nstart\n")
			cmd.Env = append(os.Environ(), "SQUASHPORTAGE="+bin, "SQUASHPORTAGE_CONFIG="+conf, "SQUASHPORTAGE_CMDLINE=/dev/null")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("OpenRC start() after mount's exit %d: %v (stop() would never persist)\n%s", code, err, out)
			}
		})
	}
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	// verify insists that ExecStart binaries exist: point them at true.
	analyzeVerify(t, map[string]string{
		"squashportage.service": strings.ReplaceAll(read(t, unit), "/usr/bin/squashportage", "/bin/true"),
	})
}

// analyzeVerify runs systemd-analyze verify on units (name → text), when
// it is installed; it must say nothing.
func analyzeVerify(t *testing.T, units map[string]string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		cirequire.Unavailable(t, "no systemd-analyze (%v): the units are checked by the other tests only", err)
		return
	}
	dir := t.TempDir()
	args := []string{"verify"}
	for name, text := range units {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	cmd := exec.Command(sa, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestExampleConfig(t *testing.T) {
	s := read(t, exampleConf)
	specs, err := overlay.ParseConfig(strings.NewReader(s))
	if err != nil || len(specs) != 0 {
		t.Fatalf("the example must mount nothing as installed: %v, %d specs", err, len(specs))
	}
	// Every commented-out spec must parse once uncommented.
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if l, ok := strings.CutPrefix(line, "#/"); ok {
			n++
			if _, err := overlay.ParseSpec("/" + l); err != nil {
				t.Errorf("example spec: %v", err)
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d example specs, want at least 3", n)
	}
}

func TestEbuild(t *testing.T) {
	s := read(t, ebuild)
	for _, re := range []string{
		`(?m)^EAPI=8$`,
		`(?m)^inherit .*\bgit-r3\b`,
		`(?m)^inherit .*\bgo-module\b`,
		`(?m)^inherit .*\bsystemd\b`,
		`(?m)^DESCRIPTION="[^"]{10,79}"$`,
		`(?m)^HOMEPAGE="https://`,
		`(?m)^EGIT_REPO_URI="https://`,
		`(?m)^LICENSE="[^"]+"$`,
		`(?m)^SLOT="0"$`,
		`CGO_ENABLED=0 ego build -trimpath .*-o squashportage \./init`,
		`(?m)^\s*dobin squashportage$`,
		`(?m)^\s*newinitd configs/openrc/init\.d/squashportage squashportage$`,
		`(?m)^\s*newconfd configs/openrc/conf\.d/squashportage squashportage$`,
		`(?m)^\s*systemd_dounit configs/systemd/squashportage\.service$`,
		`(?m)^\s*exeinto /etc/portage/repo\.postsync\.d$`,
	} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("ebuild does not match %s", re)
		}
	}
	if regexp.MustCompile(`(?m)^KEYWORDS=`).MatchString(s) {
		t.Error("a live (9999) ebuild must not have KEYWORDS")
	}
	if strings.Contains(s, "dosym") {
		t.Error("the ebuild must not link mksquashfs/unsquashfs over squashfs-tools")
	}
	// Every file the ebuild installs from the checkout must exist.
	for _, m := range regexp.MustCompile(`\b((?:configs|boot)/[^\s"]+|README\.md)`).FindAllString(s, -1) {
		if _, err := os.Stat(filepath.Join("..", m)); err != nil {
			t.Errorf("ebuild installs %s: %v", m, err)
		}
	}
	if _, err := os.Stat("gentoo/sys-fs/squashportage/metadata.xml"); err != nil {
		t.Error(err)
	}
}
