// Package engine is the narrow contract between gopruner's pure core and
// the library that does tensor work. Everything that touches a tensor is a
// method here: load, export the IR (Open), score, cut, fine-tune, evaluate,
// save. The libtorch implementation lives in internal/torchengine; package
// fake implements it in plain Go so that the pipeline and both algorithms
// are tested without libtorch.
//
// A Module is owned by one goroutine at a time and must be closed. Modules
// never share state, so candidates on different slots run concurrently.
package engine

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/lut"
)

// Engine loads models.
type Engine interface {
	// Open loads the model file at path on dev ("cpu", "cuda:N"), runs it
	// once on an example input of shape and analyses its channel groups.
	Open(ctx context.Context, path string, shape []int64, dev string) (*Model, error)
	// Load makes a private copy of a model archive (Module.Bytes) on dev;
	// threads > 0 sets the copy's CPU thread count.
	Load(archive []byte, dev string, threads int) (Module, error)
	// Latency times forward (eval, no grad, batch of shape) of each module,
	// alternating between them so that load on the machine slows them alike.
	Latency(ms []Module, shape []int64) ([]Latency, error)
	// LatencyRuns is Latency with a fixed number of timed runs of each
	// module (after a few warm-up runs): the median of many runs, where a
	// ratio of two latencies must hold to a few percent.
	LatencyRuns(ms []Module, shape []int64, runs int) ([]Latency, error)
	// OpLatency times each layer alone (random inputs, no grad) on dev
	// ("cpu", "cuda:N") with threads intra-op threads and returns the
	// median of an adaptive number of runs (at least 3, more while budget
	// lasts), in nanoseconds: the latency lookup table of my_pruning's
	// `target: latency`.
	OpLatency(specs []lut.Spec, dev string, threads int, budget time.Duration) ([]float64, error)
}

// MemoryReleaser is an Engine that can hand the memory of closed modules
// back to the system, which it otherwise keeps for the next allocations:
// the end of a run calls it once the models are closed, before the report.
type MemoryReleaser interface {
	ReleaseMemory()
}

// Model is an opened original model: its module and the pure description
// of it that every decision is made on.
type Model struct {
	cut.Base
	Module Module
	Path   string
	// Timings of Open's phases, for the run's timings log line.
	Timings Timings
	// Warnings about the model that matter to a run that fine-tunes (for
	// example BatchNorm traced in eval mode), one line each.
	Warnings []string
}

// Timings is how long Open spent in each phase.
type Timings struct {
	Load, IRExport, Analysis time.Duration
}

// Take hands the module over to the caller, who then owns (and closes) it;
// m keeps its description but no module. A one-shot run that needs the
// original no more cuts it in place instead of paying for a copy.
func (m *Model) Take() Module {
	mod := m.Module
	m.Module = nil
	return mod
}

// Close frees the module, unless Take handed it over.
func (m *Model) Close() {
	if m != nil && m.Module != nil {
		m.Module.Close()
	}
}

// Module is one model instance.
type Module interface {
	// Bytes serialises the module as an archive Load reads.
	Bytes() ([]byte, error)
	// Clone is an independent copy on the same device.
	Clone() (Module, error)
	// Cut removes channels in place: every slice is applied in one
	// transaction (on an error the module is unchanged), then the depthwise
	// convs in convGroups get their new groups count.
	Cut(slices []cut.Slice, convGroups map[string]int64) error
	// Runs checks that forward still runs on an input of shape.
	Runs(shape []int64) error
	// Shapes is the shape of every parameter and buffer by dotted name.
	Shapes() (map[string][]int64, error)
	// Scores scores every channel of groups (given in the module's current
	// layout) by the criterion; Taylor criteria read up to o.Batches
	// training batches of split.
	Scores(ctx context.Context, criterion kinds.Criterion, groups []*graph.Group, split *data.Split, o ScoreOptions) (map[int][]float64, error)
	// Fit fine-tunes on split.
	Fit(ctx context.Context, split *data.Split, o TrainOptions) (FitResult, error)
	// Evaluate runs the module in eval mode over the whole split.
	Evaluate(ctx context.Context, split *data.Split, batch int) (EvalResult, error)
	// RecalibrateBN re-estimates the BatchNorm running statistics as the
	// average over up to batches shuffled (seeded) batches of split, in
	// training mode without autograd; no weight changes.
	RecalibrateBN(ctx context.Context, split *data.Split, batches, batchSize int, seed int64) (BNResult, error)
	// Save writes the module atomically to path.
	Save(path string) error
	Close()
}

