package overlay

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestStateSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	sp, err := ParseSpec("/var/cache/gentoo.sqfs:/var/db/repos/gentoo:comp=zstd,keep=3")
	if err != nil {
		t.Fatal(err)
	}
	st := &State{
		ID: ID(sp.Target), Spec: sp, Image: sp.Image, Target: sp.Target, Loop: "/dev/loop3",
		Lower: "/run/squashportage/var-db-repos-gentoo/lower", UpperKind: KindTmpfs,
		MountedAt:   time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC),
		LastPersist: time.Date(2026, 11, 24, 7, 0, 0, 0, time.UTC), LastPersistResult: "ok: 3 changed",
	}
	if err := st.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, "/var/db/repos/gentoo/")
	if err != nil {
		t.Fatal(err)
	}
	if got.StateDir() != dir {
		t.Errorf("StateDir() = %q", got.StateDir())
	}
	st.dir, got.dir = "", ""
	if !reflect.DeepEqual(got, st) {
		t.Errorf("Load = %+v\nwant %+v", got, st)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "var-db-repos-gentoo.json"))
	if !reflect.DeepEqual(b[:1], []byte("{")) {
		t.Errorf("state file: %s", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	list, err := List(dir)
	if err != nil || len(list) != 1 {
		t.Errorf("List = %v, %v", list, err)
	}
	if list, err := List(filepath.Join(dir, "none")); err != nil || len(list) != 0 {
		t.Errorf("List of a missing dir = %v, %v", list, err)
	}
}
