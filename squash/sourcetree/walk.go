package sourcetree

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// The scan of a directory tree is a few system calls per entry (fstatat,
// listxattr, readlink) on a path the kernel must walk: on a Portage tree
// a second of one core before the first byte is written. Directories are
// therefore scanned on several goroutines, each into its own dirScan, and
// merged in order afterwards, so the entries (and hard-link choices,
// warnings and errors) are exactly those of a walk in order.

// dirScan is one directory's children, sorted, as a worker found them.
type dirScan struct {
	img     string // the directory's image path
	entries []entry
	subdirs []subdir // the child directories to descend into, in order
	links   []linkCand
	warns   []warning
	err     error // the scan stopped here; entries before it are valid
}

type subdir struct {
	at   int // index in entries
	scan *dirScan
}

// linkCand is a child that may be a name of a hard-linked file.
type linkCand struct {
	at  int
	key devIno
}

type warning struct {
	at  int // the entry being scanned when it was raised
	msg string
}

// walkTask is a directory to scan.
type walkTask struct {
	fsPath, imgPath string
	m               matchState
	out             *dirScan
	dev             uint64 // the directory's filesystem (OneFileSystem)
}

// walkQueue hands directories to the workers; it is done when empty with
// no worker busy (a busy one may still add subdirectories).
type walkQueue struct {
	mu    sync.Mutex
	cond  *sync.Cond
	tasks []walkTask
	busy  int
}

func (q *walkQueue) push(t walkTask) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *walkQueue) pop() (walkTask, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.tasks) == 0 && q.busy > 0 {
		q.cond.Wait()
	}
	if len(q.tasks) == 0 {
		return walkTask{}, false
	}
	// Last in, first out: deep before wide keeps few directories pending.
	t := q.tasks[len(q.tasks)-1]
	q.tasks = q.tasks[:len(q.tasks)-1]
	q.busy++
	return t, true
}

func (q *walkQueue) done() {
	q.mu.Lock()
	q.busy--
	idle := q.busy == 0 && len(q.tasks) == 0
	q.mu.Unlock()
	if idle {
		q.cond.Broadcast()
	}
}

// walkWorkers is how many directories are scanned at once: the calls
// mostly hit the kernel's caches, so one per processor, and at least two
// so a call that waits on the disk does not stall the walk.
func walkWorkers() int { return max(2, runtime.GOMAXPROCS(0)) }

// walk scans the directory at fsPath, on filesystem dev, and everything
// below it.
func (s *scanner) walk(fsPath, imgPath string, m matchState, dev uint64) *dirScan {
	root := &dirScan{img: imgPath}
	q := &walkQueue{}
	q.cond = sync.NewCond(&q.mu)
	q.push(walkTask{fsPath, imgPath, m, root, dev})
	var wg sync.WaitGroup
	for range walkWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker has its own buffers; the options and excludes
			// are only read.
			w := &scanner{opts: s.opts, ex: s.ex}
			for t, ok := q.pop(); ok; t, ok = q.pop() {
				w.scanOne(t, q)
				q.done()
			}
		}()
	}
	wg.Wait()
	return root
}

// scanOne lists one directory into t.out and queues its subdirectories.
func (s *scanner) scanOne(t walkTask, q *walkQueue) {
	out := t.out
	s.pending = out
	defer func() { s.pending = nil }()
	dfd, names, err := readDir(t.fsPath)
	if err != nil {
		out.err = fmt.Errorf("reading directory: %w", err)
		return
	}
	defer unix.Close(dfd)
	// Byte order (strcmp) so the image does not depend on the order the OS
	// returns entries in; Go string comparison is exactly that.
	sort.Strings(names)
	out.entries = make([]entry, 0, len(names))
	var st unix.Stat_t
	for _, name := range names {
		childFS := t.fsPath + "/" + name
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			out.err = fmt.Errorf("scanning: %w", &fs.PathError{Op: "lstat", Path: childFS, Err: err})
			return
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if s.leaveOut(childFS, &st, t.dev) {
			continue
		}
		excluded, sub := s.ex.match(t.m, name, isDir)
		if excluded {
			continue
		}
		childImg := name
		if t.imgPath != "" {
			childImg = t.imgPath + "/" + name
		}
		hdr, err := s.header(dfd, name, childFS, childImg, &st)
		if err != nil {
			out.err = err
			return
		}
		at := len(out.entries)
		if !isDir && st.Nlink > 1 && !s.opts.NoHardlinks {
			out.links = append(out.links, linkCand{at, devIno{uint64(st.Dev), st.Ino}})
		}
		out.entries = append(out.entries, newEntry(hdr, -1))
		if isDir && s.descends(childImg) {
			child := &dirScan{img: childImg}
			out.subdirs = append(out.subdirs, subdir{at, child})
			q.push(walkTask{childFS, childImg, sub, child, uint64(st.Dev)})
		}
	}
}

// leaveOut says whether the entry at fsPath (lstat st) in a directory on
// filesystem dev stays out of the image: excluded by identity (or the
// image itself), or on another filesystem with OneFileSystem (warned of).
func (s *scanner) leaveOut(fsPath string, st *unix.Stat_t, dev uint64) bool {
	if s.ex.excludedID(devIno{uint64(st.Dev), st.Ino}) {
		return true
	}
	if s.opts.OneFileSystem && uint64(st.Dev) != dev {
		s.warn(fmt.Sprintf("%s is on a different filesystem, ignored", fsPath))
		return true
	}
	return false
}

// merge appends a walked directory's entries below the entry at index
// parent, in order, choosing each hard-linked file's first name as a walk
// in order would, and returns the first error in that order.
func (s *scanner) merge(d *dirScan, parent int32) error {
	links, subs, warns := d.links, d.subdirs, d.warns
	for i := range d.entries {
		for len(warns) > 0 && warns[0].at == i {
			s.warn(warns[0].msg)
			warns = warns[1:]
		}
		e := d.entries[i]
		e.parent = parent
		if len(links) > 0 && links[0].at == i {
			key := links[0].key
			links = links[1:]
			if first, ok := s.links[key]; ok {
				// The writer finds the first name only if it was told how
				// many names to expect (Nlink).
				s.tree.entries[first.i].nlink++
				s.tree.entries = append(s.tree.entries, entry{name: e.name, parent: parent, x: &extra{link: first.img}})
				continue
			}
			s.links[key] = firstName{len(s.tree.entries), joinImg(d.img, e.name)}
			e.nlink = 1
		}
		s.tree.count(&e)
		s.tree.entries = append(s.tree.entries, e)
		if len(subs) > 0 && subs[0].at == i {
			if err := s.merge(subs[0].scan, int32(len(s.tree.entries)-1)); err != nil {
				return err
			}
			subs = subs[1:]
		}
	}
	for _, w := range warns { // raised by the entry that failed
		s.warn(w.msg)
	}
	// Copied into the tree: let the collector have them as the merge
	// goes, rather than two trees' worth at its end.
	d.entries, d.subdirs, d.links, d.warns = nil, nil, nil, nil
	return d.err
}

// readDir opens a directory and lists its names (without . and ..),
// returning the open descriptor for the *at calls on them. Plain system
// calls: os.File adds a poller registration and flag queries per
// directory that a scan does not need.
func readDir(path string) (int, []string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return -1, nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
		if n <= 0 {
			return fd, names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

func joinImg(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
