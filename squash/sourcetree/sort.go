package sourcetree

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash"
)

// SortRule gives the files at Path (a file, or a directory and all below
// it) a priority for where their data goes in the image (mksquashfs
// -sort): higher first. Path is taken as the excludes' paths are: as given
// when it starts with /, ./ or ../, else below each source.
type SortRule struct {
	Path     string
	Priority int
}

// ReadSortFile reads mksquashfs -sort's file: one "PATH PRIORITY" a line,
// the priority from -32768 to 32767 after the last blank; blank lines are
// skipped.
func ReadSortFile(name string) ([]SortRule, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("sort file: %w", err)
	}
	defer f.Close()
	var rules []SortRule
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		i := strings.LastIndexAny(line, " \t")
		if i < 0 {
			return nil, fmt.Errorf("sort file %s, line %d: %q is not PATH PRIORITY", name, n, line)
		}
		p, err := strconv.Atoi(line[i+1:])
		if err != nil || p < -32768 || p > 32767 {
			return nil, fmt.Errorf("sort file %s, line %d: priority %q is not a number from -32768 to 32767", name, n, line[i+1:])
		}
		rules = append(rules, SortRule{Path: strings.TrimSpace(line[:i]), Priority: p})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sort file %s: %w", name, err)
	}
	return rules, nil
}

// sortOrder returns the regular files (entry indices, no hard links or
// appended image's files) in the order their data is written under
// Options.Sort: by priority, higher first, and within one priority in the
// reverse of the entries' order, as mksquashfs writes them. The files'
// source paths are looked up by device and inode, once each.
func (t *Tree) sortOrder(rules []SortRule, sources []string) []int {
	prio := make(map[devIno]int)
	for _, r := range rules {
		for _, c := range sourcePaths(r.Path, sources) {
			var st unix.Stat_t
			if unix.Lstat(c, &st) == nil {
				prio[devIno{uint64(st.Dev), st.Ino}] = r.Priority
			}
		}
	}
	eff := make([]int, len(t.entries))
	ps := paths{entries: t.entries}
	var files []int
	for i := range t.entries {
		e := &t.entries[i]
		_, src := ps.of(i)
		if e.parent >= 0 {
			eff[i] = eff[e.parent]
		}
		if e.isLink() || e.isOld() {
			continue
		}
		if (e.mode.IsDir() || e.mode.IsRegular()) && (e.x == nil || e.x.from == nil) {
			var st unix.Stat_t
			if unix.Lstat(src, &st) == nil {
				if p, ok := prio[devIno{uint64(st.Dev), st.Ino}]; ok {
					eff[i] = p
				}
			}
		}
		if e.mode.IsRegular() {
			files = append(files, i)
		}
	}
	sort.SliceStable(files, func(a, b int) bool {
		if pa, pb := eff[files[a]], eff[files[b]]; pa != pb {
			return pa > pb
		}
		return files[a] > files[b]
	})
	return files
}

// writeSorted writes the data of the files in order ahead of all entries
// and returns it by entry, for write to add with AddContents.
func (t *Tree) writeSorted(w *squash.Writer, order []int, progress func(int64)) (*ahead, error) {
	srcs := make([]string, len(t.entries))
	names := make([]string, len(t.entries))
	ps := paths{entries: t.entries}
	for i := range t.entries {
		names[i], srcs[i] = ps.of(i)
	}
	k := 0
	p := newPrefetcher(func() (fileJob, bool) {
		for ; k < len(order); k++ {
			i := order[k]
			if e := &t.entries[i]; isSmall(e) {
				k++
				return smallJob(i, e, srcs[i]), true
			}
		}
		return fileJob{}, false
	})
	defer p.stop()
	out := &ahead{contents: make(map[int]*squash.Contents, len(order))}
	for _, i := range order {
		e := &t.entries[i]
		var c *squash.Contents
		write := func(r io.Reader) (err error) {
			c, err = w.WriteContents(names[i], e.size, r)
			return err
		}
		if isSmall(e) {
			small, err := p.take(i, srcs[i])
			if err != nil {
				return nil, err
			}
			err = write(bytes.NewBuffer(small.buf))
			p.release(small) // consumed: the ring has the room again
			if err != nil {
				return nil, fmt.Errorf("adding %s: %w", srcs[i], err)
			}
		} else {
			base := out.bytes
			if err := readLarge(e.x, srcs[i], e.size, func(n int64) { progress(base + n) }, write); err != nil {
				return nil, err
			}
		}
		out.contents[i] = c
		out.bytes += e.size
		progress(out.bytes)
	}
	return out, nil
}
