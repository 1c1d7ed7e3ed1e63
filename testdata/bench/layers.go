package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// layers measures persist with delta layers on a Portage image: after
// each of eight 1% sync-like changes, a persist writes a layer (its size,
// the bytes written to storage, time, peak RSS); and cold reads of the
// whole tree and of metadata/md5-cache through 0, 1, 4 and 8 layers.
func (b *bench) layers(portage, comp string) error {
	work := filepath.Join(b.dir, "layers-"+comp)
	os.RemoveAll(work)
	if err := os.MkdirAll(filepath.Join(work, "target"), 0o755); err != nil {
		return err
	}
	img := filepath.Join(work, "gentoo.sqfs")
	if _, err := measure(img, b.bin, "mksquashfs", portage, img, "-comp", comp, "-noappend", "-quiet", "-no-progress", "-e", ".complete"); err != nil {
		return err
	}
	base, err := os.Stat(img)
	if err != nil {
		return err
	}
	script := `set -e
bin=$1; img=$2; state=$3; target=$4; work=$5
spec=$img:$target:size=2g,compact=1000%
` + coldReadsSh + `
cold() {
	$bin umount --state-dir $state $target >/dev/null
	$bin mount --state-dir $state $spec >/dev/null
	echo "READ $1 $(coldreads $target 1)" >&2
}
$bin mount --state-dir $state $spec >/dev/null
cold 0
for i in 1 2 3 4 5 6 7 8; do
	go run ./testdata/gentree -o $target -mutate 0.01 -seed $((100 + i)) >/dev/null
	sync
	/usr/bin/time -f "TIME $i %e %M" $bin persist --json --state-dir $state $target > $work/persist-$i.json
	case $i in 1|4|8) cold $i ;; esac
done
# Fold the eight layers into a new image: a whole-image fold, bounded in
# memory like persist.
go run ./testdata/gentree -o $target -mutate 0.01 -seed 109 >/dev/null
sync
/usr/bin/time -f "COMPACT %e %M" $bin compact --state-dir $state $target >/dev/null
$bin umount --state-dir $state $target >/dev/null
`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script, "bash",
		b.bin, img, filepath.Join(work, "state"), filepath.Join(work, "target"), work)
	var stderr strings.Builder
	cmd.Stderr, cmd.Stdout = &stderr, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("layers bench: %v\n%s", err, stderr.String())
	}
	fi := base
	fmt.Printf("\n### Persist with delta layers (%s image of %.1f MB, 1%% sync-like change before each persist)\n\n", comp, float64(fi.Size())/1e6)
	fmt.Println("| persist | layer | written to storage | of the image | wall | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|")
	reads := map[string][2]string{}
	var compact []string
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "TIME":
			var res []struct {
				ImageSize    int64  `json:"image_size"`
				BytesWritten int64  `json:"bytes_written"`
				Layer        string `json:"layer"`
			}
			b, err := os.ReadFile(filepath.Join(work, "persist-"+f[1]+".json"))
			if err == nil {
				err = json.Unmarshal(b, &res)
			}
			if err != nil || len(res) != 1 {
				return fmt.Errorf("layers bench: persist %s: %v %s", f[1], err, b)
			}
			rss, _ := strconv.ParseFloat(f[3], 64)
			what := "layer " + filepath.Ext(res[0].Layer)
			if res[0].Layer == "" {
				what = "whole image"
			}
			fmt.Printf("| %s | %s, %.0f KB | %.0f KB | %.2f%% | %s s | %.0f MB |\n", f[1], what, float64(res[0].ImageSize)/1e3,
				float64(res[0].BytesWritten)/1e3, 100*float64(res[0].BytesWritten)/float64(fi.Size()), f[2], rss/1024)
		case len(f) == 3 && f[0] == "COMPACT":
			compact = f[1:]
		case len(f) == 5 && f[0] == "READ":
			rs, err := parseColdReads(strings.Join(f[2:], " "))
			if err != nil || len(rs) != 3 {
				return fmt.Errorf("layers bench: %q: %v", sc.Text(), err)
			}
			ms := func(r timedRead) string { return strconv.FormatInt(r.d.Milliseconds(), 10) }
			reads[f[1]] = [2]string{ms(rs[0]), ms(rs[1])}
		}
	}
	fmt.Println("\nCold reads through the kernel (caches dropped), ms:")
	fmt.Println()
	fmt.Println("| layers | whole tree (tar) | metadata/md5-cache (cat) |")
	fmt.Println("|---|---|---|")
	for _, n := range []string{"0", "1", "4", "8"} {
		r := reads[n]
		fmt.Printf("| %s | %s | %s |\n", n, r[0], r[1])
	}
	if len(compact) != 2 {
		return fmt.Errorf("layers bench: no compaction timing in\n%s", stderr.String())
	}
	rss, _ := strconv.ParseFloat(compact[1], 64)
	fi, err = os.Stat(img)
	if err != nil {
		return err
	}
	fmt.Printf("\nCompaction of the 8 layers and a last 1%% change (`squashportage compact`): %s s, %.0f MB peak RSS, a new image of %.1f MB.\n", compact[0], rss/1024, float64(fi.Size())/1e6)
	return nil
}
