// Package lut is the latency cost model of my_pruning's `target: latency`,
// after NetAdapt (Yang et al., arXiv 1804.03230, section 3.3): a lookup
// table of every prunable layer's latency, measured standalone at the
// channel counts the search may visit, predicts a keep vector's latency as
//
//	predicted(keep) = Σ over tabled layers LUT[layer](keep) + residue
//
// where residue is the unpruned model's measured latency minus the table's
// sum at full width (everything the table does not hold: activations,
// norms, pooling, layers that no group changes, the interpreter). The same
// difference, measured on the model cut to about a half and a quarter of
// every group (Cuts), makes the residue follow the activations: those ops
// shrink with the channels, and the layers timed alone and inside the
// model differ by more at small widths. Layers whose standalone times sum
// to more than the whole model are scaled down to it (the residue is then
// 0), so no prediction is negative.
//
// A layer's axes are the channel groups whose keep counts change its shape
// (its input group and its output group: one axis for a depthwise conv,
// two for most). Each axis is measured at up to MaxPoints of the counts
// the search can reach (multiples of alf and the group's block, and the
// full count), and interpolated linearly between them (bilinearly on two
// axes). Measurements are made non-decreasing along every axis (a running
// minimum from the full-width end) before use, so the prediction is
// non-decreasing in every group's count, which netadapt's StepMACs binary
// search needs.
//
// The package is pure: it decides what to measure (Plan), turns a keep
// vector into the standalone op of a layer (Spec), and predicts. The
// measuring is the engine's (internal/torchengine). Tables are cached as
// JSON keyed by everything that changes a measurement (Key).
package lut

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
)

// Format is the cache file's format tag.
const Format = "gopruner-latency-lut/3"

// DefaultMaxPoints is how many counts per axis a layer is measured at when
// the run does not say: enough for a bilinear fit of a conv's time (close
// to linear in each of Cin and Cout), few enough that a 20-layer model
// measures in seconds.
const DefaultMaxPoints = 6

// Key is what a table's measurements depend on; a cached table is reused
// only when its key equals the run's.
type Key struct {
	Model      string  `json:"model"` // digest of the original model archive
	Device     string  `json:"device"`
	Threads    int     `json:"threads"`
	Batch      int64   `json:"batch"`
	InputShape []int64 `json:"input_shape"`
	Alf        int     `json:"alf"`
	MaxPoints  int     `json:"max_points"`
	// Groups are the candidate groups (iskl changes them), by id.
	Groups []int `json:"groups"`
}

// Equal reports whether k and o are the same key.
func (k Key) Equal(o Key) bool {
	return k.Model == o.Model && k.Device == o.Device && k.Threads == o.Threads && k.Batch == o.Batch &&
		slices.Equal(k.InputShape, o.InputShape) && k.Alf == o.Alf && k.MaxPoints == o.MaxPoints &&
		slices.Equal(k.Groups, o.Groups)
}

// Axis is one group a layer's shape follows, and the counts it is measured
// at (ascending, the group's smallest reachable count to its full count).
type Axis struct {
	Group  int   `json:"group"`
	Counts []int `json:"counts"`
}

// Layer is one tabled conv or linear layer.
type Layer struct {
	Name   string `json:"name"`   // module scope ("layer1.0.conv1")
	Op     int    `json:"op"`     // index of the op in the IR
	Weight string `json:"weight"` // its weight parameter
	Axes   []Axis `json:"axes"`   // 1 or 2
	// NS is the measured latency in nanoseconds at every point of the axes'
	// grid, row-major (the last axis varies fastest). Empty until measured.
	NS []float64 `json:"ns"`
}

// Points is the number of grid points of l.
func (l *Layer) Points() int {
	n := 1
	for _, a := range l.Axes {
		n *= len(a.Counts)
	}
	return n
}

// Keep is the keep vector of grid point i (row-major): the layer's axes at
// their counts, every other group full.
func (l *Layer) Keep(i int) map[int]int {
	keep := make(map[int]int, len(l.Axes))
	for j := len(l.Axes) - 1; j >= 0; j-- {
		a := l.Axes[j]
		keep[a.Group] = a.Counts[i%len(a.Counts)]
		i /= len(a.Counts)
	}
	return keep
}

