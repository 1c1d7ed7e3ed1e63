package initramfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
)

// URootCmdPrefix is the import path of u-root's commands; those listed
// as tools in go.mod are the initramfs's rescue toolset.
const URootCmdPrefix = "github.com/u-root/u-root/cmds/"

// URootShell is the u-root command that becomes /bin/sh.
const URootShell = "gosh"

// URootCommands lists the u-root commands that the go.mod at modDir
// pins as tools: the rescue toolset is chosen there (go get -tool
// github.com/u-root/u-root/cmds/core/NAME@VERSION) so that go.mod and
// go.sum hold every module the commands need.
func URootCommands(modDir string) ([]string, error) {
	p := filepath.Join(modDir, "go.mod")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(p, b, nil)
	if err != nil {
		return nil, err
	}
	var cmds []string
	for _, t := range f.Tool {
		if strings.HasPrefix(t.Path, URootCmdPrefix) {
			cmds = append(cmds, t.Path)
		}
	}
	sort.Strings(cmds)
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%s pins no u-root command as a tool (go get -tool %score/%s@VERSION)", p, URootCmdPrefix, URootShell)
	}
	return cmds, nil
}

// BuildURoot runs u-root's builder (go tool u-root, the version go.mod
// pins) in the module at modDir and writes to out an uncompressed cpio
// archive holding the commands as one busybox-style binary, /bbin/bb,
// with a link per command, and /bin/sh pointing to gosh. It has no
// /init and no base files (dev/console, etc.): the initramfs adds its
// own. goCmd is the go program ("" finds it on PATH or in GOROOT).
func BuildURoot(ctx context.Context, goCmd, modDir, out string, cmds []string) error {
	if goCmd == "" {
		goCmd = findGo()
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := []string{"tool", "u-root", "-base=/dev/null", "-initcmd=", "-uinitcmd=", "-defaultsh=" + URootShell,
		// gosh's default line editor (bubbline) queries the terminal
		// and draws a full-screen prompt, which a serial console
		// neither answers nor shows well; liner edits a plain line.
		"-go-build-tags=goshliner",
		"-o", abs}
	cmd := exec.CommandContext(ctx, goCmd, append(args, cmds...)...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go tool u-root: %v\n%s", err, o)
	}
	return nil
}

// findGo returns the go command: on PATH, else in $GOROOT/bin.
func findGo() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
