// Command mkinitramfs writes squashportage's initramfs (make initramfs).
package main

import (
	"context"
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
	uroot := fs.Bool("uroot", true, "build u-root's commands (the tools go.mod pins) with u-root's builder as the rescue toolset")
	busybox := fs.String("busybox", "", "static busybox, added to u-root's commands or instead of them; its sh becomes /bin/sh (empty: none; auto: /bin/busybox if static)")
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
	urootArchive := ""
	if *uroot {
		p, err := buildURoot(filepath.Dir(*out))
		if err != nil {
			return err
		}
		defer os.Remove(p)
		urootArchive = p
	}
	a, err := initramfs.Build(initramfs.Options{
		Init:     *init,
		URoot:    urootArchive,
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

// buildURoot runs u-root's builder in the module of the current
// directory and returns the archive it wrote, a temporary file in dir.
func buildURoot(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	cmds, err := initramfs.URootCommands(wd)
	if err != nil {
		return "", fmt.Errorf("u-root commands: %w (run make initramfs in the source tree, or -uroot=false)", err)
	}
	tmp, err := os.CreateTemp(dir, ".uroot-*.cpio")
	if err != nil {
		return "", err
	}
	tmp.Close()
	fmt.Fprintf(os.Stderr, "mkinitramfs: building %d u-root commands with go tool u-root\n", len(cmds))
	if err := initramfs.BuildURoot(context.Background(), "", wd, tmp.Name(), cmds); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}
