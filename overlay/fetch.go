package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// A fetch (package fleet) assembles a published image beside IMAGE as
// IMAGE.new and checks it against the publisher's signed hash; what is
// left is this package's job, done as persist does it: verify the image
// with our reader, rotate it in (IMAGE.old keeps the previous one), and
// put the overlay onto it.

// ErrUnpersisted is wrapped by the error of a fetch into a target whose
// overlay holds changes: a new image would hide them.
var ErrUnpersisted = errors.New("the overlay holds unpersisted changes")

// DeltaLayers counts the delta layers (layers= in a spec) stacked on
// image that are not folded into it: changes image alone does not hold.
func DeltaLayers(image string) (int, error) {
	s, err := readStack(image)
	if err != nil {
		return 0, err
	}
	return len(s.Layers), nil
}

// CheckFetchable tells whether a fetched image may replace st's: only
// when the overlay's upper is empty and no delta layer is stacked on the
// image.
func CheckFetchable(st *State) error {
	if n, err := DeltaLayers(st.ImagePath()); err == nil && n > 0 {
		return fmt.Errorf("%s: %w: %d delta layers on %s (layers=) would be hidden: fold them into the image first ('squashportage compact %s'), then fetch", st.Target, ErrUnpersisted, n, st.ImagePath(), st.Target)
	}
	if st.UpperKind == KindNone {
		return fmt.Errorf("%s is mounted ro (the image itself at the target): unmount it, fetch into %s, and mount it again", st.Target, st.Image)
	}
	empty, err := isEmptyDir(st.UpperPath())
	if err != nil {
		return fmt.Errorf("%s: read the upper: %w", st.Target, err)
	}
	if !empty {
		return fmt.Errorf("%s: %w in %s: persist first ('squashportage persist %s'), then fetch", st.Target, ErrUnpersisted, st.UpperPath(), st.Target)
	}
	return nil
}

// InstallImage verifies tmp with our reader (every table and block) and
// installs it as image, keeping keep generations (image.old, ...); image
// need not exist yet. On failure image is untouched and tmp removed.
func InstallImage(image, tmp string, keep int) error {
	if err := verifyFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if _, err := os.Lstat(image); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, image); err != nil {
			return fmt.Errorf("install new image: %w", err)
		}
		return syncDir(filepath.Dir(image))
	}
	dropped, err := rotate(image, tmp, keep)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	removeDropped(dropped)
	return nil
}

func verifyFile(tmp string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := verifyImage(f, 0); err != nil {
		return fmt.Errorf("verify %s: %w", tmp, err)
	}
	return nil
}

// InstallFetched installs tmp as the image of the managed mount st (see
// InstallImage) and puts the overlay onto it, as persist does: under the
// target's lock, with the target read-only for the moment of the swap.
// The overlay's upper must be empty (CheckFetchable).
func InstallFetched(st *State, tmp string, log func(string, ...any)) (stacked bool, err error) {
	log = logger(log)
	unlock, err := LockWith(st.StateDir(), st.Target, LockOptions{Op: "fetch", Wait: 10 * time.Second})
	if err != nil {
		return false, err
	}
	defer unlock()
	cur, err := Load(st.StateDir(), st.Target)
	if err != nil {
		return false, err
	}
	cur.Root = st.Root
	*st = *cur
	if err := reconcile(st, log); err != nil {
		return false, err
	}
	if err := CheckFetchable(st); err != nil {
		return false, err
	}
	if err := verifyFile(tmp); err != nil {
		os.Remove(tmp)
		return false, err
	}
	if err := freeze(st, DefaultWriterWait); err != nil {
		return false, err
	}
	swapped := false
	defer func() {
		if !swapped {
			if err := thaw(st); err != nil {
				log("fetch %s: %v", st.Target, err)
			}
		}
	}()
	// A write may have landed between the check and the freeze.
	if err := CheckFetchable(st); err != nil {
		return false, err
	}
	dropped, err := rotate(st.ImagePath(), tmp, st.Spec.Keep)
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	defer removeDropped(dropped)
	log("fetch %s: installed %s", st.Target, st.ImagePath())
	stacked, err = swapTo(st, st.Image, true, log)
	if err != nil {
		return false, fmt.Errorf("%s: new image installed, but the overlay still runs on the old one: %w (umount and mount it again)", st.Target, err)
	}
	swapped = true
	if err := st.Save(st.StateDir()); err != nil {
		return stacked, err
	}
	return stacked, nil
}
