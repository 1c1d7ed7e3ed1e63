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
	"github.com/squashportage/squashportage/squash/sourcetree"
)

// writePseudo writes the selected entries of r as mksquashfs pseudo
// definitions, followed by the files' contents (unsquashfs -pf): the file
// rebuilds the image with mksquashfs -pf, without unpacking it. The format
// is unsquashfs 4.5's: D, R, L, S, B, C and I definitions in listing order,
// a "# START OF DATA - DO NOT MODIFY" line, then the data of the R
// definitions in the same order. Extended attributes are not carried.
func writePseudo(name string, r *squash.Reader, sel extract.Selection, stdout io.Writer) (err error) {
	p, err := extract.NewPlan(r, sel)
	if err != nil {
		return err
	}
	var defs strings.Builder
	first := make(map[uint32]string) // inode number: its first name's definition name
	var off int64
	err = p.Walk(func(rel string, ino *squash.Inode) error {
		pname, err := sourcetree.PseudoName(rel)
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
		attrs := fmt.Sprintf("%d %o %d %d", ino.Mtime, squash.UnixPerm(ino.Mode), ino.UID, ino.GID)
		switch t {
		case squash.TypeDir:
			fmt.Fprintf(&defs, "%s D %s\n", pname, attrs)
		case squash.TypeFile:
			// Plan.Contents gives the data in this order.
			fmt.Fprintf(&defs, "%s R %s %d %d\n", pname, attrs, ino.Size, off)
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
	io.WriteString(bw, "#\n"+sourcetree.PseudoDataMarker+"\n#\n")
	// One copy buffer: bufio.Writer.ReadFrom hands an empty buffer's
	// reads to os.File.ReadFrom, whose fallback takes a new 32 KiB buffer
	// for each of a Portage tree's 160,000 files.
	buf := make([]byte, 128<<10)
	err = p.Contents(runtime.NumCPU(), func(ino *squash.Inode, data io.Reader) error {
		n, err := io.CopyBuffer(struct{ io.Writer }{bw}, data, buf)
		if err == nil && n != int64(ino.Size) {
			err = fmt.Errorf("%d bytes, not %d", n, ino.Size)
		}
		if err != nil {
			return fmt.Errorf("pseudo file data of inode %d: %w", ino.Number, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("pseudo file %s: %w", name, err)
	}
	return nil
}
