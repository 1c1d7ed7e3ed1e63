package kmsg

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestLines(t *testing.T) {
	key := fmt.Sprintf("kmsg-test-%d", time.Now().UnixNano())
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("needs root and /dev/kmsg: %v", err)
	}
	defer w.Close()
	fmt.Fprintf(w, "before %s\n", key)
	tail := Open()
	if tail == nil {
		t.Fatal("Open: /dev/kmsg unreadable")
	}
	defer tail.Close()
	for _, m := range []string{"other noise", "after " + key, "more " + key} {
		fmt.Fprintf(w, "%s\n", m)
	}
	got := tail.Lines(10, key)
	if len(got) != 2 || got[0] != "after "+key || got[1] != "more "+key {
		t.Errorf("Lines(%q) = %q, want the two lines logged after Open", key, got)
	}
	var nilTail *Tail
	if nilTail.Lines(5) != nil || nilTail.Close() != nil {
		t.Error("a nil Tail is not empty")
	}
}
