//go:build cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/pipeline"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

// This file holds what train and eval share: reading the configuration for a
// dataset command, opening the dataset as the model expects it, and setting
// up libtorch (device, threads, seed) the same way for both.

// dataConfigKeys are the configuration keys every dataset command offers as
// flags, on top of its own.
var dataConfigKeys = []string{
	"path.model", "path.dataset", "input_shape", "output", "mean", "std", "val_fraction",
	"batch_size", "device", "threads", "seed", "workers", "allow_external_paths", "amp", "cudnn_benchmark",
}

// registerConfigFlags defines the flags of the given configuration keys.
// A failure is a programming error (a misspelt key), reported at run time
// rather than by a panic in init.
func registerConfigFlags(cmd *cobra.Command, keys ...string) {
	if err := config.RegisterFlags(cmd.Flags(), keys...); err != nil {
		// Remembered and returned by loadConfig: cobra offers no error path here.
		cmd.Annotations = map[string]string{"config-flags-error": err.Error()}
	}
}

// inputShapeOrigin is where the run's input_shape came from, for the error
// line when the model refuses that shape (see run).
var inputShapeOrigin string

// loadConfig builds the effective configuration (flags > GOPRUNER_* > file >
// defaults). Configuration errors are the user's input: exit code 2.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	if msg := cmd.Annotations["config-flags-error"]; msg != "" {
		return nil, fmt.Errorf("%s flags: %s", cmd.Name(), msg)
	}
	c, err := config.Load(config.Sources{Flags: cmd.Flags(), Env: os.Environ()})
	if err != nil {
		if errors.Is(err, config.ErrUsage) {
			return nil, fail.Usage(err)
		}
		return nil, fmt.Errorf("configuration: %w", err)
	}
	for _, w := range c.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "gopruner: warning: "+w)
	}
	if len(c.InputShape) > 0 {
		inputShapeOrigin = c.Origin("input_shape").String()
	}
	if err := configureBridge(c); err != nil {
		return nil, err
	}
	return c, nil
}

// configureBridge applies the configuration's bridge policies: the layout
// (nchw) and which output tensor is the prediction (output). Malloc tuning
// was settled when the library loaded.
func configureBridge(c *config.Config) error {
	s := torch.CurrentSettings()
	s.ChannelsLast = !c.NCHW
	s.Output = c.Output
	s.CUDNNBenchmark = c.CUDNNBenchmark
	s.AMP = c.AMP
	if c.AMP != config.AMPOff && !usesCUDA(c) {
		return fail.Usagef("amp: %s works on CUDA only; device is %s and no cart slot is a GPU (%s)", c.AMP, c.Device, c.Origin("amp"))
	}
	if err := torch.Configure(s); err != nil {
		return fmt.Errorf("bridge settings: %w", err)
	}
	return nil
}

// usesCUDA says whether the run puts a model on a GPU: the device or a
// cart slot.
func usesCUDA(c *config.Config) bool {
	if d, err := device.Parse(c.Device); err == nil && d.IsCUDA() {
		return true
	}
	for _, s := range c.Cart {
		if s.Device().IsCUDA() {
			return true
		}
	}
	return false
}

// requireInput checks what every dataset command needs before it does any
// work: a model, a dataset and the input shape.
func requireInput(c *config.Config) ([]int64, error) {
	if c.Path.Model == "" {
		return nil, fail.Usagef("--model is required (or path.model in Pruning.yaml, GOPRUNER_PATH_MODEL)")
	}
	if err := model.CheckFile(c.Path.Model); err != nil {
		return nil, err
	}
	if c.Path.Dataset == "" {
		return nil, fail.Usagef("--dataset is required (or path.dataset in Pruning.yaml, GOPRUNER_PATH_DATASET)")
	}
	if c.InputShape == nil {
		// The model file does not record its input size, and guessing it
		// would silently resize every image to the wrong size.
		return nil, fail.Usagef("--input-shape is required: the model's input N,C,H,W, e.g. --input-shape 1,3,224,224 (or input_shape in Pruning.yaml)")
	}
	if err := imageShape(c); err != nil {
		return nil, err
	}
	shape := make([]int64, len(c.InputShape))
	for i, d := range c.InputShape {
		shape[i] = int64(d)
	}
	if ch := shape[1]; ch != 1 && ch != 3 {
		return nil, fail.Usagef("--input-shape %v: images can feed 1 (gray) or 3 (RGB) channels, not %d", c.InputShape, ch)
	}
	return shape, nil
}

