//go:build cgo

// Package torchengine implements engine.Engine over libtorch (package
// torch and the shim). Its subpackages hold the tensor work: model loading
// and IR export, surgery, criteria, the training loop, latency.
package torchengine

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/lut"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/latency"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/gopruner/gopruner/torch"
)

// Engine is the libtorch engine. The zero value is ready to use.
type Engine struct{}

var _ engine.Engine = Engine{}

// Open loads, traces and analyses the model at path.
func (Engine) Open(_ context.Context, path string, shape []int64, dev string) (*engine.Model, error) {
	d, err := device.Parse(dev)
	if err != nil {
		return nil, err
	}
	am, err := model.Open(path, shape, d)
	if err != nil {
		return nil, err
	}
	out := FromAnalyzed(am)
	if fixed, total, err := am.Module.BatchNormModes(); err == nil && fixed > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("model %s: %d of %d BatchNorm layers were traced in eval mode; fine-tuning keeps their running statistics as they are (export with torch.jit.script to let it update them)", path, fixed, total))
	}
	return out, nil
}

// FromAnalyzed wraps an analysed model; the result owns am's module.
func FromAnalyzed(am *model.Analyzed) *engine.Model {
	return &engine.Model{Base: *am.Base(), Module: Wrap(am.Module), Path: am.Path, Warnings: slices.Clone(am.Warnings),
		Timings: engine.Timings{Load: am.Timings.Load, IRExport: am.Timings.IRExport, Analysis: am.Timings.Analysis}}
}

// ReleaseMemory hands the heap's free pages back to the system.
func (Engine) ReleaseMemory() { torch.ReleaseFreed() }

// Load reads an archive onto dev with threads CPU threads (0: the process
// setting).
func (Engine) Load(archive []byte, dev string, threads int) (engine.Module, error) {
	d, err := device.Parse(dev)
	if err != nil {
		return nil, err
	}
	m, err := torch.LoadBytes(archive, d)
	if err != nil {
		return nil, fmt.Errorf("loading the model on %s: %w", d, err)
	}
	if err := m.SetThreads(threads); err != nil {
		m.Close()
		return nil, err
	}
	return &Module{m: m}, nil
}

// Latency measures the modules side by side: 2 warm-up runs, then rounds
// until the medians are stable within 2% (5 to 30 rounds).
func (Engine) Latency(ms []engine.Module, shape []int64) ([]engine.Latency, error) {
	return timeModules(ms, func(mods []*torch.Module) ([]latency.Result, error) {
		return latency.Stable(mods, shape, 2, 5, 30, 0.02)
	})
}

// LatencyRuns measures the modules side by side: 10 warm-up runs, then
// runs rounds, the median of each module's.
func (Engine) LatencyRuns(ms []engine.Module, shape []int64, runs int) ([]engine.Latency, error) {
	return timeModules(ms, func(mods []*torch.Module) ([]latency.Result, error) {
		return latency.Measure(mods, shape, 10, runs)
	})
}

// timeModules runs measure on the libtorch modules behind ms.
func timeModules(ms []engine.Module, measure func([]*torch.Module) ([]latency.Result, error)) ([]engine.Latency, error) {
	mods := make([]*torch.Module, len(ms))
	for i, m := range ms {
		tm, ok := m.(*Module)
		if !ok {
			return nil, fmt.Errorf("latency: module %d is not a libtorch module", i)
		}
		mods[i] = tm.m
	}
	rs, err := measure(mods)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Latency, len(rs))
	for i, r := range rs {
		out[i] = engine.Latency{Device: r.Device, Batch: r.Batch, MedianMs: r.MedianMs}
	}
	return out, nil
}

// OpLatency times each spec alone: the median of 3 to 200 runs after 3
// warm-up runs, stopping once budget is spent on it (latency.Op). Specs
// are timed in order, each once.
func (Engine) OpLatency(specs []lut.Spec, dev string, threads int, budget time.Duration) ([]float64, error) {
	d, err := device.Parse(dev)
	if err != nil {
		return nil, err
	}
	if err := torch.CheckDevice(d); err != nil {
		return nil, err
	}
	out := make([]float64, len(specs))
	for i, s := range specs {
		if out[i], err = latency.Op(s, d, threads, budget); err != nil {
			return nil, fmt.Errorf("timing %s: %w", s, err)
		}
	}
	return out, nil
}

// Module wraps a TorchScript module.
type Module struct{ m *torch.Module }

// Wrap makes m an engine module; closing the result closes m.
func Wrap(m *torch.Module) *Module { return &Module{m: m} }

// Torch is the underlying module (for the CLI's train/eval commands).
func (m *Module) Torch() *torch.Module { return m.m }

// Bytes serialises the module.
func (m *Module) Bytes() ([]byte, error) { return m.m.Bytes() }

// Clone copies the module on its device.
func (m *Module) Clone() (engine.Module, error) {
	c, err := m.m.Clone()
	if err != nil {
		return nil, err
	}
	return &Module{m: c}, nil
}

// Cut applies channel surgery in one bridge call.
func (m *Module) Cut(slices []cut.Slice, convGroups map[string]int64) error {
	ed := make([]torch.Slice, len(slices))
	for i, s := range slices {
		ed[i] = torch.Slice{Tensor: s.Tensor, Keep: s.Keep}
	}
	rn, err := renormsBefore(m.m, slices)
	if err != nil {
		return fmt.Errorf("channel surgery: %w", err)
	}
	if err := m.m.Prune(ed, convGroups); err != nil {
		return fmt.Errorf("channel surgery: %w", err)
	}
	for _, r := range rn {
		if err := r.apply(m.m); err != nil {
			return fmt.Errorf("channel surgery: weight norm of %s: %w", r.v, err)
		}
	}
	return nil
}

