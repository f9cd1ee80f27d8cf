package data

import (
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// saveImage writes img under dir/rel as PNG or JPEG by extension.
func saveImage(t *testing.T, dir, rel string, img image.Image) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(rel, ".png") {
		err = png.Encode(f, img)
	} else {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 100})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func constGray(w, h int, v uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = v
	}
	return g
}

func constRGB(w, h int, c color.RGBA) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

// grayOptions is a small 1-channel input shape for tests that only care about
// bookkeeping.
func grayOptions(hw int) Options {
	return Options{Channels: 1, Height: hw, Width: hw, Workers: 4}
}

// collect runs one pass and returns the batches, failing on error.
func collect(t *testing.T, sp *Split, o BatchOptions) []*Batch {
	t.Helper()
	var out []*Batch
	for b, err := range sp.Batches(context.Background(), o) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// passErr runs one pass and returns its error, if any.
func passErr(sp *Split, o BatchOptions) error {
	for _, err := range sp.Batches(context.Background(), o) {
		if err != nil {
			return err
		}
	}
	return nil
}

// smallCSV builds a dataset of n 4×4 gray PNGs whose value encodes the index,
// with the given labels (cycled) and no split column.
func smallCSV(t *testing.T, n int, labels ...string) string {
	t.Helper()
	dir := t.TempDir()
	var sb strings.Builder
	sb.WriteString("path,label\n")
	for i := range n {
		rel := filepath.ToSlash(filepath.Join("img", "s"+strconv.Itoa(i)+".png"))
		saveImage(t, dir, rel, constGray(4, 4, uint8(i)))
		sb.WriteString(rel + "," + labels[i%len(labels)] + "\n")
	}
	writeFile(t, dir, "data.csv", sb.String())
	return dir
}
