package data

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
)

// ExportPart selects samples for WriteImageCSV.
type ExportPart struct {
	Split string // split of the source dataset: train, val or test
	As    string // split value written to data.csv; empty means Split
	N     int    // the first N samples of the split (after Skip); 0 means all the rest
	// Skip leaves out the split's first Skip samples, so that two parts
	// can cut disjoint ranges from one split (train and val from one
	// training set).
	Skip int
}

// WriteImageCSV writes samples of src as PNG files under dir, at their source
// resolution and colour (not resized), plus dir/data.csv with path, label and
// split columns, so that Open(dir, ...) reads them back. For example, 12,000
// MNIST training images and 2,000 test images as val:
//
//	WriteImageCSV(dir, mnist, ExportPart{Split: "train", N: 12000},
//		ExportPart{Split: "test", As: "val", N: 2000})
//
// Labels are written as class names, or as indices when the names are the
// indices themselves ("0", "1", ...), so that reading back gives the same
// class indices. Images go to dir/<split>/<n>.png.
func WriteImageCSV(dir string, src *Dataset, parts ...ExportPart) error {
	if len(parts) == 0 {
		return fmt.Errorf("write image csv: no parts to write")
	}
	type job struct {
		sample int
		rel    string
	}
	var jobs []job
	var rows [][]string
	for _, p := range parts {
		sp, err := src.Split(p.Split)
		if err != nil {
			return fmt.Errorf("write image csv: %w", err)
		}
		as := p.As
		if as == "" {
			as = sp.name
		}
		if _, ok := splitAliases[as]; !ok {
			return fmt.Errorf("write image csv: unknown split %q; want train, val or test", as)
		}
		if p.Skip < 0 || (p.Skip > 0 && p.Skip >= sp.Len()) {
			return fmt.Errorf("write image csv: skip %d of split %q leaves none of its %d samples", p.Skip, sp.name, sp.Len())
		}
		n := p.N
		if n == 0 {
			n = sp.Len() - p.Skip
		}
		if n < 0 || p.Skip+n > sp.Len() {
			return fmt.Errorf("write image csv: %d samples wanted from split %q after skipping %d, which has %d", n, sp.name, p.Skip, sp.Len())
		}
		if err := os.MkdirAll(filepath.Join(dir, as), 0o755); err != nil {
			return fmt.Errorf("write image csv: %w", err)
		}
		for i := range n {
			si := sp.idx[p.Skip+i]
			rel := as + "/" + fmt.Sprintf("%06d.png", len(jobs))
			jobs = append(jobs, job{si, rel})
			rows = append(rows, []string{rel, exportLabel(src.Classes, src.samples[si].label), as})
		}
	}

	// Encoding is the slow part; spread it over the dataset's workers.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan job)
	)
	for range src.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				if err := writePNG(src, j.sample, filepath.Join(dir, filepath.FromSlash(j.rel))); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("write image csv: %w", firstErr)
	}

	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"path", "label", "split"})
	w.WriteAll(rows)
	if err := w.Error(); err != nil {
		return fmt.Errorf("write image csv: %w", err)
	}
	// data.csv last: its presence means the directory is complete.
	return atomicfile.WriteFile(filepath.Join(dir, "data.csv"), buf.Bytes(), 0o600)
}

// pngEncoder shares compressor state between images: allocating a fresh
// deflate encoder per 28×28 image costs more than encoding it.
var pngEncoder = &png.Encoder{BufferPool: &pngPool{}}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

func writePNG(src *Dataset, i int, path string) error {
	img, err := src.sourceImage(i)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return src.sampleErr(i, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return nil
}

// exportLabel writes a label so that Open maps it back to the same index.
// Names that are their own index ("0".."9") read back as integers; any other
// list is written by name, which Open sorts back into the same order only if
// the list was sorted, so callers re-reading should pass Options.Classes.
func exportLabel(classes []string, label int) string {
	for i, c := range classes {
		if c != strconv.Itoa(i) {
			return classes[label]
		}
	}
	return strconv.Itoa(label)
}
