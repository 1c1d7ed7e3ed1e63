package testtree

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PortageOptions tunes GeneratePortage.
type PortageOptions struct {
	// Scale multiplies the package count; 1 (the default for 0) gives about
	// 150k files and a few hundred MB, 0.013 about 2k files.
	Scale float64
	// Seed makes the tree reproducible; 0 means 1.
	Seed int64
	// Workers bounds parallel writers; 0 means GOMAXPROCS.
	Workers int
}

// Stats describes a generated tree.
type Stats struct {
	Files, Dirs           int
	Bytes                 int64
	Categories, Packages  int
	Ebuilds, Eclasses     int
	Licenses, ProfileFile int
	Duration              time.Duration
}

func (s Stats) String() string {
	return fmt.Sprintf("%d files, %d dirs, %d bytes (%d categories, %d packages, %d ebuilds) in %v",
		s.Files, s.Dirs, s.Bytes, s.Categories, s.Packages, s.Ebuilds, s.Duration.Round(time.Millisecond))
}

// portageMtime is the fixed base of all generated mtimes so that two runs
// with one seed yield byte-identical trees, times included.
const portageMtime = 1735689600 // 2025-01-01

// gen holds the read-only vocabulary shared by generator workers.
type gen struct {
	seed     int64
	eclasses []eclassInfo
	licenses []string
	allPkgs  []string // cat/pn, for dependency atoms
}

type eclassInfo struct{ name, md5 string }

func newRand(seed int64, parts ...uint64) *rand.Rand {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], uint64(seed))
	for i, p := range parts {
		if i >= 3 {
			break
		}
		binary.LittleEndian.PutUint64(key[8+8*i:], p)
	}
	return rand.New(rand.NewChaCha8(key))
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

var (
	catPrefixes = []string{"app", "dev", "sys", "net", "media", "x11", "games", "sci", "www", "mail", "gnome", "kde", "gui", "acct", "virtual", "llvm"}
	catSuffixes = []string{"admin", "arch", "text", "misc", "libs", "util", "python", "perl", "ruby", "lang", "fs", "apps", "process", "kernel", "boot", "firmware", "auth", "analyzer", "dns", "ftp", "im", "mail", "p2p", "proxy", "wireless", "gfx", "sound", "video", "plugins", "fonts", "terms", "wm", "editors", "emulation", "crypt", "backup", "benchmarks", "shells", "portage", "office", "accessibility", "i18n", "doc", "vcs", "db", "java", "go", "rust", "haskell", "ml", "biology", "chemistry", "electronics", "mathematics", "physics", "servers", "client", "themes", "power", "cluster"}
	syllables   = []string{"ba", "ko", "li", "ne", "tra", "pix", "zo", "gen", "mo", "ru", "xi", "qu", "stor", "lib", "net", "ka", "do", "fu", "sel", "mar", "vin", "cro", "pha", "tek", "lo", "sta", "ix", "ul", "dra", "wen", "py", "go", "gl", "ssl", "x", "io"}
	useFlags    = []string{"X", "acl", "alsa", "bluetooth", "caps", "debug", "doc", "examples", "gtk", "ipv6", "jpeg", "lz4", "lzma", "ncurses", "nls", "openmp", "pam", "png", "pulseaudio", "python", "qt6", "readline", "selinux", "ssl", "static-libs", "systemd", "test", "threads", "truetype", "udev", "unicode", "wayland", "xattr", "zlib", "zstd"}
	arches      = []string{"alpha", "amd64", "arm", "arm64", "hppa", "loong", "m68k", "mips", "ppc", "ppc64", "riscv", "s390", "sparc", "x86", "amd64-linux", "x64-macos"}
	licenseBase = []string{"GPL-2", "GPL-3", "LGPL-2.1", "MIT", "BSD", "Apache-2.0", "MPL-2.0", "ISC", "ZLIB", "Artistic", "CC-BY-SA-4.0", "OFL-1.1", "BSD-2", "Unlicense", "PSF-2", "Boost-1.0"}
	prose       = strings.Fields(`a fast small library for parsing and rendering of data with support
for many formats tool utility daemon server client implementation of the protocol used to
manage configure and monitor system resources written in C C++ Rust Go Python providing bindings
graphical interface command line frontend collection of modules plugins fonts themes and scripts
secure lightweight portable extensible high performance compression networking audio video image
document archive filesystem kernel driver firmware package manager build helper testing framework`)
	phases = []string{"src_prepare", "src_configure", "src_compile", "src_test", "src_install", "pkg_postinst", "pkg_setup"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func hexString(r *rand.Rand, nbytes int) string {
	b := make([]byte, nbytes)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(b)
}

func sentence(r *rand.Rand, min, max int) string {
	n := min + r.IntN(max-min+1)
	w := make([]string, n)
	for i := range w {
		w[i] = pick(r, prose)
	}
	s := strings.Join(w, " ")
	return strings.ToUpper(s[:1]) + s[1:]
}

func pkgName(r *rand.Rand) string {
	n := 2 + r.IntN(3)
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString(pick(r, syllables))
	}
	if r.IntN(5) == 0 {
		sb.WriteString("-" + pick(r, []string{"utils", "tools", "python", "bin", "data", "common", "plugins", "fonts"}))
	}
	return sb.String()
}

func versions(r *rand.Rand, n int) []string {
	major := r.IntN(20)
	minor := r.IntN(30)
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("%d.%d.%d", major, minor, r.IntN(15))
		if r.IntN(4) == 0 {
			v += fmt.Sprintf("-r%d", 1+r.IntN(3))
		}
		minor += 1 + r.IntN(2)
		out = append(out, v)
	}
	if r.IntN(10) == 0 {
		out = append(out, "9999")
	}
	return out
}

