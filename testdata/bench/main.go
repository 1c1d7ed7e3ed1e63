// Command bench measures squashportage against squashfs-tools on the same
// trees, in the same run, and prints the ratios (make bench):
//
//   - writer: our mksquashfs and Debian's, run alternately, on a generated
//     Portage-like tree and on the Linux kernel sources from Debian's
//     linux-source package, for gzip, xz, zstd and lz4 at their defaults,
//     128 KiB blocks, 2 processors: wall time, CPU time, peak RSS, size;
//   - persist: a Portage image mounted with an overlay, about 1% of the tree
//     changed the way emerge --sync does, then `squashportage persist`
//     against a full mksquashfs rebuild of the merged view, and the rsync
//     delta from the old image to each new one;
//   - extract: our unsquashfs and Debian's on the same images of the
//     Portage-like tree (written by our mksquashfs), 2 processors, run
//     alternately with caches dropped before each run, into a directory of
//     BENCH_DIR just emptied (the tree before removed) and into a freshly
//     made ext4 (a new stick): wall time, CPU time, peak RSS;
//   - tar: an image of the Portage-like tree from a tar archive of it on
//     standard input (mksquashfs - IMG -tar; squashfs-tools-ng's tar2sqfs),
//     gzip and xz: wall time, CPU time, peak RSS, size.
//
// It needs root (mounts, drop_caches), squashfs-tools and rsync. Trees are cached in
// BENCH_DIR (default /var/tmp/squashportage-bench).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", envOr("BENCH_DIR", "/var/tmp/squashportage-bench"), "work directory (trees are cached here)")
	bin := flag.String("bin", "bin/squashportage", "squashportage binary")
	scale := flag.Float64("scale", 1, "Portage tree scale (1 is about 160k files)")
	runs := flag.Int("runs", 1, "runs of each writer (the median is reported)")
	readRounds := flag.Int("read-rounds", 5, "rounds of cold reads of the writers' images, each image once per round (the median is reported)")
	only := flag.String("only", "writer,persist,layers,extract,tar", "parts to run: writer, persist, layers, extract, tar (an image from a tar archive on standard input)")
	trees := flag.String("trees", "portage,linux", "trees for the writer part")
	comps := flag.String("comps", "gzip,xz,zstd,lz4", "compressors for the writer part")
	pcomps := flag.String("persist-comps", "gzip,xz", "compressors for the persist part")
	pbases := flag.String("persist-bases", "ours,mksquashfs,mksquashfs+sums", "who writes the image persist starts from: ours, mksquashfs, or mksquashfs+sums (mksquashfs's, then verify --record-sums)")
	peerList := flag.String("peers", envOr("BENCH_PEERS", "debian-4.5=/usr/bin/mksquashfs"), "writers to compare with, NAME=BINARY,... (gensquashfs: squashfs-tools-ng's)")
	ecomps := flag.String("extract-comps", "gzip,xz", "compressors for the extract part")
	flag.Parse()
	b := &bench{dir: *dir, runs: *runs, readRounds: max(1, *readRounds)}
	var err error
	if b.bin, err = filepath.Abs(*bin); err != nil {
		fail(err)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		fail(err)
	}
	portage := filepath.Join(b.dir, fmt.Sprintf("portage-%g", *scale))
	if err := b.portage(portage, *scale); err != nil {
		fail(err)
	}
	if strings.Contains(*only, "writer") {
		for _, tree := range strings.Split(*trees, ",") {
			src := portage
			if tree == "linux" {
				if src, err = b.linux(); err != nil {
					fail(err)
				}
			}
			b.writerPeers(tree, src, strings.Split(*comps, ","), parsePeers(*peerList))
		}
	}
	if strings.Contains(*only, "layers") {
		if err := b.layers(portage, "gzip"); err != nil {
			fail(err)
		}
	}
	if strings.Contains(*only, "extract") {
		if err := b.extract(portage, strings.Split(*ecomps, ",")); err != nil {
			fail(err)
		}
	}
	if strings.Contains(*only, "tar") {
		if err := b.tarInput(portage, []string{"gzip", "xz"}, parsePeers(*peerList)); err != nil {
			fail(err)
		}
	}
	if strings.Contains(*only, "persist") {
		for _, c := range strings.Split(*pcomps, ",") {
			for _, base := range strings.Split(*pbases, ",") {
				if err := b.persist(portage, c, base, parsePeers(*peerList)); err != nil {
					fail(err)
				}
			}
		}
	}
}

