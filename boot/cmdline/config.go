package cmdline

import (
	"fmt"
	"strconv"
	"time"
)

// DefaultInit is what the kernel runs when init= is absent.
const DefaultInit = "/sbin/init"

// DefaultTimeout bounds the wait for the root device when neither
// squashportage.timeout nor rootwait is given: long enough for slow USB
// disks, short enough that a typo in root= reaches the rescue path.
const DefaultTimeout = 30 * time.Second

// Config is what PID 1 needs from the command line.
type Config struct {
	Root       string // root=, as given (device path, UUID=, LABEL=, ...)
	RootFSType string // rootfstype=, may list several types separated by commas
	RootFlags  string // rootflags=, passed to mount(2) as data
	ReadOnly   bool   // ro unless rw comes later, as in the kernel
	// RootWait is true for rootwait; with no squashportage.timeout that
	// means wait for ever, like the kernel.
	RootWait  bool
	RootDelay time.Duration // rootdelay=, a pause before looking for root
	// Timeout bounds the wait for the root device; 0 means no bound.
	Timeout time.Duration
	Init    string // init=, or DefaultInit
	// InitArgs are the words after "--" (the kernel already passes them
	// to us as argv; kept here for logging and tests).
	InitArgs []string
	Debug    bool     // squashportage.debug
	Disable  bool     // squashportage.disable: set up no spec
	Specs    []string // every squashportage=SPEC, in order
	// Warnings name parameters that were malformed and ignored; PID 1
	// logs them rather than refusing to boot.
	Warnings []string
}

// ParseConfig extracts the handover parameters from a parsed command line.
func ParseConfig(c Cmdline) Config {
	cfg := Config{
		Init:     DefaultInit,
		ReadOnly: c.Last("ro", "rw") != "rw",
		RootWait: c.Has("rootwait"),
		Debug:    c.Has("squashportage.debug"),
		Disable:  c.Has("squashportage.disable"),
		InitArgs: c.InitArgs,
	}
	cfg.Root, _ = c.Get("root")
	cfg.RootFSType, _ = c.Get("rootfstype")
	cfg.RootFlags, _ = c.Get("rootflags")
	if v, ok := c.Get("init"); ok && v != "" {
		cfg.Init = v
	}
	for _, s := range c.All("squashportage") {
		if s == "" {
			cfg.Warnings = append(cfg.Warnings, "empty squashportage= ignored")
			continue
		}
		cfg.Specs = append(cfg.Specs, s)
	}
	if v, ok := c.Get("rootdelay"); ok {
		d, err := seconds(v)
		if err != nil {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("rootdelay=%q ignored: %v", v, err))
		}
		cfg.RootDelay = d
	}
	cfg.Timeout = DefaultTimeout
	if cfg.RootWait {
		cfg.Timeout = 0
	}
	if v, ok := c.Get("squashportage.timeout"); ok {
		d, err := seconds(v)
		if err != nil {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("squashportage.timeout=%q ignored: %v", v, err))
		} else {
			cfg.Timeout = d
		}
	}
	return cfg
}

// seconds parses a non-negative number of seconds, fractions allowed.
func seconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number of seconds")
	}
	if f < 0 || f > 1e6 {
		return 0, fmt.Errorf("out of range")
	}
	return time.Duration(f * float64(time.Second)), nil
}
