package cmdline

import (
	"reflect"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Cmdline
	}{
		{"empty", "", Cmdline{}},
		{"spaces only", " \t\n", Cmdline{}},
		{"flags and values", "  ro root=/dev/vda1\tquiet\n",
			Cmdline{Params: []Param{{"ro", "", false}, {"root", "/dev/vda1", true}, {"quiet", "", false}}}},
		{"empty value", "init=", Cmdline{Params: []Param{{"init", "", true}}}},
		{"second equals is value", "a=b=c", Cmdline{Params: []Param{{"a", "b=c", true}}}},
		{"quoted value", `foo="bar baz" x`,
			Cmdline{Params: []Param{{"foo", "bar baz", true}, {"x", "", false}}}},
		{"quoted word", `"foo=bar baz" x`,
			Cmdline{Params: []Param{{"foo", "bar baz", true}, {"x", "", false}}}},
		{"quoted flag", `"a b"`, Cmdline{Params: []Param{{"a b", "", false}}}},
		{"inner quotes kept", `a=b"c d"e`, Cmdline{Params: []Param{{"a", `b"c d"e`, true}}}},
		{"equals inside quotes splits", `"a b=c"`, Cmdline{Params: []Param{{"a b", "c", true}}}},
		{"doubly quoted keeps one", `"foo="bar""`, Cmdline{Params: []Param{{"foo", `bar"`, true}}}},
		{"unterminated quote runs to end", `a="b c`, Cmdline{Params: []Param{{"a", "b c", true}}}},
		{"repeated keys kept in order", "squashportage=/a:/b squashportage=/c:/d:ro",
			Cmdline{Params: []Param{{"squashportage", "/a:/b", true}, {"squashportage", "/c:/d:ro", true}}}},
		{"init args after --", `ro -- single "x y" k=v`,
			Cmdline{Params: []Param{{"ro", "", false}}, InitArgs: []string{"single", "x y", "k=v"}}},
		{"-- with value is a param", "--=x", Cmdline{Params: []Param{{"--", "x", true}}}},
		{"trailing --", "ro --", Cmdline{Params: []Param{{"ro", "", false}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	c := Parse("root=/dev/sda1 rw root=UUID=x ro a b=1 b=2")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"Get last wins", must(c.Get("root")), "UUID=x"},
		{"All in order", c.All("b"), []string{"1", "2"}},
		{"All missing", c.All("nope"), []string(nil)},
		{"Has flag", c.Has("a"), true},
		{"Has missing", c.Has("c"), false},
		{"Last of ro/rw", c.Last("rw", "ro"), "ro"},
		{"Last none", c.Last("x", "y"), ""},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func must(v string, _ bool) string { return v }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{"defaults", "", Config{Init: DefaultInit, ReadOnly: true, Timeout: DefaultTimeout}},
		{"full", `root=PARTUUID=1234abcd-02 rootfstype=ext4 rootflags=discard rw rootdelay=1.5 init=/lib/systemd/systemd ` +
			`squashportage=/var/cache/squashportage/gentoo.sqfs:/var/db/repos/gentoo:size=512m ` +
			`squashportage=/var/cache/squashportage/linux.sqfs:/usr/src/linux:ro squashportage.debug -- single`,
			Config{
				Root: "PARTUUID=1234abcd-02", RootFSType: "ext4", RootFlags: "discard",
				ReadOnly: false, RootDelay: 1500 * time.Millisecond, Timeout: DefaultTimeout,
				Init: "/lib/systemd/systemd", InitArgs: []string{"single"}, Debug: true,
				Specs: []string{
					"/var/cache/squashportage/gentoo.sqfs:/var/db/repos/gentoo:size=512m",
					"/var/cache/squashportage/linux.sqfs:/usr/src/linux:ro",
				},
			}},
		{"rw then ro", "rw ro", Config{Init: DefaultInit, ReadOnly: true, Timeout: DefaultTimeout}},
		{"rootwait waits for ever", "rootwait", Config{Init: DefaultInit, ReadOnly: true, RootWait: true}},
		{"explicit timeout beats rootwait", "rootwait squashportage.timeout=5",
			Config{Init: DefaultInit, ReadOnly: true, RootWait: true, Timeout: 5 * time.Second}},
		{"disable", "squashportage.disable squashportage=/a:/b",
			Config{Init: DefaultInit, ReadOnly: true, Timeout: DefaultTimeout, Disable: true, Specs: []string{"/a:/b"}}},
		{"empty init keeps default", "init=", Config{Init: DefaultInit, ReadOnly: true, Timeout: DefaultTimeout}},
		{"bad numbers warn", "rootdelay=soon squashportage.timeout=-1 squashportage=",
			Config{Init: DefaultInit, ReadOnly: true, Timeout: DefaultTimeout, Warnings: []string{
				"empty squashportage= ignored",
				`rootdelay="soon" ignored: not a number of seconds`,
				`squashportage.timeout="-1" ignored: out of range`,
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseConfig(Parse(tt.in))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseConfig(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}
