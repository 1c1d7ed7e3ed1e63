// Command mkinitramfs writes squashportage's initramfs (make initramfs).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/squashportage/squashportage/boot/initramfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mkinitramfs: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkinitramfs", flag.ContinueOnError)
	out := fs.String("o", "bin/initramfs.cpio.gz", "output file")
	init := fs.String("init", "bin/squashportage", "static squashportage binary, installed as /init")
	busybox := fs.String("busybox", "", "static busybox for the rescue shell (empty: none; auto: /bin/busybox if static)")
	kmods := fs.String("kmodules", "", "module tree /lib/modules/RELEASE (empty: modules are built in)")
	mods := fs.String("modules", "", "extra modules to include, space or comma separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	bb := *busybox
	if bb == "auto" {
		bb = initramfs.FindBusybox()
		if bb == "" {
			fmt.Fprintln(os.Stderr, "mkinitramfs: note: no static /bin/busybox (Debian: busybox-static, Gentoo: sys-apps/busybox[static]); the initramfs has no rescue shell")
		}
	}
	a, err := initramfs.Build(initramfs.Options{
		Init:     *init,
		Busybox:  bb,
		KModules: *kmods,
		Modules:  strings.FieldsFunc(*mods, func(r rune) bool { return r == ' ' || r == ',' }),
	})
	if err != nil {
		return err
	}
	// Write next to the target and rename, so an interrupted build never
	// leaves a truncated initramfs where a boot loader would pick it up.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".initramfs-*")
	if err != nil {
		return fmt.Errorf("creating output: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := a.WriteGzip(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	st, err := os.Stat(*out)
	if err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	fmt.Printf("%s: %d bytes, %d entries\n", *out, st.Size(), len(a.Paths()))
	return nil
}
