// Package fake is an engine.Engine in plain Go for tests of the pipeline
// and the algorithms without libtorch. A fake module is the shape of every
// tensor; cutting it index-selects the shapes exactly as surgery would, and
// its "accuracy" is a deterministic function of what is left, so searches
// are reproducible and candidates differ.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/lut"
	"github.com/gopruner/gopruner/internal/engine"
)

// Engine serves one model description for every Open.
type Engine struct {
	Base cut.Base

	mu sync.Mutex
	// Live counts modules not yet closed; Loads counts Load calls.
	live, loads int
}

var _ engine.Engine = (*Engine)(nil)

// New is an engine whose Open returns base.
func New(base cut.Base) *Engine { return &Engine{Base: base} }

// Live is the number of modules made and not closed.
func (e *Engine) Live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.live
}

func (e *Engine) track(d int) {
	e.mu.Lock()
	e.live += d
	if d > 0 {
		e.loads++
	}
	e.mu.Unlock()
}

// Open ignores the path's content: the model is Base.
func (e *Engine) Open(_ context.Context, path string, shape []int64, dev string) (*engine.Model, error) {
	if !slices.Equal(shape, e.Base.InputShape) {
		return nil, fmt.Errorf("fake: input shape %v, the model takes %v", shape, e.Base.InputShape)
	}
	st := state{Shapes: map[string][]int64{}}
	for n, s := range e.Base.Params {
		st.Shapes[n] = slices.Clone(s)
		st.Orig += numel(s)
	}
	e.track(1)
	return &engine.Model{Base: e.Base, Module: &Module{e: e, st: st}, Path: path}, nil
}

// Load decodes an archive made by Module.Bytes.
func (e *Engine) Load(archive []byte, dev string, threads int) (engine.Module, error) {
	var st state
	if err := json.Unmarshal(archive, &st); err != nil {
		return nil, fmt.Errorf("fake: archive: %w", err)
	}
	e.track(1)
	return &Module{e: e, st: st}, nil
}

// Latency is proportional to the parameters left.
func (e *Engine) Latency(ms []engine.Module, shape []int64) ([]engine.Latency, error) {
	out := make([]engine.Latency, len(ms))
	for i, m := range ms {
		fm, ok := m.(*Module)
		if !ok {
			return nil, fmt.Errorf("fake: module %d is not a fake module", i)
		}
		out[i] = engine.Latency{Device: "cpu", Batch: shape[0], MedianMs: float64(fm.st.numel()) / 1e3}
	}
	return out, nil
}

// LatencyRuns is Latency: the fake's timing has no noise.
func (e *Engine) LatencyRuns(ms []engine.Module, shape []int64, _ int) ([]engine.Latency, error) {
	return e.Latency(ms, shape)
}

// OpLatency is 1 µs per weight element of each layer, as Latency is 1 µs
// per parameter of a module: a table of the fake then predicts the fake's
// own measurement up to the norms' and biases' share, which the residue
// holds at its full-width value.
func (e *Engine) OpLatency(specs []lut.Spec, dev string, threads int, _ time.Duration) ([]float64, error) {
	out := make([]float64, len(specs))
	for i, s := range specs {
		if len(s.X) == 0 || len(s.W) == 0 {
			return nil, fmt.Errorf("fake: op %d has no shapes", i)
		}
		out[i] = float64(numel(s.W)) * 1e3
	}
	return out, nil
}

// state is a module: tensor shapes, the original parameter count and the
// training it had.
type state struct {
	Shapes  map[string][]int64 `json:"shapes"`
	Orig    int64              `json:"orig"`
	Trained int                `json:"trained"` // training steps so far
	// Recalibrated counts BatchNorm re-estimations (each lifts accuracy a
	// little, as real ones do after a cut).
	Recalibrated int `json:"recalibrated,omitempty"`
	// Distilled counts the training steps that learnt from a teacher.
	Distilled int `json:"distilled,omitempty"`
}

// original says whether shapes are the original model's.
func (e *Engine) original(shapes map[string][]int64) bool {
	return maps.EqualFunc(shapes, e.Base.Params, slices.Equal)
}

// Distilled is how many training steps of m learnt from a teacher.
func Distilled(m engine.Module) int {
	if fm, ok := m.(*Module); ok {
		return fm.st.Distilled
	}
	return 0
}

// Trained is how many training steps m has had.
func Trained(m engine.Module) int {
	if fm, ok := m.(*Module); ok {
		return fm.st.Trained
	}
	return 0
}

func (s state) numel() int64 {
	var n int64
	for _, sh := range s.Shapes {
		n += numel(sh)
	}
	return n
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}

// Module is a fake model instance.
type Module struct {
	e      *Engine
	st     state
	closed bool
}

// Bytes is the state as JSON.
func (m *Module) Bytes() ([]byte, error) { return json.Marshal(m.st) }

// Clone copies the state.
func (m *Module) Clone() (engine.Module, error) {
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return m.e.Load(b, "cpu", 0)
}

