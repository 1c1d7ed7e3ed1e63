package extract

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// extractor carries the state of one extraction.
type extractor struct {
	src   source
	opts  Options
	root  int  // descriptor of the destination directory
	chown bool // set ownership (root only)
	proc  bool // /proc/self/fd is usable for path-based xattr calls
	// umask is the process's, -1 if unknown: files whose permissions it
	// leaves alone are created with them, one fchmod fewer per file.
	umask int
	// uid and gid own what this process creates in a directory without
	// the set-group-ID bit: chown to them is skipped, one system call
	// per entry fewer for the usual root-owned tree.
	uid, gid int

	links   map[uint32]string // inode number -> rel path of its first copy (the walk's)
	skipped map[uint32]bool   // device nodes not made (the creator's)

	mu    sync.Mutex // guards done, err and Progress calls
	done  int64
	total int64
	err   error

	// With workers, the walk queues every entry on creates; one creator
	// goroutine makes them in order and passes created files on writes to
	// the writers, which fill them, set their metadata and close them.
	// Making every name on one goroutine is deliberate: on ext4 without a
	// journal, inodes allocated concurrently in one block group cost
	// several times the system time of the same allocations in a row
	// (each retry scans the group's recently deleted inodes again: 16-20 s
	// of system time against 7 s with one worker, for the bench image
	// extracted right after a tree was removed, when directories were made
	// on the walk's goroutine beside the creator's files), and whoever creates takes
	// the directory's lock, which concurrent creators spin on.
	creates chan fileJob
	writes  chan writeJob
	wg      sync.WaitGroup
	ahead   *fragAhead // decodes queued files' fragment blocks; nil without workers
}

// writeJob is a created file for a writer.
type writeJob struct {
	fd  int
	job fileJob
}

// fileJob is an entry to make in the directory parent: a regular file to
// create and fill, a directory (dir set), a symlink or special file, or
// (target set) a hard link. Jobs are made in listing order, so a parent is
// open before its entries and a link's target exists before the link, or
// has failed, which stops the extraction.
type fileJob struct {
	parent *dirFrame
	n      *node
	frag   *fragRef  // the file's fragment block, when decoded ahead
	target string    // for a hard link: the rel path of what it links to
	dir    *dirFrame // for a directory: the frame the job opens
}

func extract(src source, dest string, opts Options) error {
	nodes, total, err := plan(src, opts.Selection)
	if err != nil {
		return err
	}
	return extractNodes(src, nodes, total, dest, opts)
}

// extractNodes creates planned nodes; opts.Selection has served already.
func extractNodes(src source, nodes []*node, total int64, dest string, opts Options) error {
	root, err := openDest(dest)
	if err != nil {
		return err
	}
	x := &extractor{
		src:     src,
		opts:    opts,
		root:    root,
		chown:   !opts.NoOwner && isRoot(),
		links:   map[uint32]string{},
		skipped: map[uint32]bool{},
		total:   total,
	}
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		x.proc = true
	}
	x.umask = processUmask()
	x.uid, x.gid = os.Geteuid(), os.Getegid()
	if opts.Workers > 1 {
		if fs, ok := src.(fragmentSource); ok {
			x.ahead = newFragAhead(fs, opts.Workers, src.blockSize())
		}
		n := queueLen(opts.Workers)
		x.creates = make(chan fileJob, n)
		x.writes = make(chan writeJob, n)
		x.wg.Add(1)
		go x.creator()
		for range opts.Workers {
			x.wg.Add(1)
			go x.writer(src.blockSize())
		}
	}
	stack, runErr := x.run(nodes)
	if runErr != nil {
		x.fail(runErr)
	}
	if x.creates != nil {
		close(x.creates) // the creator closes writes
		x.wg.Wait()
	}
	if x.ahead != nil {
		x.ahead.close()
	}
	// Every job is done: what is left open (only the root, unless the walk
	// stopped early) gets its metadata last, so nothing extraction does
	// afterwards can disturb it.
	for i := len(stack) - 1; i >= 0; i-- {
		x.dirDone(stack[i])
	}
	return x.failed()
}

