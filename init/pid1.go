package main

import (
	"fmt"
	"os"

	"github.com/squashportage/squashportage/boot/pid1"
	"github.com/squashportage/squashportage/overlay"
)

// isPID1 reports whether this process is the initramfs's init: PID 1 and
// started by the kernel as /init. Checking the name too keeps
// `squashportage persist` working as PID 1 of a container.
func isPID1() bool { return os.Getpid() == 1 && len(os.Args) > 0 && os.Args[0] == "/init" }

// runPID1 is the binary's mode as /init of the initramfs. main calls it
// first, when isPID1(); it never returns.
func runPID1() {
	pid1.Main(pid1.Options{MountSpec: mountSpec})
}

// mountSpec sets up one squashportage=IMAGE:TARGET[:OPTIONS] under root.
func mountSpec(spec, root, stateDir string, logf func(string, ...any)) error {
	s, err := overlay.ParseSpec(spec)
	if err == nil {
		s, err = overlay.ResolveSpecUnder(root, s)
	}
	if err != nil {
		return err
	}
	if _, err := overlay.Mount(s, overlay.MountOptions{Root: root, StateDir: stateDir, Log: logf}); err != nil {
		return fmt.Errorf("mounting %s: %w", s.Target, err)
	}
	return nil
}
