package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A peer is another image writer the writer part compares with.
type peer struct {
	name, bin string
	ng        bool // squashfs-tools-ng's gensquashfs: its own command line
}

// parsePeers reads NAME=BINARY,... ; a binary named gensquashfs is taken
// for squashfs-tools-ng's. Missing binaries are left out, with a note.
func parsePeers(s string) []peer {
	var out []peer
	for _, kv := range strings.Split(s, ",") {
		name, bin, ok := strings.Cut(kv, "=")
		if !ok || bin == "" {
			continue
		}
		if _, err := os.Stat(bin); err != nil && !strings.Contains(bin, "/") {
			if p, err := lookPath(bin); err == nil {
				bin = p
			}
		}
		if _, err := os.Stat(bin); err != nil {
			fmt.Printf("(peer %s: %s not found: left out)\n", name, bin)
			continue
		}
		out = append(out, peer{name: name, bin: bin, ng: filepath.Base(bin) == "gensquashfs"})
	}
	return out
}

func lookPath(bin string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, bin)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func (p peer) args(src, img, comp string) []string {
	if p.ng {
		return []string{"--pack-dir", src, "--compressor", comp, "--block-size", "131072", "--num-jobs", "2", "--force", "--quiet", img}
	}
	return []string{src, img, "-comp", comp, "-b", "128K", "-processors", "2", "-noappend", "-quiet", "-no-progress"}
}

// shortBuild is the wall time under which a build is timed at least
// shortRuns times: one disturbance of the machine (writeback, another
// process) moves a 3-second build by a third, a 60-second one by little.
const (
	shortBuild = 20 * time.Second
	shortRuns  = 3
)

// runsFor says how many rounds of a compressor's builds to make, given
// those made so far: b.runs, or shortRuns when every tool's first build
// took less than shortBuild.
func (b *bench) runsFor(runs [][]result) int {
	if b.runs >= shortRuns || len(runs[0]) == 0 {
		return b.runs
	}
	for _, rs := range runs {
		if rs[0].wall >= shortBuild {
			return b.runs
		}
	}
	return shortRuns
}

// writerPeers runs our mksquashfs and every peer alternately on src and
// prints, per compressor, each one's wall time, CPU, peak RSS and size, and
// ours against the fastest and the smallest peer.
func (b *bench) writerPeers(tree, src string, comps []string, peers []peer) {
	fmt.Printf("\n### Writer on the %s tree (%s), 128 KiB blocks, 2 processors, median of %d\n\n", tree, src, b.runs)
	head := "| comp | ours"
	for _, p := range peers {
		head += " | " + p.name
	}
	fmt.Println(head + " | time / fastest peer | size / smallest peer |")
	fmt.Println(strings.Repeat("|---", 4+len(peers)) + "|")
	var reads []string
	for _, c := range comps {
		// Each tool's last image is kept, to be read back through the
		// kernel once every writer has run: the cold reads drop caches,
		// and writers are timed on a source tree in the page cache.
		imgs := make([]string, 1+len(peers))
		for i := range imgs {
			imgs[i] = filepath.Join(b.dir, fmt.Sprintf("w-%d.sqfs", i))
		}
		if err := warm(src); err != nil {
			fail(err)
		}
		runs := make([][]result, 1+len(peers))
		for round := 0; round < b.runsFor(runs); round++ {
			o, err := measure(imgs[0], b.bin, append([]string{"mksquashfs"}, peer{}.args(src, imgs[0], c)...)...)
			if err != nil {
				fail(err)
			}
			runs[0] = append(runs[0], o)
			for i, p := range peers {
				r, err := measure(imgs[i+1], p.bin, p.args(src, imgs[i+1], c)...)
				if err != nil {
					fail(err)
				}
				runs[i+1] = append(runs[i+1], r)
			}
		}
		// Rounds go over every image in turn, so that a slow spell of the
		// machine falls on all of them alike.
		rounds := make([][]coldRead, len(imgs))
		for range b.readRounds {
			for i, img := range imgs {
				r, err := b.coldReads(img, tree == "portage")
				if err != nil {
					fail(err)
				}
				rounds[i] = append(rounds[i], r)
			}
		}
		reads = append(reads, readRows(c, peers, rounds)...)
		cell := func(r result) string {
			return fmt.Sprintf("%.1f s, %.1f s CPU, %d MB RSS, %.1f MB", r.wall.Seconds(), r.cpu.Seconds(), r.rss>>10, float64(r.size)/1e6)
		}
		ours := median(runs[0])
		label := c
		if n := len(runs[0]); n != b.runs {
			label = fmt.Sprintf("%s (median of %d)", c, n)
		}
		row := "| " + label + " | " + cell(ours)
		var fastest, smallest result
		for i := range peers {
			r := median(runs[i+1])
			row += " | " + cell(r)
			if fastest.wall == 0 || r.wall < fastest.wall {
				fastest = r
			}
			if smallest.size == 0 || r.size < smallest.size {
				smallest = r
			}
		}
		if len(peers) > 0 {
			row += fmt.Sprintf(" | %.2f | %.3f |", ours.wall.Seconds()/fastest.wall.Seconds(), float64(ours.size)/float64(smallest.size))
		}
		fmt.Println(row)
		for _, img := range imgs {
			os.Remove(img)
		}
	}
	fmt.Printf("\nCold reads of those images through the kernel (loop, read-only; caches dropped before each; median of %d rounds, each reading every image in turn): seconds and reads of the loop device. In brackets, ours over the best peer's image: for time, the median of the rounds' ratios to the peer with the least median time, then the least and greatest of them (single reads vary by 5-20%% here); for reads, over the fewest:\n\n", b.readRounds)
	fmt.Println("| comp | tool | whole tree (tar) | metadata/md5-cache (cat) | metadata walk (find -ls) |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range reads {
		fmt.Println(r)
	}
}

