package pid1

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rescueShells are tried in order: /bin/sh, which is u-root's gosh in
// the default initramfs and busybox's sh when busybox was added, then
// the shells of u-root's /bbin should /bin/sh be missing.
func rescueShells() []string {
	return []string{"/bin/sh", "/bbin/gosh", "/bbin/elvish"}
}

// shellName says which shell a path is, for the console: u-root's
// commands are links into /bbin/bb, busybox's into /bin/busybox.
func shellName(p string) string {
	target, err := os.Readlink(p)
	if err != nil {
		return p
	}
	switch base := filepath.Base(target); {
	case base == "busybox":
		return p + " (busybox)"
	case strings.Contains(target, "bbin/"):
		return p + " (u-root's " + base + ")"
	case base == "bb":
		return p + " (u-root's " + filepath.Base(p) + ")"
	default:
		return p + " (" + target + ")"
	}
}

// rescue explains a failed boot and, if the initramfs has a shell, runs
// it on the console. It reports whether booting should be tried again
// (the shell exited after a failure that a user can fix there, such as a
// missing driver or root device).
func (b *booter) rescue(err error) bool {
	shell := ""
	for _, s := range rescueShells() {
		if _, e := os.Stat(s); e == nil {
			shell = s
			break
		}
	}
	if shell == "" {
		b.log.Errorf("no rescue shell in the initramfs; rebooting in %s", rescueWait)
		time.Sleep(rescueWait)
		return false
	}
	b.log.Printf("starting rescue shell %s on the console; exit it to try booting again", shellName(shell))
	cmd := exec.Command(shell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "PATH=/bin:/sbin:/bbin:/usr/bin:/usr/sbin", "PS1=(squashportage rescue) # ")
	// A session and controlling terminal of its own, so job control and
	// Ctrl-C work in the shell and not on PID 1.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if e := cmd.Run(); e != nil {
		b.log.Errorf("rescue shell: %v", e)
	}
	return errors.Is(err, errNoRoot)
}

// rebootForever reboots; should the reboot itself fail, PID 1 must still
// not exit, so it waits for ever.
func (b *booter) rebootForever() {
	b.log.Printf("rebooting")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		b.log.Errorf("reboot: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