// ebuildVars are the values shared by an ebuild and its md5-cache entry.
type ebuildVars struct {
	eapi, desc, homepage, srcURI, license, slot, keywords, iuse string
	depend, rdepend, bdepend                                    string
	inherit                                                     []eclassInfo
	phases                                                      []string
	dists                                                       []distFile
}

type distFile struct {
	name string
	size int
}

func (g *gen) deps(r *rand.Rand, n int) string {
	if len(g.allPkgs) == 0 || n == 0 {
		return ""
	}
	parts := make([]string, n)
	for i := range parts {
		atom := pick(r, g.allPkgs)
		switch r.IntN(4) {
		case 0:
			atom = ">=" + atom + fmt.Sprintf("-%d.%d", r.IntN(10), r.IntN(20))
		case 1:
			atom = fmt.Sprintf("%s? ( %s )", pick(r, useFlags), atom)
		}
		parts[i] = atom
	}
	return strings.Join(parts, "\n\t")
}

func (g *gen) vars(r *rand.Rand, cat, pn, ver string) ebuildVars {
	v := ebuildVars{
		eapi:     pick(r, []string{"7", "8", "8", "8"}),
		desc:     sentence(r, 4, 12),
		homepage: fmt.Sprintf("https://%s.org/ https://github.com/%s/%s", pn, pn, pn),
		license:  pick(r, g.licenses),
		slot:     pick(r, []string{"0", "0", "0", "0/1", "2", "0/" + strings.SplitN(ver, ".", 2)[0]}),
	}
	if r.IntN(3) == 0 {
		v.license += " || ( " + pick(r, g.licenses) + " " + pick(r, g.licenses) + " )"
	}
	kw := make([]string, 0, len(arches))
	for _, a := range arches {
		switch r.IntN(4) {
		case 0:
		case 1:
			kw = append(kw, "~"+a)
		default:
			kw = append(kw, a)
		}
	}
	v.keywords = strings.Join(kw, " ")
	nuse := r.IntN(10)
	use := make([]string, 0, nuse)
	for i := 0; i < nuse; i++ {
		f := pick(r, useFlags)
		if r.IntN(4) == 0 {
			f = "+" + f
		}
		use = append(use, f)
	}
	v.iuse = strings.Join(use, " ")
	v.depend = g.deps(r, r.IntN(8))
	v.rdepend = g.deps(r, r.IntN(6))
	v.bdepend = g.deps(r, r.IntN(4))
	nd := 1 + r.IntN(3)
	var uris []string
	for i := 0; i < nd; i++ {
		name := fmt.Sprintf("%s-%s.tar.%s", pn, ver, pick(r, []string{"gz", "xz", "bz2", "zst"}))
		if i > 0 {
			name = fmt.Sprintf("%s-%s-%s.tar.xz", pn, ver, pick(r, []string{"docs", "patches", "data", "vendor"}))
		}
		v.dists = append(v.dists, distFile{name, 1000 + r.IntN(80<<20)})
		uris = append(uris, fmt.Sprintf("https://downloads.%s.org/releases/%s", pn, name))
	}
	v.srcURI = strings.Join(uris, "\n\t")
	ni := r.IntN(4)
	seen := map[string]bool{}
	for i := 0; i < ni && len(g.eclasses) > 0; i++ {
		e := pick(r, g.eclasses)
		if !seen[e.name] {
			seen[e.name] = true
			v.inherit = append(v.inherit, e)
		}
	}
	for _, p := range phases {
		if r.IntN(2) == 0 {
			v.phases = append(v.phases, p)
		}
	}
	return v
}

