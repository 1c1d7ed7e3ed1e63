package extract

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/squashportage/squashportage/squash"
)

// maxLinkHops bounds the symlinks one name may pass through, as the
// kernel's 40 does.
const maxLinkHops = 40

// Follow resolves extract names through the image's symlinks, as
// unsquashfs -follow-symlinks does: each symlink met on the way, in the
// middle of a name or at its end, is taken as it is, and the name goes on
// from its target, so that extracting lib/modules where lib points to
// usr/lib gives lib, usr/lib and usr/lib/modules below it. Names are taken
// literally, ".." steps back from where the resolution is, and an
// absolute target cannot be followed (it names the running system, not
// the image). It returns the image paths to select (Selection.Paths with
// Literal), and why each name that cannot be resolved cannot; the
// symlinks passed on its way are selected all the same.
func Follow(r *squash.Reader, names []string) (paths []string, unresolved []error) {
	seen := make(map[string]bool)
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	for _, name := range names {
		res, links, err := follow(r, name)
		for _, l := range links {
			add(l)
		}
		if err != nil {
			unresolved = append(unresolved, fmt.Errorf("extract name %s cannot be resolved: %w", name, err))
			continue
		}
		add(res)
	}
	return paths, unresolved
}

func follow(r *squash.Reader, name string) (string, []string, error) {
	todo := strings.Split(name, "/")
	var cur, links []string
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := strings.Join(append(cur, c), "/")
		fi, err := r.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", links, fmt.Errorf("no %s in the image", next)
			}
			return "", links, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, c)
			continue
		}
		links = append(links, next)
		if hops++; hops > maxLinkHops {
			return "", links, errors.New("too many levels of symbolic links")
		}
		target, err := r.ReadLink(next)
		if err != nil {
			return "", links, err
		}
		if strings.HasPrefix(target, "/") {
			return "", links, fmt.Errorf("%s points to the absolute path %s", next, target)
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(cur) == 0 {
		return "/", links, nil
	}
	return strings.Join(cur, "/"), links, nil
}
