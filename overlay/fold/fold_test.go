package fold_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/internal/testtree"
	"github.com/squashportage/squashportage/overlay/fold"
	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/codec"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

func TestMain(m *testing.M) { privileged.Main(m) }

// stack is an image mounted with a tmpfs upper and an overlay on top, as
// squashportage mounts it.
type stack struct {
	image, lower, upper, merged string
	layers                      []string // mounted layers, newest first
}

func mountStack(t *testing.T, image string) *stack {
	t.Helper()
	dir := t.TempDir()
	s := &stack{image: image, lower: dir + "/lower", upper: dir + "/rw/upper", merged: dir + "/merged"}
	for _, d := range []string{s.lower, dir + "/rw", s.merged} {
		must(t, os.MkdirAll(d, 0o755))
	}
	privileged.MountSquashfs(t, image, s.lower)
	must(t, unix.Mount("tmpfs", dir+"/rw", "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "size=512m,mode=0755"))
	t.Cleanup(func() { unix.Unmount(dir+"/rw", unix.MNT_DETACH) })
	must(t, os.Mkdir(s.upper, 0o755))
	must(t, os.Mkdir(dir+"/rw/work", 0o755))
	// The overlay's root shows the upper root's metadata: give it the image's.
	var st unix.Stat_t
	must(t, unix.Lstat(s.lower, &st))
	must(t, os.Lchown(s.upper, int(st.Uid), int(st.Gid)))
	must(t, os.Chmod(s.upper, os.FileMode(st.Mode&0o777)))
	must(t, unix.UtimesNano(s.upper, []unix.Timespec{st.Atim, st.Mtim}))
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", s.lower, s.upper, dir+"/rw/work")
	must(t, unix.Mount("overlay", s.merged, "overlay", unix.MS_NODEV|unix.MS_NOSUID, opts))
	t.Cleanup(func() {
		if err := unix.Unmount(s.merged, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount overlay: %v", err)
		}
	})
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// foldStack folds s into a new image and returns its path and stats.
func foldStack(t *testing.T, s *stack, opts fold.Options) (string, fold.Stats) {
	t.Helper()
	r, err := squash.OpenFile(s.image)
	must(t, err)
	defer r.Close()
	data, err := os.Open(s.image)
	must(t, err)
	defer data.Close()
	out := filepath.Join(t.TempDir(), "new.sqfs")
	f, err := os.Create(out)
	must(t, err)
	st, err := fold.Fold(r.Reader, data, s.upper, f, opts)
	must(t, err)
	must(t, f.Close())
	return out, st
}

// checkImage mounts image and compares it with the overlay's merged view.
func checkImage(t *testing.T, image, merged string) {
	t.Helper()
	dir := t.TempDir()
	privileged.MountSquashfs(t, image, dir)
	diffs := testtree.CompareWith(merged, dir, testtree.CompareOptions{IgnoreDirNlink: true})
	for i, d := range diffs {
		if i == 30 {
			t.Errorf("... and %d more", len(diffs)-30)
			break
		}
		t.Errorf("new image differs from the overlay: %v", d)
	}
}

// buildSource makes the all-cases tree without the overlayfs artifacts it
// holds on purpose (a 0/0 whiteout device, trusted.overlay.* xattrs): as the
// lower layer of an overlay, overlayfs would interpret them, so the merged
// view could not equal the image mounted on its own.
func buildSource(t *testing.T) string {
	src := t.TempDir()
	testtree.BuildAllCases(t, src, testtree.AllCasesOptions{})
	must(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 {
			return os.Remove(p)
		}
		buf := make([]byte, 1<<16)
		n, _ := unix.Llistxattr(p, buf)
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(name, "trusted.overlay.") {
				must(t, unix.Lremovexattr(p, name))
			}
		}
		return nil
	}))
	return src
}

