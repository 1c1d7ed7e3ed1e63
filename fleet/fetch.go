package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/squashportage/squashportage/squash/blockindex"
)

// FetchOptions tune Fetch.
type FetchOptions struct {
	URL       string // the published directory (holding the manifest)
	PublicKey ed25519.PublicKey
	// Local is the image the client has now ("" or missing: none); its
	// blocks are reused wherever the index has the same hash.
	Local string
	// Tmp is where the new image is assembled (IMAGE.new); Tmp+".fetch"
	// records the verified ranges, so that a fetch run again resumes.
	Tmp      string
	Client   *http.Client // nil: http.DefaultClient
	MaxRange int64        // largest request, in bytes (0: 8 MiB)
	// StallTimeout abandons a request that gets no byte for this long
	// (0: DefaultStallTimeout).
	StallTimeout time.Duration
	Log          func(format string, args ...any)
}

// FetchResult says what Fetch did.
type FetchResult struct {
	UpToDate  bool // the local image is the published one: nothing done
	Manifest  *Manifest
	ImageSize int64
	// Fetched counts every byte received: manifest, index and blocks.
	Fetched    int64
	BlockBytes int64 // the blocks' share of Fetched
	Reused     int64 // bytes copied from the local image
	Resumed    int64 // bytes kept from an interrupted fetch
	Requests   int   // HTTP requests made
	// Downloaded splits BlockBytes by kind of piece: data and fragment
	// blocks, raw pieces (superblock, tables).
	Downloaded struct{ Data, Fragment, Raw int64 }
}

// RecordSuffix names the record of verified ranges beside Tmp.
const RecordSuffix = ".fetch"

// record is what RecordSuffix holds, as JSON: the image being assembled
// and the byte ranges [from, to) of Tmp already verified and synced.
type record struct {
	ImageSHA256 string      `json:"image_sha256"`
	Done        [][2]uint64 `json:"done"`
}

// fetcher is one Fetch.
type fetcher struct {
	ctx    context.Context
	opts   FetchOptions
	client *http.Client
	base   string
	stall  time.Duration
	log    func(string, ...any)
	res    *FetchResult
}

// Fetch reads the signed manifest at opts.URL, checks it with
// opts.PublicKey, and assembles the image it names into opts.Tmp from the
// blocks of opts.Local and range requests for the others, checking every
// block against the signed index and the whole file against the signed
// hash. It installs nothing: the caller verifies and renames Tmp. On
// failure Tmp and its record stay, to resume, unless nothing was kept.
func Fetch(ctx context.Context, opts FetchOptions) (FetchResult, error) {
	var res FetchResult
	fe := &fetcher{ctx: ctx, opts: opts, client: opts.Client, base: strings.TrimSuffix(opts.URL, "/") + "/", stall: opts.StallTimeout, log: opts.Log, res: &res}
	if fe.client == nil {
		fe.client = http.DefaultClient
	}
	if fe.log == nil {
		fe.log = func(string, ...any) {}
	}
	if opts.MaxRange <= 0 {
		fe.opts.MaxRange = 8 << 20
	}
	mb, err := fe.getAll(fe.base+ManifestName, 1<<16)
	if err != nil {
		return res, err
	}
	m, err := ParseManifest(mb, opts.PublicKey)
	if err != nil {
		return res, fmt.Errorf("%s%s: %w", fe.base, ManifestName, err)
	}
	res.Manifest, res.ImageSize = m, m.ImageSize
	local := fe.localIndex()
	if local != nil && local.SHA256 == m.ImageSHA256 {
		res.UpToDate = true
		// What an interrupted fetch of another generation left is of
		// no use any more (an IMAGE.new without a fetch record is a
		// persist's: not ours to touch).
		if _, err := os.Stat(opts.Tmp + RecordSuffix); err == nil {
			if unlock, err := lockTmp(opts.Tmp); err == nil {
				os.Remove(opts.Tmp)
				os.Remove(opts.Tmp + RecordSuffix)
				unlock()
			}
		}
		return res, nil
	}
	ib := fe.indexByDelta(m, local)
	if ib == nil {
		if ib, err = fe.getAll(fe.base+m.Index, m.IndexSize); err != nil {
			return res, err
		}
	}
	if sha256.Sum256(ib) != m.IndexSHA256 || int64(len(ib)) != m.IndexSize {
		return res, fmt.Errorf("%s%s does not match its hash in the signed manifest: damaged or tampered with", fe.base, m.Index)
	}
	ix, err := blockindex.Parse(ib)
	if err != nil {
		return res, fmt.Errorf("%s%s: %w", fe.base, m.Index, err)
	}
	if int64(ix.Size) != m.ImageSize || ix.SHA256 != m.ImageSHA256 {
		return res, fmt.Errorf("%s%s describes another image than the manifest", fe.base, m.Index)
	}
	return res, fe.assemble(m, ix, local)
}

