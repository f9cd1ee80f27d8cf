package lut

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/ops"
)

// Spec is one layer as a standalone op: what the engine times.
type Spec struct {
	Linear bool    `json:"linear,omitempty"` // at::linear; otherwise at::convolution
	X      []int64 `json:"x"`                // input shape
	W      []int64 `json:"w"`                // weight shape
	Bias   bool    `json:"bias,omitempty"`
	// Conv only, one entry per spatial dim.
	Stride     []int64 `json:"stride,omitempty"`
	Padding    []int64 `json:"padding,omitempty"`
	Dilation   []int64 `json:"dilation,omitempty"`
	OutPad     []int64 `json:"out_pad,omitempty"`
	Transposed bool    `json:"transposed,omitempty"`
	Groups     int64   `json:"groups,omitempty"`
}

// String identifies a spec: two layers with the same string time alike, so
// the engine measures each string once.
func (s Spec) String() string {
	return fmt.Sprintf("lin=%v x=%v w=%v b=%v s=%v p=%v d=%v op=%v t=%v g=%d",
		s.Linear, s.X, s.W, s.Bias, s.Stride, s.Padding, s.Dilation, s.OutPad, s.Transposed, s.Groups)
}

// Group is one candidate group as the table sees it.
type Group struct {
	ID       int
	Channels int
	Unit     int // alf combined with the group's block (plan.Unit)
}

// Model is what Spec and Plan read: the IR and its channel analysis.
type Model struct {
	Graph    *ir.Graph
	Analysis *graph.Analysis
	// Batch replaces the traced batch size (the first dim of the layers'
	// inputs); 0 keeps it.
	Batch int64
}

// Plan finds the layers to table: every conv and linear op whose shape some
// candidate group changes, with one axis per such group, each at up to
// maxPoints of the group's reachable counts. A layer shaped by more than
// two groups (an input concatenated from several), or whose arguments are
// not constants, is left out and named in untabled. Layers come in graph
// order.
func Plan(m Model, groups []Group, maxPoints int) (layers []Layer, untabled []string, err error) {
	if maxPoints < 2 {
		return nil, nil, fmt.Errorf("latency table: max points %d, want at least 2", maxPoints)
	}
	for i := range m.Graph.Ops {
		op := &m.Graph.Ops[i]
		if !tabled(op) {
			continue
		}
		w := weightName(m.Graph, op)
		if w == "" {
			continue // a computed weight: its time stays in the residue
		}
		name := layerName(op, w)
		full, err := m.Spec(i, nil)
		if err != nil {
			// Arguments the table cannot read (not constants): the layer's
			// time stays in the residue rather than failing the run.
			untabled = append(untabled, name)
			continue
		}
		var axes []Axis
		bad := false
		for _, g := range groups {
			counts := Reachable(g.Channels, g.Unit)
			if len(counts) < 2 {
				continue
			}
			s, err := m.Spec(i, map[int]int{g.ID: counts[0]})
			if err != nil {
				bad = true
				break
			}
			if s.String() != full.String() {
				axes = append(axes, Axis{Group: g.ID, Counts: Subsample(counts, maxPoints)})
			}
		}
		switch {
		case bad || len(axes) > 2:
			untabled = append(untabled, name)
		case len(axes) == 0:
		default:
			layers = append(layers, Layer{Name: name, Op: i, Weight: w, Axes: axes})
		}
	}
	return layers, untabled, nil
}

func tabled(op *ir.Op) bool {
	c := ops.Lookup(ops.Aten(op.Kind)).Cost
	return (c == ops.ConvCost || c == ops.LinearCost) && len(op.Inputs) >= 2 && len(op.Outputs) >= 1
}

func weightName(g *ir.Graph, op *ir.Op) string {
	if v := g.Value(op.Inputs[1]); v != nil {
		return v.Param
	}
	return ""
}

func layerName(op *ir.Op, w string) string {
	if op.Scope != "" {
		return op.Scope
	}
	return strings.TrimSuffix(w, ".weight")
}

