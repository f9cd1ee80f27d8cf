//go:build cgo

// Package criteria scores the channels of each group, so the pruner knows
// which ones to remove: L2Norm (the norm of each filter) and TaylorFOWeight
// (NNI's first-order Taylor weight criterion). Scores of a group are summed
// over its producers, since coupled layers lose their channels together.
package criteria

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/torch"
)

// Scores maps a group id to one score per channel.
type Scores map[int][]float64

// L2 scores each channel by the L2 norm of its filter in every producer of
// its group, summed. A producer's filters lie along its member's Dim: dim 0
// of a conv or linear weight, dim 1 of a transposed conv's ([Cin, Cout/g,
// k...]).
func L2(m *torch.Module, groups []*graph.Group) (Scores, error) {
	out := make(Scores, len(groups))
	norms := map[rowsKey][]float64{}
	for _, g := range groups {
		s := make([]float64, g.Channels)
		for _, p := range g.Producers {
			k := rowsKey{p.Tensor, p.Dim}
			v, ok := norms[k]
			if !ok {
				var err error
				if v, err = FilterNorms(m, p.Tensor, p.Dim); err != nil {
					return nil, fmt.Errorf("L2 of group %d: %w", g.ID, err)
				}
				norms[k] = v
			}
			if err := addByChannel(s, v, p); err != nil {
				return nil, fmt.Errorf("L2 of group %d: %w", g.ID, err)
			}
		}
		out[g.ID] = s
	}
	return out, nil
}

// rowsKey is a weight and the dimension its per-channel values run along.
type rowsKey struct {
	tensor string
	dim    int
}

// FilterNorms is the L2 norm of every slice along dim of a weight.
func FilterNorms(m *torch.Module, name string, dim int) ([]float64, error) {
	w, err := m.Read(name)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	shape, err := w.Shape()
	if err != nil {
		return nil, err
	}
	if len(shape) < 2 {
		return nil, fmt.Errorf("producer %s is %d-D; want a conv or linear weight", name, len(shape))
	}
	if dim < 0 || dim >= len(shape) {
		return nil, fmt.Errorf("producer %s has no dim %d (shape %v)", name, dim, shape)
	}
	dims := make([]int64, 0, len(shape)-1)
	for d := range shape {
		if d != dim {
			dims = append(dims, int64(d))
		}
	}
	n, err := w.Norm(2, dims, false)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	return n.Float64s()
}

// addByChannel adds a producer's per-row values (rows of its member's Dim)
// to the group's channel scores, through the member's offset and stride.
func addByChannel(s, rows []float64, m graph.Member) error {
	for c := range s {
		for _, r := range m.Indices([]int{c}) {
			if r < 0 || r >= len(rows) {
				return fmt.Errorf("%s dim %d row %d outside %d", m.Tensor, m.Dim, r, len(rows))
			}
			s[c] += rows[r]
		}
	}
	return nil
}

// Batch is one batch of inputs and labels already on the module's device.
type Batch struct {
	X, Y *torch.Tensor
}

// Taylor scores each channel by Σ over batches Σ over its filter's elements
// of (w·∂L/∂w)², summed over the group's producers (NNI's TaylorFOWeight).
// The weights are not updated. next returns the next batch, or ok=false
// when the budget is spent; the caller owns the batches.
func Taylor(m *torch.Module, groups []*graph.Group, next func() (Batch, bool, error)) (Scores, error) {
	var weights []torch.TaylorWeight
	index := map[rowsKey]int{}
	for _, g := range groups {
		for _, p := range g.Producers {
			k := rowsKey{p.Tensor, p.Dim}
			if _, ok := index[k]; !ok {
				index[k] = len(weights)
				weights = append(weights, torch.TaylorWeight{Name: p.Tensor, Dim: p.Dim})
			}
		}
	}
	acc := torch.NewTaylorAccumulator(weights)
	defer acc.Close()
	n := 0
	for {
		b, ok, err := next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if _, err := acc.Add(m, b.X, b.Y); err != nil {
			return nil, fmt.Errorf("taylor scores: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("taylor scores: no batch to score on")
	}
	per, err := acc.Scores()
	if err != nil {
		return nil, err
	}
	out := make(Scores, len(groups))
	for _, g := range groups {
		s := make([]float64, g.Channels)
		for _, p := range g.Producers {
			if err := addByChannel(s, per[index[rowsKey{p.Tensor, p.Dim}]], p); err != nil {
				return nil, fmt.Errorf("taylor of group %d: %w", g.ID, err)
			}
		}
		out[g.ID] = s
	}
	return out, nil
}
