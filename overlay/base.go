package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A disk upper (upper=DIR) outlives the mount, and its changes only make
// sense over the image they were made on: a file created and then deleted
// leaves no whiteout, so over a newer image that contains the file it would
// come back. The upper therefore records its base image in DIR/base, and a
// mount whose IMAGE has moved on (a persist that could not remount a busy
// target) mounts the matching older generation instead, until the next
// persist folds the upper into a new IMAGE.

const baseFile = "base"

// imageID names one generation of an image: its superblock holds the
// creation time, size and table positions, which differ between any two
// images persist writes.
func imageID(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sb := make([]byte, 96)
	if _, err := io.ReadFull(f, sb); err != nil {
		return "", fmt.Errorf("image %s: %w", image, err)
	}
	sum := sha256.Sum256(sb)
	return hex.EncodeToString(sum[:16]), nil
}

// lowerFor picks the image to mount under a disk upper: IMAGE, unless the
// upper records another base that an older generation matches.
func lowerFor(st *State, log func(string, ...any)) (string, error) {
	image := st.ImagePath()
	if st.UpperKind != KindDir {
		return image, nil
	}
	b, err := os.ReadFile(filepath.Join(st.Path(st.Spec.Upper), baseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return image, nil
	}
	if err != nil {
		return "", fmt.Errorf("upper %s: %w", st.Spec.Upper, err)
	}
	// Even an empty upper is relative to its base: a file made and
	// removed again there is absent from the base, not from a newer image.
	want := strings.TrimSpace(string(b))
	for k := 0; k <= max(st.Spec.Keep, DefaultKeep)+1; k++ {
		cand := image
		if k > 0 {
			cand = oldName(image, k)
		}
		if id, err := imageID(cand); err == nil && id == want {
			if k > 0 {
				log("the changes in %s were made over %s (a persist could not swap the busy mount): mounting it until the next persist", st.UpperPath(), cand)
			}
			return cand, nil
		}
	}
	log("warning: %s records a base image that is no longer there; mounting %s", filepath.Join(st.Spec.Upper, baseFile), image)
	return image, nil
}

// recordBase writes the upper's base image, atomically.
func recordBase(st *State, lowerImage string) error {
	if st.UpperKind != KindDir {
		return nil
	}
	id, err := imageID(lowerImage)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(st.Path(st.Spec.Upper), baseFile), []byte(id+"\n"))
}
