package info

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInfo(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs not installed")
	}
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d/f"), []byte("hello"), 0o644)
	os.Link(filepath.Join(src, "d/f"), filepath.Join(src, "hl"))
	// One full 64 KiB block and a tail, incompressible, both stored as
	// blocks of the file (mksquashfs packs no tails of files beyond a
	// block into fragments unless told to).
	big := make([]byte, 70000)
	rand.New(rand.NewSource(1)).Read(big)
	os.WriteFile(filepath.Join(src, "d/big"), big, 0o644)
	os.Symlink("d/f", filepath.Join(src, "l"))
	img := filepath.Join(t.TempDir(), "i.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-quiet", "-no-progress", "-comp", "xz", "-Xbcj", "x86", "-b", "65536").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}

	var out, errb bytes.Buffer
	if rc := Main([]string{"--json", img}, &out, &errb); rc != 0 {
		t.Fatalf("info --json: %d %s", rc, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	want := Counts{Entries: 6, Files: 2, Directories: 2, Symlinks: 1, HardLinks: 1, FileBytes: 70005}
	if rep.Counts != want {
		t.Errorf("counts %+v, want %+v", rep.Counts, want)
	}
	if rep.Compressor != "xz" || rep.BlockSize != 65536 || rep.Inodes != 5 || rep.Tables["xattr"] != nil && rep.XattrIDs != 0 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(strings.Join(rep.CompressorOpt, ";"), "Filters selected: x86") {
		t.Errorf("compressor options %q lack the x86 filter", rep.CompressorOpt)
	}
	sp := rep.Space
	if sp.FileBlocks < 70000 || sp.FileBlocks > 70000+64 || sp.FragmentBlocks == 0 || sp.FragmentBlocks > 64 || sp.InodeTable == 0 || sp.DirectoryTable == 0 || sp.Other <= 96 ||
		sp.FileBlocks+sp.FragmentBlocks+sp.InodeTable+sp.DirectoryTable+sp.Other != rep.BytesUsed {
		t.Errorf("space %+v does not split %d bytes (70,000 random bytes in blocks, a 5-byte file in a fragment)", sp, rep.BytesUsed)
	}
	if !strings.Contains(strings.Join(rep.Flags, ","), "exportable") {
		t.Errorf("flags %q", rep.Flags)
	}

	out.Reset()
	if rc := Main([]string{img}, &out, &errb); rc != 0 || !strings.Contains(out.String(), "Compressor:        xz") {
		t.Errorf("text output: %d\n%s", rc, out.String())
	}

	for _, args := range [][]string{{}, {"--bogus", img}, {img, img}, {"/etc/hostname"}} {
		errb.Reset()
		if rc := Main(args, &out, &errb); rc == 0 || errb.Len() == 0 {
			t.Errorf("Main(%q) = %d, stderr %q; want failure", args, rc, errb.String())
		}
	}
}
