package fleet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestManifestSignature(t *testing.T) {
	dir := t.TempDir()
	pub, err := GenerateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k2.pub")); err == nil {
		t.Error("keygen overwrote a secret key")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "k")); fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key mode %v", fi.Mode())
	}
	key, err := ReadSecretKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ReadPublicKey(filepath.Join(dir, "k.pub")); err != nil || !p.Equal(pub) {
		t.Fatalf("public key: %v", err)
	}
	m := Manifest{Image: "g-1.sqfs", ImageSize: 10, Index: "g-1.idx", IndexSize: 5, Delta: "g-1.from-0.idxd", DeltaSize: 3, Published: time.Unix(1e9, 0)}
	m.ImageSHA256[0], m.DeltaFrom[1] = 1, 2
	b := m.Sign(key)
	got, err := ParseManifest(b, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != m.Image || got.ImageSHA256 != m.ImageSHA256 || got.DeltaFrom != m.DeltaFrom || got.Key != KeyID(pub) || !got.Published.Equal(m.Published) {
		t.Errorf("parsed %+v", got)
	}
	other, _ := GenerateKey(filepath.Join(dir, "o"), filepath.Join(dir, "o.pub"))
	for name, c := range map[string]struct {
		b   []byte
		key []byte
	}{
		"tampered":  {bytes.Replace(b, []byte("image-size 10"), []byte("image-size 11"), 1), pub},
		"wrong key": {b, other},
		"unsigned":  {b[:bytes.Index(b, []byte("signature "))], pub},
	} {
		if _, err := ParseManifest(c.b, c.key); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestFindSHA512(t *testing.T) {
	h := strings.Repeat("ab", 64)
	for _, text := range []string{
		"# SHA512 HASH\n" + h + "  gentoo-current.xz.sqfs\n",
		h + " *gentoo-current.xz.sqfs\n",
		"SHA512 (gentoo-current.xz.sqfs) = " + strings.ToUpper(h) + "\n",
	} {
		if got, err := findSHA512([]byte(text), "gentoo-current.xz.sqfs"); err != nil || got != h {
			t.Errorf("%q: %q %v", text, got, err)
		}
	}
	if _, err := findSHA512([]byte(h+"  gentoo-20261203.xz.sqfs\n"), "gentoo-current.xz.sqfs"); err == nil {
		t.Error("found a line for another file")
	}
}
