package testtree

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MutStats counts what MutatePortage changed.
type MutStats struct {
	Modified, Added, Removed       int // files
	AddedPackages, RemovedPackages int
	AddedVersions, RemovedVersions int
	BytesWritten                   int64
	TouchedPackages                int
	Duration                       time.Duration
}

func (s MutStats) String() string {
	return fmt.Sprintf("%d packages touched: %d files modified, %d added, %d removed (%d bytes written) in %v",
		s.TouchedPackages, s.Modified, s.Added, s.Removed, s.BytesWritten, s.Duration.Round(time.Millisecond))
}

// MutatePortage changes a tree made by GeneratePortage the way a sync
// does: about frac of the packages get a modified, added or removed
// version (ebuild, Manifest and md5-cache together), a few packages appear
// or disappear, and the timestamps move. The result depends only on the
// tree and seed.
func MutatePortage(dir string, frac float64, seed int64) (MutStats, error) {
	start := time.Now()
	var st MutStats
	m, err := loadMutator(dir, seed)
	if err != nil {
		return st, err
	}
	r := newRand(seed, 100)
	m.mtime = portageMtime + 86400 + int64(r.IntN(86400*30))

	n := int(math.Round(frac * float64(len(m.g.allPkgs))))
	n = min(n, len(m.g.allPkgs))
	order := r.Perm(len(m.g.allPkgs))
	touched := order[:n]
	nRemovePkgs := 0
	if n > 0 {
		nRemovePkgs = max(1, n/100)
	}
	for i, idx := range touched {
		cat, pn, _ := strings.Cut(m.g.allPkgs[idx], "/")
		var err error
		if i < nRemovePkgs {
			err = m.removePackage(&st, cat, pn)
		} else {
			err = m.touchPackage(&st, cat, pn, r)
		}
		if err != nil {
			return st, err
		}
	}
	st.TouchedPackages = n
	nNew := 0
	if n > 0 {
		nNew = max(1, n/50)
	}
	for i := 0; i < nNew; i++ {
		if err := m.addPackage(&st, r, uint64(i)); err != nil {
			return st, err
		}
	}
	stamp := time.Unix(m.mtime, 0).UTC()
	for rel, data := range map[string]string{
		"metadata/timestamp":        stamp.Format(time.UnixDate) + "\n",
		"metadata/timestamp.chk":    stamp.Format(time.RFC1123) + "\n",
		"metadata/timestamp.x":      fmt.Sprintf("%d %s\n", m.mtime, stamp.Format(time.UnixDate)),
		"metadata/timestamp.commit": hexString(r, 20) + " " + fmt.Sprint(m.mtime) + "\n",
	} {
		if err := m.write(&st, filepath.Join(dir, rel), []byte(data)); err != nil {
			return st, err
		}
	}
	for d := range m.dirs {
		if err := setMtime(d, m.mtime); err != nil {
			return st, err
		}
	}
	st.Duration = time.Since(start)
	return st, nil
}

type mutator struct {
	dir   string
	seed  int64
	g     *gen
	mtime int64
	dirs  map[string]bool // directories whose entries changed
	c     counter
}

func loadMutator(dir string, seed int64) (*mutator, error) {
	g := &gen{seed: seed}
	ecl, err := readNames(filepath.Join(dir, "eclass"))
	if err != nil {
		return nil, fmt.Errorf("mutate %s: %w", dir, err)
	}
	for _, e := range ecl {
		data, err := os.ReadFile(filepath.Join(dir, "eclass", e))
		if err != nil {
			return nil, fmt.Errorf("mutate %s: %w", dir, err)
		}
		g.eclasses = append(g.eclasses, eclassInfo{strings.TrimSuffix(e, ".eclass"), md5Hex(data)})
	}
	if g.licenses, err = readNames(filepath.Join(dir, "licenses")); err != nil {
		return nil, fmt.Errorf("mutate %s: %w", dir, err)
	}
	cats, err := os.ReadFile(filepath.Join(dir, "profiles/categories"))
	if err != nil {
		return nil, fmt.Errorf("mutate %s: %w", dir, err)
	}
	for _, cat := range strings.Fields(string(cats)) {
		ents, err := os.ReadDir(filepath.Join(dir, cat))
		if err != nil {
			return nil, fmt.Errorf("mutate %s: %w", dir, err)
		}
		for _, e := range ents {
			if e.IsDir() {
				g.allPkgs = append(g.allPkgs, cat+"/"+e.Name())
			}
		}
	}
	if len(g.allPkgs) == 0 || len(g.eclasses) == 0 || len(g.licenses) == 0 {
		return nil, fmt.Errorf("mutate %s: not a generated Portage tree", dir)
	}
	return &mutator{dir: dir, seed: seed, g: g, dirs: map[string]bool{}}, nil
}

func (m *mutator) write(st *MutStats, path string, data []byte) error {
	_, err := os.Lstat(path)
	existed := err == nil
	if err := writeFile(&m.c, path, data, m.mtime); err != nil {
		return err
	}
	st.BytesWritten += int64(len(data))
	if existed {
		st.Modified++
	} else {
		st.Added++
		m.dirs[filepath.Dir(path)] = true
	}
	return nil
}

func (m *mutator) remove(st *MutStats, path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	st.Removed++
	m.dirs[filepath.Dir(path)] = true
	return nil
}

// pkgVersions lists the versions of cat/pn, oldest name first.
func (m *mutator) pkgVersions(cat, pn string) ([]string, error) {
	names, err := readNames(filepath.Join(m.dir, cat, pn))
	if err != nil {
		return nil, fmt.Errorf("mutate: %w", err)
	}
	var vers []string
	for _, n := range names {
		if v, ok := strings.CutSuffix(n, ".ebuild"); ok {
			vers = append(vers, strings.TrimPrefix(v, pn+"-"))
		}
	}
	return vers, nil
}

