package data

import (
	"fmt"
	"runtime"
)

// DefaultValFraction is the share of the training samples held out as the
// validation split when a dataset has no explicit val samples.
const DefaultValFraction = 0.1

// Options describe how a dataset's images become model inputs and how its
// splits are formed.
type Options struct {
	// Channels is the model's input channel count: 1 (gray, via luma) or 3
	// (RGB; gray images are replicated).
	Channels int
	// Height and Width are the model's input size; images are resized to it.
	Height, Width int
	// Mean and Std normalise each channel: x = (p/255 - Mean[c]) / Std[c]. A
	// single value applies to every channel. Empty means ImageNet's values for
	// 3 channels and 0.5/0.5 for 1 channel.
	Mean, Std []float32
	// ValFraction is the share of the train samples carved out as the val
	// split when the dataset has no val samples of its own. Zero means
	// DefaultValFraction; a negative value disables carving.
	ValFraction float64
	// Seed selects which samples are carved out for val. The choice depends on
	// the seed and each sample's path, not on row order, so it is stable
	// across runs and edits of data.csv that only reorder or append rows.
	Seed int64
	// Workers bounds the goroutines decoding images of this dataset at once.
	// Zero means GOMAXPROCS.
	Workers int
	// Classes, if set, is the class list the labels must belong to (for
	// example the list saved with the model being fine-tuned). Label names are
	// looked up in it; integer labels index it. Empty means the classes are
	// derived from the data: names sorted, or 0..max for integer labels.
	Classes []string
	// AllowExternalPaths lets data.csv rows be absolute or lead out of the
	// dataset directory (by ".." or a symlink), and ImageFolder symlinks
	// lead anywhere. Off, such a path is an error naming its row or entry.
	AllowExternalPaths bool
}

var (
	imageNetMean = []float32{0.485, 0.456, 0.406}
	imageNetStd  = []float32{0.229, 0.224, 0.225}
)

// normalize checks o and fills in defaults. It returns a copy so that callers'
// slices are never aliased by the dataset.
func (o Options) normalize() (Options, error) {
	if o.Channels != 1 && o.Channels != 3 {
		return o, fmt.Errorf("data: Options.Channels must be 1 or 3, got %d", o.Channels)
	}
	if o.Height <= 0 || o.Width <= 0 {
		return o, fmt.Errorf("data: Options.Height and Width must be > 0, got %dx%d", o.Height, o.Width)
	}
	var err error
	if o.Mean, err = perChannel("Mean", o.Mean, o.Channels, imageNetMean, 0.5); err != nil {
		return o, err
	}
	if o.Std, err = perChannel("Std", o.Std, o.Channels, imageNetStd, 0.5); err != nil {
		return o, err
	}
	for c, s := range o.Std {
		if !(s > 0) {
			return o, fmt.Errorf("data: Options.Std[%d] must be > 0, got %g", c, s)
		}
	}
	if o.ValFraction == 0 {
		o.ValFraction = DefaultValFraction
	}
	if o.ValFraction >= 1 {
		return o, fmt.Errorf("data: Options.ValFraction must be < 1, got %g", o.ValFraction)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Classes != nil {
		o.Classes = append([]string(nil), o.Classes...)
		seen := make(map[string]bool, len(o.Classes))
		for _, c := range o.Classes {
			if seen[c] {
				return o, fmt.Errorf("data: Options.Classes lists %q twice", c)
			}
			seen[c] = true
		}
	}
	return o, nil
}

func perChannel(name string, v []float32, channels int, rgb []float32, gray float32) ([]float32, error) {
	switch {
	case len(v) == 0 && channels == 3:
		return append([]float32(nil), rgb...), nil
	case len(v) == 0:
		return []float32{gray}, nil
	case len(v) == channels:
		return append([]float32(nil), v...), nil
	case len(v) == 1:
		out := make([]float32, channels)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	}
	return nil, fmt.Errorf("data: Options.%s has %d values, want 1 or %d (one per channel)", name, len(v), channels)
}
