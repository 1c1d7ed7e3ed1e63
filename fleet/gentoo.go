package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Gentoo's mirrors publish the tree as squashfs images
// (snapshots/squashfs/gentoo-YYYYMMDD.xz.sqfs, gentoo-current.xz.sqfs)
// beside a clearsigned sha512sum.txt. They have no block index, so such a
// snapshot is downloaded whole and checked by its SHA-512, whose line is
// trusted only once gpgv has verified the file's OpenPGP signature.

// SnapshotOptions tune FetchSnapshot.
type SnapshotOptions struct {
	URL     string // the .sqfs file
	SumsURL string // the clearsigned sums ("": sha512sum.txt beside URL)
	// Keyring is the OpenPGP public key file (armored or binary) of the
	// key that signs the sums.
	Keyring      string
	Tmp          string // IMAGE.new; Tmp+RecordSuffix records the bytes kept
	Client       *http.Client
	StallTimeout time.Duration // see FetchOptions
	Log          func(format string, args ...any)
}

// snapRecord is a snapshot download's record: the bytes of Tmp synced so
// far, for the file with that SHA-512.
type snapRecord struct {
	SHA512 string `json:"sha512"`
	Bytes  int64  `json:"bytes"`
}

// FetchSnapshot downloads a Gentoo squashfs snapshot into opts.Tmp,
// resuming an interrupted download, and checks it against the SHA-512 of
// the signed sums file. It installs nothing.
func FetchSnapshot(ctx context.Context, opts SnapshotOptions) (FetchResult, error) {
	var res FetchResult
	fe := &fetcher{ctx: ctx, client: opts.Client, stall: opts.StallTimeout, log: opts.Log, res: &res}
	if fe.client == nil {
		fe.client = http.DefaultClient
	}
	if fe.log == nil {
		fe.log = func(string, ...any) {}
	}
	sumsURL := opts.SumsURL
	if sumsURL == "" {
		sumsURL = opts.URL[:strings.LastIndex(opts.URL, "/")+1] + "sha512sum.txt"
	}
	signed, err := fe.getAll(sumsURL, 1<<20)
	if err != nil {
		return res, err
	}
	text, err := gpgvVerify(signed, opts.Keyring)
	if err != nil {
		return res, fmt.Errorf("%s: %w", sumsURL, err)
	}
	name := path.Base(opts.URL)
	want, err := findSHA512(text, name)
	if err != nil {
		return res, fmt.Errorf("%s: %w", sumsURL, err)
	}
	tmp, recPath := opts.Tmp, opts.Tmp+RecordSuffix
	unlock, err := lockTmp(tmp)
	if err != nil {
		return res, err
	}
	defer unlock()
	var rec snapRecord
	var f *os.File
	if b, err := os.ReadFile(recPath); err == nil && json.Unmarshal(b, &rec) == nil && rec.SHA512 == want {
		f, err = os.OpenFile(tmp, os.O_RDWR, 0o644)
		if err != nil {
			f, rec.Bytes = nil, 0
		}
	}
	if f == nil {
		rec = snapRecord{SHA512: want}
		if f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return res, err
		}
	}
	defer f.Close()
	res.Resumed = rec.Bytes
	checkpoint := func(n int64) error {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
		rec.Bytes = n
		b, _ := json.Marshal(rec)
		return writeFileSynced(recPath, bytesWriter(b))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return res, err
	}
	if rec.Bytes > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", rec.Bytes))
	}
	resp, err := fe.do(req)
	if err != nil {
		return res, fmt.Errorf("download %s: %w", opts.URL, err)
	}
	defer resp.Body.Close()
	pos := int64(0)
	switch {
	case resp.StatusCode == http.StatusPartialContent && rec.Bytes > 0:
		pos = rec.Bytes
		fe.log("fetch: resuming %s at byte %d", name, pos)
	case resp.StatusCode == http.StatusOK:
		res.Resumed = 0
	default:
		return res, fmt.Errorf("download %s: %s", opts.URL, resp.Status)
	}
	if resp.ContentLength > 0 {
		res.ImageSize = pos + resp.ContentLength
		if err := unix.Fallocate(int(f.Fd()), 0, 0, res.ImageSize); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return res, fmt.Errorf("no room for the new image (%d bytes) in %s: %w", res.ImageSize, filepath.Dir(tmp), err)
		}
	}
	buf := make([]byte, 1<<20)
	synced := pos
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.WriteAt(buf[:n], pos); err != nil {
				checkpoint(synced)
				return res, fmt.Errorf("write %s: %w", tmp, err)
			}
			pos += int64(n)
			res.Fetched += int64(n)
			res.BlockBytes += int64(n)
			if pos-synced >= 16<<20 {
				if err := checkpoint(pos); err != nil {
					return res, err
				}
				synced = pos
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if err := checkpoint(pos); err != nil {
				return res, err
			}
			return res, fmt.Errorf("download %s: transfer broke off at byte %d: %w; the part downloaded is kept in %s: run fetch again to resume", opts.URL, pos, rerr, tmp)
		}
	}
	if err := f.Truncate(pos); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", tmp, err)
	}
	res.ImageSize = pos
	h := sha512.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, pos)); err != nil {
		return res, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		f.Close()
		os.Remove(tmp)
		os.Remove(recPath)
		return res, fmt.Errorf("%s: SHA-512 %s does not match the signed %s: damaged or tampered with (removed)", opts.URL, got, want)
	}
	os.Remove(recPath)
	return res, nil
}