// Spec is op i of the graph as a standalone op under keep (groups missing
// from keep are full).
func (m Model) Spec(i int, keep map[int]int) (Spec, error) {
	g := m.Graph
	if i < 0 || i >= len(g.Ops) {
		return Spec{}, fmt.Errorf("latency table: op %d is not in the graph", i)
	}
	op := &g.Ops[i]
	if !tabled(op) {
		return Spec{}, fmt.Errorf("latency table: op %d (%s) is not a conv or linear", i, op.Kind)
	}
	desc := fmt.Sprintf("latency table: op %d (%s, %s)", i, op.Kind, op.Scope)
	shape := func(id int) []int64 {
		if m.Analysis != nil {
			return m.Analysis.ValueShape(id, keep)
		}
		if v := g.Value(id); v != nil {
			return slices.Clone(v.Shape)
		}
		return nil
	}
	x, out := shape(op.Inputs[0]), shape(op.Outputs[0])
	w := shape(op.Inputs[1])
	if len(x) == 0 || len(w) == 0 || len(out) == 0 {
		return Spec{}, fmt.Errorf("%s: unknown shapes", desc)
	}
	if m.Batch > 0 && len(x) >= 2 {
		x[0] = m.Batch
	}
	s := Spec{X: x, W: w}
	if len(op.Inputs) > 2 {
		if v := g.Value(op.Inputs[2]); v != nil && v.Kind != ir.KindNone {
			s.Bias = true
		}
	}
	if ops.Lookup(ops.Aten(op.Kind)).Cost == ops.LinearCost {
		if len(w) != 2 {
			return Spec{}, fmt.Errorf("%s: weight %v is not a matrix", desc, w)
		}
		s.Linear = true
		return s, nil
	}
	nsp := len(x) - 2
	if nsp < 1 || len(w) != len(x) || len(out) != len(x) {
		return Spec{}, fmt.Errorf("%s: conv shapes %v * %v -> %v", desc, x, w, out)
	}
	// Argument positions: _convolution/convolution (x, w, b, stride,
	// padding, dilation, transposed, output_padding, groups); convNd (x, w,
	// b, stride, padding, dilation, groups); conv_transposeNd (x, w, b,
	// stride, padding, output_padding, groups, dilation).
	ints := func(at int, def int64) ([]int64, error) {
		if at >= len(op.Inputs) {
			return fill(nsp, def), nil
		}
		if v := g.Value(op.Inputs[at]); v != nil && v.Kind == ir.KindString && v.Const {
			return stringPadding(v.Str, w, nsp, s.Dilation)
		}
		l, ok := g.ConstInts(op.Inputs[at])
		if !ok {
			return nil, fmt.Errorf("%s: argument %d is not a constant int list", desc, at)
		}
		if len(l) == 1 && nsp > 1 {
			l = fill(nsp, l[0])
		}
		if len(l) != nsp {
			return nil, fmt.Errorf("%s: argument %d has %d entries for %d spatial dims", desc, at, len(l), nsp)
		}
		return l, nil
	}
	k := op.Kind
	transposed := strings.HasPrefix(ops.Aten(k), "aten::conv_transpose")
	pos := [4]int{3, 4, 5, -1} // stride, padding, dilation, output padding
	switch ops.Aten(k) {
	case "aten::_convolution", "aten::convolution":
		pos[3] = 7
		if t, ok := g.ConstInt(op.Inputs[6]); ok {
			transposed = t != 0
		}
	default:
		if transposed {
			pos = [4]int{3, 4, 7, 5}
		}
	}
	var err error
	if s.Stride, err = ints(pos[0], 1); err != nil {
		return Spec{}, err
	}
	if s.Dilation, err = ints(pos[2], 1); err != nil {
		return Spec{}, err
	}
	if s.Padding, err = ints(pos[1], 0); err != nil {
		return Spec{}, err
	}
	s.OutPad = fill(nsp, 0)
	if pos[3] >= 0 && transposed {
		if s.OutPad, err = ints(pos[3], 0); err != nil {
			return Spec{}, err
		}
	}
	s.Transposed = transposed
	// The groups count follows the shapes: a grouped conv whose group is
	// pruned has fewer groups.
	if transposed {
		s.Groups = out[1] / max(w[1], 1)
	} else {
		s.Groups = x[1] / max(w[1], 1)
	}
	if s.Groups < 1 {
		return Spec{}, fmt.Errorf("%s: groups from shapes %v, %v", desc, x, w)
	}
	return s, nil
}

func fill(n int, v int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// stringPadding turns conv's padding="valid"/"same" into explicit padding.
// "same" pads (dilation·(k−1))/2 on both sides: PyTorch puts an odd
// remainder on one side only, which at::convolution cannot express; the
// one-pixel difference does not matter to a latency estimate.
func stringPadding(p string, w []int64, nsp int, dil []int64) ([]int64, error) {
	switch p {
	case "valid":
		return fill(nsp, 0), nil
	case "same":
		out := make([]int64, nsp)
		for d := range nsp {
			dl := int64(1)
			if d < len(dil) {
				dl = dil[d]
			}
			out[d] = dl * (w[2+d] - 1) / 2
		}
		return out, nil
	}
	return nil, fmt.Errorf("latency table: padding %q", p)
}

// Activations is the number of elements of every tensor the forward
// computes under keep (groups missing from keep are full): the proxy the
// residue scales with, since norms, activation functions, additions and
// pooling cost about their outputs' size. It is non-decreasing in every
// group's count.
func (m Model) Activations(keep map[int]int) float64 {
	var n float64
	for i := range m.Graph.Ops {
		for _, id := range m.Graph.Ops[i].Outputs {
			v := m.Graph.Value(id)
			if v == nil || v.Kind != ir.KindTensor || v.Param != "" {
				continue
			}
			s := v.Shape
			if m.Analysis != nil {
				s = m.Analysis.ValueShape(id, keep)
			}
			e := 1.0
			for _, d := range s {
				e *= float64(d)
			}
			n += e
		}
	}
	return n
}
