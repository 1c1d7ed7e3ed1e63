package loopdev_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/privileged"
)

func TestAttach(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
	}{
		{"read-only", true},
		{"read-write", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			dev, f, err := loopdev.Attach(img, tt.readOnly)
			if err != nil {
				t.Fatal(err)
			}
			if got := backing(dev); got != img {
				t.Errorf("%s backing file %q, want %q", dev, got, img)
			}
			info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			if info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 {
				t.Errorf("flags %#x lack autoclear", info.Flags)
			}
			if ro := info.Flags&unix.LO_FLAGS_READ_ONLY != 0; ro != tt.readOnly {
				t.Errorf("flags %#x: read-only %v, want %v", info.Flags, ro, tt.readOnly)
			}
			if name := strings.TrimRight(string(info.File_name[:]), "\x00"); name != img[:min(len(img), 63)] {
				t.Errorf("lo_file_name %q, want %q", name, img)
			}
			var n int
			fmt.Sscanf(dev, "/dev/loop%d", &n)
			roFlag, _ := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/ro", n))
			if got := strings.TrimSpace(string(roFlag)) == "1"; got != tt.readOnly {
				t.Errorf("sysfs ro = %q, want read-only %v", roFlag, tt.readOnly)
			}
			if tt.readOnly {
				// The kernel may refuse the open or only the write.
				w, err := os.OpenFile(dev, os.O_WRONLY, 0)
				if err == nil {
					_, err = w.Write(make([]byte, 4096))
					if serr := w.Sync(); err == nil {
						err = serr
					}
					w.Close()
				}
				if !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
					t.Errorf("write to %s: %v, want EROFS, EACCES or EPERM", dev, err)
				}
			}
			// Autoclear: the last close detaches the device.
			f.Close()
			deadline := time.Now().Add(5 * time.Second)
			for backing(dev) == img {
				if time.Now().After(deadline) {
					t.Fatalf("%s still attached after its last close", dev)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestAttachMissingImage(t *testing.T) {
	_, _, err := loopdev.Attach("/nonexistent.sqfs", true)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "attach /nonexistent.sqfs") {
		t.Errorf("AttachLoop of a missing image: %v", err)
	}
}

func backing(dev string) string {
	p, _ := loopdev.BackingFile(dev)
	return p
}

func TestMain(m *testing.M) { privileged.Main(m) }