func writeImage(t *testing.T, src, image string, cfg codec.Config) {
	t.Helper()
	tree, err := sourcetree.Scan([]string{src}, sourcetree.Options{})
	must(t, err)
	f, err := os.Create(image)
	must(t, err)
	w, err := squash.NewWriter(f, squash.WriterOptions{Codec: cfg})
	must(t, err)
	must(t, tree.Write(w, nil))
	must(t, w.Close())
	must(t, f.Close())
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

type change struct {
	name string
	do   func(t *testing.T, m string)
}

func w(t *testing.T, p string, data []byte) { must(t, os.WriteFile(p, data, 0o644)) }

// bigLinked has whole blocks (a run) as well as a tail.
var bigLinked = bytes.Repeat([]byte("a hard-linked file with blocks\n"), 10000)

// changes are made through the overlay, as a user (or emerge --sync) would.
var changes = []change{
	{"modify", func(t *testing.T, m string) { w(t, m+"/files/text-4096", bytes.Repeat([]byte("x"), 4096)) }},
	{"append", func(t *testing.T, m string) {
		f, err := os.OpenFile(m+"/files/random-131073", os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		f.WriteString("appended")
		f.Close()
	}},
	{"truncate", func(t *testing.T, m string) { must(t, os.Truncate(m+"/files/text-262144", 1000)) }},
	{"delete file", func(t *testing.T, m string) { must(t, os.Remove(m+"/files/random-1")) }},
	{"delete dir", func(t *testing.T, m string) { must(t, os.RemoveAll(m+"/deep")) }},
	{"replace dir", func(t *testing.T, m string) {
		must(t, os.RemoveAll(m+"/bigdir"))
		must(t, os.Mkdir(m+"/bigdir", 0o700))
		w(t, m+"/bigdir/only", []byte("new"))
	}},
	{"rename dir", func(t *testing.T, m string) { run(t, "mv", m+"/names", m+"/names-renamed") }},
	{"chmod", func(t *testing.T, m string) { must(t, os.Chmod(m+"/files/text-0", 0o4711)) }},
	{"chown", func(t *testing.T, m string) { must(t, os.Lchown(m+"/files/text-1", 4242, 4343)) }},
	{"touch", func(t *testing.T, m string) {
		must(t, unix.UtimesNano(m+"/files/text-2", []unix.Timespec{{Sec: 5}, {Sec: 123456789}}))
	}},
	{"set xattr", func(t *testing.T, m string) {
		must(t, unix.Lsetxattr(m+"/files/text-4095", "user.new", []byte("v"), 0))
	}},
	{"remove xattr", func(t *testing.T, m string) {
		must(t, unix.Lremovexattr(m+"/xattrs/same-1", "user.binary"))
		must(t, unix.Lremovexattr(m+"/xattrs/same-2", "trusted.shared"))
	}},
	{"new symlink", func(t *testing.T, m string) { must(t, os.Symlink("files/text-4096", m+"/newlink")) }},
	{"new hard link", func(t *testing.T, m string) {
		w(t, m+"/hl-a", []byte("linked"))
		must(t, os.Link(m+"/hl-a", m+"/hl-b"))
		w(t, m+"/hl-big-a", bigLinked)
		must(t, os.Link(m+"/hl-big-a", m+"/hl-big-b"))
	}},
	{"new empty dir", func(t *testing.T, m string) { must(t, os.Mkdir(m+"/emptynew", 0o755)) }},
	{"big new file", func(t *testing.T, m string) {
		b := make([]byte, 3<<20+17)
		for i := range b {
			b[i] = byte(i * 7 / 13)
		}
		w(t, m+"/bignew", b)
	}},
	{"new fifo", func(t *testing.T, m string) { must(t, unix.Mkfifo(m+"/fifonew", 0o600)) }},
}

func TestFoldEquivalence(t *testing.T) {
	for _, base := range []string{"ours", "mksquashfs"} {
		t.Run(base, func(t *testing.T) {
			src := buildSource(t)
			image := filepath.Join(t.TempDir(), "base.sqfs")
			if base == "ours" {
				writeImage(t, src, image, codec.Config{ID: codec.Gzip})
			} else {
				run(t, "mksquashfs", src, image, "-noappend", "-quiet", "-no-progress")
			}
			s := mountStack(t, image)
			for _, c := range changes {
				if c.name == "delete dir" || c.name == "replace dir" || c.name == "rename dir" {
					if _, err := os.Lstat(s.merged + map[string]string{"delete dir": "/deep", "replace dir": "/bigdir", "rename dir": "/names"}[c.name]); err != nil {
						t.Fatalf("%s: the all-cases tree lacks the directory: %v", c.name, err)
					}
				}
				c.do(t, s.merged)
			}
			img2, st := foldStack(t, s, fold.Options{})
			t.Logf("fold: %+v", st)
			if !st.Reuse || st.ReusedFiles == 0 {
				t.Errorf("no data was reused: %+v", st)
			}
			checkImage(t, img2, s.merged)

			// A second round on the new image.
			s2 := mountStack(t, img2)
			w(t, s2.merged+"/second", []byte("round two"))
			must(t, os.Remove(s2.merged+"/files/text-8192"))
			must(t, os.Chmod(s2.merged+"/files/text-131072", 0o600))
			img3, _ := foldStack(t, s2, fold.Options{})
			checkImage(t, img3, s2.merged)

			// Removing one name of a hard link in the lower: overlayfs
			// keeps showing the lower inode's stale link count of 2;
			// the new image tells the truth.
			// The removed name's blocks are planned as deleted, and
			// still copied for the name left.
			s3 := mountStack(t, img3)
			must(t, os.Remove(s3.merged+"/hl-b"))
			must(t, os.Remove(s3.merged+"/hl-big-b"))
			img4, _ := foldStack(t, s3, fold.Options{})
			dir := t.TempDir()
			privileged.MountSquashfs(t, img4, dir)
			for _, name := range []string{"hl-a", "hl-big-a"} {
				var hl unix.Stat_t
				must(t, unix.Lstat(dir+"/"+name, &hl))
				if hl.Nlink != 1 {
					t.Errorf("%s: nlink %d in the new image, want 1", name, hl.Nlink)
				}
			}
			if got, err := os.ReadFile(dir + "/hl-big-a"); err != nil || !bytes.Equal(got, bigLinked) {
				t.Errorf("hl-big-a: %d bytes, %v; want its %d bytes", len(got), err, len(bigLinked))
			}
			for _, name := range []string{"hl-b", "hl-big-b"} {
				if _, err := os.Lstat(dir + "/" + name); !os.IsNotExist(err) {
					t.Errorf("%s survived its removal: %v", name, err)
				}
			}
		})
	}
}

func TestFoldNewCodec(t *testing.T) {
	src := buildSource(t)
	image := filepath.Join(t.TempDir(), "base.sqfs")
	writeImage(t, src, image, codec.Config{ID: codec.Gzip})
	s := mountStack(t, image)
	w(t, s.merged+"/added", []byte("x"))
	img2, st := foldStack(t, s, fold.Options{Codec: codec.Config{ID: codec.Zstd}})
	if st.Reuse {
		t.Error("blocks reused across compressors")
	}
	checkImage(t, img2, s.merged)
}

// TestFoldFragmentReuse checks the rule for fragment blocks: one stays
// while at least half of the tail bytes it holds are alive, and a block
// mostly dead is repacked, its live tails compressed anew.
func TestFoldFragmentReuse(t *testing.T) {
	src := t.TempDir()
	// Two directories of 40 files of 1000 bytes: with 4 KiB blocks, no
	// grouping and the files in name order, each fragment block holds four
	// tails of one directory.
	for _, d := range []string{"a", "b"} {
		must(t, os.Mkdir(src+"/"+d, 0o755))
		for i := range 40 {
			b := bytes.Repeat([]byte(fmt.Sprintf("%s%03d", d, i)), 250)
			w(t, fmt.Sprintf("%s/%s/f%02d", src, d, i), b)
		}
	}
	image := filepath.Join(t.TempDir(), "base.sqfs")
	cfg := codec.Config{ID: codec.Gzip, BlockSize: 4096}
	tree, err := sourcetree.Scan([]string{src}, sourcetree.Options{})
	must(t, err)
	f, err := os.Create(image)
	must(t, err)
	wr, err := squash.NewWriter(f, squash.WriterOptions{Codec: cfg, NoFragmentGrouping: true})
	must(t, err)
	must(t, tree.Write(wr, nil))
	must(t, wr.Close())
	must(t, f.Close())

	s := mountStack(t, image)
	// In a/, three of every four files go: their blocks are mostly dead.
	// In b/, one file in four is rewritten: those blocks stay.
	for i := range 40 {
		if i%4 != 0 {
			must(t, os.Remove(fmt.Sprintf("%s/a/f%02d", s.merged, i)))
		}
		if i%4 == 0 {
			w(t, fmt.Sprintf("%s/b/f%02d", s.merged, i), []byte("changed"))
		}
	}
	img2, st := foldStack(t, s, fold.Options{})
	t.Logf("fold: %+v", st)
	if st.FragmentsKept != 10 || st.FragmentsRepacked != 10 {
		t.Errorf("kept %d and repacked %d fragment blocks, want 10 and 10 (b/ kept, a/ repacked)", st.FragmentsKept, st.FragmentsRepacked)
	}
	checkImage(t, img2, s.merged)
}

// layerStack mounts image with layers (oldest first, each a squashfs in
// overlay form) below a fresh tmpfs upper, as squashportage stacks them.
func layerStack(t *testing.T, image string, layers []string) *stack {
	t.Helper()
	s := mountStack(t, image)
	if len(layers) == 0 {
		return s
	}
	// Remount the overlay with the layers between the upper and the image.
	dir := filepath.Dir(s.merged)
	must(t, unix.Unmount(s.merged, 0))
	lowers := s.lower
	for i, l := range layers {
		m := filepath.Join(dir, fmt.Sprintf("layer%d", i))
		must(t, os.Mkdir(m, 0o755))
		privileged.MountSquashfs(t, l, m)
		lowers = m + ":" + lowers
	}
	// The overlay's root shows the upper root's metadata: the newest
	// layer's, which is the last upper's.
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dir, fmt.Sprintf("layer%d", len(layers)-1)), &st))
	must(t, os.Lchown(s.upper, int(st.Uid), int(st.Gid)))
	must(t, os.Chmod(s.upper, os.FileMode(st.Mode&0o7777)))
	must(t, unix.UtimesNano(s.upper, []unix.Timespec{st.Atim, st.Mtim}))
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lowers, s.upper, dir+"/rw/work")
	must(t, unix.Mount("overlay", s.merged, "overlay", unix.MS_NODEV|unix.MS_NOSUID, opts))
	t.Cleanup(func() { must(t, unix.Unmount(s.merged, 0)) })
	s.layers = strings.Split(lowers, ":")
	s.layers = s.layers[:len(s.layers)-1] // newest first, without the image
	return s
}

