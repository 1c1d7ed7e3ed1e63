// Package httpserve runs Debian's lighttpd on 127.0.0.1 (a free port)
// serving a directory as it is, for tests of HTTP clients against a real
// static server: range requests, a server that dies mid-transfer.
package httpserve

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a running lighttpd.
type Server struct {
	t    testing.TB
	Dir  string
	Port int
	conf string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Options tune Start.
type Options struct {
	// KBytesPerSecond limits each connection's rate (0: no limit), so a
	// test can kill the server while a transfer runs.
	KBytesPerSecond int
}

// Start serves dir at http://127.0.0.1:PORT/ until the test ends.
func Start(t testing.TB, dir string, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("lighttpd"); err != nil {
		t.Fatalf("lighttpd not installed (apt-get install -y lighttpd): %v", err)
	}
	s := &Server{t: t, Dir: dir}
	var lastErr error
	for range 5 {
		s.Port = freePort(t)
		if lastErr = s.start(opts); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start lighttpd: %v", lastErr)
	return nil
}

// URL is the server's address of the served directory's root.
func (s *Server) URL() string { return fmt.Sprintf("http://127.0.0.1:%d/", s.Port) }

func (s *Server) start(opts Options) error {
	logDir := s.t.TempDir()
	s.conf = filepath.Join(logDir, "lighttpd.conf")
	conf := fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
server.modules = ()
mimetype.assign = ("" => "application/octet-stream")
# Tests change served files in place: no stale sizes from a stat cache.
server.stat-cache-engine = "disable"
`, s.Dir, s.Port, filepath.Join(logDir, "error.log"))
	if opts.KBytesPerSecond > 0 {
		conf += fmt.Sprintf("connection.kbytes-per-second = %d\n", opts.KBytesPerSecond)
	}
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("lighttpd", "-D", "-f", s.conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(logDir, "error.log"))
			return fmt.Errorf("lighttpd exited: %v: %s", err, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second); err == nil {
			c.Close()
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("lighttpd did not listen on 127.0.0.1:%d", s.Port)
}

// Stop kills the server at once (in-flight transfers break off).
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
}

// Signal sends sig to the server: SIGSTOP makes a server that accepts
// connections and sends nothing, SIGCONT wakes it.
func (s *Server) Signal(sig os.Signal) {
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart(opts Options) {
	s.t.Helper()
	s.Stop()
	var err error
	for range 50 {
		if err = s.start(opts); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart lighttpd: %v", err)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