// Cut index-selects the shapes; invalid slices leave the module unchanged.
func (m *Module) Cut(sl []cut.Slice, convGroups map[string]int64) error {
	next := maps.Clone(m.st.Shapes)
	for _, s := range sl {
		sh, ok := next[s.Tensor]
		if !ok {
			return fmt.Errorf("fake: no tensor %s", s.Tensor)
		}
		sh = slices.Clone(sh)
		for d, idx := range s.Keep {
			if d < 0 || d >= len(sh) {
				return fmt.Errorf("fake: %s has no dim %d", s.Tensor, d)
			}
			for i, k := range idx {
				if k < 0 || int64(k) >= sh[d] || (i > 0 && k <= idx[i-1]) {
					return fmt.Errorf("fake: %s dim %d: index %d out of order or range %d", s.Tensor, d, k, sh[d])
				}
			}
			sh[d] = int64(len(idx))
		}
		next[s.Tensor] = sh
	}
	m.st.Shapes = next
	return nil
}

// Runs always succeeds: a fake module has no forward.
func (m *Module) Runs([]int64) error { return nil }

// Shapes copies the shapes.
func (m *Module) Shapes() (map[string][]int64, error) {
	out := make(map[string][]int64, len(m.st.Shapes))
	for n, s := range m.st.Shapes {
		out[n] = slices.Clone(s)
	}
	return out, nil
}

// Scores gives every current channel a score derived from its producer
// rows' names and positions.
func (m *Module) Scores(_ context.Context, criterion kinds.Criterion, groups []*graph.Group, _ *data.Split, o engine.ScoreOptions) (map[int][]float64, error) {
	if criterion != kinds.L2Norm && criterion != kinds.TaylorFOWeight {
		return nil, fmt.Errorf("fake: criterion %q", criterion)
	}
	out := map[int][]float64{}
	for _, g := range groups {
		sc := make([]float64, g.Channels)
		for _, p := range g.Producers {
			for c := range sc {
				h := fnv.New64a()
				fmt.Fprintf(h, "%s/%d/%d", p.Tensor, p.Offset+c*max(p.Stride, 1), o.Seed)
				// A part scores its share of the batches, so the parts
				// add up to the whole, as real data-driven scores do.
				sc[c] += float64(h.Sum64()%1000) / 1000 / float64(max(o.Parts, 1))
			}
		}
		out[g.ID] = sc
	}
	return out, nil
}

// Fit counts the steps. A distilled fit needs a live teacher that is the
// original model (untrained, uncut): what the pipeline must hand it.
func (m *Module) Fit(_ context.Context, split *data.Split, o engine.TrainOptions) (engine.FitResult, error) {
	steps := o.Steps
	if steps <= 0 {
		steps = o.Epochs * max(1, split.Len()/max(1, o.BatchSize))
	}
	if o.Distill != nil {
		if err := o.Distill.Check(); err != nil {
			return engine.FitResult{}, fmt.Errorf("fake: %w", err)
		}
		t, ok := o.Teacher.(*Module)
		if !ok || t == nil || t.closed {
			return engine.FitResult{}, fmt.Errorf("fake: distill without a live teacher (%T)", o.Teacher)
		}
		if t == m {
			return engine.FitResult{}, fmt.Errorf("fake: the teacher is the student")
		}
		if t.st.Trained != 0 || !m.e.original(t.st.Shapes) {
			return engine.FitResult{}, fmt.Errorf("fake: the teacher is not the original model (trained %d steps)", t.st.Trained)
		}
		m.st.Distilled += steps
	}
	m.st.Trained += steps
	return engine.FitResult{Steps: steps, Loss: 1 / float64(1+m.st.Trained)}, nil
}

// Evaluate is a smooth function of the parameters left (weighted by the
// tensor's name, so that groups differ) plus a bonus for training.
func (m *Module) Evaluate(_ context.Context, split *data.Split, _ int) (engine.EvalResult, error) {
	var kept, orig float64
	for _, n := range slices.Sorted(maps.Keys(m.st.Shapes)) {
		h := fnv.New64a()
		h.Write([]byte(n))
		w := 1 + float64(h.Sum64()%7)
		kept += w * float64(numel(m.st.Shapes[n]))
		orig += w * float64(numel(m.e.Base.Params[n]))
	}
	acc := 0.5 + 0.4*math.Sqrt(kept/orig) + math.Min(0.05, float64(m.st.Trained)*1e-4) + 1e-3*float64(m.st.Recalibrated)
	n := 0
	if split != nil {
		n = split.Len()
	}
	// The loss mirrors the accuracy, with the accuracy's binomial noise.
	var se float64
	if n > 0 {
		se = math.Sqrt(acc * (1 - acc) / float64(n))
	}
	return engine.EvalResult{Accuracy: acc, Loss: 1 - acc, LossSE: se, Samples: n}, nil
}

// RecalibrateBN counts the re-estimation; the fake has no BatchNorm
// statistics, so it reports one layer.
func (m *Module) RecalibrateBN(_ context.Context, _ *data.Split, batches, _ int, _ int64) (engine.BNResult, error) {
	if batches <= 0 {
		return engine.BNResult{}, nil
	}
	m.st.Recalibrated++
	return engine.BNResult{Layers: 1}, nil
}

// Save writes the state as JSON.
func (m *Module) Save(path string) error {
	b, err := m.Bytes()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

// Close marks the module closed (idempotent).
func (m *Module) Close() {
	if !m.closed {
		m.closed = true
		m.e.track(-1)
	}
}
