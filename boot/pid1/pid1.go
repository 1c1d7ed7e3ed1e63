// Package pid1 is squashportage's init in the initramfs: it mounts the
// root filesystem the kernel command line names, sets up every
// squashportage= spec inside it, and hands over to the real init.
//
// A Go program running as PID 1 must never return, exit, panic or die of a
// signal: the kernel panics when init goes away. So Main never returns,
// every goroutine recovers, every signal is caught, and each failure
// short of a missing root filesystem is logged and stepped over.
//
// Persisting the overlays into new images is not done here or in a
// shutdown hook run from the initramfs: systemd runs
// /run/initramfs/shutdown only after it has unmounted everything it can,
// the overlays and their tmpfs uppers included, so the changes are gone
// by then. Persisting belongs to the init system's stop phase (an OpenRC
// service stopped before localmount, a systemd unit's ExecStop=).
package pid1

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"time"

	"github.com/squashportage/squashportage/boot/cmdline"
	"github.com/squashportage/squashportage/boot/klog"
)

// Paths inside the initramfs.
const (
	NewRoot  = "/newroot"
	StateDir = "/run/squashportage"
)

// rescueWait is how long a machine without a rescue shell shows its
// error before rebooting: long enough to read or photograph the console.
const rescueWait = 30 * time.Second

// MountSpecFunc sets up one squashportage= spec inside root, keeping its
// state under stateDir. It is injected so this package does not depend on
// the overlay implementation and its logic can be replaced in tests.
type MountSpecFunc func(spec, root, stateDir string, logf func(format string, args ...any)) error

// Options configure Main.
type Options struct {
	MountSpec MountSpecFunc
}

// Main runs the boot. It never returns.
func Main(o Options) {
	start := time.Now()
	log := klog.New(os.Stdout)
	catchSignals(log)
	b := &booter{opts: o, log: log, start: start, stateDir: StateDir}
	for attempt := 1; ; attempt++ {
		err := b.guarded(b.boot)
		// boot returns only when it could not hand over.
		log.Errorf("boot failed: %v", err)
		retry := false
		if perr := b.guarded(func() error { retry = b.rescue(err); return nil }); perr != nil {
			log.Errorf("rescue: %v", perr)
		}
		if !retry {
			b.rebootForever()
		}
		log.Printf("trying again (attempt %d)", attempt+1)
	}
}

// booter carries one boot's state.
type booter struct {
	opts  Options
	log   *klog.Logger
	start time.Time
	cfg   cmdline.Config
	// stateDir is StateDir, a field so tests need not touch /run.
	stateDir string
	// restoreKmsg puts the kmsg rate limit back before the handover.
	restoreKmsg func()
	// clock measures the time since the kernel's exec of /init.
	clock *execClock
	// waited is this attempt's time spent waiting on the kernel.
	waited waits
}

// guarded runs f, turning a panic into an error so PID 1 survives it.
func (b *booter) guarded(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v\n%s", r, debug.Stack())
		}
	}()
	return f()
}

// catchSignals makes every signal harmless: the Go runtime exits on any
// signal that is fatal by default and not notified, which for PID 1 means
// a kernel panic. Notify (not Ignore) so the real init starts with the
// default dispositions: handled signals are reset by execve, ignored
// ones would be inherited.
func catchSignals(log *klog.Logger) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch)
	go func() {
		for {
			func() {
				defer func() {
					if r := recover(); r != nil {
						log.Errorf("signal handler: %v", r)
					}
				}()
				s := <-ch
				log.Debugf("ignoring signal %v", s)
			}()
		}
	}()
}

// errNoRoot marks failures before the root filesystem is mounted, after
// which a rescue shell may fix things and a retry make sense.
var errNoRoot = errors.New("root filesystem not available")