// queueLen is how many files may wait to be created, and how many created
// files (each holding a descriptor) may wait for a writer. Deep queues let
// the walk and the creator run ahead while writers decode and write, and
// keep writers busy while the creator waits on a slow create. It stays
// well inside the descriptor limit.
func queueLen(workers int) int {
	n := 256 * workers
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(4*n) {
		n = int(lim.Cur / 4)
	}
	return max(n, 1)
}

// openDest creates dest if needed and opens it without following a final
// symlink: the caller named dest, but a symlink there is more likely a trap
// than an intention.
func openDest(dest string) (int, error) {
	if dest == "" {
		return -1, errors.New("empty destination")
	}
	if parent := filepath.Dir(dest); parent != "." {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return -1, fmt.Errorf("create destination's parent: %w", err)
		}
	}
	if err := unix.Mkdir(dest, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create destination %s: %w", dest, err)
	}
	fd, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("destination %s exists and is not a directory", dest)
		}
		return -1, fmt.Errorf("open destination %s: %w", dest, err)
	}
	return fd, nil
}

// dirFrame is an open directory. Its metadata is set, and its descriptor
// closed, when the walk has left it and every job creating an entry in it
// is done: pending counts the walk (1) plus those jobs.
type dirFrame struct {
	fd      int
	n       *node
	pending atomic.Int64
	// sgid: entries made in the directory take its group (it has the
	// set-group-ID bit); owned: it already has the owner and group the
	// image gives it.
	sgid, owned bool
}

// newFrame is directory n, held by the walk, not yet open.
func (x *extractor) newFrame(n *node) *dirFrame {
	f := &dirFrame{fd: -1, n: n, sgid: true}
	f.pending.Store(1)
	return f
}

// open gives f its descriptor. One fstat tells what chown the directory
// and the entries made in it need; on error both are assumed to need one.
func (f *dirFrame) open(fd int) {
	f.fd = fd
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		f.sgid = st.Mode&unix.S_ISGID != 0
		f.owned = st.Uid == f.n.ino.UID && st.Gid == f.n.ino.GID
	}
}

// ownedIn reports whether an entry just made in pf already has the owner
// and group n asks for.
func (x *extractor) ownedIn(pf *dirFrame, n *node) bool {
	return !pf.sgid && int(n.ino.UID) == x.uid && int(n.ino.GID) == x.gid
}

// dirDone drops one hold on f; the last one finishes it. After a failure
// the directory is closed without touching its metadata.
func (x *extractor) dirDone(f *dirFrame) {
	if f.pending.Add(-1) != 0 {
		return
	}
	if x.failed() != nil {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
		return
	}
	if err := x.finishDir(f); err != nil {
		x.fail(err)
	}
}