// Table is a measured lookup table.
type Table struct {
	Format string  `json:"format"`
	Key    Key     `json:"key"`
	Layers []Layer `json:"layers"`
	// FullNS is the unpruned model's measured latency.
	FullNS float64 `json:"full_ns"`
	// Cuts are the residue measured on the model cut to about a half and a
	// quarter of every group: the residue then follows the activations
	// (norms, activation functions and additions shrink with the channels,
	// and so does the standalone layers' error), piecewise linearly
	// between the measurements, instead of staying at its full-width value.
	Cuts []Cut `json:"cuts,omitempty"`
	// Untabled names the conv/linear layers a group changes but the table
	// cannot hold (more than two groups shape them); their time stays in
	// the residue at its full-width value.
	Untabled []string `json:"untabled,omitempty"`
	// Seconds is how long building (measuring) the table took.
	Seconds float64 `json:"seconds"`
}

// Check reports the first inconsistency of t: a wrong format, a layer
// without axes or with a measurement count that does not fit its grid,
// counts that do not ascend, a latency that is not a finite positive
// number.
func (t *Table) Check() error {
	if t.Format != Format {
		return fmt.Errorf("format %q, want %q", t.Format, Format)
	}
	if !(t.FullNS > 0) || math.IsInf(t.FullNS, 0) {
		return fmt.Errorf("full_ns %v is not a positive number", t.FullNS)
	}
	for i := range t.Layers {
		l := &t.Layers[i]
		if len(l.Axes) < 1 || len(l.Axes) > 2 {
			return fmt.Errorf("layer %s: %d axes, want 1 or 2", l.Name, len(l.Axes))
		}
		for _, a := range l.Axes {
			if len(a.Counts) == 0 {
				return fmt.Errorf("layer %s: group %d has no counts", l.Name, a.Group)
			}
			for j, c := range a.Counts {
				if c < 1 || (j > 0 && c <= a.Counts[j-1]) {
					return fmt.Errorf("layer %s: group %d counts %v do not ascend from 1", l.Name, a.Group, a.Counts)
				}
			}
		}
		if len(l.NS) != l.Points() {
			return fmt.Errorf("layer %s: %d measurements for %d grid points", l.Name, len(l.NS), l.Points())
		}
		for _, v := range l.NS {
			if !(v >= 0) || math.IsInf(v, 0) {
				return fmt.Errorf("layer %s: latency %v is not a finite number", l.Name, v)
			}
		}
	}
	for i, c := range t.Cuts {
		if math.IsNaN(c.ResidueNS) || math.IsInf(c.ResidueNS, 0) {
			return fmt.Errorf("cut %d: residue %v is not a finite number", i, c.ResidueNS)
		}
		for g, k := range c.Keep {
			if k < 1 {
				return fmt.Errorf("cut %d: group %d keeps %d channels", i, g, k)
			}
		}
	}
	return nil
}

// Cut is a residue measured on the model cut to Keep.
type Cut struct {
	Keep      map[int]int `json:"keep"`
	ResidueNS float64     `json:"residue_ns"`
}

// ErrMismatch is returned by Load for a cache made under another key.
var ErrMismatch = errors.New("the cached latency table was measured under other settings")

// Load reads a cached table. A missing file gives (nil, nil); a file of
// another key, ErrMismatch; a file that is not a table, an error naming
// it.
func Load(path string, key Key) (*Table, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latency table %s: %w", path, err)
	}
	var t Table
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("latency table %s: not a table: %w", path, err)
	}
	if err := t.Check(); err != nil {
		return nil, fmt.Errorf("latency table %s: %w", path, err)
	}
	if !t.Key.Equal(key) {
		return nil, fmt.Errorf("%s: %w", path, ErrMismatch)
	}
	return &t, nil
}

// Save writes t atomically.
func (t *Table) Save(path string) error {
	b, err := json.MarshalIndent(t, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("latency table %s: %w", path, err)
	}
	return nil
}

// Reachable is every count a group of channels can be left with by the
// search with unit u (alf combined with the group's block): the multiples
// of u below channels, and channels itself.
func Reachable(channels, u int) []int {
	u = max(u, 1)
	var out []int
	for k := u; k < channels; k += u {
		out = append(out, k)
	}
	return append(out, channels)
}