func shellLine(r *rand.Rand) string {
	switch r.IntN(8) {
	case 0:
		return fmt.Sprintf("\teapply \"${FILESDIR}\"/${PN}-%d.%d-%s.patch", r.IntN(9), r.IntN(20), pick(r, prose))
	case 1:
		return fmt.Sprintf("\tuse %s && myconf+=( --enable-%s )", pick(r, useFlags), pick(r, prose))
	case 2:
		return fmt.Sprintf("\tsed -i -e 's/%s/%s/' Makefile.in || die", pick(r, prose), pick(r, prose))
	case 3:
		return fmt.Sprintf("\temake DESTDIR=\"${D}\" %s", strings.ToUpper(pick(r, prose)))
	case 4:
		return fmt.Sprintf("\tdodoc README* %s", strings.ToUpper(pick(r, prose)))
	case 5:
		return fmt.Sprintf("\t$(use_enable %s)", pick(r, useFlags))
	case 6:
		return fmt.Sprintf("\t# %s", sentence(r, 5, 14))
	default:
		return fmt.Sprintf("\tlocal %s=\"${WORKDIR}/%s\"", pick(r, prose), pick(r, prose))
	}
}

// ebuild renders an ebuild of roughly 1-8 KB.
func (g *gen) ebuild(r *rand.Rand, v ebuildVars) []byte {
	var b bytes.Buffer
	b.WriteString("# Copyright 1999-2025 Gentoo Authors\n# Distributed under the terms of the GNU General Public License v2\n\n")
	fmt.Fprintf(&b, "EAPI=%s\n\n", v.eapi)
	if len(v.inherit) > 0 {
		names := make([]string, len(v.inherit))
		for i, e := range v.inherit {
			names[i] = e.name
		}
		fmt.Fprintf(&b, "inherit %s\n\n", strings.Join(names, " "))
	}
	fmt.Fprintf(&b, "DESCRIPTION=%q\nHOMEPAGE=%q\nSRC_URI=\"\n\t%s\n\"\n\n", v.desc, v.homepage, v.srcURI)
	fmt.Fprintf(&b, "LICENSE=%q\nSLOT=%q\nKEYWORDS=%q\nIUSE=%q\n\n", v.license, v.slot, v.keywords, v.iuse)
	fmt.Fprintf(&b, "RDEPEND=\"\n\t%s\n\"\nDEPEND=\"${RDEPEND}\n\t%s\n\"\nBDEPEND=\"\n\t%s\n\"\n", v.rdepend, v.depend, v.bdepend)
	target := 1000 + r.IntN(7000)
	for _, p := range v.phases {
		if b.Len() > target {
			break
		}
		fmt.Fprintf(&b, "\n%s() {\n", p)
		n := 2 + r.IntN(12)
		for i := 0; i < n; i++ {
			b.WriteString(shellLine(r))
			b.WriteByte('\n')
		}
		b.WriteString("}\n")
	}
	for b.Len() < target {
		fmt.Fprintf(&b, "\n%s_helper() {\n", pick(r, prose))
		for i := 0; i < 6; i++ {
			b.WriteString(shellLine(r))
			b.WriteByte('\n')
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}

func md5Hex(p []byte) string {
	s := md5.Sum(p)
	return hex.EncodeToString(s[:])
}

// cacheEntry renders metadata/md5-cache/CAT/PF the way egencache does.
func cacheEntry(v ebuildVars, ebuild []byte) []byte {
	var b bytes.Buffer
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if v.bdepend != "" {
		fmt.Fprintf(&b, "BDEPEND=%s\n", flat(v.bdepend))
	}
	ph := make([]string, 0, len(v.phases))
	for _, p := range v.phases {
		ph = append(ph, strings.TrimPrefix(strings.TrimPrefix(p, "src_"), "pkg_"))
	}
	sort.Strings(ph)
	fmt.Fprintf(&b, "DEFINED_PHASES=%s\n", strings.Join(ph, " "))
	if d := flat(v.rdepend + " " + v.depend); d != "" {
		fmt.Fprintf(&b, "DEPEND=%s\n", d)
	}
	fmt.Fprintf(&b, "DESCRIPTION=%s\nEAPI=%s\nHOMEPAGE=%s\n", v.desc, v.eapi, v.homepage)
	if len(v.inherit) > 0 {
		names := make([]string, len(v.inherit))
		for i, e := range v.inherit {
			names[i] = e.name
		}
		fmt.Fprintf(&b, "INHERIT=%s\n", strings.Join(names, " "))
	}
	fmt.Fprintf(&b, "IUSE=%s\nKEYWORDS=%s\nLICENSE=%s\n", v.iuse, v.keywords, v.license)
	if v.rdepend != "" {
		fmt.Fprintf(&b, "RDEPEND=%s\n", flat(v.rdepend))
	}
	fmt.Fprintf(&b, "SLOT=%s\nSRC_URI=%s\n", v.slot, flat(v.srcURI))
	if len(v.inherit) > 0 {
		parts := make([]string, 0, 2*len(v.inherit))
		for _, e := range v.inherit {
			parts = append(parts, e.name, e.md5)
		}
		fmt.Fprintf(&b, "_eclasses_=%s\n", strings.Join(parts, "\t"))
	}
	fmt.Fprintf(&b, "_md5_=%s\n", md5Hex(ebuild))
	return b.Bytes()
}

func manifestLine(r *rand.Rand, d distFile) string {
	// Random hex stands in for real hashes: equally incompressible.
	return fmt.Sprintf("DIST %s %d BLAKE2B %s SHA512 %s\n", d.name, d.size, hexString(r, 64), hexString(r, 64))
}

func metadataXML(r *rand.Rand, pn string) []byte {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE pkgmetadata SYSTEM \"https://www.gentoo.org/dtd/metadata.dtd\">\n<pkgmetadata>\n")
	fmt.Fprintf(&b, "\t<maintainer type=\"person\">\n\t\t<email>%s@gentoo.org</email>\n\t\t<name>%s</name>\n\t</maintainer>\n", pick(r, syllables)+pick(r, syllables), sentence(r, 2, 2))
	if r.IntN(2) == 0 {
		b.WriteString("\t<use>\n")
		for i := 0; i < 1+r.IntN(5); i++ {
			fmt.Fprintf(&b, "\t\t<flag name=%q>%s</flag>\n", pick(r, useFlags), sentence(r, 4, 12))
		}
		b.WriteString("\t</use>\n")
	}
	fmt.Fprintf(&b, "\t<upstream>\n\t\t<remote-id type=\"github\">%s/%s</remote-id>\n\t</upstream>\n</pkgmetadata>\n", pn, pn)
	return b.Bytes()
}

func patchText(r *rand.Rand, pn string) []byte {
	var b bytes.Buffer
	file := pick(r, prose) + ".c"
	fmt.Fprintf(&b, "From: %s\nSubject: [PATCH] %s\n\n--- a/src/%s\n+++ b/src/%s\n", sentence(r, 2, 2), sentence(r, 4, 10), file, file)
	target := 1000 + r.IntN(19000)
	for b.Len() < target {
		fmt.Fprintf(&b, "@@ -%d,7 +%d,8 @@\n", r.IntN(2000), r.IntN(2000))
		for i := 0; i < 7; i++ {
			sign := pick(r, []string{" ", " ", " ", "-", "+"})
			fmt.Fprintf(&b, "%s\t%s(%s, %s);\n", sign, pick(r, prose), pick(r, prose), pick(r, prose))
		}
	}
	return b.Bytes()
}

func proseBlock(r *rand.Rand, size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		b.WriteString(sentence(r, 6, 16))
		b.WriteString(".\n")
		if r.IntN(6) == 0 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func eclassText(r *rand.Rand, name string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Copyright 1999-2025 Gentoo Authors\n# Distributed under the terms of the GNU General Public License v2\n\n# @ECLASS: %s.eclass\n# @MAINTAINER:\n# %s@gentoo.org\n# @BLURB: %s\n\n", name, name, sentence(r, 4, 10))
	fmt.Fprintf(&b, "if [[ -z ${_%s_ECLASS} ]]; then\n_%s_ECLASS=1\n\n", strings.ToUpper(name), strings.ToUpper(name))
	target := 5000 + r.IntN(55000)
	for b.Len() < target {
		fmt.Fprintf(&b, "# @FUNCTION: %s_%s\n# @DESCRIPTION:\n# %s\n%s_%s() {\n\tdebug-print-function ${FUNCNAME} \"$@\"\n", name, pick(r, prose), sentence(r, 6, 20), name, pick(r, prose))
		for i := 0; i < 3+r.IntN(15); i++ {
			b.WriteString(shellLine(r))
			b.WriteByte('\n')
		}
		b.WriteString("}\n\n")
	}
	b.WriteString("fi\n")
	return b.Bytes()
}

// counter accumulates statistics from concurrent writers.
type counter struct {
	mu    sync.Mutex
	files int
	dirs  int
	bytes int64
}

func (c *counter) addFile(n int) {
	c.mu.Lock()
	c.files++
	c.bytes += int64(n)
	c.mu.Unlock()
}

func (c *counter) addDir() {
	c.mu.Lock()
	c.dirs++
	c.mu.Unlock()
}

// writeFile writes data with a reproducible mtime.
func writeFile(c *counter, path string, data []byte, mtime int64) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := setMtime(path, mtime); err != nil {
		return err
	}
	c.addFile(len(data))
	return nil
}

func setMtime(path string, mtime int64) error {
	ts := []unix.Timespec{{Sec: mtime}, {Sec: mtime}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes %s: %w", path, err)
	}
	return nil
}

func mkdirAll(c *counter, path string) error {
	if err := os.Mkdir(path, 0o755); err != nil {
		if os.IsExist(err) {
			return nil
		}
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	c.addDir()
	return nil
}

type pkgSpec struct {
	cat, pn string
	idx     uint64
}

// GeneratePortage writes a deterministic Portage-like tree into dir, which
// must exist and be empty.
func GeneratePortage(dir string, opts PortageOptions) (Stats, error) {
	start := time.Now()
	scale := opts.Scale
	if scale <= 0 {
		scale = 1
	}
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	r := newRand(seed, 1)
	g := &gen{seed: seed}
	c := &counter{}
	st := Stats{}

	nCats := max(4, min(170, int(170*scale+0.5)))
	nPkgs := max(nCats, int(20000*scale+0.5))
	nEclass := max(8, min(300, int(300*scale+0.5)))
	nLic := max(10, min(600, int(600*scale+0.5)))

	cats := make([]string, 0, nCats)
	seenCat := map[string]bool{}
	for len(cats) < nCats {
		cn := pick(r, catPrefixes) + "-" + pick(r, catSuffixes)
		if !seenCat[cn] {
			seenCat[cn] = true
			cats = append(cats, cn)
		}
	}
	sort.Strings(cats)
	for _, d := range []string{"eclass", "licenses", "profiles", "metadata", "metadata/md5-cache"} {
		if err := mkdirAll(c, filepath.Join(dir, d)); err != nil {
			return st, err
		}
	}

	// Eclasses come first: ebuilds inherit them and the cache records
	// their md5.
	seenEc := map[string]bool{}
	for len(g.eclasses) < nEclass {
		name := pkgName(r)
		if seenEc[name] {
			continue
		}
		seenEc[name] = true
		text := eclassText(newRand(seed, 2, hashString(name)), name)
		if err := writeFile(c, filepath.Join(dir, "eclass", name+".eclass"), text, portageMtime-int64(r.IntN(1e8))); err != nil {
			return st, err
		}
		g.eclasses = append(g.eclasses, eclassInfo{name, md5Hex(text)})
	}
	seenLic := map[string]bool{}
	for i := 0; len(g.licenses) < nLic; i++ {
		name := licenseBase[i%len(licenseBase)]
		if i >= len(licenseBase) {
			name = fmt.Sprintf("%s-%s-%d", strings.ToUpper(pick(r, syllables)), pick(r, []string{"EULA", "BSD", "GPL", "MIT", "PD", "CC"}), r.IntN(100))
		}
		if seenLic[name] {
			continue
		}
		seenLic[name] = true
		text := proseBlock(newRand(seed, 3, hashString(name)), 1000+r.IntN(29000))
		if err := writeFile(c, filepath.Join(dir, "licenses", name), text, portageMtime-int64(r.IntN(1e8))); err != nil {
			return st, err
		}
		g.licenses = append(g.licenses, name)
	}

	pkgs := make([]pkgSpec, 0, nPkgs)
	seenPkg := map[string]bool{}
	for len(pkgs) < nPkgs {
		cat := cats[len(pkgs)%nCats]
		if len(pkgs) >= nCats {
			cat = cats[r.IntN(nCats)]
		}
		pn := pkgName(r)
		if seenPkg[cat+"/"+pn] {
			continue
		}
		seenPkg[cat+"/"+pn] = true
		pkgs = append(pkgs, pkgSpec{cat, pn, uint64(len(pkgs))})
		g.allPkgs = append(g.allPkgs, cat+"/"+pn)
	}
	for _, cat := range cats {
		if err := mkdirAll(c, filepath.Join(dir, cat)); err != nil {
			return st, err
		}
		if err := mkdirAll(c, filepath.Join(dir, "metadata/md5-cache", cat)); err != nil {
			return st, err
		}
		cr := newRand(seed, 4, hashString(cat))
		xml := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE catmetadata SYSTEM \"https://www.gentoo.org/dtd/metadata.dtd\">\n<catmetadata>\n\t<longdescription lang=\"en\">\n\t\t%s\n\t</longdescription>\n</catmetadata>\n", sentence(cr, 8, 30))
		if err := writeFile(c, filepath.Join(dir, cat, "metadata.xml"), []byte(xml), portageMtime-int64(cr.IntN(1e8))); err != nil {
			return st, err
		}
	}

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		ebuilds  int
		ebMu     sync.Mutex
	)
	work := make(chan pkgSpec)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				n, err := g.writePackage(c, dir, p, newRand(seed, 5, p.idx))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				ebMu.Lock()
				ebuilds += n
				ebMu.Unlock()
			}
		}()
	}
	for _, p := range pkgs {
		work <- p
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return st, firstErr
	}

	nprof, err := writeProfiles(c, dir, cats, g, newRand(seed, 6))
	if err != nil {
		return st, err
	}
	if err := writeTopLevel(c, dir, newRand(seed, 7)); err != nil {
		return st, err
	}
	// Directory mtimes last, after every entry in them exists.
	if err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return setMtime(path, portageMtime)
		}
		return nil
	}); err != nil {
		return st, fmt.Errorf("set directory times in %s: %w", dir, err)
	}
	st = Stats{
		Files: c.files, Dirs: c.dirs, Bytes: c.bytes,
		Categories: len(cats), Packages: len(pkgs), Ebuilds: ebuilds,
		Eclasses: len(g.eclasses), Licenses: len(g.licenses), ProfileFile: nprof,
		Duration: time.Since(start),
	}
	return st, nil
}