// warm reads every file of src, so that writers find it in the page cache
// as they did before the cold reads dropped it.
func warm(src string) error {
	cmd := exec.Command("sh", "-c", `tar cf - -C "$1" . | cat >/dev/null`, "sh", src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("warm %s: %v: %s", src, err, out)
	}
	return nil
}

// coldRead is how long reading an image through the kernel took, and how
// many reads of the loop device it made: the whole tree as tar reads it,
// every file of metadata/md5-cache by path (Portage's dependency cache,
// read on every dependency calculation; zero for other trees), and a walk
// that stats every entry. The read counts do not depend on the machine's
// spells the way times do (the walk's not at all).
type coldRead struct{ tar, md5, walk timedRead }

type timedRead struct {
	d     time.Duration
	reads int64
}

// medianRead is the median of each column of rs on its own (time and
// reads apart).
func medianRead(rs []coldRead) coldRead {
	col := func(f func(coldRead) timedRead) timedRead {
		ds := make([]time.Duration, len(rs))
		ns := make([]int64, len(rs))
		for i, r := range rs {
			ds[i], ns[i] = f(r).d, f(r).reads
		}
		slices.Sort(ds)
		slices.Sort(ns)
		return timedRead{ds[len(ds)/2], ns[len(ns)/2]}
	}
	return coldRead{
		tar:  col(func(r coldRead) timedRead { return r.tar }),
		md5:  col(func(r coldRead) timedRead { return r.md5 }),
		walk: col(func(r coldRead) timedRead { return r.walk }),
	}
}

// coldReads mounts img read-only and times the reads, dropping caches
// before each.
func (b *bench) coldReads(img string, md5 bool) (coldRead, error) {
	mnt := filepath.Join(b.dir, "r.mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return coldRead{}, err
	}
	sh := `set -e
img=$1; mnt=$2; md5=$3
mount -t squashfs -o loop,ro,nodev,nosuid "$img" "$mnt"
trap 'umount "$mnt"' EXIT
` + coldReadsSh + `
dev=$(findmnt -n -o SOURCE "$mnt")
coldreads "$mnt" "$md5" "/sys/block/${dev#/dev/}/stat"
`
	m := "0"
	if md5 {
		m = "1"
	}
	out, err := exec.Command("sh", "-c", sh, "sh", img, mnt, m).Output()
	if err != nil {
		return coldRead{}, fmt.Errorf("cold reads of %s: %v", img, err)
	}
	rs, err := parseColdReads(string(out))
	if err != nil || len(rs) != 3 {
		return coldRead{}, fmt.Errorf("cold reads of %s: %q", img, out)
	}
	return coldRead{rs[0], rs[1], rs[2]}, nil
}