// Subsample picks at most n of the ascending counts, evenly spread, always
// the first and the last.
func Subsample(counts []int, n int) []int {
	if n < 2 || len(counts) <= n {
		if n == 1 && len(counts) > 1 {
			return []int{counts[len(counts)-1]}
		}
		return slices.Clone(counts)
	}
	out := make([]int, 0, n)
	for i := range n {
		j := int(math.Round(float64(i) * float64(len(counts)-1) / float64(n-1)))
		if len(out) == 0 || counts[j] != out[len(out)-1] {
			out = append(out, counts[j])
		}
	}
	return out
}

// Predictor predicts a keep vector's latency from a measured table.
type Predictor struct {
	layers  []Layer // NS made monotone, times scale
	residue float64 // at full width, >= 0
	scale   float64 // LayerScale
	full    map[int]int
	// With cut measurements: the residue is piecewise linear in act(keep)
	// through the points (acts[i], res[i]), ascending, the last one full
	// width; below the first, the first segment's slope, at least 0.
	act       func(keep map[int]int) float64
	acts, res []float64
}

// NewPredictor makes t's measurements monotone and computes the residue;
// full is the unpruned keep vector (every candidate group's channels). act,
// when not nil, measures a keep vector's activations (Model.Activations)
// and makes the residue follow them through t's cut measurements; it must
// be non-decreasing in every group's count. The residues are made
// non-decreasing in the activations (a running minimum from full width:
// a cut residue above a wider one is noise), so the prediction stays
// non-decreasing in every group's count. Without act or t.Cuts, or when
// no cut residue is below the full-width one, the residue is constant.
func NewPredictor(t *Table, full map[int]int, act func(map[int]int) float64) (*Predictor, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	p := &Predictor{full: full}
	for _, l := range t.Layers {
		l.NS = Monotone(l)
		l.Axes = slices.Clone(l.Axes)
		p.layers = append(p.layers, l)
	}
	// Standalone layers that sum to more than the whole model were timed
	// slower than the model (a burst of other work during their rounds, or
	// per-call overhead that the model does not pay): a negative residue
	// then makes small keep vectors predict below zero (one CI run
	// predicted −2 ms for a 1.2 ms model). Their shape stays; their scale
	// is the whole model's, with nothing left for the residue.
	scale := 1.0
	if s := p.sum(full); s > t.FullNS {
		scale = t.FullNS / s
		for i := range p.layers {
			for j := range p.layers[i].NS {
				p.layers[i].NS[j] *= scale
			}
		}
	}
	p.scale = scale
	p.residue = max(0, t.FullNS-p.sum(full))
	if act == nil || len(t.Cuts) == 0 {
		return p, nil
	}
	type point struct{ a, r float64 }
	aFull := act(full)
	pts := []point{{aFull, p.residue}}
	for _, c := range t.Cuts {
		if a := act(c.Keep); a < aFull {
			// A cut's residue is its whole time less its layers at the
			// table's scale; at a smaller scale the layers hold less of it.
			r := c.ResidueNS
			if scale < 1 {
				r += (1/scale - 1) * p.sum(c.Keep)
			}
			pts = append(pts, point{a, r})
		}
	}
	slices.SortFunc(pts, func(x, y point) int { return cmp.Compare(x.a, y.a) })
	for i := len(pts) - 2; i >= 0; i-- {
		pts[i].r = max(0, min(pts[i].r, pts[i+1].r))
	}
	scaled := false
	for i := range pts {
		if i > 0 && pts[i].a == pts[i-1].a {
			continue // one residue per activation count: the lower (running minimum)
		}
		p.acts, p.res = append(p.acts, pts[i].a), append(p.res, pts[i].r)
		scaled = scaled || pts[i].r < p.residue
	}
	if scaled {
		p.act = act
	} else {
		p.acts, p.res = nil, nil
	}
	return p, nil
}

// Residue is the part of the unpruned model's latency the table does not
// hold, in nanoseconds; never negative (see LayerScale).
func (p *Predictor) Residue() float64 { return p.residue }

// LayerScale is the factor the table's layers were scaled by so that they
// sum to no more than the whole model: 1, or below 1 when the standalone
// timings summed to more than the model (the residue is then 0).
func (p *Predictor) LayerScale() float64 { return p.scale }

// Scaled reports whether the residue scales with the activations.
func (p *Predictor) Scaled() bool { return p.act != nil }

func (p *Predictor) residueAt(keep map[int]int) float64 {
	if p.act == nil {
		return p.residue
	}
	a := p.act(keep)
	n := len(p.acts)
	if a >= p.acts[n-1] {
		return p.res[n-1]
	}
	i := 1 // the segment [i-1, i] holding a, or the first one below it
	for i < n-1 && a >= p.acts[i] {
		i++
	}
	slope := (p.res[i] - p.res[i-1]) / (p.acts[i] - p.acts[i-1])
	return max(0, p.res[i-1]+slope*(a-p.acts[i-1]))
}

