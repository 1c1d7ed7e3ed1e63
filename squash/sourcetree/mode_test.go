package sourcetree

import (
	"strings"
	"testing"
)

// lsMode renders permission bits as ls -l does.
func lsMode(perm uint32, dir bool) string {
	b := []byte("-rwxrwxrwx")
	if dir {
		b[0] = 'd'
	}
	for i := 0; i < 9; i++ {
		if perm&(1<<(8-i)) == 0 {
			b[1+i] = '-'
		}
	}
	special := func(pos int, set bool, on, off byte) {
		if set {
			if b[pos] == 'x' {
				b[pos] = on
			} else {
				b[pos] = off
			}
		}
	}
	special(3, perm&0o4000 != 0, 's', 'S')
	special(6, perm&0o2000 != 0, 's', 'S')
	special(9, perm&0o1000 != 0, 't', 'T')
	return string(b)
}

// TestModeSpec: each row is what mksquashfs 4.7.5's -force-file-mode and
// -force-dir-mode made of files of modes 0, 1777, 4711, 640, 755 and of
// directories of modes 750 and 755 (unsquashfs -lln of its images).
func TestModeSpec(t *testing.T) {
	inputs := []struct {
		perm uint32
		dir  bool
	}{{0, false}, {0o1777, false}, {0o4711, false}, {0o640, false}, {0o755, false}, {0o750, true}, {0o755, true}}
	for _, tc := range []struct{ spec, want string }{
		{"+x", "---x--x--x -rwxrwxrwt -rws--x--x -rwxr-x--x -rwxr-xr-x drwxr-x--x drwxr-xr-x"},
		{"=r", "-r--r--r-- -r--r--r-T -r-Sr--r-- -r--r--r-- -r--r--r-- dr--r--r-- dr--r--r--"},
		{"go=u", "---------- -rwxrwxrwx -rwsrwxrwx -rw-rw-rw- -rwxrwxrwx drwxrwxrwx drwxrwxrwx"},
		{"a+X", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--x drwxr-xr-x"},
		{"u+s,g+s", "---S--S--- -rwsrwsrwt -rws--s--x -rwSr-S--- -rwsr-sr-x drwsr-s--- drwsr-sr-x"},
		{"+t", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"o=g", "---------- -rwxrwxrwx -rws--x--x -rw-r--r-- -rwxr-xr-x drwxr-xr-x drwxr-xr-x"},
		{"u-w+x", "---x------ -r-xrwxrwt -r-s--x--x -r-xr----- -r-xr-xr-x dr-xr-x--- dr-xr-xr-x"},
		{"=", "---------- ---------T ---S------ ---------- ---------- d--------- d---------"},
		{"g=rws", "----rwS--- -rwxrwSrwt -rwsrwS--x -rw-rwS--- -rwxrwSr-x drwxrwS--- drwxrwSr-x"},
		{"ug=rwX,o=", "-rw-rw---- -rwxrwx--- -rwxrwx--- -rw-rw---- -rwxrwx--- drwxrwx--- drwxrwx---"},
		{"a-x+X", "---------- -rw-rw-rwT -rwS------ -rw-r----- -rw-r--r-- drwxr-x--x drwxr-xr-x"},
		{"u+s-s", "---------- -rwxrwxrwt -rwx--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"o+t", "---------T -rwxrwxrwt -rws--x--t -rw-r----T -rwxr-xr-t drwxr-x--T drwxr-xr-t"},
		{"a+t", "---------T -rwxrwxrwt -rws--x--t -rw-r----T -rwxr-xr-t drwxr-x--T drwxr-xr-t"},
		{"+s", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"a=r", "-r--r--r-- -r--r--r-- -r--r--r-- -r--r--r-- -r--r--r-- dr--r--r-- dr--r--r--"},
		{"a+s", "---S--S--- -rwsrwsrwt -rws--s--x -rwSr-S--- -rwsr-sr-x drwsr-s--- drwsr-sr-x"},
		{"u+t", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"o+s", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"a=", "---------- ---------- ---------- ---------- ---------- d--------- d---------"},
		{"u=g", "---------- -rwxrwxrwt ---x--x--x -r--r----- -r-xr-xr-x dr-xr-x--- dr-xr-xr-x"},
		{"ug+o", "---------- -rwxrwxrwt -rws--x--x -rw-r----- -rwxr-xr-x drwxr-x--- drwxr-xr-x"},
		{"u=rwx,g=rx,o=", "-rwxr-x--- -rwxr-x--- -rwxr-x--- -rwxr-x--- -rwxr-x--- drwxr-x--- drwxr-x---"},
		{"0644", "-rw-r--r-- -rw-r--r-- -rw-r--r-- -rw-r--r-- -rw-r--r-- drw-r--r-- drw-r--r--"},
		{"4755", "-rwsr-xr-x -rwsr-xr-x -rwsr-xr-x -rwsr-xr-x -rwsr-xr-x drwsr-xr-x drwsr-xr-x"},
		{"a+rwx", "-rwxrwxrwx -rwxrwxrwt -rwsrwxrwx -rwxrwxrwx -rwxrwxrwx drwxrwxrwx drwxrwxrwx"},
		{"u+r,+w", "-rw--w--w- -rwxrwxrwt -rws-wx-wx -rw-rw--w- -rwxrwxrwx drwxrwx-w- drwxrwxrwx"},
	} {
		m, err := ParseModeSpec(tc.spec)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		var got []string
		for _, in := range inputs {
			got = append(got, lsMode(m.Apply(in.perm, in.dir), in.dir))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.spec, g, tc.want)
		}
	}
	for _, bad := range []string{"", "u", "u+q", "u=gx", "10000", "8", "ugo", "u+r,"} {
		if _, err := ParseModeSpec(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// FuzzModeSpec: any spec parses or is refused, and what parses changes
// nothing but the 07777 bits.
func FuzzModeSpec(f *testing.F) {
	for _, s := range []string{"u+w,go-w", "0644", "a=rX", "ug=o", "+t", "=", "u+s-s"} {
		f.Add(s, uint32(0o755), true)
	}
	f.Fuzz(func(t *testing.T, spec string, perm uint32, dir bool) {
		m, err := ParseModeSpec(spec)
		if err != nil {
			return
		}
		if got := m.Apply(perm&0o7777, dir); got&^0o7777 != 0 {
			t.Errorf("%q on %o: %o", spec, perm&0o7777, got)
		}
	})
}
