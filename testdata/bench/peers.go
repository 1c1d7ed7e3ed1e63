package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	for _, c := range comps {
		img := filepath.Join(b.dir, "w.sqfs")
		runs := make([][]result, 1+len(peers))
		for range b.runs {
			o, err := measure(img, b.bin, append([]string{"mksquashfs"}, peer{}.args(src, img, c)...)...)
			if err != nil {
				fail(err)
			}
			runs[0] = append(runs[0], o)
			for i, p := range peers {
				r, err := measure(img, p.bin, p.args(src, img, c)...)
				if err != nil {
					fail(err)
				}
				runs[i+1] = append(runs[i+1], r)
			}
		}
		cell := func(r result) string {
			return fmt.Sprintf("%.1f s, %.1f s CPU, %d MB RSS, %.1f MB", r.wall.Seconds(), r.cpu.Seconds(), r.rss>>10, float64(r.size)/1e6)
		}
		ours := median(runs[0])
		row := "| " + c + " | " + cell(ours)
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
		os.Remove(img)
	}
}
