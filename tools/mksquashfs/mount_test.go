package mksquashfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/internal/loopdev"
	"github.com/squashportage/squashportage/internal/privileged"
	"github.com/squashportage/squashportage/squash"
)

// The tests here mount (tmpfs inside a source, our images through the
// kernel), so the package's tests run as root in a private mount namespace.
//
// With MKSQUASHFS_TEST_MAIN set, the test binary is mksquashfs itself, for
// tests that signal it.
func TestMain(m *testing.M) {
	if os.Getenv("MKSQUASHFS_TEST_MAIN") != "" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	privileged.Main(m)
}

// incompressible writes n files of 1 MiB that xz takes seconds over into
// the new directory src.
func incompressible(t *testing.T, src string, n int) {
	t.Helper()
	mustDo(t, os.Mkdir(src, 0o755))
	data := make([]byte, 1<<20)
	for i := range n {
		for j := range data {
			data[j] = byte((i*7919 + j*j*31 + j>>3) >> 2)
		}
		mustDo(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), data, 0o644))
	}
}

// interrupt runs this test binary as mksquashfs with args, sends it a
// SIGINT once started says it is writing, and checks that it exits with
// status 130; it returns what it printed on standard error.
func interrupt(t *testing.T, args []string, started func() bool) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MKSQUASHFS_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	mustDo(t, cmd.Start())
	for i := 0; !started(); i++ {
		if i == 1000 {
			cmd.Process.Kill()
			t.Fatal("the image was not started within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustDo(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("after SIGINT: %v, want exit status 130 (%s)", err, &stderr)
	}
	return stderr.String()
}

// TestInterruptRemovesImage: a SIGINT while the image is being written
// ends the run with status 130, and the unfinished image is gone.
func TestInterruptRemovesImage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	incompressible(t, src, 48)
	dest := filepath.Join(t.TempDir(), "img")
	stderr := interrupt(t, []string{src, dest, "-comp", "xz", "-quiet", "-processors", "1"}, func() bool {
		_, err := os.Stat(dest)
		return err == nil
	})
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("the unfinished image is still there: %v", err)
	}
	if !strings.Contains(stderr, "removed the unfinished") {
		t.Errorf("nothing said: %q", stderr)
	}
}

