package overlay

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/squashportage/squashportage/squash/codec"
)

func TestParseSpec(t *testing.T) {
	base := Spec{Image: "/a.sqfs", Target: "/x", Upper: UpperTmpfs, Size: DefaultSize, Persist: PersistShutdown, Keep: DefaultKeep}
	with := func(f func(*Spec)) Spec { s := base; f(&s); return s }
	tests := []struct {
		in   string
		want Spec
		str  string // String(); "" means in
	}{
		{"/a.sqfs:/x", base, ""},
		{"/a.sqfs:/x/", base, "/a.sqfs:/x"},
		{"/a.sqfs:/x:upper=tmpfs", base, "/a.sqfs:/x"},
		{"/a.sqfs:/x:noexec", base, "/a.sqfs:/x"},
		{"/a.sqfs:/x:persist=shutdown,keep=2,size=25%", base, "/a.sqfs:/x"},
		{"/a.sqfs:/x:ro", with(func(s *Spec) { s.ReadOnly, s.Upper, s.Size, s.Persist, s.Keep = true, "", "", PersistNever, 0 }), ""},
		{"/a.sqfs:/x:ro,exec", with(func(s *Spec) {
			s.ReadOnly, s.Exec, s.Upper, s.Size, s.Persist, s.Keep = true, true, "", "", PersistNever, 0
		}), ""},
		{"/a.sqfs:/x:upper=/var/lib/sp", with(func(s *Spec) { s.Upper, s.Size = "/var/lib/sp", "" }), ""},
		{"/a.sqfs:/x:size=512m", with(func(s *Spec) { s.Size = "512m" }), ""},
		{"/a.sqfs:/x:size=1G", with(func(s *Spec) { s.Size = "1g" }), "/a.sqfs:/x:size=1g"},
		{"/a.sqfs:/x:size=2048k", with(func(s *Spec) { s.Size = "2m" }), "/a.sqfs:/x:size=2m"},
		{"/a.sqfs:/x:size=50%", with(func(s *Spec) { s.Size = "50%" }), ""},
		{"/a.sqfs:/x:persist=never", with(func(s *Spec) { s.Persist = PersistNever }), ""},
		{"/a.sqfs:/x:comp=xz", with(func(s *Spec) { s.Comp = codec.XZ }), ""},
		{"/a.sqfs:/x:layers=8", with(func(s *Spec) { s.Layers = 8 }), ""},
		{"/a.sqfs:/x:layers=4,compact=40%", with(func(s *Spec) { s.Layers, s.CompactPercent = 4, 40 }), ""},
		{"/a.sqfs:/x:compact=25", base, "/a.sqfs:/x"},
		{"/a.sqfs:/x:comp=gzip", with(func(s *Spec) { s.Comp = codec.Gzip }), ""},
		{"/a.sqfs:/x:comp=lz4", with(func(s *Spec) { s.Comp = codec.LZ4 }), ""},
		{"/a.sqfs:/x:comp=zstd", with(func(s *Spec) { s.Comp = codec.Zstd }), ""},
		{"/a.sqfs:/x:block=1m", with(func(s *Spec) { s.Block = 1 << 20 }), ""},
		{"/a.sqfs:/x:block=4096", with(func(s *Spec) { s.Block = 4096 }), "/a.sqfs:/x:block=4k"},
		{"/a.sqfs:/x:keep=1", with(func(s *Spec) { s.Keep = 1 }), ""},
		{"/a.sqfs:/x:keep=5", with(func(s *Spec) { s.Keep = 5 }), ""},
		{"/a.sqfs:/x:exec", with(func(s *Spec) { s.Exec = true }), ""},
		{"/a.sqfs:/x:threshold=10m", with(func(s *Spec) { s.Threshold = 10 << 20 }), ""},
		{"/a.sqfs:/x:threshold=1000", with(func(s *Spec) { s.Threshold = 1000 }), ""},
		{
			"/var/cache/gentoo.sqfs:/var/db/repos/gentoo:upper=/var/lib/sp,persist=never,comp=zstd,block=256k,keep=3,exec,threshold=1g",
			Spec{Image: "/var/cache/gentoo.sqfs", Target: "/var/db/repos/gentoo", Upper: "/var/lib/sp", Persist: PersistNever,
				Comp: codec.Zstd, Block: 256 << 10, Keep: 3, Exec: true, Threshold: 1 << 30},
			"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if err != nil {
				t.Fatalf("ParseSpec: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseSpec = %+v, want %+v", got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String() = %q, want %q", s, wantStr)
			}
			again, err := ParseSpec(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/a.sqfs:/x:sise=1g", `spec "/a.sqfs:/x:sise=1g": unknown option "sise" (allowed: ro, upper=, size=, persist=, comp=, block=, keep=, exec, noexec, threshold=, layers=, compact=, toram)`},
		{"/a.sqfs:/x:bogus", `unknown option "bogus"`},
		{"/a.sqfs:/x:ro,,exec", `unknown option ""`},
		{"/a.sqfs", "want IMAGE:TARGET[:OPTIONS]"},
		{"", "want IMAGE:TARGET[:OPTIONS]"},
		{"a.sqfs:/x", `image "a.sqfs" is not an absolute path`},
		{"/a.sqfs:x", `target "x" is not an absolute path`},
		{":/x", "empty image path"},
		{"/a.sqfs:", "empty target path"},
		{"/a.sqfs:/x:", "empty option list"},
		{"/a.sqfs:/", "target must not be /"},
		{"/x/a.sqfs:/x", "image /x/a.sqfs lies inside target /x"},
		{"/a.sqfs:/x:ro=1", `option "ro=1" takes no value`},
		{"/a.sqfs:/x:exec=yes", `option "exec=yes" takes no value`},
		{"/a.sqfs:/x:upper", `option "upper" needs a value`},
		{"/a.sqfs:/x:size=", `option "size=" needs a value`},
		{"/a.sqfs:/x:upper=rel", `upper "rel" is not an absolute path`},
		{"/a.sqfs:/x:upper=/x/up", "must not contain each other"},
		{"/a.sqfs:/x/y:upper=/x", "must not contain each other"},
		{"/a.sqfs:/x:size=lots", "size must be N[k|m|g] (at least 1m) or N% of RAM"},
		{"/a.sqfs:/x:size=100k", "at least 1m"},
		{"/a.sqfs:/x:size=0%", "percentage must be 1% to 100%"},
		{"/a.sqfs:/x:size=101%", "percentage must be 1% to 100%"},
		{"/a.sqfs:/x:upper=/d,size=1g", `"size=" only applies to upper=tmpfs`},
		{"/a.sqfs:/x:persist=always", "allowed are persist=shutdown and persist=never"},
		{"/a.sqfs:/x:comp=lzma", "is not a compressor images can be written with (gzip, xz, zstd, lz4, lzo)"},
		{"/a.sqfs:/x:comp=bzip2", "is not a compressor images can be written with (gzip, xz, zstd, lz4, lzo)"},
		{"/a.sqfs:/x:block=3k", "power of two from 4k to 1m"},
		{"/a.sqfs:/x:block=2k", "power of two from 4k to 1m"},
		{"/a.sqfs:/x:block=2m", "power of two from 4k to 1m"},
		{"/a.sqfs:/x:keep=0", "keep must be a number from 1 to 100"},
		{"/a.sqfs:/x:keep=two", "keep must be a number from 1 to 100"},
		{"/a.sqfs:/x:threshold=-1", "threshold must be N, Nk, Nm or Ng"},
		{"/a.sqfs:/x:ro,upper=/d", `option "upper=" conflicts with "ro"`},
		{"/a.sqfs:/x:ro,persist=never", `option "persist=" conflicts with "ro"`},
		{"/a.sqfs:/x:ro,size=1g", `option "size=" conflicts with "ro"`},
		{"/a.sqfs:/x:ro,comp=xz", `option "comp=" conflicts with "ro"`},
		{"/a.sqfs:/x:keep=1,keep=2", `option "keep=2" given twice`},
		{"/a.sqfs:/x:exec,noexec", `option "noexec" given twice`},
		{"/a.sqfs:/x:upper=/a,b", `unknown option "b"`},
		{"/a.sqfs:/x:upper=/a:b", "cannot carry"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSpec(tt.in)
			if err == nil {
				t.Fatalf("ParseSpec(%q) succeeded", tt.in)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "spec "+quote(tt.in)) {
				t.Errorf("error %q does not name the spec", err)
			}
		})
	}
}

func quote(s string) string { return `"` + s + `"` }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // String() of each spec
		err      string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# squashportage\n\n   \n# /a:/b\n", nil, ""},
		{
			"two specs",
			"/var/cache/gentoo.sqfs:/var/db/repos/gentoo:comp=zstd  # the tree\n\t/var/cache/linux.sqfs:/usr/src/linux:ro\n",
			[]string{"/var/cache/gentoo.sqfs:/var/db/repos/gentoo:comp=zstd", "/var/cache/linux.sqfs:/usr/src/linux:ro"},
			"",
		},
		{"bad line", "# c\n/a.sqfs:/x\n/b.sqfs:/y:foo\n", []string{"/a.sqfs:/x"}, `line 3: spec "/b.sqfs:/y:foo": unknown option "foo"`},
		{"duplicate target", "/a.sqfs:/x\n\n/b.sqfs:/x/\n", []string{"/a.sqfs:/x"}, "line 3: target /x already configured on line 1"},
		{"bad lines between good ones", "relative:/x\n/a.sqfs:/x\n/b.sqfs\n/c.sqfs:/z:ro\n", []string{"/a.sqfs:/x", "/c.sqfs:/z:ro"},
			`line 1: spec "relative:/x": image "relative" is not an absolute path; line 3: spec "/b.sqfs": want IMAGE:TARGET[:OPTIONS]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := ParseConfig(strings.NewReader(tt.in))
			if tt.err != "" {
				var ce ConfigErrors
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, s.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/var/db/repos/gentoo", "var-db-repos-gentoo"},
		{"/usr/src/linux/", "usr-src-linux"},
		{"/", "-"},
		{"/a-b/c", `a\x2db-c`},
		{"/.hidden/x", `\x2ehidden-x`},
		{"/with space", `with\x20space`},
		{"/x.y_z:1", "x.y_z:1"},
	}
	for _, tt := range tests {
		if got := ID(tt.in); got != tt.want {
			t.Errorf("ID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