// boot does one attempt at the whole sequence; on success it does not
// return (the process becomes the real init).
func (b *booter) boot() error {
	if err := earlyMounts(b.log); err != nil {
		return err
	}
	if kmsg, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		b.log.SetKmsg(kmsg)
	}
	if b.restoreKmsg == nil {
		// Once: a retry must not record "on" as the setting to restore.
		b.restoreKmsg = unlimitKmsg()
	}
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	b.cfg = cmdline.ParseConfig(cmdline.Parse(string(raw)))
	b.log.SetDebug(b.cfg.Debug)
	b.log.Printf("starting; kernel command line: %s", trimNL(raw))
	if b.clock == nil {
		b.clock = startExecClock()
	}
	b.log.Debugf("parsed: root=%q rootfstype=%q rootflags=%q ro=%v rootwait=%v rootdelay=%s timeout=%s init=%q specs=%q init args=%q",
		b.cfg.Root, b.cfg.RootFSType, b.cfg.RootFlags, b.cfg.ReadOnly, b.cfg.RootWait, b.cfg.RootDelay, b.cfg.Timeout, b.cfg.Init, b.cfg.Specs, os.Args[1:])
	for _, w := range b.cfg.Warnings {
		b.log.Errorf("%s", w)
	}
	b.waited = waits{}
	t := time.Now()
	mods, specMods := loadModules(b.log, b.cfg)
	b.waited.modules += time.Since(t)
	t = time.Now()
	dev, err := waitRoot(b.log, b.cfg)
	b.waited.rootDev += time.Since(t)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoRoot, err)
	}
	if err := mountRoot(b.log, b.cfg, dev, mods); err != nil {
		return fmt.Errorf("%w: %w", errNoRoot, err)
	}
	t = time.Now()
	specMods()
	b.waited.modules += time.Since(t)
	if mods != nil {
		b.waited.nmod = mods.Loaded()
	}
	b.mountSpecs()
	return switchRoot(b.log, b.cfg, handover{start: b.start, clock: b.clock, waited: b.waited}, b.restoreKmsg)
}

// devkmsgKnob rate-limits writes to /dev/kmsg: by default ten lines per
// five seconds per process, fewer than PID 1 logs in its first second.
const devkmsgKnob = "/proc/sys/kernel/printk_devkmsg"

// unlimitKmsg lets all of PID 1's lines into the kernel log, and returns
// a function that puts the setting back for the real init (systemd sets
// its own; others expect the kernel's default). A setting locked by
// printk.devkmsg= on the command line refuses the write, which is fine.
func unlimitKmsg() (restore func()) {
	old, err := os.ReadFile(devkmsgKnob)
	if err != nil || os.WriteFile(devkmsgKnob, []byte("on\n"), 0) != nil {
		return func() {}
	}
	return func() { _ = os.WriteFile(devkmsgKnob, old, 0) }
}

// mountSpecs sets up each spec; a failing one is logged and skipped, as
// the machine must boot without it.
func (b *booter) mountSpecs() {
	if b.cfg.Disable {
		b.log.Printf("squashportage.disable: leaving %d spec(s) unmounted", len(b.cfg.Specs))
		return
	}
	if len(b.cfg.Specs) == 0 {
		b.log.Printf("no squashportage= on the command line: nothing to mount")
		return
	}
	if b.opts.MountSpec == nil {
		b.log.Errorf("this build cannot mount specs; skipping %d", len(b.cfg.Specs))
		return
	}
	if err := os.MkdirAll(b.stateDir, 0o755); err != nil {
		b.log.Errorf("creating %s: %v", b.stateDir, err)
	}
	for _, spec := range b.cfg.Specs {
		t := time.Now()
		err := b.guarded(func() error { return b.opts.MountSpec(spec, NewRoot, b.stateDir, b.log.Printf) })
		if err != nil {
			b.log.Errorf("squashportage=%s skipped: %v", spec, err)
			continue
		}
		b.log.Printf("squashportage=%s mounted in %s", spec, time.Since(t).Round(time.Millisecond))
	}
}

func trimNL(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
