//go:build cgo

// Package surgery holds what the equivalence tests need beside the engine's
// Cut: zeroing, in the original, what a cut removes.
package surgery

import (
	"fmt"
	"slices"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/torch"
)

// Masked is a copy of orig with what pruning the complement of kept
// removes zeroed (see ZeroRemoved): the reference a pruned model must equal.
func Masked(orig *torch.Module, a *graph.Analysis, kept map[int][]int) (*torch.Module, error) {
	m, err := orig.Clone()
	if err != nil {
		return nil, err
	}
	bufs, err := m.BufferNames()
	if err != nil {
		m.Close()
		return nil, err
	}
	isBuf := make(map[string]bool, len(bufs))
	for _, b := range bufs {
		isBuf[b] = true
	}
	if err := ZeroRemoved(m, a, isBuf, kept); err != nil {
		m.Close()
		return nil, fmt.Errorf("zeroing: %w", err)
	}
	return m, nil
}

// ZeroRemoved zeroes, in m, what pruning the complement of kept removes from
// the producing side: the filters and biases of the removed channels and
// their normalisation weights and biases (every parameter member indexed on
// dim 0, and every producer on its own dim; of a weight-normalised layer,
// the magnitude's rows, not the direction's). Running statistics stay. The zeroed model computes what the pruned
// one computes, which is how tests prove surgery correct.
func ZeroRemoved(m *torch.Module, a *graph.Analysis, buffers map[string]bool, kept map[int][]int) error {
	for i := range a.Groups {
		g := &a.Groups[i]
		k, ok := kept[g.ID]
		if !ok || len(k) == g.Channels {
			continue
		}
		removed := complement(k, g.Channels)
		for _, mem := range g.Members {
			// A producer's filters may lie on another dim (dim 1 of a
			// transposed conv's weight).
			if (mem.Dim != 0 && !slices.Contains(g.Producers, mem)) || buffers[mem.Tensor] {
				continue
			}
			if _, normed := a.WeightNorm(mem.Tensor); normed {
				continue // g·v/‖v‖: a zero row of v would divide by zero; g's row, zeroed, zeroes it
			}
			if err := zeroRows(m, mem, removed); err != nil {
				return err
			}
		}
	}
	return nil
}

func complement(kept []int, n int) []int {
	in := make([]bool, n)
	for _, c := range kept {
		if c >= 0 && c < n {
			in[c] = true
		}
	}
	var out []int
	for c := 0; c < n; c++ {
		if !in[c] {
			out = append(out, c)
		}
	}
	return out
}

func zeroRows(m *torch.Module, mem graph.Member, channels []int) error {
	return m.EditFloat32s(mem.Tensor, func(shape []int64, vals []float32) error {
		if mem.Dim < 0 || mem.Dim >= len(shape) {
			return fmt.Errorf("zero %s: no dim %d in shape %v", mem.Tensor, mem.Dim, shape)
		}
		n := int(shape[mem.Dim])
		zero := make([]bool, n)
		for _, r := range mem.Indices(channels) {
			if r < 0 || r >= n {
				return fmt.Errorf("zero %s: index %d outside %d of dim %d", mem.Tensor, r, n, mem.Dim)
			}
			zero[r] = true
		}
		inner := 1
		for _, d := range shape[mem.Dim+1:] {
			inner *= int(d)
		}
		for i := range vals {
			if zero[(i/inner)%n] {
				vals[i] = 0
			}
		}
		return nil
	})
}