// parseColdReads parses coldreads' output.
func parseColdReads(out string) ([]timedRead, error) {
	var rs []timedRead
	for _, f := range strings.Fields(out) {
		ns, n, ok := strings.Cut(f, ":")
		v, err := strconv.ParseInt(ns, 10, 64)
		if err != nil || !ok {
			return nil, fmt.Errorf("bad cold read %q", f)
		}
		ios, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad cold read %q", f)
		}
		rs = append(rs, timedRead{time.Duration(v), ios})
	}
	return rs, nil
}

// coldReadsSh defines the shell function coldreads DIR MD5 [STAT], which
// prints, for each read coldRead describes of the tree at DIR (md5-cache
// only if MD5 is 1, else 0), its nanoseconds and, with STAT (a block
// device's /sys/block/*/stat), the reads it made of that device, as
// NS:READS; caches are dropped before each.
const coldReadsSh = `t() {
	sync; echo 3 > /proc/sys/vm/drop_caches
	r0=0; [ -n "$st" ] && r0=$(awk '{print $1}' "$st")
	a=$(date +%s%N); sh -c "$1"; z=$(date +%s%N)
	r1=0; [ -n "$st" ] && r1=$(awk '{print $1}' "$st")
	echo -n "$((z - a)):$((r1 - r0)) "
}
coldreads() {
	st=$3
	t "tar cf - -C '$1' . | cat >/dev/null"
	# Portage opens md5-cache entries by name: the list is made first
	# (t drops what listing cached), so that reading is all the step does
	# and its reads do not depend on how find and cat interleave.
	if [ "$2" = 1 ]; then
		list=$(mktemp)
		(cd "$1" && find metadata/md5-cache -type f -print0) > "$list"
		t "cd '$1' && xargs -0 cat < '$list' >/dev/null"
		rm -f "$list"
	else
		echo -n "0:0 "
	fi
	t "find '$1' -ls >/dev/null"
	echo
}`

// readRows formats one compressor's cold reads, rounds[i] being image i's
// (ours first) in every round: each tool's medians, and in ours, its ratio
// to the best peer's image in each column. A read's time moves by 5-20%
// from one read to the next here, so the ratio is taken within each round
// (a round reads every image within a minute or two, so a slow spell of
// the machine falls on both) against the peer with the least median, and
// given as the median of the rounds' ratios with their least and
// greatest: the spread says how far one cell can be trusted.
func readRows(comp string, peers []peer, rounds [][]coldRead) []string {
	meds := make([]coldRead, len(rounds))
	for i, rs := range rounds {
		meds[i] = medianRead(rs)
	}
	cols := []func(coldRead) timedRead{
		func(r coldRead) timedRead { return r.tar },
		func(r coldRead) timedRead { return r.md5 },
		func(r coldRead) timedRead { return r.walk },
	}
	cells := make([][]string, len(rounds))
	for _, col := range cols {
		best, least := 0, int64(0)
		for i := 1; i < len(rounds); i++ {
			if n := col(meds[i]).reads; least == 0 || n < least {
				least = n
			}
			if best == 0 || col(meds[i]).d < col(meds[best]).d {
				best = i
			}
		}
		for i := range rounds {
			r := col(meds[i])
			cell := "-"
			switch {
			case r.d == 0:
			case i > 0 || best == 0:
				cell = fmt.Sprintf("%.2f s, %d reads", r.d.Seconds(), r.reads)
			default:
				var q []float64
				for k, o := range rounds[0] {
					if k < len(rounds[best]) && col(rounds[best][k]).d > 0 {
						q = append(q, col(o).d.Seconds()/col(rounds[best][k]).d.Seconds())
					}
				}
				slices.Sort(q)
				cell = fmt.Sprintf("%.2f s (%.2f; %.2f-%.2f), %d reads (%.2f)", r.d.Seconds(), q[len(q)/2], q[0], q[len(q)-1], r.reads, float64(r.reads)/float64(max(least, 1)))
			}
			cells[i] = append(cells[i], cell)
		}
	}
	var rows []string
	for i, c := range cells {
		name := "ours"
		if i > 0 {
			name = peers[i-1].name
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", comp, name, strings.Join(c, " | ")))
	}
	return rows
}