// writePackage writes one package directory and its cache entries and
// returns the number of ebuilds.
func (g *gen) writePackage(c *counter, dir string, p pkgSpec, r *rand.Rand) (int, error) {
	pdir := filepath.Join(dir, p.cat, p.pn)
	if err := mkdirAll(c, pdir); err != nil {
		return 0, err
	}
	vers := versions(r, 1+r.IntN(4))
	var manifest strings.Builder
	for _, ver := range vers {
		if err := g.writeVersion(c, dir, p.cat, p.pn, ver, r, &manifest); err != nil {
			return 0, err
		}
	}
	mt := portageMtime - int64(r.IntN(1e8))
	if err := writeFile(c, filepath.Join(pdir, "Manifest"), []byte(manifest.String()), mt); err != nil {
		return 0, err
	}
	if err := writeFile(c, filepath.Join(pdir, "metadata.xml"), metadataXML(r, p.pn), mt); err != nil {
		return 0, err
	}
	if r.IntN(10) < 3 {
		fdir := filepath.Join(pdir, "files")
		if err := mkdirAll(c, fdir); err != nil {
			return 0, err
		}
		for i := 0; i < 1+r.IntN(4); i++ {
			name := fmt.Sprintf("%s-%s-%s-%d.patch", p.pn, vers[0], pick(r, prose), i)
			if err := writeFile(c, filepath.Join(fdir, name), patchText(r, p.pn), mt); err != nil {
				return 0, err
			}
		}
	}
	return len(vers), nil
}

