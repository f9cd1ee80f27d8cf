//go:build cgo

// Package surgery physically removes channels from a TorchScript module
// according to a plan: every changed tensor is index-selected in one bridge
// call, and depthwise convolutions get their new groups count. The module
// keeps its attribute names, so the saved file loads in PyTorch as before.
package surgery

import (
	"fmt"
	"slices"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/torch"
)

// DepthwiseGroups returns the new groups argument of every depthwise
// convolution whose channels the plan changes. It is derived from the
// analysis rather than stored in plan.json: a depthwise conv's groups always
// equals its channel count.
func DepthwiseGroups(a *graph.Analysis, p *plan.Plan) map[string]int64 {
	out := map[string]int64{}
	for i := range a.Groups {
		for _, w := range a.Groups[i].DepthwiseConvs {
			if t, ok := p.Tensors[w]; ok && len(t.ShapeAfter) > 0 {
				out[w] = t.ShapeAfter[0]
			}
		}
	}
	return out
}

// Apply prunes m in place by the plan. Nothing changes when the plan does
// not fit (the bridge builds every new tensor before swapping any).
func Apply(m *torch.Module, p *plan.Plan, convGroups map[string]int64) error {
	names := make([]string, 0, len(p.Tensors))
	for n := range p.Tensors {
		names = append(names, n)
	}
	slices.Sort(names)
	edits := make([]torch.Slice, 0, len(names))
	for _, n := range names {
		edits = append(edits, torch.Slice{Tensor: n, Keep: p.Tensors[n].KeptByDim()})
	}
	if err := m.Prune(edits, convGroups); err != nil {
		return fmt.Errorf("surgery: %w", err)
	}
	return nil
}

// ZeroRemoved zeroes, in m, what pruning the complement of kept removes from
// the producing side: the filters and biases of the removed channels and
// their normalisation weights and biases (every parameter member indexed on
// dim 0). Running statistics stay. The zeroed model computes what the pruned
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
			if mem.Dim != 0 || buffers[mem.Tensor] {
				continue
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
	t, err := m.Get(mem.Tensor)
	if err != nil {
		return err
	}
	defer t.Close()
	shape, err := t.Shape()
	if err != nil {
		return err
	}
	vals, err := t.Float32s()
	if err != nil {
		return err
	}
	row := 1
	for _, d := range shape[1:] {
		row *= int(d)
	}
	for _, r := range mem.Indices(channels) {
		if r < 0 || int64(r) >= shape[0] {
			return fmt.Errorf("zero %s: row %d outside %d", mem.Tensor, r, shape[0])
		}
		clear(vals[r*row : (r+1)*row])
	}
	z, err := torch.FromFloat32(vals, shape, m.Device())
	if err != nil {
		return err
	}
	defer z.Close()
	return m.Set(mem.Tensor, z)
}
