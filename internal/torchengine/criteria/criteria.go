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
// its group, summed.
func L2(m *torch.Module, groups []*graph.Group) (Scores, error) {
	out := make(Scores, len(groups))
	norms := map[string][]float64{}
	for _, g := range groups {
		s := make([]float64, g.Channels)
		for _, p := range g.Producers {
			v, ok := norms[p.Tensor]
			if !ok {
				var err error
				if v, err = filterNorms(m, p.Tensor); err != nil {
					return nil, err
				}
				norms[p.Tensor] = v
			}
			if err := addByChannel(s, v, p); err != nil {
				return nil, fmt.Errorf("L2 of group %d: %w", g.ID, err)
			}
		}
		out[g.ID] = s
	}
	return out, nil
}

// filterNorms is the L2 norm of every slice along dim 0 of a weight.
func filterNorms(m *torch.Module, name string) ([]float64, error) {
	w, err := m.Get(name)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	shape, err := w.Shape()
	if err != nil {
		return nil, err
	}
	dims := make([]int64, 0, len(shape))
	for d := 1; d < len(shape); d++ {
		dims = append(dims, int64(d))
	}
	if len(dims) == 0 {
		return nil, fmt.Errorf("producer %s is 1-D; want a conv or linear weight", name)
	}
	n, err := w.Norm(2, dims, false)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	return n.Float64s()
}

// addByChannel adds a producer's per-row values to the group's channel
// scores, through the member's offset and stride.
func addByChannel(s, rows []float64, m graph.Member) error {
	for c := range s {
		for _, r := range m.Indices([]int{c}) {
			if r < 0 || r >= len(rows) {
				return fmt.Errorf("%s row %d outside %d", m.Tensor, r, len(rows))
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
	var names []string
	seen := map[string]bool{}
	for _, g := range groups {
		for _, p := range g.Producers {
			if !seen[p.Tensor] {
				seen[p.Tensor] = true
				names = append(names, p.Tensor)
			}
		}
	}
	acc := torch.NewTaylorAccumulator(names)
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
			if err := addByChannel(s, per[p.Tensor], p); err != nil {
				return nil, fmt.Errorf("taylor of group %d: %w", g.ID, err)
			}
		}
		out[g.ID] = s
	}
	return out, nil
}