// writeVersion writes an ebuild, its md5-cache entry, and appends its
// distfiles to manifest.
func (g *gen) writeVersion(c *counter, dir, cat, pn, ver string, r *rand.Rand, manifest *strings.Builder) error {
	v := g.vars(r, cat, pn, ver)
	eb := g.ebuild(r, v)
	mt := portageMtime - int64(r.IntN(1e8))
	pf := pn + "-" + ver
	if err := writeFile(c, filepath.Join(dir, cat, pn, pf+".ebuild"), eb, mt); err != nil {
		return err
	}
	if err := writeFile(c, filepath.Join(dir, "metadata/md5-cache", cat, pf), cacheEntry(v, eb), mt); err != nil {
		return err
	}
	for _, d := range v.dists {
		manifest.WriteString(manifestLine(r, d))
	}
	return nil
}

func writeProfiles(c *counter, dir string, cats []string, g *gen, r *rand.Rand) (int, error) {
	before := c.files
	pdir := filepath.Join(dir, "profiles")
	put := func(rel string, data []byte) error {
		p := filepath.Join(pdir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", filepath.Dir(p), err)
		}
		return writeFile(c, p, data, portageMtime-int64(r.IntN(1e7)))
	}
	if err := put("categories", []byte(strings.Join(cats, "\n")+"\n")); err != nil {
		return 0, err
	}
	if err := put("arch.list", []byte(strings.Join(arches, "\n")+"\n")); err != nil {
		return 0, err
	}
	if err := put("repo_name", []byte("gentoo\n")); err != nil {
		return 0, err
	}
	var mask, use, desc bytes.Buffer
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&mask, "# %s (%d-%02d-%02d)\n# %s\n", sentence(r, 2, 2), 2020+r.IntN(6), 1+r.IntN(12), 1+r.IntN(28), sentence(r, 6, 20))
		for j := 0; j < 1+r.IntN(3); j++ {
			fmt.Fprintf(&mask, "%s\n", pick(r, g.allPkgs))
		}
		mask.WriteByte('\n')
	}
	for _, f := range useFlags {
		fmt.Fprintf(&use, "%s - %s\n", f, sentence(r, 4, 14))
	}
	for _, a := range arches {
		fmt.Fprintf(&desc, "%s\tdefault/linux/%s/23.0\tstable\n", a, a)
	}
	for _, f := range []struct {
		rel  string
		data []byte
	}{{"package.mask", mask.Bytes()}, {"use.desc", use.Bytes()}, {"profiles.desc", desc.Bytes()},
		{"thirdpartymirrors", proseBlock(r, 20000)}, {"license_groups", proseBlock(r, 4000)}} {
		if err := put(f.rel, f.data); err != nil {
			return 0, err
		}
	}
	for _, n := range []string{"elibc", "input_devices", "l10n", "python_targets", "video_cards", "lua_targets"} {
		if err := put("desc/"+n+".desc", proseBlock(r, 500+r.IntN(8000))); err != nil {
			return 0, err
		}
	}
	for q := 1; q <= 4; q++ {
		for y := 2015; y <= 2025; y++ {
			var b bytes.Buffer
			for i := 0; i < 20+r.IntN(80); i++ {
				fmt.Fprintf(&b, "move %s %s\n", pick(r, g.allPkgs), pick(r, g.allPkgs))
			}
			if err := put(fmt.Sprintf("updates/%dQ-%d", q, y), b.Bytes()); err != nil {
				return 0, err
			}
		}
	}
	files := []string{"make.defaults", "package.use", "package.use.mask", "package.use.force", "use.mask", "use.force", "package.mask", "parent", "eapi"}
	for _, a := range arches {
		for _, sub := range []string{"", "/no-multilib", "/23.0", "/23.0/desktop", "/23.0/desktop/gnome", "/23.0/desktop/plasma", "/23.0/systemd", "/23.0/hardened", "/23.0/musl"} {
			base := "arch/" + a + sub
			if strings.HasPrefix(sub, "/23.0") {
				base = "default/linux/" + a + sub
			}
			for _, f := range files {
				if r.IntN(3) == 0 {
					continue
				}
				var b bytes.Buffer
				fmt.Fprintf(&b, "# Copyright 2025 Gentoo Authors\n# %s\n", sentence(r, 4, 12))
				for i := 0; i < 2+r.IntN(30); i++ {
					switch f {
					case "parent":
						fmt.Fprintf(&b, "..\n")
					case "eapi":
						b.WriteString("8\n")
					default:
						fmt.Fprintf(&b, "%s %s\n", pick(r, g.allPkgs), pick(r, useFlags))
					}
				}
				if err := put(base+"/"+f, b.Bytes()); err != nil {
					return 0, err
				}
			}
		}
	}
	// MkdirAll above does not count directories; count them now.
	if err := filepath.WalkDir(pdir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && path != pdir {
			c.addDir()
		}
		return err
	}); err != nil {
		return 0, fmt.Errorf("walk %s: %w", pdir, err)
	}
	return c.files - before, nil
}

