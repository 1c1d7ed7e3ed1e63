package unsquashfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/extract"
)

// writePseudo writes the selected entries of r as mksquashfs pseudo
// definitions, followed by the files' contents (unsquashfs -pf): the file
// rebuilds the image with mksquashfs -pf, without unpacking it. The format
// is unsquashfs 4.5's: D, R, L, S, B, C and I definitions in listing order,
// a "# START OF DATA - DO NOT MODIFY" line, then the data of the R
// definitions in the same order. Extended attributes are not carried.
func writePseudo(name string, r *squash.Reader, sel extract.Selection, stdout io.Writer) (err error) {
	type item struct {
		ino *squash.Inode
		off int64
	}
	var files []item
	var defs strings.Builder
	first := make(map[uint32]string) // inode number: its first name's definition name
	var off int64
	err = extract.Walk(r, sel, func(rel string, ino *squash.Inode) error {
		pname, err := pseudoEscape(rel)
		if err != nil {
			return err
		}
		t := squash.BasicType(ino.Type)
		if t != squash.TypeDir {
			if f, ok := first[ino.Number]; ok {
				fmt.Fprintf(&defs, "%s L %s\n", pname, f)
				return nil
			}
			first[ino.Number] = pname
		}
		perm := squash.UnixPerm(ino.Mode)
		attrs := fmt.Sprintf("%d %o %d %d", ino.Mtime, perm, ino.UID, ino.GID)
		switch t {
		case squash.TypeDir:
			fmt.Fprintf(&defs, "%s D %s\n", pname, attrs)
		case squash.TypeFile:
			fmt.Fprintf(&defs, "%s R %s %d %d\n", pname, attrs, ino.Size, off)
			files = append(files, item{ino, off})
			off += int64(ino.Size)
		case squash.TypeSymlink:
			if strings.ContainsAny(ino.Target, "\n\r") {
				return fmt.Errorf("%s: a symlink target with a line break cannot be written as a pseudo definition", rel)
			}
			fmt.Fprintf(&defs, "%s S %d 777 %d %d %s\n", pname, ino.Mtime, ino.UID, ino.GID, ino.Target)
		case squash.TypeBlockDev, squash.TypeCharDev:
			major, minor := squash.DecodeDev(ino.Rdev)
			letter := "B"
			if t == squash.TypeCharDev {
				letter = "C"
			}
			fmt.Fprintf(&defs, "%s %s %s %d %d\n", pname, letter, attrs, major, minor)
		case squash.TypeFifo, squash.TypeSocket:
			kind := "f"
			if t == squash.TypeSocket {
				kind = "s"
			}
			fmt.Fprintf(&defs, "%s I %s %s\n", pname, attrs, kind)
		default:
			return fmt.Errorf("%s: inode type %d", rel, ino.Type)
		}
		return nil
	})
	if err != nil {
		return err
	}

	var out io.Writer = stdout
	if name != "-" {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("pseudo file: %w", err)
		}
		defer func() {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("pseudo file %s: %w", name, cerr)
			}
			if err != nil {
				os.Remove(name)
			}
		}()
		out = f
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	io.WriteString(bw, defs.String())
	io.WriteString(bw, "#\n# START OF DATA - DO NOT MODIFY\n#\n")
	// Most files' data is a tail in a fragment block shared with dozens of
	// others: decode those blocks ahead on every processor, into the
	// Reader's cache, a bounded window ahead of the files written.
	var seq []uint32
	seen := make(map[uint32]bool)
	for _, it := range files {
		if f := it.ino.Fragment; f != squash.NoFragment && !seen[f] {
			seen[f] = true
			seq = append(seq, f)
		}
	}
	window := make(chan struct{}, 32)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sem := make(chan struct{}, runtime.NumCPU())
		for _, idx := range seq {
			select {
			case window <- struct{}{}:
			case <-stop:
				return
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				r.FragmentBlock(idx) // an error shows when the file is read
			}()
		}
	}()
	clear(seen)
	// One copy buffer: bufio.Writer.ReadFrom passes an empty buffer's
	// reads to os.File.ReadFrom, whose fallback takes a new 32 KiB buffer
	// for each of a Portage tree's 160,000 files.
	buf := make([]byte, 128<<10)
	for _, it := range files {
		if f := it.ino.Fragment; f != squash.NoFragment && !seen[f] {
			seen[f] = true
			<-window
		}
		f, err := r.OpenInode(it.ino)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(writerOnly{bw}, f, buf)
		f.Close()
		if err == nil && n != int64(it.ino.Size) {
			err = fmt.Errorf("%d bytes, not %d", n, it.ino.Size)
		}
		if err != nil {
			return fmt.Errorf("pseudo file data of inode %d: %w", it.ino.Number, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("pseudo file %s: %w", name, err)
	}
	return nil
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }

// pseudoEscape is a pseudo definition's name for an image path: "/" for
// the root, and a backslash before each quote, backslash and space, as
// unsquashfs writes them (and tab, which mksquashfs would split at).
func pseudoEscape(rel string) (string, error) {
	if rel == "" {
		return "/", nil
	}
	if strings.ContainsAny(rel, "\n\r") {
		return "", fmt.Errorf("%q: a name with a line break cannot be written as a pseudo definition", rel)
	}
	var b strings.Builder
	for i := 0; i < len(rel); i++ {
		switch c := rel[i]; c {
		case '\'', '"', '\\', ' ', '\t':
			b.WriteByte('\\')
			fallthrough
		default:
			b.WriteByte(rel[i])
		}
	}
	return b.String(), nil
}
