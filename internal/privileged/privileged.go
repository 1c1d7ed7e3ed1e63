// Package privileged runs tests that mount filesystems for real. Its Main
// re-executes the test binary in a private mount namespace, so nothing the
// tests mount is visible outside and every mount vanishes with the process;
// MountSquashfs attaches images to self-clearing loop devices.
package privileged

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed test binary; its value is the pid of the
// parent, which tags the loop devices of this run.
const childEnv = "SQUASHPORTAGE_PRIVILEGED_CHILD"

// leakWait bounds how long the parent waits for autoclear loop devices to
// detach after the child exits: the kernel releases them asynchronously.
const leakWait = 10 * time.Second

// Main is for TestMain in packages whose tests mount:
//
//	func TestMain(m *testing.M) { privileged.Main(m) }
//
// It fails (never skips) without root, runs the tests in a fresh private
// mount namespace, and fails if the run left loop devices attached.
func Main(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild(m))
	}
	os.Exit(runParent())
}

func runChild(m *testing.M) int {
	// The namespace is new, but mounts inherited as shared would still
	// propagate our mounts back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "privileged: make / private in the test mount namespace: %v\n", err)
		return 1
	}
	return m.Run()
}

func runParent() int {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %s needs root: these tests mount squashfs images on loop devices "+
			"(run them as root, e.g. sudo go test); refusing to skip them\n", os.Args[0])
		return 1
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: privileged tests need loop devices: %v\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: privileged: find test binary: %v\n", err)
		return 1
	}
	tag := runTag(os.Getpid())
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Unshareflags (not Cloneflags) makes the Go runtime also remount /
	// private before exec; runChild repeats it to not depend on that.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: privileged: start test binary in a new mount namespace: %v\n", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	case err != nil:
		fmt.Fprintf(os.Stderr, "FAIL: privileged: wait for test binary: %v\n", err)
		code = 1
	}
	if leaks := waitLoopsDetached(tag, leakWait); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: privileged: loop devices still attached after the tests: %s\n", strings.Join(leaks, ", "))
		for _, l := range leaks {
			detach(l)
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runTag is written into lo_file_name of every loop device the run
// attaches, so leak checks see only this run's devices even while other
// test processes use loop devices too.
func runTag(parentPid int) string {
	return "squashportage-test:" + strconv.Itoa(parentPid) + ":"
}

// currentTag is the tag of this process's run.
func currentTag() string {
	if v := os.Getenv(childEnv); v != "" {
		if pid, err := strconv.Atoi(v); err == nil {
			return runTag(pid)
		}
	}
	return runTag(os.Getpid())
}

// AssertNoLeaks fails t if any loop device attached by this run is still
// attached. Only meaningful when no mount of this run is expected to be
// alive, i.e. not while parallel tests mount.
func AssertNoLeaks(t testing.TB) {
	t.Helper()
	if leaks := waitLoopsDetached(currentTag(), leakWait); len(leaks) > 0 {
		t.Errorf("loop devices still attached by this run: %s", strings.Join(leaks, ", "))
	}
}
