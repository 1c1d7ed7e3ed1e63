package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/squashportage/squashportage/squash"
	"github.com/squashportage/squashportage/squash/sourcetree"
)

func heap(name string) {
	runtime.GC()
	f, _ := os.Create(name)
	pprof.WriteHeapProfile(f)
	f.Close()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "%s: heapinuse %d MB sys %d MB\n", name, ms.HeapInuse>>20, ms.Sys>>20)
}

func main() {
	var peak uint64
	go func() {
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak+(20<<20) {
				peak = ms.HeapInuse
				f, _ := os.Create("/tmp/hpeak.prof")
				pprof.WriteHeapProfile(f)
				f.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	tree, err := sourcetree.Scan([]string{os.Args[1]}, sourcetree.Options{})
	if err != nil {
		panic(err)
	}
	heap("/tmp/h1.prof")
	out, _ := os.Create(os.Args[2])
	w, err := squash.NewWriter(out, squash.WriterOptions{Workers: 2})
	if err != nil {
		panic(err)
	}
	if err := tree.Write(w, nil); err != nil {
		panic(err)
	}
	heap("/tmp/h2.prof")
	if err := w.Close(); err != nil {
		panic(err)
	}
	heap("/tmp/h3.prof")
	fmt.Fprintf(os.Stderr, "peak heapinuse %d MB\n", peak>>20)
}