// indexByDelta rebuilds the new index from the local one and the
// published delta, when the local image is the delta's base; nil when not
// (then the whole index is downloaded). The result is checked against the
// signed index hash.
func (fe *fetcher) indexByDelta(m *Manifest, local *blockindex.Index) []byte {
	if m.Delta == "" || local == nil || local.SHA256 != m.DeltaFrom {
		return nil
	}
	d, err := fe.getAll(fe.base+m.Delta, m.DeltaSize)
	if err != nil || sha256.Sum256(d) != m.DeltaSHA256 {
		fe.log("fetch: index delta %s unusable (%v): downloading the whole index", m.Delta, err)
		return nil
	}
	ib, err := blockindex.Patch(local, d)
	if err != nil || sha256.Sum256(ib) != m.IndexSHA256 {
		fe.log("fetch: index delta %s does not rebuild the signed index (%v): downloading the whole index", m.Delta, err)
		return nil
	}
	fe.log("fetch: index rebuilt from the local one and a %d-byte delta", len(d))
	return ib
}

// localIndex indexes the current image; nil when there is none or it
// cannot be read (then every block is downloaded).
func (fe *fetcher) localIndex() *blockindex.Index {
	if fe.opts.Local == "" {
		return nil
	}
	if _, err := os.Stat(fe.opts.Local); err != nil {
		return nil
	}
	ix, err := blockindex.BuildFile(fe.opts.Local)
	if err != nil {
		fe.log("fetch: cannot index %s (%v): downloading every block", fe.opts.Local, err)
		return nil
	}
	return ix
}

func (fe *fetcher) assemble(m *Manifest, ix *blockindex.Index, local *blockindex.Index) error {
	tmp, recPath := fe.opts.Tmp, fe.opts.Tmp+RecordSuffix
	unlock, err := lockTmp(tmp)
	if err != nil {
		return err
	}
	defer unlock()
	want := hex.EncodeToString(m.ImageSHA256[:])
	have := make([]bool, len(ix.Blocks))
	f, resumed, err := openForResume(tmp, recPath, want, ix, have)
	if err != nil {
		return err
	}
	defer f.Close()
	fe.res.Resumed = resumed
	if resumed > 0 {
		fe.log("fetch: resuming: %d bytes already verified in %s", resumed, tmp)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(ix.Size)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		if resumed == 0 {
			f.Close()
			os.Remove(tmp)
			os.Remove(recPath)
		}
		return fmt.Errorf("no room for the new image (%d bytes) in %s: %w", ix.Size, filepath.Dir(tmp), err)
	}
	checkpoint := func() error {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
		return writeRecord(recPath, want, ix, have)
	}

	// Blocks the current image has.
	if local != nil {
		lf, err := os.Open(fe.opts.Local)
		if err == nil {
			bySum := local.BySum()
			buf := make([]byte, blockindex.MaxPiece)
			for i, bl := range ix.Blocks {
				if have[i] {
					continue
				}
				lb, ok := bySum[bl.Sum]
				if !ok || lb.Len != bl.Len {
					continue
				}
				b := buf[:bl.Len]
				if _, err := lf.ReadAt(b, int64(lb.Off)); err != nil || sha256.Sum256(b) != bl.Sum {
					continue
				}
				if _, err := f.WriteAt(b, int64(bl.Off)); err != nil {
					lf.Close()
					return fmt.Errorf("write %s: %w", tmp, err)
				}
				have[i] = true
				fe.res.Reused += int64(bl.Len)
			}
			lf.Close()
			if err := checkpoint(); err != nil {
				return err
			}
		}
	}

	// The rest, adjacent blocks coalesced into one range request.
	for i := 0; i < len(ix.Blocks); {
		if have[i] {
			i++
			continue
		}
		j, n := i, uint64(0)
		for j < len(ix.Blocks) && !have[j] && (j == i || n+uint64(ix.Blocks[j].Len) <= uint64(fe.opts.MaxRange)) {
			n += uint64(ix.Blocks[j].Len)
			j++
		}
		err := fe.getRange(m.Image, ix.Blocks[i:j], f, have[i:j])
		if cerr := checkpoint(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w; the verified part is kept in %s: run fetch again to resume", err, tmp)
		}
		i = j
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	sum, err := hashFile(f, int64(ix.Size))
	if err != nil {
		return err
	}
	if sum != m.ImageSHA256 {
		return fmt.Errorf("%s does not match the signed image hash after assembly", tmp)
	}
	os.Remove(recPath)
	return nil
}

// openForResume opens tmp, keeping the blocks its record says were
// verified when they still hash right; otherwise it starts afresh.
func openForResume(tmp, recPath, want string, ix *blockindex.Index, have []bool) (*os.File, int64, error) {
	var rec record
	if b, err := os.ReadFile(recPath); err == nil && json.Unmarshal(b, &rec) == nil && rec.ImageSHA256 == want {
		if f, err := os.OpenFile(tmp, os.O_RDWR, 0o644); err == nil {
			var kept int64
			buf := make([]byte, blockindex.MaxPiece)
			r := 0
			for i, bl := range ix.Blocks {
				for r < len(rec.Done) && rec.Done[r][1] <= bl.Off {
					r++
				}
				if r == len(rec.Done) || rec.Done[r][0] > bl.Off || rec.Done[r][1] < bl.Off+uint64(bl.Len) {
					continue
				}
				b := buf[:bl.Len]
				if _, err := f.ReadAt(b, int64(bl.Off)); err == nil && sha256.Sum256(b) == bl.Sum {
					have[i] = true
					kept += int64(bl.Len)
				}
			}
			return f, kept, nil
		}
	}
	os.Remove(recPath)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, 0, err
	}
	return f, 0, nil
}