// run queues the nodes in order for the creator (or makes them right here
// without workers). It returns the directories still held by the walk: the
// root, or more when it stopped early.
func (x *extractor) run(nodes []*node) ([]*dirFrame, error) {
	root := x.newFrame(nodes[0])
	root.open(x.root)
	stack := []*dirFrame{root}
	x.info(nodes[0])
	x.advance(1)
	var buf []byte // file contents, without workers
	for _, n := range nodes[1:] {
		if err := x.failed(); err != nil {
			return stack, err
		}
		for len(stack) > n.depth {
			x.dirDone(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
		}
		parent := stack[len(stack)-1]
		x.info(n)
		job, dir, err := x.create(parent, n)
		if err != nil {
			return stack, err
		}
		if dir != nil {
			stack = append(stack, dir)
		}
		if job == nil {
			continue
		}
		parent.pending.Add(1)
		if x.creates != nil {
			x.creates <- *job
			continue
		}
		if buf == nil {
			buf = make([]byte, x.src.blockSize())
		}
		var fd int
		if fd, err = x.createJob(*job); err == nil && fd >= 0 {
			err = x.writeFile(fd, *job, buf)
		}
		x.jobDone(*job)
		if err != nil {
			return stack, err
		}
	}
	return stack, nil
}

func (x *extractor) info(n *node) {
	if x.opts.Info != nil {
		x.opts.Info(n.rel)
	}
}

func (x *extractor) advance(k int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.done += k
	if x.opts.Progress != nil {
		x.opts.Progress(x.done, x.total)
	}
}

func (x *extractor) fail(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil {
		x.err = err
	}
}

func (x *extractor) failed() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// warn reports a tolerable error, or returns it when nobody listens.
func (x *extractor) warn(err error) error {
	if x.opts.Warn == nil {
		return err
	}
	x.opts.Warn(err)
	return nil
}

// create validates n and returns the job that makes it in the directory
// pf, and for a directory the frame its entries go in. A name that
// appeared before as another entry of the same inode becomes a hard link.
func (x *extractor) create(pf *dirFrame, n *node) (*fileJob, *dirFrame, error) {
	ino := n.ino
	typ := squash.BasicType(ino.Type)
	job := &fileJob{parent: pf, n: n}
	if typ == squash.TypeDir {
		f := x.newFrame(n)
		f.pending.Add(1) // held by the job that makes and opens it
		job.dir = f
		return job, f, nil
	}
	if first, ok := x.links[ino.Number]; ok {
		job.target = first
		return job, nil, nil
	}
	x.links[ino.Number] = n.rel
	switch typ {
	case squash.TypeFile:
		if x.ahead != nil && ino.Size > 0 && needsFragment(ino, x.src.blockSize()) {
			job.frag = x.ahead.get(ino.Fragment)
		}
	case squash.TypeSymlink:
		if ino.Target == "" || strings.ContainsRune(ino.Target, 0) {
			return nil, nil, fmt.Errorf("symlink %q: bad target %q", n.rel, ino.Target)
		}
	case squash.TypeBlockDev, squash.TypeCharDev, squash.TypeFifo, squash.TypeSocket:
	default:
		return nil, nil, fmt.Errorf("%q: unknown inode type %d", n.rel, ino.Type)
	}
	return job, nil, nil
}

// makeNode makes a symlink or special file with its metadata.
func (x *extractor) makeNode(pf *dirFrame, n *node) error {
	ino := n.ino
	typ := squash.BasicType(ino.Type)
	parent := pf.fd
	if typ == squash.TypeSymlink {
		err := x.retry(parent, n, func() error { return unix.Symlinkat(ino.Target, parent, n.name) })
		if err != nil {
			return fmt.Errorf("create symlink %q: %w", n.rel, err)
		}
	} else {
		mode := map[uint16]uint32{
			squash.TypeBlockDev: unix.S_IFBLK,
			squash.TypeCharDev:  unix.S_IFCHR,
			squash.TypeFifo:     unix.S_IFIFO,
			squash.TypeSocket:   unix.S_IFSOCK,
		}[typ] | 0o600
		var dev uint64
		if typ == squash.TypeBlockDev || typ == squash.TypeCharDev {
			major, minor := squash.DecodeDev(ino.Rdev)
			dev = unix.Mkdev(major, minor)
		}
		err := x.retry(parent, n, func() error { return unix.Mknodat(parent, n.name, mode, int(dev)) })
		if err != nil {
			err = fmt.Errorf("create %q: %w", n.rel, err)
			if errors.Is(err, unix.EPERM) && mode&unix.S_IFMT != unix.S_IFIFO && mode&unix.S_IFMT != unix.S_IFSOCK {
				// Only root may make device nodes; unsquashfs skips
				// them, and its other names are tried as nodes too.
				x.skipped[ino.Number] = true
				x.advance(1)
				return x.warn(err)
			}
			return err
		}
	}
	if err := x.setMetaAt(parent, n, x.ownedIn(pf, n)); err != nil {
		return err
	}
	x.advance(1)
	return nil
}

// retry runs create; if the name is taken and Force is set, it removes the
// existing entry (never following it) and tries once more.
func (x *extractor) retry(parent int, n *node, create func() error) error {
	err := create()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if !x.opts.Force {
		return fmt.Errorf("%w (use force to overwrite)", err)
	}
	if err := removeAt(parent, n.name); err != nil {
		return fmt.Errorf("remove existing entry: %w", err)
	}
	return create()
}

// removeAt unlinks a name, or removes it if it is an empty directory.
func removeAt(parent int, name string) error {
	err := unix.Unlinkat(parent, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
	}
	return err
}

// makeDir creates (or reuses) directory n and opens it. The directory is
// created owner-only writable so it can be filled even when the image
// marks it read-only; its real mode comes in finishDir.
func (x *extractor) makeDir(parent int, n *node) (int, error) {
	err := unix.Mkdirat(parent, n.name, 0o700)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create directory %q: %w", n.rel, err)
	}
	fd, err := unix.Openat(parent, n.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("open directory %q: %w", n.rel, err)
	}
	// Something that is not a directory (maybe a symlink) holds the name.
	if !x.opts.Force {
		return -1, fmt.Errorf("create directory %q: exists and is not a directory (use force to replace it)", n.rel)
	}
	if err := unix.Unlinkat(parent, n.name, 0); err != nil {
		return -1, fmt.Errorf("replace %q with a directory: %w", n.rel, err)
	}
	if err := unix.Mkdirat(parent, n.name, 0o700); err != nil {
		return -1, fmt.Errorf("create directory %q: %w", n.rel, err)
	}
	fd, err = unix.Openat(parent, n.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open directory %q: %w", n.rel, err)
	}
	return fd, nil
}

