package fleet

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ManifestName is the manifest's file name in a published directory.
const ManifestName = "manifest"

// A manifest is text, one "key value" a line, the last line the
// signature of every byte before it:
//
//	squashportage-manifest 1
//	image gentoo-0123456789abcdef.sqfs
//	image-size 123456789
//	image-sha256 HEX
//	index gentoo-0123456789abcdef.idx
//	index-size 4567
//	index-sha256 HEX
//	delta gentoo-0123456789abcdef.from-fedcba9876543210.idxd   (optional)
//	delta-size 321
//	delta-sha256 HEX
//	delta-from HEX   (SHA-256 of the image the delta's base index is of)
//	published 2026-12-03T15:00:00Z
//	key 0123456789abcdef
//	signature BASE64(ed25519 signature)
type Manifest struct {
	Image       string
	ImageSize   int64
	ImageSHA256 [32]byte
	Index       string
	IndexSize   int64
	IndexSHA256 [32]byte
	// Delta, when set, encodes the index against the index of the image
	// whose SHA-256 is DeltaFrom (the previous generation).
	Delta       string
	DeltaSize   int64
	DeltaSHA256 [32]byte
	DeltaFrom   [32]byte
	Published   time.Time
	Key         string // KeyID of the signing key
}

const manifestHead = "squashportage-manifest 1"

// Sign encodes m and signs it with key.
func (m *Manifest) Sign(key ed25519.PrivateKey) []byte {
	var b bytes.Buffer
	fmt.Fprintln(&b, manifestHead)
	fmt.Fprintf(&b, "image %s\nimage-size %d\nimage-sha256 %x\n", m.Image, m.ImageSize, m.ImageSHA256)
	fmt.Fprintf(&b, "index %s\nindex-size %d\nindex-sha256 %x\n", m.Index, m.IndexSize, m.IndexSHA256)
	if m.Delta != "" {
		fmt.Fprintf(&b, "delta %s\ndelta-size %d\ndelta-sha256 %x\ndelta-from %x\n", m.Delta, m.DeltaSize, m.DeltaSHA256, m.DeltaFrom)
	}
	fmt.Fprintf(&b, "published %s\nkey %s\n", m.Published.UTC().Format(time.RFC3339), KeyID(key.Public().(ed25519.PublicKey)))
	sig := ed25519.Sign(key, b.Bytes())
	fmt.Fprintf(&b, "signature %s\n", base64.StdEncoding.EncodeToString(sig))
	return b.Bytes()
}

// ParseManifest checks the signature of a manifest with pub, then decodes
// it. Nothing of an unsigned or badly signed manifest is trusted.
func ParseManifest(b []byte, pub ed25519.PublicKey) (*Manifest, error) {
	i := bytes.LastIndex(bytes.TrimRight(b, "\n"), []byte("\n"))
	if i < 0 || !bytes.HasPrefix(b[i+1:], []byte("signature ")) {
		return nil, fmt.Errorf("manifest: no signature line: %w", ErrSignature)
	}
	signed := b[:i+1]
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b[i+1+len("signature "):])))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("manifest: damaged signature: %w", ErrSignature)
	}
	if !ed25519.Verify(pub, signed, sig) {
		return nil, fmt.Errorf("manifest: signature does not match the public key %s (tampered manifest, or signed by another key): %w", KeyID(pub), ErrSignature)
	}
	m := &Manifest{}
	sc := bufio.NewScanner(bytes.NewReader(signed))
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != manifestHead {
				return nil, fmt.Errorf("manifest: unknown format %q", line)
			}
			first = false
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "image":
			m.Image = v
		case "index":
			m.Index = v
		case "image-size":
			m.ImageSize, err = strconv.ParseInt(v, 10, 64)
		case "index-size":
			m.IndexSize, err = strconv.ParseInt(v, 10, 64)
		case "image-sha256":
			err = parseHash(v, m.ImageSHA256[:])
		case "index-sha256":
			err = parseHash(v, m.IndexSHA256[:])
		case "delta":
			m.Delta = v
		case "delta-size":
			m.DeltaSize, err = strconv.ParseInt(v, 10, 64)
		case "delta-sha256":
			err = parseHash(v, m.DeltaSHA256[:])
		case "delta-from":
			err = parseHash(v, m.DeltaFrom[:])
		case "published":
			m.Published, err = time.Parse(time.RFC3339, v)
		case "key":
			m.Key = v
		}
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %v", k, err)
		}
	}
	names := []string{m.Image, m.Index}
	if m.Delta != "" {
		names = append(names, m.Delta)
	}
	for _, name := range names {
		if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("manifest: bad file name %q", name)
		}
	}
	if m.ImageSize <= 0 || m.IndexSize <= 0 {
		return nil, fmt.Errorf("manifest: missing sizes")
	}
	return m, nil
}

func parseHash(v string, dst []byte) error {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("bad hash %q", v)
	}
	copy(dst, b)
	return nil
}