// Layers is the tabled latency of each layer under keep, in the table's
// order (for reports).
func (p *Predictor) Layers(keep map[int]int) []float64 {
	out := make([]float64, len(p.layers))
	for i := range p.layers {
		out[i] = at(&p.layers[i], keep)
	}
	return out
}

// Predict is the predicted latency under keep in nanoseconds (groups
// missing from keep are full). It is non-decreasing in every group's
// count.
func (p *Predictor) Predict(keep map[int]int) int64 {
	return int64(math.Round(p.sum(keep) + p.residueAt(keep)))
}

func (p *Predictor) sum(keep map[int]int) float64 {
	var s float64
	for i := range p.layers {
		s += at(&p.layers[i], keep)
	}
	return s
}

// Monotone is l's measurements made non-decreasing along every axis, by a
// running minimum from the full-width end: along the first axis, then the
// second (the result is non-decreasing along both; a running minimum along
// one axis keeps the other's order). The full-width point, the table's
// best-measured value (its scale), is left as it is: a running maximum
// from the small end instead lifts it to the largest noisy reading below
// it, which over a model of 20 layers adds up to a residue below zero.
func Monotone(l Layer) []float64 {
	ns := slices.Clone(l.NS)
	switch len(l.Axes) {
	case 1:
		for i := len(ns) - 2; i >= 0; i-- {
			ns[i] = min(ns[i], ns[i+1])
		}
	case 2:
		r, c := len(l.Axes[0].Counts), len(l.Axes[1].Counts)
		for j := range c {
			for i := r - 2; i >= 0; i-- {
				ns[i*c+j] = min(ns[i*c+j], ns[(i+1)*c+j])
			}
		}
		for i := range r {
			for j := c - 2; j >= 0; j-- {
				ns[i*c+j] = min(ns[i*c+j], ns[i*c+j+1])
			}
		}
	}
	return ns
}

// at interpolates l (monotone NS) at keep.
func at(l *Layer, keep map[int]int) float64 {
	count := func(a Axis) int {
		if k, ok := keep[a.Group]; ok {
			return k
		}
		return a.Counts[len(a.Counts)-1]
	}
	i0, i1, f := bracket(l.Axes[0].Counts, count(l.Axes[0]))
	if len(l.Axes) == 1 {
		return l.NS[i0]*(1-f) + l.NS[i1]*f
	}
	c := len(l.Axes[1].Counts)
	j0, j1, g := bracket(l.Axes[1].Counts, count(l.Axes[1]))
	lo := l.NS[i0*c+j0]*(1-g) + l.NS[i0*c+j1]*g
	hi := l.NS[i1*c+j0]*(1-g) + l.NS[i1*c+j1]*g
	return lo*(1-f) + hi*f
}

// bracket finds the counts around k: indices i0 <= i1 and the weight f of
// i1. Counts outside the measured range clamp to its ends, which keeps the
// prediction monotone.
func bracket(counts []int, k int) (i0, i1 int, f float64) {
	n := len(counts)
	if k <= counts[0] {
		return 0, 0, 0
	}
	if k >= counts[n-1] {
		return n - 1, n - 1, 0
	}
	i1 = sort.SearchInts(counts, k) // counts[i1] >= k, i1 >= 1
	if counts[i1] == k {
		return i1, i1, 0
	}
	i0 = i1 - 1
	return i0, i1, float64(k-counts[i0]) / float64(counts[i1]-counts[i0])
}

// StateTolerance is how far a model's time may lie from the time a table
// gives it for both to be of one machine state: the 2-vCPU benchmark
// machine ran at states 40% and more apart, and speed-ups differ between
// them.
const StateTolerance = 0.2

// State is the index of the time in refsMs that ms lies within
// StateTolerance of, the nearest if several; -1 if none. Non-positive
// references match nothing.
func State(refsMs []float64, ms float64) int {
	best, bestDev := -1, math.Inf(1)
	for i, ref := range refsMs {
		if d := math.Abs(ms/ref - 1); ref > 0 && d <= StateTolerance && d < bestDev {
			best, bestDev = i, d
		}
	}
	return best
}