// link makes name in newParent a hard link to the entry at rel path first,
// resolving first's directory component by component without following
// symlinks.
func (x *extractor) link(first string, newParent int, name string) error {
	dir, base := "", first
	if i := strings.LastIndexByte(first, '/'); i >= 0 {
		dir, base = first[:i], first[i+1:]
	}
	oldParent, err := openBeneath(x.root, dir)
	if err != nil {
		return err
	}
	if oldParent != x.root {
		defer unix.Close(oldParent)
	}
	return unix.Linkat(oldParent, base, newParent, name, 0)
}

// openBeneath opens the directory at slash path rel below root, refusing
// symlinks at every step. It returns root itself for "".
func openBeneath(root int, rel string) (int, error) {
	if rel == "" {
		return root, nil
	}
	cur := root
	for _, c := range strings.Split(rel, "/") {
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if cur != root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, fmt.Errorf("open %q: %w", rel, err)
		}
		cur = next
	}
	return cur, nil
}

// creator makes queued entries in order, passing files on to the writers.
func (x *extractor) creator() {
	defer x.wg.Done()
	defer close(x.writes)
	for job := range x.creates {
		if x.failed() != nil {
			x.jobDone(job)
			continue
		}
		fd, err := x.createJob(job)
		if err != nil {
			x.fail(err)
		}
		if fd < 0 {
			x.jobDone(job)
			continue
		}
		x.writes <- writeJob{fd: fd, job: job}
	}
}

// writer fills created files and sets their metadata.
func (x *extractor) writer(blockSize int) {
	defer x.wg.Done()
	buf := make([]byte, blockSize)
	for w := range x.writes {
		if x.failed() == nil {
			if err := x.writeFile(w.fd, w.job, buf); err != nil {
				x.fail(err)
			}
		} else {
			unix.Close(w.fd)
		}
		x.jobDone(w.job)
	}
}

// jobDone releases what a job held, done or skipped.
func (x *extractor) jobDone(job fileJob) {
	if job.dir != nil {
		x.dirDone(job.dir)
	}
	if job.frag != nil {
		x.ahead.release(job.frag)
	}
	x.dirDone(job.parent)
}

