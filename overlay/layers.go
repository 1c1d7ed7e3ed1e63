package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// With layers= in the spec, a persist writes only the upper's changes, as
// a small squashfs image in overlayfs's own form (a delta layer), and the
// overlay is stacked lowerdir=newest:...:oldest:IMAGE. The stack is named
// by one record beside the image, IMAGE.layers, replaced atomically: a
// layer file exists before the record names it, and the record names the
// base by its superblock, so a record left from another IMAGE (a fold
// replaced it, or a rollback) is recognised and ignored.

// Stack is the record of an image's delta layers.
type Stack struct {
	Base   StackFile   `json:"base"`
	Layers []StackFile `json:"layers"` // oldest first
	// Next numbers the next layer's file, so names are never reused.
	Next int `json:"next"`
}

// StackFile is one image of a stack.
type StackFile struct {
	File   string `json:"file"` // name, in IMAGE's directory
	Size   int64  `json:"size"`
	ID     string `json:"id"`               // imageID: its superblock's hash
	SHA256 string `json:"sha256,omitempty"` // of the whole file (layers)
}

func stackPath(image string) string { return image + ".layers" }

func layerName(image string, n int) string { return fmt.Sprintf("%s.layer-%04d", image, n) }

// LayerSize is the bytes of all layers.
func (s Stack) LayerSize() int64 {
	var n int64
	for _, l := range s.Layers {
		n += l.Size
	}
	return n
}

// readStack reads image's layer record; none, or one for another base
// image, is an empty stack on image.
func readStack(image string) (Stack, error) {
	id, err := imageID(image)
	if err != nil {
		return Stack{}, err
	}
	fi, err := os.Stat(image)
	if err != nil {
		return Stack{}, err
	}
	empty := Stack{Base: StackFile{File: filepath.Base(image), Size: fi.Size(), ID: id}, Next: 1}
	b, err := os.ReadFile(stackPath(image))
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return Stack{}, fmt.Errorf("layer record: %w", err)
	}
	var s Stack
	if err := json.Unmarshal(b, &s); err != nil {
		return Stack{}, fmt.Errorf("layer record %s: %w", stackPath(image), err)
	}
	if s.Base.ID != id {
		// Written for another generation of IMAGE: its layers are in
		// this one already (a fold), or belong to a newer one (rollback).
		empty.Next = max(s.Next, 1)
		return empty, nil
	}
	return s, nil
}

func writeStack(image string, s Stack) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(stackPath(image), append(b, '\n')); err != nil {
		return fmt.Errorf("layer record: %w", err)
	}
	return nil
}

// LayerFiles are the delta layers image's record names, oldest first,
// each checked against its recorded size and sha256.
func LayerFiles(image string) ([]string, error) {
	s, err := readStack(image)
	if err != nil {
		return nil, err
	}
	return s.layerPaths(image)
}

// layerPaths are the stack's layer files, oldest first, checked against
// the record: a layer that is missing, or not what was written, would
// show a wrong tree, so the mount fails instead.
func (s Stack) layerPaths(image string) ([]string, error) {
	dir := filepath.Dir(image)
	var out []string
	for _, l := range s.Layers {
		p := filepath.Join(dir, l.File)
		sum, size, err := fileSum(p)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", p, err)
		}
		if size != l.Size || sum != l.SHA256 {
			return nil, fmt.Errorf("layer %s: %d bytes with sha256 %s, the record says %d bytes, %s: damaged or replaced; roll back with 'squashportage rollback'", p, size, sum, l.Size, l.SHA256)
		}
		out = append(out, p)
	}
	return out, nil
}

// fileSum hashes a whole file: layers are small.
func fileSum(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