func writeTopLevel(c *counter, dir string, r *rand.Rand) error {
	ts := time.Unix(portageMtime, 0).UTC()
	files := []struct{ rel, data string }{
		{"header.txt", "# Copyright 1999-2025 Gentoo Authors\n# Distributed under the terms of the GNU General Public License v2\n"},
		{"skel.ebuild", string(proseBlock(r, 12000))},
		{"skel.metadata.xml", string(metadataXML(r, "skel"))},
		{"metadata/layout.conf", "repo-name = gentoo\nmasters =\nthin-manifests = true\nsign-manifests = false\nmanifest-hashes = BLAKE2B SHA512\ncache-formats = md5-dict\nprofile-formats = portage-2 profile-default-eapi\n"},
		{"metadata/timestamp", ts.Format(time.UnixDate) + "\n"},
		{"metadata/timestamp.chk", ts.Format(time.RFC1123) + "\n"},
		{"metadata/timestamp.x", fmt.Sprintf("%d %s\n", portageMtime, ts.Format(time.UnixDate))},
		{"metadata/timestamp.commit", hexString(r, 20) + " " + fmt.Sprint(portageMtime) + "\n"},
	}
	for _, f := range files {
		if err := writeFile(c, filepath.Join(dir, f.rel), []byte(f.data), portageMtime); err != nil {
			return err
		}
	}
	return nil
}