// createJob makes a directory, symlink, special file or hard link
// (returning -1), or creates a regular file, returning its descriptor for
// writeFile.
func (x *extractor) createJob(job fileJob) (int, error) {
	n, parent := job.n, job.parent.fd
	typ := squash.BasicType(n.ino.Type)
	switch {
	case job.dir != nil:
		fd, err := x.makeDir(parent, n)
		if err != nil {
			return -1, err
		}
		job.dir.open(fd)
		x.advance(1)
		return -1, nil
	case job.target != "" && x.skipped[n.ino.Number], job.target == "" && typ != squash.TypeFile:
		return -1, x.makeNode(job.parent, n)
	}
	if t := job.target; t != "" {
		err := x.retry(parent, n, func() error { return x.link(t, parent, n.name) })
		if err != nil {
			return -1, fmt.Errorf("hard link %q to %q: %w", n.rel, t, err)
		}
		x.advance(1)
		return -1, nil
	}
	var fd int
	err := x.retry(parent, n, func() error {
		var err error
		fd, err = unix.Openat(parent, n.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, x.createMode(n))
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("create %q: %w", n.rel, err)
	}
	x.advance(1)
	return fd, nil
}

// writeFile fills a created file, leaving holes where the image has zero
// blocks, then sets its metadata through the descriptor. It closes fd.
func (x *extractor) writeFile(fd int, job fileJob, buf []byte) (err error) {
	n := job.n
	defer func() {
		if cerr := unix.Close(fd); cerr != nil && err == nil {
			err = fmt.Errorf("close %q: %w", n.rel, cerr)
		}
	}()
	size := int64(n.ino.Size)
	if size > 0 {
		read, done, err := x.contents(job, buf)
		if err != nil {
			return x.damaged(fd, job, size, fmt.Errorf("open %q in image: %w", n.rel, err))
		}
		defer done()
		var off, end int64 // end: where the last write stopped
		for off < size {
			b, err := read(int(min(int64(len(buf)), size-off)))
			if err != nil {
				return x.damaged(fd, job, size-off, fmt.Errorf("read %q at %d: %w", n.rel, off, err))
			}
			if !allZero(b) {
				if err := pwriteAll(fd, b, off); err != nil {
					return fmt.Errorf("write %q at %d: %w", n.rel, off, err)
				}
				end = off + int64(len(b))
			}
			off += int64(len(b))
			x.advance(int64(len(b)))
		}
		// Trailing holes were never written: the size comes from truncate.
		if end != size {
			if err := unix.Ftruncate(fd, size); err != nil {
				return fmt.Errorf("truncate %q: %w", n.rel, err)
			}
		}
	}
	return x.setMetaFdMode(fd, n, x.createMode(n) != squash.UnixPerm(n.ino.Mode), x.ownedIn(job.parent, n))
}

// damaged handles a file whose data could not be read from the image:
// without Options.Damaged it is the end of extraction (err); with it the
// file keeps what was written and gets its metadata, and left bytes count
// as done for the progress.
func (x *extractor) damaged(fd int, job fileJob, left int64, err error) error {
	if x.opts.Damaged == nil {
		return err
	}
	x.mu.Lock()
	x.opts.Damaged(err)
	x.mu.Unlock()
	x.advance(left)
	n := job.n
	return x.setMetaFdMode(fd, n, x.createMode(n) != squash.UnixPerm(n.ino.Mode), x.ownedIn(job.parent, n))
}

// contents returns a function that yields a file's next k bytes (read into
// buf, or a slice of a decoded fragment block), and one that releases
// what it holds.
func (x *extractor) contents(job fileJob, buf []byte) (read func(k int) ([]byte, error), done func(), err error) {
	n := job.n
	var f io.ReadCloser
	if job.frag != nil {
		block, err := job.frag.wait()
		if err != nil {
			return nil, nil, err
		}
		if len(n.ino.BlockSizes) == 0 {
			// All of it is in the block: written from there, not copied
			// through buf (most files of a Portage tree).
			tail, err := tailOf(n.ino, block, n.ino.Size)
			return func(int) ([]byte, error) { return tail, nil }, func() {}, err
		}
		f, err = x.src.(fragmentSource).openFragment(n.ino, block)
		if err != nil {
			return nil, nil, err
		}
	} else if f, err = x.src.open(n.imagePath(), n.ino); err != nil {
		return nil, nil, err
	}
	read = func(k int) ([]byte, error) {
		_, err := io.ReadFull(f, buf[:k])
		return buf[:k], err
	}
	return read, func() { f.Close() }, nil
}

// createMode is what a file is created with: its own permissions when the
// umask keeps them and no set-id or sticky bit (chown would clear those)
// is among them, else 0600 and a chmod once written.
func (x *extractor) createMode(n *node) uint32 {
	perm := squash.UnixPerm(n.ino.Mode)
	if x.umask < 0 || perm&^0o777 != 0 || perm&uint32(x.umask) != 0 {
		return 0o600
	}
	return perm
}

// processUmask reads the umask from /proc without changing it (umask(2)
// would, for a moment, for every thread); -1 when it cannot be read.
func processUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return -1
			}
			return int(n)
		}
	}
	return -1
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		w, err := unix.Pwrite(fd, b, off)
		if err != nil {
			return err
		}
		if w == 0 {
			return io.ErrShortWrite
		}
		b, off = b[w:], off+int64(w)
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// finishDir sets a directory's metadata once everything inside it exists,
// then closes it.
func (x *extractor) finishDir(f *dirFrame) error {
	err := x.setMetaFdMode(f.fd, f.n, true, f.owned)
	if cerr := unix.Close(f.fd); cerr != nil && err == nil {
		err = fmt.Errorf("close directory %q: %w", f.n.rel, cerr)
	}
	return err
}

