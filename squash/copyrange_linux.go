package squash

import (
	"errors"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyFileRange copies n bytes from src at from to dst at to inside the
// kernel when both are files that allow it, and returns how many it
// copied; 0 and no error mean "do it another way".
func copyFileRange(dst, src any, from, to, n int64) (int64, error) {
	dc, ok1 := dst.(syscall.Conn)
	sc, ok2 := src.(syscall.Conn)
	if !ok1 || !ok2 {
		return 0, nil
	}
	draw, err := dc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	sraw, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var done int64
	var cerr error
	copyAll := func(dfd, sfd uintptr) {
		for done < n {
			roff, woff := from+done, to+done
			m, err := unix.CopyFileRange(int(sfd), &roff, int(dfd), &woff, int(min(n-done, 1<<30)), 0)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				// Not supported between these two (a block device, another
				// filesystem, an old kernel): the caller copies the rest
				// through memory, where a real I/O error shows again.
				if !isUnsupported(err) && done > 0 {
					cerr = err
				}
				return
			case m == 0:
				cerr = io.ErrUnexpectedEOF
				return
			}
			done += int64(m)
		}
	}
	_ = draw.Control(func(dfd uintptr) {
		_ = sraw.Control(func(sfd uintptr) { copyAll(dfd, sfd) })
		if done > 0 {
			// Start writing the copy back now: the caller (persist) fsyncs
			// the image once it is complete, and the disk can do most of
			// that while the tables are built. Advisory; errors show at
			// fsync.
			_ = unix.SyncFileRange(int(dfd), to, done, unix.SYNC_FILE_RANGE_WRITE)
		}
	})
	return done, cerr
}

func isUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)
}