// writeLayer writes s's upper as a layer image.
func writeLayer(t *testing.T, s *stack) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "layer.sqfs")
	f, err := os.Create(out)
	must(t, err)
	if _, err := fold.WriteLayer(s.upper, f, fold.Options{Codec: codec.Config{ID: codec.Gzip}}); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	return out
}

// snapshot copies a merged view aside.
func snapshot(t *testing.T, merged string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "view")
	run(t, "cp", "-a", merged, dst)
	return dst
}

// TestFoldLayersEquivalence persists changes as delta layers, stacks them,
// changes the stacked view again (also what the layers made), and checks
// that (1) each layer stack shows exactly the view it was written from,
// and (2) folding the image with all layers and the upper gives an image
// equal to the stacked view.
func TestFoldLayersEquivalence(t *testing.T) {
	src := buildSource(t)
	image := filepath.Join(t.TempDir(), "base.sqfs")
	writeImage(t, src, image, codec.Config{ID: codec.Gzip})
	rounds := [][]change{
		changes[:8],
		append(changes[8:], []change{
			{"rewrite a file of layer 1", func(t *testing.T, m string) { w(t, m+"/files/text-4096", []byte("second")) }},
			{"delete a dir layer 1 replaced", func(t *testing.T, m string) { must(t, os.RemoveAll(m+"/bigdir")) }},
			{"recreate a deleted file", func(t *testing.T, m string) { w(t, m+"/files/random-1", []byte("back")) }},
		}...),
		{
			{"opaque over layered dirs", func(t *testing.T, m string) {
				must(t, os.RemoveAll(m+"/files"))
				must(t, os.Mkdir(m+"/files", 0o711))
				w(t, m+"/files/only", []byte("x"))
			}},
			{"delete a layer-2 file", func(t *testing.T, m string) { must(t, os.Remove(m+"/bignew")) }},
			{"new hard link over layers", func(t *testing.T, m string) {
				w(t, m+"/hl-new", []byte("x"))
				must(t, os.Link(m+"/hl-new", m+"/hl-new2"))
			}},
		},
	}
	var layers []string
	var s *stack
	var prev string // the view the newest layer was written from
	for i, round := range rounds {
		s = layerStack(t, image, layers)
		if i > 0 {
			// The new stack shows the view the layer was written from.
			if d := testtree.CompareWith(prev, s.merged, testtree.CompareOptions{IgnoreDirNlink: true, MaxDiffs: 10}); len(d) > 0 {
				t.Fatalf("round %d: the stack with %d layers differs from the view it was written from: %v", i, len(layers), d)
			}
		}
		for _, c := range round {
			c.do(t, s.merged)
		}
		if i < len(rounds)-1 {
			prev = snapshot(t, s.merged)
			layers = append(layers, writeLayer(t, s))
		}
	}
	r, err := squash.OpenFile(image)
	must(t, err)
	defer r.Close()
	data, err := os.Open(image)
	must(t, err)
	defer data.Close()
	out := filepath.Join(t.TempDir(), "folded.sqfs")
	f, err := os.Create(out)
	must(t, err)
	st, err := fold.FoldLayers(r.Reader, data, append([]string{s.upper}, s.layers...), f, fold.Options{})
	must(t, err)
	must(t, f.Close())
	t.Logf("fold of %d layers and the upper: %+v", len(s.layers), st)
	if st.ReusedFiles == 0 {
		t.Errorf("no data reused: %+v", st)
	}
	checkImage(t, out, s.merged)
}
