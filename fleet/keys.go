// Package fleet publishes image generations and fetches them: a signed
// manifest names an image and its block index (squash/blockindex); a
// client verifies the manifest with the publisher's public key, reuses the
// blocks its current image already has, downloads the others with HTTP
// range requests and checks every byte before anything is installed.
package fleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Key files are one line each:
//
//	squashportage-secret-key ed25519 BASE64(32-byte seed)
//	squashportage-public-key ed25519 BASE64(32-byte public key)
const (
	secretTag = "squashportage-secret-key"
	publicTag = "squashportage-public-key"
)

// GenerateKey writes a new key pair: the secret key to secretPath (mode
// 0600, not overwritten) and the public key to publicPath.
func GenerateKey(secretPath, publicPath string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(secretPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "%s ed25519 %s\n", secretTag, base64.StdEncoding.EncodeToString(priv.Seed()))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(secretPath)
		return nil, err
	}
	line := fmt.Sprintf("%s ed25519 %s\n", publicTag, base64.StdEncoding.EncodeToString(pub))
	if err := os.WriteFile(publicPath, []byte(line), 0o644); err != nil {
		return nil, err
	}
	return pub, nil
}

// KeyID names a public key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

func readKeyLine(path, tag string, size int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != tag || f[1] != "ed25519" {
		return nil, fmt.Errorf("%s: not a %s file (made by 'squashportage keygen')", path, tag)
	}
	k, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(k) != size {
		return nil, fmt.Errorf("%s: damaged key", path)
	}
	return k, nil
}

// ReadSecretKey reads a secret key file.
func ReadSecretKey(path string) (ed25519.PrivateKey, error) {
	seed, err := readKeyLine(path, secretTag, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ReadPublicKey reads a public key file.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	k, err := readKeyLine(path, publicTag, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(k), nil
}

// ErrSignature is wrapped by errors about a manifest whose signature does
// not check out.
var ErrSignature = errors.New("bad signature")