type bench struct {
	dir  string
	bin  string
	runs int
	// readRounds: cold reads of one image varied by up to 20% (md5-cache
	// of the Portage-like tree, gzip: 3.67-4.44 s), and the best of three
	// peers' single reads is biased low against one read of ours. With three
	// rounds, one cell's ratio still moved by up to 0.25 from one full
	// run to the next (Portage-like zstd walk: 1.28, then 1.03); the
	// first full run with five took 87 minutes, against 81 with three.
	readRounds int
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (b *bench) portage(dir string, scale float64) error {
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return nil
	}
	os.RemoveAll(dir)
	fmt.Printf("generating a Portage-like tree (scale %g) in %s\n", scale, dir)
	cmd := exec.Command("go", "run", "./testdata/gentree", "-o", dir, "-scale", fmt.Sprint(scale))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}

// linux unpacks the kernel sources of Debian's linux-source package.
func (b *bench) linux() (string, error) {
	dir := filepath.Join(b.dir, "linux")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return b.linuxTree(dir)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Println("fetching Debian's linux-source package")
	sh := `set -e; cd "$1"; pkg=$(apt-cache depends linux-source | awk '/Depends: linux-source-/{print $2; exit}'); apt-get download "$pkg"; dpkg-deb -x "$pkg"_*.deb x; tar -xf x/usr/src/linux-source-*.tar.* ; rm -rf x "$pkg"_*.deb`
	cmd := exec.Command("sh", "-c", sh, "sh", dir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("linux-source: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	return b.linuxTree(dir)
}

func (b *bench) linuxTree(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "linux-source-*"))
	if len(m) != 1 {
		return "", fmt.Errorf("no linux-source-* directory in %s", dir)
	}
	return m[0], nil
}

// result is one measured command.
type result struct {
	wall, cpu time.Duration
	rss       int64 // KiB
	size      int64
}

func measure(out string, name string, args ...string) (result, error) {
	return measureIn(out, "", name, args...)
}

// measureIn is measure with standard input read from the file stdin
// ("": none).
func measureIn(out, stdin string, name string, args ...string) (result, error) {
	if out != "" {
		os.Remove(out)
	}
	// Whatever the previous run wrote may still be on its way to the
	// disk, and that writeback would fall on whoever runs next: right
	// after the kernel tree was unpacked, our lz4 writer took 4.3 s in
	// the bench, and 3.1 s by hand once the tree had been written back.
	syscall.Sync()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r := result{wall: wall, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rss: ru.Maxrss}
	if fi, err := os.Stat(out); out != "" && err == nil {
		r.size = fi.Size()
	}
	return r, nil
}

func median(rs []result) result {
	// Few runs: sort by wall time and take the middle one.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].wall < rs[j-1].wall; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	return rs[len(rs)/2]
}