// setMetaFdMode applies owner (unless owned says it has it), mode (if chmod),
// xattrs and times through a descriptor of a regular file or directory.
// The mode comes after chown, which clears setuid and setgid.
func (x *extractor) setMetaFdMode(fd int, n *node, chmod, owned bool) error {
	ino := n.ino
	name := n.rel
	if name == "" {
		name = "."
	}
	if x.chown && !owned {
		if err := unix.Fchown(fd, int(ino.UID), int(ino.GID)); err != nil {
			return fmt.Errorf("chown %q: %w", name, err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, squash.UnixPerm(ino.Mode)); err != nil {
			return fmt.Errorf("chmod %q: %w", name, err)
		}
	}
	if err := x.setXattrs(n, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	ts := x.mtime(ino)
	if err := futimens(fd, &[2]unix.Timespec{ts, ts}); err != nil {
		return fmt.Errorf("set times of %q: %w", name, err)
	}
	return nil
}

// futimens sets the times of the file open as fd: utimensat with a NULL
// path. unix.Futimes goes through /proc/self/fd/N, a path lookup per file
// that was a tenth of extraction's CPU time on a tree of small files.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// setMetaAt applies metadata to a symlink or special file by name, never
// following a symlink (and never opening a device or fifo).
func (x *extractor) setMetaAt(parent int, n *node, owned bool) error {
	ino := n.ino
	if x.chown && !owned {
		if err := unix.Fchownat(parent, n.name, int(ino.UID), int(ino.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %q: %w", n.rel, err)
		}
	}
	if squash.BasicType(ino.Type) != squash.TypeSymlink {
		// Linux has no lchmod; the entry was just created by us as a
		// non-symlink in a directory we hold open.
		if err := unix.Fchmodat(parent, n.name, squash.UnixPerm(ino.Mode), 0); err != nil {
			return fmt.Errorf("chmod %q: %w", n.rel, err)
		}
	}
	err := x.setXattrs(n, func(k string, v []byte) error {
		if !x.proc {
			return unix.ENOTSUP
		}
		// The magic link names the parent we hold; only the last component
		// is looked up, and lsetxattr does not follow it.
		p := "/proc/self/fd/" + strconv.Itoa(parent) + "/" + n.name
		return unix.Lsetxattr(p, k, v, 0)
	})
	if err != nil {
		return err
	}
	ts := x.mtime(ino)
	if err := unix.UtimesNanoAt(parent, n.name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %q: %w", n.rel, err)
	}
	return nil
}

// mtime is the time an entry gets: the image's, or Options.AllTime.
func (x *extractor) mtime(ino *squash.Inode) unix.Timespec {
	t := ino.Mtime
	if x.opts.AllTime != nil {
		t = *x.opts.AllTime
	}
	return unix.NsecToTimespec(int64(t) * 1e9)
}

func (x *extractor) setXattrs(n *node, set func(k string, v []byte) error) error {
	if x.opts.NoXattrs || n.ino.XattrIndex == squash.NoXattr {
		return nil
	}
	xs, err := x.src.xattrs(n.ino)
	if err != nil {
		return fmt.Errorf("read xattrs of %q: %w", n.rel, err)
	}
	for _, xa := range xs {
		if x.opts.UserXattrs && !strings.HasPrefix(xa.Name, "user.") || x.opts.KeepXattr != nil && !x.opts.KeepXattr(xa.Name) {
			continue
		}
		if err := set(xa.Name, xa.Value); err != nil {
			err = fmt.Errorf("set xattr %s on %q: %w", xa.Name, n.rel, err)
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				if err := x.warn(err); err != nil {
					return err
				}
				continue
			}
			return err
		}
	}
	return nil
}