// imageShape refuses a dataset with an input shape that is not an image
// batch: the dataset reader decodes images into N,C,H,W batches only, so
// a model of another rank (an MLP head, a 1-D signal or volumetric net)
// can be pruned without data (--finetune=false) but not fine-tuned,
// trained or evaluated here.
func imageShape(c *config.Config) error {
	if c.Path.Dataset == "" || len(c.InputShape) == 4 {
		return nil
	}
	return fail.Usagef("--dataset %s (path.dataset) reads images into N,C,H,W batches, but --input-shape %s (input_shape) has %d dimensions; data for other input ranks is not supported: prune without a dataset (--finetune=false)",
		c.Path.Dataset, joinInts(c.InputShape), len(c.InputShape))
}

// joinInts writes a shape as the flag takes it, "1,2,256".
func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// dataOptions turns the configuration into the dataset's options.
func dataOptions(c *config.Config, shape []int64, classes []string) data.Options {
	o := data.Options{
		Channels: int(shape[1]),
		Height:   int(shape[2]),
		Width:    int(shape[3]),
		Mean:     toFloat32(c.Mean),
		Std:      toFloat32(c.Std),
		Seed:     c.Seed,
		Workers:  c.Workers,
		Classes:  classes,
		// The path policy: rows and symlinks stay in the dataset unless
		// the user lifts it (issue 17).
		AllowExternalPaths: c.AllowExternalPaths,
	}
	// For data, 0 means "the default fraction"; a user who writes
	// val_fraction: 0 means no carve-out, which data spells as negative.
	o.ValFraction = c.ValFraction
	if o.ValFraction == 0 {
		o.ValFraction = -1
	}
	return o
}