// gpgvVerify checks a clearsigned document with gpgv against keyring and
// returns the signed text only (what gpgv vouches for).
func gpgvVerify(signed []byte, keyring string) ([]byte, error) {
	if keyring == "" {
		return nil, errors.New("no OpenPGP key given to check the signature with")
	}
	key, err := os.ReadFile(keyring)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(key, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		if key, err = dearmor(key); err != nil {
			return nil, fmt.Errorf("%s: %w", keyring, err)
		}
	}
	dir, err := os.MkdirTemp("", "squashportage-gpgv")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	kr := filepath.Join(dir, "keyring.gpg")
	doc := filepath.Join(dir, "sums.asc")
	out := filepath.Join(dir, "sums.txt")
	if err := os.WriteFile(kr, key, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(doc, signed, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("gpgv", "--homedir", dir, "--keyring", kr, "--output", out, doc)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("OpenPGP signature does not verify with %s: %w (gpgv: %s)", keyring, ErrSignature, strings.TrimSpace(string(msg)))
		}
		return nil, fmt.Errorf("run gpgv (Debian: apt-get install gpgv; Gentoo: app-crypt/gnupg): %w", err)
	}
	return os.ReadFile(out)
}

// dearmor decodes an ASCII-armored OpenPGP block into its binary packets.
func dearmor(b []byte) ([]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var body strings.Builder
	state := 0 // 0 before the block, 1 headers, 2 body
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case state == 0 && strings.HasPrefix(line, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
			state = 1
		case state == 1 && line == "":
			state = 2
		case state == 1 && !strings.Contains(line, ":"):
			state = 2
			body.WriteString(line)
		case state == 2 && (strings.HasPrefix(line, "=") || strings.HasPrefix(line, "-----END")):
			return base64.StdEncoding.DecodeString(body.String())
		case state == 2:
			body.WriteString(line)
		}
	}
	return nil, errors.New("damaged armored key")
}

// findSHA512 finds name's line in a sums file: "HEX  NAME" (sha512sum's)
// or "SHA512 (NAME) = HEX" (the BSD tag form).
func findSHA512(text []byte, name string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var sum string
		switch {
		case len(f) == 2 && strings.TrimPrefix(f[1], "*") == name:
			sum = f[0]
		case len(f) == 4 && f[0] == "SHA512" && f[1] == "("+name+")" && f[2] == "=":
			sum = f[3]
		}
		if _, err := hex.DecodeString(sum); err == nil && len(sum) == 128 {
			return strings.ToLower(sum), nil
		}
	}
	return "", fmt.Errorf("no SHA-512 line for %s in the signed sums (give the dated file's URL, gentoo-YYYYMMDD.xz.sqfs, if the current one is not listed)", name)
}
