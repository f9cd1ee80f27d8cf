// Command mkmnist writes an MNIST subset as PNG files plus data.csv (path,
// label, split), the dataset both `gopruner train` and scripts/ref_train.py
// read in the fine-tune benchmark. It reads the GoMNIST module's IDX files
// (GOMNIST_DATA overrides the location).
//
//	go run ./bench/mkmnist -out bench/out/mnist -train 12000 -val 2000
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gopruner/gopruner/internal/core/data"
)

func main() {
	out := flag.String("out", "bench/out/mnist", "output directory")
	nTrain := flag.Int("train", 12000, "training images (the first N of MNIST train)")
	nVal := flag.Int("val", 2000, "validation images (the first N of MNIST t10k)")
	flag.Parse()
	if err := run(*out, *nTrain, *nVal); err != nil {
		fmt.Fprintln(os.Stderr, "mkmnist:", err)
		os.Exit(1)
	}
}

func run(out string, nTrain, nVal int) error {
	dir, err := data.LocateGoMNIST()
	if err != nil {
		return err
	}
	// ValFraction < 0: no val carved out of train; t10k becomes val below.
	ds, err := data.FromMNIST(os.DirFS(dir), data.Options{ValFraction: -1})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return data.WriteImageCSV(out, ds,
		data.ExportPart{Split: data.Train, N: nTrain},
		data.ExportPart{Split: data.Test, As: data.Val, N: nVal})
}
