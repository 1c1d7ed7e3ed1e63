package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped by the error of a Lock that another process holds.
var ErrLocked = errors.New("locked")

// lockedError reads as a sentence of its own and still matches ErrLocked.
type lockedError string

func (e lockedError) Error() string        { return string(e) }
func (e lockedError) Is(target error) bool { return target == ErrLocked }

// LockOptions tune LockWith.
type LockOptions struct {
	// Op names what the holder does ("persist", "umount", ...); a second
	// taker's error quotes it.
	Op string
	// Wait is how long to wait for the holder to finish; 0 fails at once.
	Wait time.Duration
}

// Lock takes the lock of target for a persist, failing at once if another
// process holds it.
func Lock(stateDir, target string) (unlock func(), err error) {
	return LockWith(stateDir, target, LockOptions{Op: "persist"})
}

// LockWith takes the lock of target: flock(2) on STATEDIR/ID.lock, so two
// persists, or a persist and an umount, cannot interleave. The kernel drops
// the lock when the holder dies, so a crash leaves nothing stale. The file
// holds "PID OP" for the error of the next taker. Locks are per open file,
// so a process that holds one must not take it again.
func LockWith(stateDir, target string, o LockOptions) (unlock func(), err error) {
	stateDir = stateDirOr(stateDir)
	if o.Op == "" {
		o.Op = "squashportage"
	}
	target = filepath.Clean(target)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", target, err)
	}
	path := filepath.Join(stateDir, ID(target)+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", target, err)
	}
	deadline := time.Now().Add(o.Wait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", target, err)
		}
		if !time.Now().Before(deadline) {
			op, pid := readHolder(path)
			f.Close()
			if o.Wait > 0 {
				return nil, lockedError(fmt.Sprintf("%s of %s still running after %v (%s)", op, target, o.Wait, pid))
			}
			return nil, lockedError(fmt.Sprintf("%s of %s already running (%s)", op, target, pid))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Who holds it is advisory, for error messages only.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+o.Op+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0)
		f.Close() // closing the last fd of the open file releases the flock
	}, nil
}

// readHolder reads what the holder wrote: its operation and "pid N".
func readHolder(path string) (op, pid string) {
	b, _ := os.ReadFile(path)
	p, o, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok {
		// Between its flock and its write: nothing to tell yet.
		return "another squashportage operation", "pid unknown"
	}
	return o, "pid " + p
}