func toFloat32(v []float64) []float32 {
	if v == nil {
		return nil // the data package's per-channel defaults
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// classesFile is where the class list of a model file lives: next to it,
// "resnet.pt" → "resnet.classes.json".
func classesFile(modelPath string) string {
	return strings.TrimSuffix(modelPath, filepath.Ext(modelPath)) + ".classes.json"
}

// modelClasses reads the class list saved with a model, if any, so that a
// model trained by gopruner keeps its label → output mapping on new data.
// explicit names a --classes file, which then must exist.
func modelClasses(modelPath, explicit string) ([]string, string, error) {
	p := explicit
	if p == "" {
		p = classesFile(modelPath)
		if _, err := os.Stat(p); err != nil {
			return nil, "", nil // none saved: classes come from the data
		}
	}
	classes, err := data.ReadClasses(p)
	if err != nil {
		return nil, "", fail.Usage(err)
	}
	return classes, p, nil
}

// openDataset opens --dataset. Everything wrong with the data is the user's
// input (exit 2); the data package's messages already name the file and row.
func openDataset(dir string, opts data.Options) (*data.Dataset, error) {
	ds, err := data.Open(dir, opts)
	if err != nil {
		return nil, fail.Usage(err)
	}
	return ds, nil
}

// loadSplit returns a split with every image decoded, so that a corrupt file
// is reported (as a usage error naming it) before training starts rather
// than as a runtime failure in the middle of it. optional makes an empty or
// absent split a nil result instead of an error.
func loadSplit(ctx context.Context, ds *data.Dataset, name string, optional bool) (*data.Split, error) {
	sp, err := ds.Split(name)
	if err != nil {
		if optional {
			return nil, nil
		}
		return nil, fail.Usage(err)
	}
	if err := sp.Preload(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fail.Usage(err)
	}
	return sp, nil
}

// usableDevice parses a device name and checks that it exists here; both
// failures are usage errors.
func usableDevice(s string) (torch.Device, error) {
	dev, err := device.Parse(s)
	if err != nil {
		return dev, fail.Usage(err)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return dev, fail.Usage(err)
	}
	return dev, nil
}

// setupTorch applies device, threads and seed; it returns the device and
// the thread count in use.
func setupTorch(c *config.Config) (torch.Device, int, error) {
	dev, err := usableDevice(c.Device)
	if err != nil {
		return dev, 0, err
	}
	threads := c.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	if err := torch.SetNumThreads(threads); err != nil {
		return dev, 0, fmt.Errorf("set threads: %w", err)
	}
	if err := torch.ManualSeed(uint64(c.Seed)); err != nil {
		return dev, 0, fmt.Errorf("seed: %w", err)
	}
	return dev, threads, nil
}

// loadModel loads the model on dev (never writing the file), pins its thread
// count, and checks that it accepts the input shape and has an output for
// every class, so that a mismatch is a clear usage error up front instead of
// a libtorch message from inside the first training step.
func loadModel(path string, dev torch.Device, threads int, shape []int64, dataset string, classes []string) (*torch.Module, error) {
	m, err := model.Load(path, dev)
	if err != nil {
		return nil, err
	}
	if err := m.SetThreads(threads); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s: set threads: %w", path, err)
	}
	if err := checkOutputs(m, path, shape, dataset, classes); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// frozenBN is the warning for a model about to be fine-tuned whose BatchNorm
// calls were traced in eval mode: their training flag is a constant in the
// graph, so fine-tuning normalises with the running statistics and never
// updates them. "" when there is nothing to say.
func frozenBN(m *torch.Module, path string) string {
	fixed, total, err := m.BatchNormModes()
	if err != nil || fixed == 0 {
		return ""
	}
	return fmt.Sprintf("model %s: %d of %d BatchNorm layers were traced in eval mode; fine-tuning keeps their running statistics as they are (export with torch.jit.script to let it update them)", path, fixed, total)
}

// checkOutputs runs forward once on an example batch of one.
func checkOutputs(m *torch.Module, path string, shape []int64, dataset string, classes []string) error {
	one := append([]int64{1}, shape[1:]...)
	x, err := model.Example(one, m.Device())
	if err != nil {
		return err
	}
	defer x.Close()
	ys, info, err := m.ForwardAll(true, x)
	if err == nil && info.Selected < 0 {
		err = errors.New(info.Error)
	}
	if err != nil {
		// Trace explains a rejected shape in the user's terms (which layer
		// wanted how many channels) and an output setting the model's
		// output lacks.
		if _, terr := model.Trace(m, one); terr != nil {
			return terr
		}
		return fail.Usagef("model %s: input shape %v: %v", path, shape, err)
	}
	defer func() {
		for _, y := range ys {
			y.Close()
		}
	}()
	out, err := ys[info.Selected].Shape()
	if err != nil {
		return fmt.Errorf("model %s: output shape: %w", path, err)
	}
	if len(out) != 2 {
		if len(info.Paths) > 1 {
			return fail.Usagef("model %s: output %q has shape %v; a classifier's output is [N, classes] (the model returns %s: --output picks another of its tensors)", path, info.Paths[info.Selected], out, info.Structure)
		}
		return fail.Usagef("model %s: output has shape %v; a classifier's output is [N, classes]", path, out)
	}
	return pipeline.CheckClasses(dataset, path, classes, out[1])
}

// isTerminal reports whether w is a terminal (progress bars) rather than a
// file or pipe (log lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
