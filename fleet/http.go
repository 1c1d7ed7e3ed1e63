package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultStallTimeout is how long a request may go without a byte from
// the server before it is abandoned (a fetch run by a timer must not hang
// for ever on a server that stopped answering).
const DefaultStallTimeout = 60 * time.Second

// stalledError is the cause of a request abandoned by its watchdog.
type stalledError time.Duration

func (e stalledError) Error() string {
	return fmt.Sprintf("the server sent nothing for %v", time.Duration(e))
}

// do sends req; a watchdog cancels it when the headers, or the next
// bytes of the body, take longer than the stall timeout.
func (fe *fetcher) do(req *http.Request) (*http.Response, error) {
	stall := fe.stall
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	t := time.AfterFunc(stall, func() { cancel(stalledError(stall)) })
	fe.res.Requests++
	resp, err := fe.client.Do(req.WithContext(ctx))
	if err != nil {
		t.Stop()
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			err = c
		}
		cancel(nil)
		return nil, err
	}
	resp.Body = &watched{ReadCloser: resp.Body, ctx: ctx, cancel: cancel, t: t, stall: stall}
	return resp, nil
}

// watched is a response body whose every read rearms the watchdog.
type watched struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	t      *time.Timer
	stall  time.Duration
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if n > 0 {
		w.t.Reset(w.stall)
	}
	if err != nil && err != io.EOF {
		var st stalledError
		if c := context.Cause(w.ctx); errors.As(c, &st) {
			err = c
		}
	}
	return n, err
}

func (w *watched) Close() error {
	w.t.Stop()
	w.cancel(nil)
	return w.ReadCloser.Close()
}

// lockTmp keeps two fetches from assembling the same IMAGE.new: it takes
// an exclusive lock on Tmp+".lock" (left in place, empty) and returns
// its release.
func lockTmp(tmp string) (func(), error) {
	f, err := os.OpenFile(tmp+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another fetch is assembling %s", tmp)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", tmp, err)
	}
	return func() { f.Close() }, nil
}