func writeRecord(path, want string, ix *blockindex.Index, have []bool) error {
	rec := record{ImageSHA256: want, Done: [][2]uint64{}}
	for i, bl := range ix.Blocks {
		if !have[i] {
			continue
		}
		if n := len(rec.Done); n > 0 && rec.Done[n-1][1] == bl.Off {
			rec.Done[n-1][1] += uint64(bl.Len)
		} else {
			rec.Done = append(rec.Done, [2]uint64{bl.Off, bl.Off + uint64(bl.Len)})
		}
	}
	b, _ := json.Marshal(rec)
	return writeFileSynced(path, bytesWriter(b))
}

func hashFile(f *os.File, size int64) ([32]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return [32]byte{}, err
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, nil
}

// getAll downloads a whole small file of at most limit bytes.
func (fe *fetcher) getAll(url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(fe.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := fe.do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	fe.res.Fetched += int64(len(b))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("fetch %s: larger than %d bytes", url, limit)
	}
	return b, nil
}

// getRange downloads the adjacent blocks bls of the image in one request,
// checks each against its hash and writes it into f, marking it in have.
func (fe *fetcher) getRange(name string, bls []blockindex.Block, f *os.File, have []bool) error {
	from := bls[0].Off
	last := bls[len(bls)-1]
	to := last.Off + uint64(last.Len) // exclusive
	url := fe.base + name
	req, err := http.NewRequestWithContext(fe.ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
	resp, err := fe.do(req)
	if err != nil {
		return fmt.Errorf("download %s bytes %d-%d: %w", name, from, to-1, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("download %s bytes %d-%d: %s (the server must answer range requests with 206)", name, from, to-1, resp.Status)
	}
	if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-%d/", from, to-1)) {
		return fmt.Errorf("download %s bytes %d-%d: server sent range %q", name, from, to-1, cr)
	}
	buf := make([]byte, blockindex.MaxPiece)
	for i, bl := range bls {
		b := buf[:bl.Len]
		n, err := io.ReadFull(resp.Body, b)
		fe.res.Fetched += int64(n)
		fe.res.BlockBytes += int64(n)
		if err != nil {
			return fmt.Errorf("download %s bytes %d-%d: transfer broke off at byte %d: %w", name, from, to-1, bl.Off+uint64(n), err)
		}
		if sha256.Sum256(b) != bl.Sum {
			return fmt.Errorf("block at offset %d (%d bytes) of %s does not match its hash in the signed index: the server's copy is damaged or tampered with", bl.Off, bl.Len, url)
		}
		if _, err := f.WriteAt(b, int64(bl.Off)); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		have[i] = true
		switch bl.Kind {
		case blockindex.KindData:
			fe.res.Downloaded.Data += int64(bl.Len)
		case blockindex.KindFragment:
			fe.res.Downloaded.Fragment += int64(bl.Len)
		default:
			fe.res.Downloaded.Raw += int64(bl.Len)
		}
	}
	return nil
}
