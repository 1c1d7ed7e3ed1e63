// Command guest is /init of the initramfs that testdata/modcost boots: it
// loads the modules /modcost.list names, in order, timing each
// finit_module call, prints one line per module and powers off.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("proc", "/proc", "proc", 0, "")
	list, err := os.ReadFile("/modcost.list")
	if err != nil {
		fmt.Printf("MODCOST error: %v\n", err)
	}
	var total time.Duration
	for _, m := range strings.Fields(string(list)) {
		t := time.Now()
		err := load(m)
		d := time.Since(t)
		total += d
		fmt.Printf("MODCOST %s %d err=%v\n", m, d.Microseconds(), err)
	}
	fmt.Printf("MODCOST total %d\n", total.Microseconds())
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// load calls finit_module itself rather than through kmod.Loader, whose
// checks of /sys/module would be timed with it.
func load(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}
