package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tarInput times making an image from a tar archive of the Portage-like
// tree on standard input, as from a Portage snapshot: our mksquashfs -tar
// against the mksquashfs peers' -tar and squashfs-tools-ng's tar2sqfs
// (beside gensquashfs), each reading the archive from the page cache.
func (b *bench) tarInput(portage string, comps []string, peers []peer) error {
	archive := filepath.Join(b.dir, "portage.tar")
	if _, err := os.Stat(archive); err != nil {
		out, err := exec.Command("tar", "-C", portage, "--exclude=./.complete", "-cf", archive+".tmp", ".").CombinedOutput()
		if err != nil {
			return fmt.Errorf("tar: %v\n%s", err, out)
		}
		if err := os.Rename(archive+".tmp", archive); err != nil {
			return err
		}
	}
	fi, err := os.Stat(archive)
	if err != nil {
		return err
	}
	type tool struct {
		name, bin string
		args      func(img, comp string) []string
	}
	tools := []tool{{"ours", b.bin, func(img, c string) []string {
		return []string{"mksquashfs", "-", img, "-tar", "-comp", c, "-noappend", "-quiet", "-no-progress"}
	}}}
	for _, p := range peers {
		if p.ng {
			t2s := filepath.Join(filepath.Dir(p.bin), "tar2sqfs")
			if _, err := os.Stat(t2s); err != nil {
				fmt.Printf("(no %s beside %s: left out)\n", t2s, p.bin)
				continue
			}
			tools = append(tools, tool{"tar2sqfs", t2s, func(img, c string) []string {
				return []string{"--compressor", c, "--block-size", "131072", "--num-jobs", "2", "--force", "--quiet", img}
			}})
			continue
		}
		tools = append(tools, tool{p.name, p.bin, func(img, c string) []string {
			return []string{"-", img, "-tar", "-comp", c, "-b", "128K", "-processors", "2", "-noappend", "-quiet", "-no-progress"}
		}})
	}
	fmt.Printf("\n### An image from a tar archive on standard input (%s, %.0f MB), 2 processors, median of %d\n\n", archive, float64(fi.Size())/1e6, b.runs)
	head := "| comp"
	for _, t := range tools {
		head += " | " + t.name
	}
	fmt.Println(head + " | time / fastest peer | size / smallest peer |")
	fmt.Println(strings.Repeat("|---", 3+len(tools)) + "|")
	img := filepath.Join(b.dir, "tar.sqfs")
	defer os.Remove(img)
	for _, c := range comps {
		if err := cacheFile(archive); err != nil {
			return err
		}
		runs := make([][]result, len(tools))
		for round := 0; round < b.runs; round++ {
			for i, t := range tools {
				r, err := measureIn(img, archive, t.bin, t.args(img, c)...)
				if err != nil {
					return err
				}
				runs[i] = append(runs[i], r)
			}
		}
		row := "| " + c
		var fastest, smallest result
		for i := range tools {
			r := median(runs[i])
			row += fmt.Sprintf(" | %.1f s, %.1f s CPU, %d MB RSS, %.1f MB", r.wall.Seconds(), r.cpu.Seconds(), r.rss>>10, float64(r.size)/1e6)
			if i == 0 {
				continue
			}
			if fastest.wall == 0 || r.wall < fastest.wall {
				fastest = r
			}
			if smallest.size == 0 || r.size < smallest.size {
				smallest = r
			}
		}
		if ours := median(runs[0]); len(tools) > 1 {
			row += fmt.Sprintf(" | %.2f | %.3f |", ours.wall.Seconds()/fastest.wall.Seconds(), float64(ours.size)/float64(smallest.size))
		}
		fmt.Println(row)
	}
	return nil
}

// cacheFile reads a file through, so that the tools find it in the page
// cache.
func cacheFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}