// isDistOf says whether a distfile name belongs to package-version pf, as
// generated by gen.vars.
func isDistOf(name, pf string) bool {
	rest, ok := strings.CutPrefix(name, pf)
	if !ok {
		return false
	}
	if strings.HasPrefix(rest, ".tar.") {
		return true
	}
	for _, s := range []string{"-docs.", "-patches.", "-data.", "-vendor."} {
		if strings.HasPrefix(rest, s) {
			return true
		}
	}
	return false
}

// rewriteManifest drops the DIST lines of pf and appends extra.
func (m *mutator) rewriteManifest(st *MutStats, cat, pn, pf, extra string) error {
	path := filepath.Join(m.dir, cat, pn, "Manifest")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("mutate: %w", err)
	}
	var sb strings.Builder
	for _, line := range strings.SplitAfter(string(old), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "DIST" && pf != "" && isDistOf(f[1], pf) {
			continue
		}
		sb.WriteString(line)
	}
	sb.WriteString(extra)
	return m.write(st, path, []byte(sb.String()))
}

func (m *mutator) writeVersion(st *MutStats, cat, pn, ver string, r *rand.Rand) (string, error) {
	v := m.g.vars(r, cat, pn, ver)
	eb := m.g.ebuild(r, v)
	pf := pn + "-" + ver
	if err := m.write(st, filepath.Join(m.dir, cat, pn, pf+".ebuild"), eb); err != nil {
		return "", err
	}
	if err := m.write(st, filepath.Join(m.dir, "metadata/md5-cache", cat, pf), cacheEntry(v, eb)); err != nil {
		return "", err
	}
	var lines strings.Builder
	for _, d := range v.dists {
		lines.WriteString(manifestLine(r, d))
	}
	return lines.String(), nil
}

func (m *mutator) touchPackage(st *MutStats, cat, pn string, r *rand.Rand) error {
	vers, err := m.pkgVersions(cat, pn)
	if err != nil {
		return err
	}
	if len(vers) == 0 {
		return nil
	}
	switch k := r.IntN(100); {
	case k < 55: // a revision or keyword change rewrites one version
		ver := vers[r.IntN(len(vers))]
		lines, err := m.writeVersion(st, cat, pn, ver, r)
		if err != nil {
			return err
		}
		return m.rewriteManifest(st, cat, pn, pn+"-"+ver, lines)
	case k < 80 || len(vers) == 1: // a version bump
		ver := fmt.Sprintf("%d.%d.%d", 30+r.IntN(20), r.IntN(50), r.IntN(20))
		lines, err := m.writeVersion(st, cat, pn, ver, r)
		if err != nil {
			return err
		}
		st.AddedVersions++
		return m.rewriteManifest(st, cat, pn, "", lines)
	case k < 95: // an old version is dropped
		ver := vers[0]
		pf := pn + "-" + ver
		if err := m.remove(st, filepath.Join(m.dir, cat, pn, pf+".ebuild")); err != nil {
			return err
		}
		if err := m.remove(st, filepath.Join(m.dir, "metadata/md5-cache", cat, pf)); err != nil {
			return err
		}
		st.RemovedVersions++
		return m.rewriteManifest(st, cat, pn, pf, "")
	default: // a maintainer change
		return m.write(st, filepath.Join(m.dir, cat, pn, "metadata.xml"), metadataXML(r, pn))
	}
}

func (m *mutator) removePackage(st *MutStats, cat, pn string) error {
	vers, err := m.pkgVersions(cat, pn)
	if err != nil {
		return err
	}
	for _, ver := range vers {
		if err := m.remove(st, filepath.Join(m.dir, "metadata/md5-cache", cat, pn+"-"+ver)); err != nil {
			return err
		}
	}
	pdir := filepath.Join(m.dir, cat, pn)
	var files int
	if err := filepath.WalkDir(pdir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	}); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	if err := os.RemoveAll(pdir); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	st.Removed += files
	st.RemovedPackages++
	m.dirs[filepath.Join(m.dir, cat)] = true
	return nil
}

func (m *mutator) addPackage(st *MutStats, r *rand.Rand, i uint64) error {
	cats := map[string]bool{}
	for _, p := range m.g.allPkgs {
		c, _, _ := strings.Cut(p, "/")
		cats[c] = true
	}
	catList := make([]string, 0, len(cats))
	for c := range cats {
		catList = append(catList, c)
	}
	sort.Strings(catList)
	cat := pick(r, catList)
	var pn string
	for {
		pn = pkgName(r) + fmt.Sprintf("-new%d", i)
		if _, err := os.Lstat(filepath.Join(m.dir, cat, pn)); os.IsNotExist(err) {
			break
		}
	}
	if err := os.Mkdir(filepath.Join(m.dir, cat, pn), 0o755); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	m.dirs[filepath.Join(m.dir, cat)] = true
	m.dirs[filepath.Join(m.dir, cat, pn)] = true
	var manifest strings.Builder
	for _, ver := range versions(r, 1+r.IntN(2)) {
		lines, err := m.writeVersion(st, cat, pn, ver, r)
		if err != nil {
			return err
		}
		manifest.WriteString(lines)
	}
	if err := m.write(st, filepath.Join(m.dir, cat, pn, "Manifest"), []byte(manifest.String())); err != nil {
		return err
	}
	if err := m.write(st, filepath.Join(m.dir, cat, pn, "metadata.xml"), metadataXML(r, pn)); err != nil {
		return err
	}
	st.AddedPackages++
	return nil
}

// readNames lists a directory's entries, sorted.
func readNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, err
}