// mountFS mounts a filesystem for the test and unmounts it at its end.
func mountFS(t *testing.T, src, dir, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(src, dir, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", fstype, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// TestOneFileSystem: a tmpfs mounted in the source and a file bind-mounted
// from another filesystem are left out, with a warning each, as Debian's
// mksquashfs -one-file-system leaves them out; without the option they are
// stored.
func TestOneFileSystem(t *testing.T) {
	src := buildSource(t)
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	mustDo(t, os.Mkdir(elsewhere, 0o755))
	mountFS(t, "tmpfs", elsewhere, "tmpfs", 0)
	mustDo(t, os.WriteFile(filepath.Join(elsewhere, "f"), []byte("another filesystem's file"), 0o644))
	mustDo(t, os.WriteFile(filepath.Join(src, "dir", "bound"), []byte("covered"), 0o644))
	mountFS(t, filepath.Join(elsewhere, "f"), filepath.Join(src, "dir", "bound"), "", unix.MS_BIND)
	mnt := filepath.Join(src, "dir", "sub", "mnt")
	mustDo(t, os.Mkdir(mnt, 0o755))
	mountFS(t, "tmpfs", mnt, "tmpfs", 0)
	mustDo(t, os.WriteFile(filepath.Join(mnt, "inner"), []byte("on the tmpfs"), 0o644))

	tmp := t.TempDir()
	ours, ref, all := filepath.Join(tmp, "ours"), filepath.Join(tmp, "ref"), filepath.Join(tmp, "all")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{src, ours, "-one-file-system", "-no-progress"}, &stdout, &stderr); code != 0 {
		t.Fatalf("mksquashfs -one-file-system = %d: %s", code, &stderr)
	}
	for _, p := range []string{filepath.Join(src, "dir", "bound"), mnt} {
		if want := "warning: " + p + " is on a different filesystem, ignored"; !strings.Contains(stderr.String(), want) {
			t.Errorf("no %q in the output:\n%s", want, &stderr)
		}
	}
	if out, err := exec.Command("mksquashfs", src, ref, "-one-file-system", "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("Debian's mksquashfs: %v\n%s", err, out)
	}
	got := listing(t, ours)
	if want := listing(t, ref); got != want {
		t.Errorf("listing differs from mksquashfs -one-file-system\nours:\n%s\nmksquashfs:\n%s", got, want)
	}
	if strings.Contains(got, "mnt") || strings.Contains(got, "bound") {
		t.Errorf("the other filesystems' entries are in the image:\n%s", got)
	}
	buildSmall(t, src, all)
	if l := listing(t, all); !strings.Contains(l, "R/dir/sub/mnt/inner") || !strings.Contains(l, "R/dir/bound") {
		t.Errorf("without -one-file-system the mounts' entries are missing:\n%s", l)
	}
}

// TestOptionsThroughTheKernel mounts images made with the options that
// change metadata and data layout, and checks what the kernel shows.
func TestOptionsThroughTheKernel(t *testing.T) {
	src := buildSource(t)
	tmp := t.TempDir()
	mountImage := func(name string, opts ...string) string {
		t.Helper()
		img := filepath.Join(tmp, name+".img")
		var stdout, stderr bytes.Buffer
		if code := Main(append([]string{src, img, "-quiet"}, opts...), &stdout, &stderr); code != 0 {
			t.Fatalf("mksquashfs %q = %d: %s", opts, code, &stderr)
		}
		dir := filepath.Join(tmp, name)
		mustDo(t, os.Mkdir(dir, 0o755))
		privileged.MountSquashfs(t, img, dir)
		return dir
	}
	stat := func(p string) unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		mustDo(t, unix.Lstat(p, &st))
		return st
	}

	root := stat(mountImage("root", "-root-mode", "1750", "-root-uid", "12", "-root-gid", "34", "-root-time", "5000"))
	if root.Mode != unix.S_IFDIR|0o1750 || root.Uid != 12 || root.Gid != 34 || root.Mtim.Sec != 5000 {
		t.Errorf("root: mode %o uid %d gid %d mtime %d, want 41750, 12, 34, 5000", root.Mode, root.Uid, root.Gid, root.Mtim.Sec)
	}

	def, split := mountImage("default"), mountImage("nolinks", "-no-hardlinks")
	if a, h := stat(filepath.Join(def, "alpha")), stat(filepath.Join(def, "dir/hard")); a.Nlink != 2 || a.Ino != h.Ino {
		t.Errorf("default image: alpha and dir/hard are not one inode with 2 links (inodes %d, %d; nlink %d)", a.Ino, h.Ino, a.Nlink)
	}
	a, h := stat(filepath.Join(split, "alpha")), stat(filepath.Join(split, "dir/hard"))
	if a.Nlink != 1 || h.Nlink != 1 || a.Ino == h.Ino {
		t.Errorf("-no-hardlinks: alpha and dir/hard: inodes %d, %d; nlink %d, %d; want two inodes of one link", a.Ino, h.Ino, a.Nlink, h.Nlink)
	}
	for _, name := range []string{"alpha", "dir/hard"} {
		if b, err := os.ReadFile(filepath.Join(split, name)); err != nil || string(b) != "first\n" {
			t.Errorf("-no-hardlinks: %s reads %q, %v", name, b, err)
		}
	}

	pseudo := mountImage("pseudo", "-p", "dev d 755 0 0", "-p", "dev/console c 600 0 0 5 1", "-p", "dev/sda B 9 660 0 6 8 0",
		"-p", "fifo i 644 0 0 f", "-p", "out f 640 3 4 printf abc")
	if st := stat(filepath.Join(pseudo, "dev/console")); st.Mode != unix.S_IFCHR|0o600 || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 1 {
		t.Errorf("dev/console: mode %o rdev %d,%d, want character device 5,1 mode 600", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := stat(filepath.Join(pseudo, "dev/sda")); st.Mode != unix.S_IFBLK|0o660 || st.Gid != 6 || st.Mtim.Sec != 9 || unix.Major(st.Rdev) != 8 {
		t.Errorf("dev/sda: mode %o gid %d mtime %d major %d", st.Mode, st.Gid, st.Mtim.Sec, unix.Major(st.Rdev))
	}
	if st := stat(filepath.Join(pseudo, "fifo")); st.Mode != unix.S_IFIFO|0o644 {
		t.Errorf("fifo: mode %o", st.Mode)
	}
	if b, err := os.ReadFile(filepath.Join(pseudo, "out")); err != nil || string(b) != "abc" {
		t.Errorf("out reads %q, %v", b, err)
	} else if st := stat(filepath.Join(pseudo, "out")); st.Mode != unix.S_IFREG|0o640 || st.Uid != 3 || st.Gid != 4 {
		t.Errorf("out: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}

	want, err := os.ReadFile(filepath.Join(src, "sparse.bin"))
	mustDo(t, err)
	for _, dir := range []string{def, mountImage("nosparse", "-no-sparse", "-b", "4K")} {
		if got, err := os.ReadFile(filepath.Join(dir, "sparse.bin")); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/sparse.bin: %d bytes read (%v), not the source's %d", dir, len(got), err, len(want))
		}
	}
}

// TestSparseAndPadOptions: -no-sparse stores the zero blocks a default
// image leaves as holes, and -nopad ends the file at the last table.
func TestSparseAndPadOptions(t *testing.T) {
	src := buildSource(t)
	dir := t.TempDir()
	// size returns an image file's size and the bytes_used its superblock
	// gives.
	size := func(img string) (int64, int64) {
		t.Helper()
		b, err := os.ReadFile(img)
		mustDo(t, err)
		return int64(len(b)), int64(binary.LittleEndian.Uint64(b[40:]))
	}
	holes := buildSmall(t, src, filepath.Join(dir, "holes"), "-no-block-sums")
	zeros := buildSmall(t, src, filepath.Join(dir, "zeros"), "-no-block-sums", "-no-sparse")
	_, h := size(holes)
	_, z := size(zeros)
	// 73 blocks of 4K zeros, each compressed to a few bytes, and their
	// size words.
	if z-h < 73*8 {
		t.Errorf("-no-sparse: %d bytes used, the default %d: the zero blocks are not stored", z, h)
	}
	unpadded := buildSmall(t, src, filepath.Join(dir, "unpadded"), "-nopad")
	if n, used := size(unpadded); n != used || used%4096 == 0 {
		t.Errorf("-nopad: file of %d bytes for %d bytes used (want equal, and not a multiple of 4096 for this test)", n, used)
	}
	if listing(t, unpadded) != listing(t, holes) {
		t.Error("unsquashfs lists the unpadded image differently")
	}
}

// TestOffsetOption: -offset leaves zeros before the image, which unsquashfs
// -o and the kernel (a loop device with an offset) read as the image built
// without it.
func TestOffsetOption(t *testing.T) {
	src := buildSource(t)
	dir := t.TempDir()
	plain := buildSmall(t, src, filepath.Join(dir, "plain"))
	off := buildSmall(t, src, filepath.Join(dir, "off"), "-offset", "8K")
	a, err := os.ReadFile(plain)
	mustDo(t, err)
	b, err := os.ReadFile(off)
	mustDo(t, err)
	if len(b) != 8192+len(a) || !bytes.Equal(b[:8192], make([]byte, 8192)) || !bytes.Equal(b[8192:], a) {
		t.Fatalf("-offset 8K: %d bytes, want 8192 zeros and then the %d bytes of the image built without it", len(b), len(a))
	}
	out, err := exec.Command("unsquashfs", "-lls", "-o", "8192", "-d", "R", off).CombinedOutput()
	if err != nil || string(out) != listing(t, plain) {
		t.Errorf("unsquashfs -o 8192: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	mustDo(t, os.Mkdir(mnt, 0o755))
	if out, err := exec.Command("mount", "-o", "loop,ro,offset=8192", off, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop,offset=8192: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "dir/sub/keep.txt"))
	if uerr := unix.Unmount(mnt, 0); uerr != nil {
		t.Errorf("unmount: %v", uerr)
	}
	if err != nil || string(got) != strings.Repeat("keep me ", 1000) {
		t.Errorf("through the kernel: %d bytes, %v", len(got), err)
	}
	// Without -noappend the image at the offset is appended to; the
	// bytes before it stay.
	mustDo(t, os.WriteFile(filepath.Join(dir, "head"), []byte("header"), 0o644))
	f, err := os.OpenFile(off, os.O_WRONLY, 0)
	mustDo(t, err)
	_, err = f.WriteAt([]byte("header"), 100)
	mustDo(t, err)
	mustDo(t, f.Close())
	var stdout, stderr bytes.Buffer
	if code := Main([]string{filepath.Join(dir, "head"), off, "-offset", "8192", "-quiet"}, &stdout, &stderr); code != 0 {
		t.Fatalf("append at the offset = %d: %s", code, &stderr)
	}
	b, err = os.ReadFile(off)
	mustDo(t, err)
	if !bytes.Equal(b[:8192], append(append(make([]byte, 100), "header"...), make([]byte, 8192-106)...)) {
		t.Errorf("the bytes before the offset changed")
	}
	out, err = exec.Command("unsquashfs", "-lls", "-o", "8192", "-d", "R", off).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "R/head") || !strings.Contains(string(out), "R/dir/sub/keep.txt") {
		t.Errorf("unsquashfs -o 8192 after the append: %v\n%s", err, out)
	}
}

// TestTarAgainstMksquashfs: an image made from a tar archive on standard
// input lists and extracts as Debian's mksquashfs -tar makes it, for an
// archive of a whole tree (with ./, hard links, a device, a FIFO, a file
// streamed rather than prefetched, an xattr) and one listing a few files
// out of order without their directories; the kernel reads the xattr and
// the contents; no spool file is left behind.
func TestTarAgainstMksquashfs(t *testing.T) {
	src := buildSource(t)
	mustDo(t, unix.Mknod(filepath.Join(src, "dir/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	mustDo(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o640))
	mustDo(t, unix.Setxattr(filepath.Join(src, "dir/b.gz"), "user.origin", []byte("tar"), 0))
	tmp := t.TempDir()
	spoolDir := filepath.Join(tmp, "spool")
	mustDo(t, os.Mkdir(spoolDir, 0o755))
	t.Setenv("TMPDIR", spoolDir)
	archives := map[string][]string{
		"whole":     {"--xattrs", "-C", src, "-cf", "-", "."},
		"scattered": {"-C", src, "-cf", "-", "zeta", "dir/sub/keep.txt", "big.bin", "alpha", "dir/hard"},
		// Owner names that exist here take their ids from here; others
		// keep the archive's numbers.
		"named owners": {"-C", src, "--owner=root:1234", "--group=no-such-group-here:777", "-cf", "-", "alpha", "dir/sub"},
	}
	for name, targs := range archives {
		t.Run(name, func(t *testing.T) {
			archive, err := exec.Command("tar", targs...).Output()
			if err != nil {
				t.Fatalf("tar %q: %v", targs, err)
			}
			ours, ref := filepath.Join(tmp, name+"-ours"), filepath.Join(tmp, name+"-ref")
			// Fixed times: the made-up root and directories get the
			// current time.
			opts := []string{"-tar", "-noappend", "-quiet", "-no-progress", "-all-time", "7", "-mkfs-time", "7"}
			cmd := exec.Command("mksquashfs", append([]string{"-", ref}, opts...)...)
			cmd.Stdin = bytes.NewReader(archive)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("Debian's mksquashfs -tar: %v\n%s", err, out)
			}
			var stdout, stderr bytes.Buffer
			if code := mainIO(append([]string{"-", ours}, opts...), bytes.NewReader(archive), &stdout, &stderr); code != 0 {
				t.Fatalf("mksquashfs -tar = %d: %s", code, &stderr)
			}
			got := listing(t, ours)
			if want := listing(t, ref); got != want {
				t.Errorf("listing differs from mksquashfs -tar\nours:\n%s\nmksquashfs:\n%s", got, want)
			}
			if out, err := exec.Command("diff", "-r", "--no-dereference", extract(t, ours), extract(t, ref)).CombinedOutput(); err != nil && !onlyAlikeSpecials(string(out)) {
				t.Errorf("contents differ from mksquashfs -tar: %v\n%s", err, out)
			}
			// (t.TempDir uses TMPDIR too.)
			if left, _ := filepath.Glob(filepath.Join(spoolDir, "squashportage-*")); len(left) != 0 {
				t.Errorf("left in TMPDIR: %q", left)
			}
			if name != "whole" {
				return
			}
			mnt := filepath.Join(tmp, "mnt")
			mustDo(t, os.Mkdir(mnt, 0o755))
			privileged.MountSquashfs(t, ours, mnt)
			buf := make([]byte, 16)
			if n, err := unix.Getxattr(filepath.Join(mnt, "dir/b.gz"), "user.origin", buf); err != nil || string(buf[:n]) != "tar" {
				t.Errorf("user.origin of dir/b.gz through the kernel: %q, %v", buf[:n], err)
			}
			var a, h unix.Stat_t
			mustDo(t, unix.Stat(filepath.Join(mnt, "alpha"), &a))
			mustDo(t, unix.Stat(filepath.Join(mnt, "dir/hard"), &h))
			if a.Ino != h.Ino || a.Nlink != 2 {
				t.Errorf("alpha and dir/hard: inodes %d, %d, nlink %d: not one file", a.Ino, h.Ino, a.Nlink)
			}
			for _, f := range []string{"big.bin", "dir/sub/keep.txt", "sparse.bin"} {
				want, err := os.ReadFile(filepath.Join(src, f))
				mustDo(t, err)
				if got, err := os.ReadFile(filepath.Join(mnt, f)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s through the kernel: %d bytes (%v), want the source's %d", f, len(got), err, len(want))
				}
			}
		})
	}
	// A snapshot-like archive (everything below one top directory) with
	// -strip-components 1 gives the image of the archive of ".".
	topped, err := exec.Command("tar", "-C", filepath.Dir(src), "-cf", "-", filepath.Base(src)).Output()
	mustDo(t, err)
	stripped := filepath.Join(tmp, "stripped")
	var stdout, stderr bytes.Buffer
	if code := mainIO([]string{"-", stripped, "-tar", "-strip-components", "1", "-quiet", "-all-time", "7"}, bytes.NewReader(topped), &stdout, &stderr); code != 0 {
		t.Fatalf("-strip-components 1 = %d: %s", code, &stderr)
	}
	if got, want := listing(t, stripped), listing(t, filepath.Join(tmp, "whole-ref")); got != want {
		t.Errorf("-strip-components 1 listing differs from the archive of . made by Debian's mksquashfs\nours:\n%s\nmksquashfs:\n%s", got, want)
	}

	if code := mainIO([]string{"-", filepath.Join(tmp, "bad"), "-tar", "-quiet"}, strings.NewReader("not a tar archive at all, but long enough to be read as a header"), &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "tar:") {
		t.Errorf("a broken archive = %d: %s", code, &stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "bad")); !os.IsNotExist(err) {
		t.Errorf("an image was left behind for a broken archive: %v", err)
	}
}

// TestBlockDeviceDest: DEST may be a block device, as with mksquashfs: the
// image is written at its start, padded with zeros to 4K whatever the
// device held, and mounts; a device that is mounted is not written.
func TestBlockDeviceDest(t *testing.T) {
	src := buildSource(t)
	backing := filepath.Join(t.TempDir(), "disk")
	junk := bytes.Repeat([]byte{0xA5}, 8<<20)
	mustDo(t, os.WriteFile(backing, junk, 0o644))
	dev, f, err := loopdev.Attach(backing, false)
	mustDo(t, err)
	defer f.Close() // autoclear: the device goes with the last close
	var out, errb bytes.Buffer
	if code := Main([]string{src, dev, "-noappend", "-quiet"}, &out, &errb); code != 0 {
		t.Fatalf("mksquashfs to %s = %d: %s", dev, code, &errb)
	}
	head := make([]byte, squash.SuperblockSize)
	_, err = f.ReadAt(head, 0)
	mustDo(t, err)
	var sb squash.Superblock
	mustDo(t, sb.UnmarshalBinary(head))
	pad := make([]byte, (sb.BytesUsed+4095)&^4095-sb.BytesUsed)
	_, err = f.ReadAt(pad, int64(sb.BytesUsed))
	mustDo(t, err)
	if !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Errorf("the %d bytes of padding after the image are not zeros", len(pad))
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustDo(t, os.Mkdir(mnt, 0o755))
	mustDo(t, unix.Mount(dev, mnt, "squashfs", unix.MS_RDONLY, ""))
	if b, err := os.ReadFile(filepath.Join(mnt, "dir/sub/keep.txt")); err != nil || string(b) != strings.Repeat("keep me ", 1000) {
		t.Errorf("keep.txt through the kernel: %d bytes, %v", len(b), err)
	}
	errb.Reset()
	if code := Main([]string{src, dev, "-noappend", "-quiet"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "is mounted at") {
		t.Errorf("mksquashfs to the mounted %s = %d: %s", dev, code, &errb)
	}
	mustDo(t, unix.Unmount(mnt, 0))
}