// Runs checks forward on an example input.
func (m *Module) Runs(shape []int64) error {
	x, err := model.Example(shape, m.m.Device())
	if err != nil {
		return err
	}
	defer x.Close()
	if err := m.m.CheckForward(x); err != nil {
		return fmt.Errorf("the pruned model does not run: %w", err)
	}
	return nil
}

// Shapes lists parameter and buffer shapes.
func (m *Module) Shapes() (map[string][]int64, error) { return model.Params(m.m) }

// Scores runs the criterion.
func (m *Module) Scores(ctx context.Context, criterion kinds.Criterion, groups []*graph.Group, split *data.Split, o engine.ScoreOptions) (map[int][]float64, error) {
	switch criterion {
	case kinds.L2Norm:
		s, err := criteria.L2(m.m, groups)
		if err != nil {
			return nil, fmt.Errorf("L2Norm scores: %w", err)
		}
		return s, nil
	case kinds.TaylorFOWeight:
		// NNI scores TaylorFOWeight in training mode. The BatchNorm
		// statistics it updates belong to this module: callers score a
		// throw-away copy.
		if err := m.m.Train(true); err != nil {
			return nil, err
		}
		s, err := taylor(ctx, m.m, groups, split, o)
		if err != nil {
			return nil, fmt.Errorf("TaylorFOWeight scores: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("criterion %q: want %s or %s", criterion, kinds.TaylorFOWeight, kinds.L2Norm)
}

// taylor feeds up to o.Batches shuffled training batches (those of part
// o.Part when o.Parts > 1) to criteria.Taylor.
func taylor(ctx context.Context, m *torch.Module, groups []*graph.Group, split *data.Split, o engine.ScoreOptions) (criteria.Scores, error) {
	bs := o.BatchSize
	bo := data.BatchOptions{BatchSize: bs, Shuffle: true, Seed: o.Seed, MaxBatches: o.Batches, DropLast: split.Len() >= 2*bs}
	pull, stop := iter.Pull2(split.Batches(ctx, bo))
	defer stop()
	index := -1
	next := func() (*data.Batch, error, bool) {
		for {
			b, err, ok := pull()
			index++
			if !ok || err != nil || o.Parts <= 1 || index%o.Parts == o.Part {
				return b, err, ok
			}
		}
	}
	opts := split.Dataset().Options()
	var held []*torch.Tensor
	defer func() {
		for _, t := range held {
			t.Close()
		}
	}()
	return criteria.Taylor(m, groups, func() (criteria.Batch, bool, error) {
		b, err, ok := next()
		if !ok {
			return criteria.Batch{}, false, nil
		}
		if err != nil {
			return criteria.Batch{}, false, err
		}
		// Batch index's dropout masks come from a stream of their own (see
		// train.Fit), so the scores are the same however the batches are
		// shared out over the slots, which score theirs at the same time.
		if err := m.SetRNG(uint64(o.Seed) ^ uint64(index+1)*0x9e3779b97f4a7c15); err != nil {
			return criteria.Batch{}, false, err
		}
		x, err := torch.BatchFloat32(b.X, []int64{int64(b.N), int64(opts.Channels), int64(opts.Height), int64(opts.Width)}, m.Device())
		if err != nil {
			return criteria.Batch{}, false, err
		}
		held = append(held, x)
		y, err := torch.BatchInt64(b.Y, []int64{int64(b.N)}, m.Device())
		if err != nil {
			return criteria.Batch{}, false, err
		}
		held = append(held, y)
		return criteria.Batch{X: x, Y: y}, true, nil
	})
}

// Fit fine-tunes with the one training loop.
func (m *Module) Fit(ctx context.Context, split *data.Split, o engine.TrainOptions) (engine.FitResult, error) {
	r, err := train.Fit(ctx, m.m, split, o)
	if err != nil {
		return engine.FitResult{}, err
	}
	return engine.FitResult{Steps: r.Steps, Loss: r.Loss, ImagesPerSec: r.ImagesPerSec, Compute: r.Compute}, nil
}

// Evaluate validates on the split.
func (m *Module) Evaluate(ctx context.Context, split *data.Split, batch int) (engine.EvalResult, error) {
	r, err := train.Evaluate(ctx, m.m, split, batch)
	if err != nil {
		return engine.EvalResult{}, err
	}
	return engine.EvalResult{Accuracy: r.Accuracy, Loss: r.Loss, LossSE: r.LossSE, Samples: r.Samples, Compute: r.Compute}, nil
}

// RecalibrateBN re-estimates the BatchNorm statistics.
func (m *Module) RecalibrateBN(ctx context.Context, split *data.Split, batches, batchSize int, seed int64) (engine.BNResult, error) {
	n, compute, err := train.RecalibrateBN(ctx, m.m, split, batches, batchSize, seed)
	return engine.BNResult{Layers: n, Compute: compute}, err
}

// Save writes the module atomically.
func (m *Module) Save(path string) error { return m.m.Save(path) }

// Close frees the module.
func (m *Module) Close() { m.m.Close() }