// extract times our unsquashfs against Debian's on images of the Portage
// tree written by our mksquashfs, into two destinations: BENCH_DIR's file
// system right after the previous run's tree was removed, and a freshly
// made ext4 on a loop device. They differ: ext4 without a journal (as
// flash users often make it) scans the inodes deleted in the last minute
// on every allocation, which punished extracting right after a removal.
func (b *bench) extract(portage string, comps []string) error {
	fmt.Printf("\n### Extract of the Portage tree (%s), 2 processors, median of %d\n\n", portage, b.runs)
	fmt.Println("| comp | destination | ours wall | unsquashfs wall | time ratio | ours CPU | unsquashfs CPU | ours RSS | unsquashfs RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	img := filepath.Join(b.dir, "x.sqfs")
	defer os.Remove(img)
	for _, c := range comps {
		if _, err := measure(img, b.bin, "mksquashfs", portage, img, "-comp", c, "-noappend", "-quiet", "-no-progress", "-e", ".complete"); err != nil {
			return err
		}
		for _, where := range []string{"emptied dir", "new ext4"} {
			var ours, theirs []result
			for range b.runs {
				for _, who := range []string{"ours", "theirs"} {
					dest, done, err := b.extractDest(where, img)
					if err != nil {
						return err
					}
					args := []string{"-q", "-n", "-p", "2", "-d", dest, img}
					var r result
					if who == "ours" {
						r, err = measure("", b.bin, append([]string{"unsquashfs"}, args...)...)
						ours = append(ours, r)
					} else {
						r, err = measure("", "unsquashfs", args...)
						theirs = append(theirs, r)
					}
					if derr := done(); err == nil {
						err = derr
					}
					if err != nil {
						return err
					}
				}
			}
			o, t := median(ours), median(theirs)
			fmt.Printf("| %s | %s | %.1f s | %.1f s | %.2f | %.1f s | %.1f s | %d MB | %d MB |\n",
				c, where, o.wall.Seconds(), t.wall.Seconds(), o.wall.Seconds()/t.wall.Seconds(),
				o.cpu.Seconds(), t.cpu.Seconds(), o.rss>>10, t.rss>>10)
		}
	}
	return freshDest(filepath.Join(b.dir, "x.out"), "")
}

// extractDest prepares a destination for one extraction of img, with the
// image cached and nothing else: done cleans up what needs it.
func (b *bench) extractDest(where, img string) (dest string, done func() error, err error) {
	nothing := func() error { return nil }
	if where == "emptied dir" {
		dest = filepath.Join(b.dir, "x.out")
		return dest, nothing, freshDest(dest, img)
	}
	fsimg := filepath.Join(b.dir, "x.ext4")
	mnt := filepath.Join(b.dir, "x.mnt")
	os.Remove(fsimg)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", nil, err
	}
	// Sparse, ample for a 0.5 GB tree; mkfs's defaults (with a journal).
	if err := os.WriteFile(fsimg, nil, 0o600); err != nil {
		return "", nil, err
	}
	if err := os.Truncate(fsimg, 8<<30); err != nil {
		return "", nil, err
	}
	for _, c := range [][]string{{"mkfs.ext4", "-q", "-F", fsimg}, {"mount", "-o", "loop", fsimg, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	done = func() error {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %v: %s", mnt, err, out)
		}
		return os.Remove(fsimg)
	}
	if err := freshDest(filepath.Join(mnt, "out"), img); err != nil {
		done()
		return "", nil, err
	}
	return filepath.Join(mnt, "out"), done, nil
}

// freshDest removes dest and drops the page cache, then reads img (if
// given) back into it, so every extraction starts alike: the image cached,
// nothing of the previous run's tree in memory. Without dropping caches,
// ext4 without a journal makes a create right after a large delete scan
// the recently freed inodes still in the buffer cache, which costs the
// next run tens of seconds of system time depending on where its inodes
// land.
func freshDest(dest, img string) error {
	if err := os.RemoveAll(dest); err != nil {
		return err
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o644); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	if img == "" {
		return nil
	}
	return cacheFile(img)
}

// persist times squashportage persist after an emerge --sync-like change
// against a full mksquashfs rebuild of the same merged view.
func (b *bench) persist(portage, comp, baseWriter string, peers []peer) error {
	work := filepath.Join(b.dir, "persist-"+comp)
	os.RemoveAll(work)
	if err := os.MkdirAll(filepath.Join(work, "target"), 0o755); err != nil {
		return err
	}
	img := filepath.Join(work, "gentoo.sqfs")
	state := filepath.Join(work, "state")
	target := filepath.Join(work, "target")
	// The image persist starts from: made by our writer, or by mksquashfs
	// as a machine moving from the old shell scripts has it, and then
	// perhaps given block sums by `verify --record-sums` as README's
	// Installing suggests (that one-off cost is reported too).
	mk := []string{"mksquashfs", portage, img, "-comp", comp, "-noappend", "-quiet", "-no-progress", "-e", ".complete"}
	var err error
	var recordSums *result
	switch baseWriter {
	case "mksquashfs", "mksquashfs+sums":
		_, err = measure(img, mk[0], mk[1:]...)
		if err == nil && baseWriter == "mksquashfs+sums" {
			var r result
			r, err = measure("", b.bin, "verify", "--record-sums", img)
			recordSums = &r
		}
	case "ours":
		_, err = measure(img, b.bin, mk...)
	default:
		err = fmt.Errorf("persist bench: base %q: want ours, mksquashfs or mksquashfs+sums", baseWriter)
	}
	if err != nil {
		return err
	}
	base := filepath.Join(work, "base.sqfs")
	if err := run("cp", img, base); err != nil {
		return err
	}
	// Each mode persists the same change (gentree's mutation is seeded)
	// from the same base; every peer then rebuilds the merged view of the
	// whole-image persist. A private mount namespace keeps the bench's
	// mounts to itself.
	script := `set -e
bin=$1; img=$2; state=$3; target=$4; work=$5; spec=$6; rebuild=$7
rm -rf $state; cp $work/base.sqfs $img
$bin mount --state-dir $state $img:$target:size=2g$spec >/dev/null
go run ./testdata/gentree -o $target -mutate 0.01 >&2
# The bench's own copies are still being written back; let them land so
# persist's fsync waits for its image only.
sync
/usr/bin/time -f 'PERSIST %e %U %S %M' $bin persist --state-dir $state $target >&2
$bin umount --state-dir $state $target >/dev/null
if [ -n "$rebuild" ]; then
	$bin mount --state-dir $state $img:$target:size=2g$spec >/dev/null
	eval "$rebuild"
	$bin umount --state-dir $state $target >/dev/null
	# Once more from the image that persist wrote: its block sums spare
	# the decoding of every reused block, as on every persist after the
	# first.
	$bin mount --state-dir $state $img:$target:size=2g$spec >/dev/null
	go run ./testdata/gentree -o $target -mutate 0.01 -seed 2 >&2
	sync
	/usr/bin/time -f 'PERSIST2 %e %U %S %M' $bin persist --state-dir $state $target >&2
	$bin umount --state-dir $state $target >/dev/null
fi
`
	// Each rebuild starts with nothing of the previous one's to write
	// back, as measure's runs do.
	timed := func(label, bin string, args []string) string {
		return fmt.Sprintf("sync\n/usr/bin/time -f '%s %%e %%U %%S %%M' %s %s >&2\n", label, bin, strings.Join(args, " "))
	}
	rebuild := ""
	for i, p := range peers {
		rebuild += timed(fmt.Sprintf("REBUILD%d", i), p.bin, p.args(target, filepath.Join(work, fmt.Sprintf("rebuild-%d.sqfs", i)), comp))
	}
	rebuild += timed("OURS", "$bin", append([]string{"mksquashfs"}, peer{}.args(target, filepath.Join(work, "ours.sqfs"), comp)...))
	type modeRun struct {
		name, spec string
		times      map[string][]float64
		size       float64
		written    string
	}
	modes := []*modeRun{{name: "whole image (layers=0)", spec: ",layers=0"}, {name: "delta layer (default)", spec: ""}}
	for i, m := range modes {
		rb := ""
		if i == 0 {
			rb = rebuild
		}
		cmd := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script, "bash", b.bin, img, state, target, work, m.spec, rb)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		cmd.Stdout = os.Stdout
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("persist bench: %v\n%s", err, stderr.String())
		}
		m.times = map[string][]float64{}
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 5 && (strings.HasPrefix(f[0], "PERSIST") || strings.HasPrefix(f[0], "REBUILD") || f[0] == "OURS") {
				for _, x := range f[1:] {
					v, _ := strconv.ParseFloat(x, 64)
					m.times[f[0]] = append(m.times[f[0]], v)
				}
			}
		}
		if len(m.times["PERSIST"]) != 4 {
			return fmt.Errorf("persist bench: no timings in\n%s", stderr.String())
		}
		// What the persist added to storage: a new image, or a layer.
		var added int64
		matches, _ := filepath.Glob(img + "*")
		for _, p := range matches {
			if fi, err := os.Stat(p); err == nil && !strings.HasSuffix(p, ".old") {
				added += fi.Size()
			}
		}
		if fi, err := os.Stat(base); err == nil && i == 1 {
			added -= fi.Size()
		}
		m.written = fmt.Sprintf("%.1f MB", float64(added)/1e6)
	}
	sizeOf := func(p string) float64 { fi, _ := os.Stat(p); return float64(fi.Size()) }
	by := baseWriter
	if recordSums != nil {
		by = "mksquashfs, then given block sums by verify --record-sums"
	}
	fmt.Printf("\n### Persist after a 1%% sync-like change (%s, image first written by %s)\n\n", comp, by)
	fmt.Println("| who | wall | CPU | peak RSS | image (or layer) written | persist's speedup |")
	fmt.Println("|---|---|---|---|---|---|")
	if r := recordSums; r != nil {
		fmt.Printf("| verify --record-sums of the base (once) | %.2f s | %.2f s | %.0f MB | | |\n", r.wall.Seconds(), r.cpu.Seconds(), float64(r.rss)/1024)
	}
	fastest := 0.0
	for i, p := range peers {
		r := modes[0].times[fmt.Sprintf("REBUILD%d", i)]
		if len(r) != 4 {
			return fmt.Errorf("persist bench: no timings of %s", p.name)
		}
		if fastest == 0 || r[0] < fastest {
			fastest = r[0]
		}
	}
	for _, m := range modes {
		t := m.times["PERSIST"]
		fmt.Printf("| persist, %s | %.2f s | %.2f s | %.0f MB | %s | %.1fx the fastest rebuild |\n", m.name, t[0], t[1]+t[2], t[3]/1024, m.written, fastest/t[0])
		if t := m.times["PERSIST2"]; len(t) == 4 {
			fmt.Printf("| persist, %s, next time (from persist's image) | %.2f s | %.2f s | %.0f MB | %s | %.1fx the fastest rebuild |\n", m.name, t[0], t[1]+t[2], t[3]/1024, m.written, fastest/t[0])
		}
	}
	for i, p := range peers {
		r := modes[0].times[fmt.Sprintf("REBUILD%d", i)]
		fmt.Printf("| full rebuild, %s | %.2f s | %.2f s | %.0f MB | %.1f MB | |\n", p.name, r[0], r[1]+r[2], r[3]/1024, sizeOf(filepath.Join(work, fmt.Sprintf("rebuild-%d.sqfs", i)))/1e6)
	}
	if o := modes[0].times["OURS"]; len(o) == 4 {
		fmt.Printf("| full rebuild, ours | %.2f s | %.2f s | %.0f MB | %.1f MB | |\n", o[0], o[1]+o[2], o[3]/1024, sizeOf(filepath.Join(work, "ours.sqfs"))/1e6)
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}

var literalRE = regexp.MustCompile(`Literal data: ([\d,]+) bytes`)

// rsyncLiteral is the data rsync must send to turn old into new: the
// literal bytes of its delta.
func rsyncLiteral(old, new string) (int64, error) {
	tmp, err := os.MkdirTemp("", "rsync-delta")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "img")
	if err := run("cp", old, dst); err != nil {
		return 0, err
	}
	out, err := exec.Command("rsync", "--no-whole-file", "--inplace", "--stats", "--only-write-batch="+filepath.Join(tmp, "batch"), new, dst).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("rsync: %v\n%s", err, out)
	}
	m := literalRE.FindSubmatch(out)
	if m == nil {
		return 0, errors.New("rsync printed no literal data figure")
	}
	return strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
}