// ScoreOptions configure a data-driven criterion.
type ScoreOptions struct {
	Batches   int // training batches to score on
	BatchSize int
	Seed      int64 // shuffling
	// Part of Parts (Parts > 1) scores only the batches whose index in the
	// pass is Part mod Parts. Data-driven scores are sums over batches, so
	// the parts' scores add up to the whole's: cart slots score an
	// iteration's model together instead of one scoring while the others
	// wait.
	Part, Parts int
}

// TrainOptions configure Fit. They are plain data (a candidate request
// carries them to another process), except Progress, which stays local.
type TrainOptions struct {
	Epochs      int     `json:"epochs,omitempty"` // full passes; ignored when Steps > 0
	Steps       int     `json:"steps,omitempty"`  // step budget (batches) across epochs; 0 = Epochs
	BatchSize   int     `json:"batch_size"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	Nesterov    bool    `json:"nesterov,omitempty"`
	Optimizer   string  `json:"optimizer,omitempty"` // "sgd" (default) or "adam"
	WarmupSteps int     `json:"warmup_steps,omitempty"`
	Cosine      bool    `json:"cosine,omitempty"`
	Seed        int64   `json:"seed"` // shuffling; epoch e uses (Seed, e)
	Flip        bool    `json:"flip,omitempty"`
	CropPad     int     `json:"crop_pad,omitempty"`
	// Distill, when set, trains on the distillation loss with Teacher's
	// outputs as the soft targets; nil is plain cross-entropy (and leaves
	// the JSON, hence a candidate's task id, as it was before distillation).
	Distill *Distill `json:"distill,omitempty"`
	// Teacher is the model Distill learns from, on the fitted module's
	// device; Fit only reads it. Like Progress it stays local: a candidate
	// request names the teacher's archive by digest instead.
	Teacher Module `json:"-"`
	// Progress, when set, is called after every step (from the calling
	// goroutine).
	Progress func(TrainProgress) `json:"-"`
}

// Distill is knowledge distillation's loss: (1-Weight)·CE(student, labels)
// + Weight·Temperature²·KL(softmax(teacher/T) ‖ softmax(student/T)).
type Distill struct {
	Temperature float64 `json:"temperature"`
	Weight      float64 `json:"weight"`
}

// Check reports a temperature or weight out of range.
func (d *Distill) Check() error {
	if d == nil {
		return nil
	}
	if !(d.Temperature > 0) || math.IsInf(d.Temperature, 0) {
		return fmt.Errorf("distill_temperature %g must be > 0", d.Temperature)
	}
	if !(d.Weight >= 0 && d.Weight <= 1) {
		return fmt.Errorf("distill_weight %g is outside [0,1]", d.Weight)
	}
	return nil
}

// TrainProgress is the state after one training step.
type TrainProgress struct {
	Epoch, Step, TotalSteps int
	Loss, Accuracy          float64 // running means over the epoch so far
	ImagesPerSec            float64
	EpochDone               bool
}

// BNResult summarises a RecalibrateBN.
type BNResult struct {
	Layers int // BatchNorm layers re-estimated (0: nothing was done)
	// Compute is the time spent in the bridge's forward passes; the rest
	// of the call is batch assembly and copies in.
	Compute time.Duration
}

// FitResult summarises a Fit.
type FitResult struct {
	Steps        int
	Loss         float64 // mean over the last epoch's steps
	ImagesPerSec float64
	// Compute is the part of the call spent in forward, backward and the
	// optimizer step; the rest is the loop's overhead.
	Compute time.Duration
}

// EvalResult is the accuracy and mean loss on a split.
type EvalResult struct {
	Accuracy float64
	Loss     float64
	LossSE   float64 // standard error of Loss (0: unknown)
	Samples  int
	Compute  time.Duration // the part spent in forward passes
}

// Latency is one module's forward time.
type Latency struct {
	Device   string
	Batch    int64
	MedianMs float64
}
