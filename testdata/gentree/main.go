// Command gentree writes the synthetic Portage tree used by benchmarks:
//
//	go run ./testdata/gentree -o DIR [-scale F] [-seed N] [-mutate FRAC]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/squashportage/squashportage/internal/testtree"
)

func main() {
	out := flag.String("o", "", "output directory (created; must be empty)")
	scale := flag.Float64("scale", 1, "size factor: 1 is about 150k files")
	seed := flag.Int64("seed", 1, "random seed")
	mutate := flag.Float64("mutate", 0, "instead of generating, mutate this fraction of the existing tree in -o")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gentree: -o DIR is required")
		os.Exit(2)
	}
	if err := run(*out, *scale, *seed, *mutate); err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
}

func run(out string, scale float64, seed int64, mutate float64) error {
	if mutate > 0 {
		st, err := testtree.MutatePortage(out, mutate, seed)
		if err != nil {
			return err
		}
		fmt.Println(st)
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("read %s: %w", out, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", out)
	}
	st, err := testtree.GeneratePortage(out, testtree.PortageOptions{Scale: scale, Seed: seed})
	if err != nil {
		return err
	}
	fmt.Printf("files=%d bytes=%d\n%s\n", st.Files, st.Bytes, st)
	return nil
}
