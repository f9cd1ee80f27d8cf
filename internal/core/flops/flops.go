// Package flops counts the multiply-accumulates and parameters of a traced
// model with ptflops' formulas (get_model_complexity_info, pytorch backend,
// count_functional=False), as scripts/flopcount.py implements them for the
// fixtures, so that a MACs budget P means what it meant with the original
// Python tool. It also counts a pruning plan without tracing the pruned
// model again: shapes come from graph.Analysis under the kept channel
// counts.
//
// ptflops hooks modules, the trace has ops; the mapping (the Cost of each
// op in internal/core/ops, the table graph shares) is:
//
//	conv (incl. transposed)  N·∏out_spatial·numel(weight) (+ N·C_out·∏out_spatial with bias)
//	linear, addmm, matmul    (in·out + out with bias)·∏leading dims
//	batch/instance/group norm numel(input), twice that with affine weights
//	relu, relu6/hardtanh, leaky_relu, elu, prelu   numel(output)
//	max/avg/adaptive pooling numel(input)
//	upsample                 numel(output)
//	everything else          0 (layer norm, gelu, sigmoid, add, ...)
//
// Every rule holds for any rank: conv1d/2d/3d, pooling and upsampling over
// [N,C,L] to [N,C,D,H,W], linear and batch norm on [N,F]. A transposed conv
// is counted as ptflops' conv hook counts it (ptflops maps ConvTranspose*d
// to that hook): per OUTPUT position, and its weight [C_in, C_out/groups,
// k...] has the same numel as ∏kernel·C_in·C_out/groups.
//
// A functional call (F.relu, F.adaptive_avg_pool2d) traces like its module
// and is counted too, where ptflops would skip it; the trace cannot tell
// them apart. The difference is far below the search's slack (0.02% on
// mobilenet_v2).
package flops

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/ops"
)

// Layer is the cost of one counted op. The JSON form is part of
// `gopruner flops --json`.
type Layer struct {
	// Name is the op's module scope ("layer1.0.conv1"), or "<kind>#<op
	// index>" for ops without one (activations in scripted models).
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	MACs   int64  `json:"macs"`
	Params int64  `json:"params"`
}

// Result is the cost of a whole model; exactly `gopruner flops --json`.
type Result struct {
	MACs int64 `json:"macs"`
	// Params is the element count of every parameter (not buffer) of the
	// module, used in forward or not, as ptflops counts them.
	Params int64   `json:"params"`
	Layers []Layer `json:"layers"`
}

var errOverflow = errors.New("count overflows int64")

// mul multiplies non-negative counts, failing on overflow or on negative
// dims (a malformed graph).
func mul(xs ...int64) (int64, error) {
	p := int64(1)
	for _, x := range xs {
		if x < 0 {
			return 0, fmt.Errorf("negative dimension %d", x)
		}
		if x != 0 && p > math.MaxInt64/x {
			return 0, errOverflow
		}
		p *= x
	}
	return p, nil
}

func add(x, y int64) (int64, error) {
	if x > math.MaxInt64-y {
		return 0, errOverflow
	}
	return x + y, nil
}

func numel(s []int64) (int64, error) { return mul(s...) }

type counter struct {
	g    *ir.Graph
	a    *graph.Analysis
	kept map[int]int
}

func (c *counter) value(id int) *ir.Value { return c.g.Value(id) }

// shape is a value's shape under kept (its traced shape without analysis).
func (c *counter) shape(id int) ([]int64, error) {
	v := c.value(id)
	if v == nil {
		return nil, fmt.Errorf("value %d missing", id)
	}
	if v.Param != "" {
		return c.paramShape(v.Param)
	}
	if v.Kind != ir.KindTensor {
		return nil, fmt.Errorf("value %d is %s, not a tensor", id, v.Kind)
	}
	if c.a != nil {
		return c.a.ValueShape(id, c.kept), nil
	}
	return v.Shape, nil
}

func (c *counter) paramShape(name string) ([]int64, error) {
	if c.a != nil {
		if s := c.a.ParamShape(name, c.kept); s != nil {
			return s, nil
		}
	}
	if p, ok := c.g.Params[name]; ok {
		return p.Shape, nil
	}
	for i := range c.g.Values {
		if v := &c.g.Values[i]; v.Param == name && v.Shape != nil {
			return v.Shape, nil
		}
	}
	return nil, fmt.Errorf("parameter %s has no shape", name)
}

// present reports whether optional input id is a tensor rather than None.
func (c *counter) present(id int) bool {
	v := c.value(id)
	return v != nil && v.Kind != ir.KindNone && (v.Kind == ir.KindTensor || v.Param != "")
}

// weightParam follows a matrix operand back through transposes to the
// parameter it reads ("" when it is an activation).
func (c *counter) weightParam(id int) string {
	for range 8 {
		v := c.value(id)
		if v == nil {
			return ""
		}
		if v.Param != "" {
			return v.Param
		}
		p := c.g.Producer(id)
		if p < 0 || len(c.g.Ops[p].Inputs) == 0 {
			return ""
		}
		switch c.g.Ops[p].Kind {
		case "aten::t", "aten::transpose", "aten::permute", "aten::contiguous", "aten::detach", "aten::to":
			id = c.g.Ops[p].Inputs[0]
		default:
			return ""
		}
	}
	return ""
}

// params sums the parameters (not buffers) an op reads directly.
func (c *counter) params(names ...string) (int64, error) {
	var total int64
	for _, n := range names {
		if n == "" {
			continue
		}
		if p, ok := c.g.Params[n]; ok && p.Buffer {
			continue
		}
		s, err := c.paramShape(n)
		if err != nil {
			return 0, err
		}
		k, err := numel(s)
		if err != nil {
			return 0, err
		}
		if total, err = add(total, k); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// paramOf is the parameter op input i reads directly, or "".
func (c *counter) paramOf(op *ir.Op, i int) string { return c.paramName(in(op, i)) }

func (c *counter) paramName(id int) string {
	if v := c.value(id); v != nil {
		return v.Param
	}
	return ""
}

func in(op *ir.Op, i int) int {
	if i < len(op.Inputs) {
		return op.Inputs[i]
	}
	return math.MinInt
}

// Count returns the MACs and parameters of g with every group gid of a
// keeping kept[gid] channels (missing groups keep all). a may be nil when
// kept is empty: the traced shapes are then used as they are.
func Count(g *ir.Graph, a *graph.Analysis, kept map[int]int) (Result, error) {
	return count(g, a, kept, nil, false)
}

// MACs is Count's MACs alone: what a search asks for every keep vector it
// tries (a densenet121's one-shot prune counts 50 of them), without the
// layer list and parameter total, which were most of the Go heap such a
// prune allocated.
func MACs(g *ir.Graph, a *graph.Analysis, kept map[int]int) (int64, error) {
	r, err := count(g, a, kept, nil, true)
	return r.MACs, err
}

// count is Count calling visit, when not nil, with every conv and linear
// layer and the parameter its weight is ("" when the weight is computed);
// macsOnly leaves out the layers and the parameter total.
func count(g *ir.Graph, a *graph.Analysis, kept map[int]int, visit func(l Layer, weight string), macsOnly bool) (Result, error) {
	if g == nil {
		return Result{}, errors.New("flops: nil graph")
	}
	if a == nil && len(kept) > 0 {
		return Result{}, errors.New("flops: counting kept channels needs the channel analysis")
	}
	if len(g.Values) > 0 && g.Value(g.Values[0].ID) == nil {
		if err := g.Index(); err != nil {
			return Result{}, fmt.Errorf("flops: %w", err)
		}
	}
	c := &counter{g: g, a: a, kept: kept}
	res := Result{Layers: []Layer{}}
	live := liveOps(g)
	for i := range g.Ops {
		op := &g.Ops[i]
		if !live[i] {
			// Computed from parameters alone (weight standardisation's
			// batch_norm over a filter): the same for every input, and no
			// layer ptflops counts.
			continue
		}
		l, ok, err := c.op(op)
		if err != nil {
			return Result{}, fmt.Errorf("flops: op %d (%s): %w", i, op.Kind, err)
		}
		if !ok {
			continue
		}
		if macsOnly {
			if res.MACs, err = add(res.MACs, l.MACs); err != nil {
				return Result{}, fmt.Errorf("flops: total: %w", err)
			}
			continue
		}
		l.Name = op.Scope
		if l.Name == "" {
			l.Name = fmt.Sprintf("%s#%d", l.Kind, i)
		}
		if res.MACs, err = add(res.MACs, l.MACs); err != nil {
			return Result{}, fmt.Errorf("flops: total: %w", err)
		}
		res.Layers = append(res.Layers, l)
		if visit != nil && (l.Kind == "conv" || l.Kind == "linear") {
			visit(l, c.weightOf(op))
		}
	}
	if macsOnly {
		return res, nil
	}
	total, err := c.totalParams()
	if err != nil {
		return Result{}, fmt.Errorf("flops: params: %w", err)
	}
	res.Params = total
	return res, nil
}

// liveOps marks the ops that read, through any chain, the model input.
func liveOps(g *ir.Graph) []bool {
	out := make([]bool, len(g.Ops))
	// Value ids index a slice where they are dense enough (every traced
	// graph); a hand-made graph with odd ids gets a map.
	hi := 0
	ok := true
	note := func(id int) {
		if id < 0 {
			ok = false
		}
		hi = max(hi, id)
	}
	for _, id := range g.Inputs {
		note(id)
	}
	for i := range g.Ops {
		for _, id := range g.Ops[i].Outputs {
			note(id)
		}
		for _, id := range g.Ops[i].Inputs {
			note(id)
		}
	}
	if ok && hi <= 4*len(g.Values)+1024 {
		vals := make([]bool, hi+1)
		markLive(g, out, func(id int) bool { return vals[id] }, func(id int) { vals[id] = true })
		return out
	}
	vals := make(map[int]bool, len(g.Values))
	markLive(g, out, func(id int) bool { return vals[id] }, func(id int) { vals[id] = true })
	return out
}

func markLive(g *ir.Graph, out []bool, live func(int) bool, set func(int)) {
	for _, id := range g.Inputs {
		set(id)
	}
	for i := range g.Ops {
		for _, in := range g.Ops[i].Inputs {
			if live(in) {
				out[i] = true
				break
			}
		}
		if out[i] {
			for _, o := range g.Ops[i].Outputs {
				set(o)
			}
		}
	}
}

// totalParams counts every declared parameter. Graphs without a params
// table fall back to the parameters the forward reads, telling buffers
// apart by BatchNorm's naming.
func (c *counter) totalParams() (int64, error) {
	var names []string
	if len(c.g.Params) > 0 {
		for n, p := range c.g.Params {
			if !p.Buffer {
				names = append(names, n)
			}
		}
	} else {
		for _, v := range c.g.Values {
			n := v.Param
			if n == "" || slices.Contains(names, n) || strings.HasSuffix(n, "running_mean") ||
				strings.HasSuffix(n, "running_var") || strings.HasSuffix(n, "num_batches_tracked") {
				continue
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return c.params(names...)
}

// op counts one op; ok is false for ops ptflops does not count.
func (c *counter) op(op *ir.Op) (Layer, bool, error) {
	// Traces spell ops "aten::conv2d"; hand-made graphs may leave the
	// namespace out.
	info := ops.Lookup(ops.Aten(op.Kind))
	if len(op.Outputs) == 0 || len(op.Inputs) == 0 {
		return Layer{}, false, nil
	}
	out := op.Outputs[0]
	switch info.Cost {
	case ops.ConvCost:
		return c.conv(op, out)
	case ops.LinearCost:
		return c.linear(in(op, 0), out, c.weightOf(op), in(op, 2))
	case ops.AddmmCost:
		return c.linear(in(op, 1), out, c.weightParam(in(op, 2)), in(op, 0))
	case ops.MatmulCost:
		w := c.weightParam(in(op, 1))
		if w == "" {
			return Layer{}, false, nil // activation product: not a module in ptflops
		}
		return c.linear(in(op, 0), out, w, math.MinInt)
	case ops.NormCost, ops.GroupNormCost:
		x, w, b := in(op, 0), in(op, 1), in(op, 2)
		if info.Cost == ops.GroupNormCost {
			w, b = in(op, 2), in(op, 3)
		}
		s, err := c.shape(x)
		if err != nil {
			return Layer{}, false, err
		}
		macs, err := numel(s)
		if err != nil {
			return Layer{}, false, err
		}
		if c.present(w) { // affine
			if macs, err = mul(macs, 2); err != nil {
				return Layer{}, false, err
			}
		}
		p, err := c.params(c.paramName(w), c.paramName(b))
		if err != nil {
			return Layer{}, false, err
		}
		return Layer{Kind: info.Layer, MACs: macs, Params: p}, true, nil
	case ops.ActCost:
		s, err := c.shape(out)
		if err != nil {
			return Layer{}, false, err
		}
		macs, err := numel(s)
		if err != nil {
			return Layer{}, false, err
		}
		var p int64
		if info.Layer == "prelu" {
			if p, err = c.params(c.paramOf(op, 1)); err != nil {
				return Layer{}, false, err
			}
		}
		return Layer{Kind: info.Layer, MACs: macs, Params: p}, true, nil
	case ops.PoolCost:
		s, err := c.shape(in(op, 0))
		if err != nil {
			return Layer{}, false, err
		}
		macs, err := numel(s)
		return Layer{Kind: info.Layer, MACs: macs}, err == nil, err
	case ops.UpsampleCost:
		s, err := c.shape(out)
		if err != nil {
			return Layer{}, false, err
		}
		macs, err := numel(s)
		return Layer{Kind: info.Layer, MACs: macs}, err == nil, err
	}
	return Layer{}, false, nil
}

// weightSource is the parameter weight value id reads, or for a weight
// that forward computes from one (weight normalisation, standardisation),
// the one the analysis found it has the shape of and is pruned with.
func (c *counter) weightSource(id int) string {
	if p := c.paramName(id); p != "" {
		return p
	}
	if c.a != nil {
		if p := c.a.WeightSource(id); p != "" {
			return p
		}
	}
	return c.shapedSource(id)
}

// shapedSource finds, without the channel analysis, the one parameter with
// the shape of computed weight id among those it is computed from (weight
// normalisation's v, a standardised weight's raw one); "" if none or
// several.
func (c *counter) shapedSource(id int) string {
	v := c.value(id)
	if v == nil || v.Kind != ir.KindTensor {
		return ""
	}
	found := ""
	seen := map[int]bool{}
	var walk func(id, depth int) bool
	walk = func(id, depth int) bool {
		if seen[id] || depth > 24 {
			return true
		}
		seen[id] = true
		u := c.value(id)
		if u == nil {
			return true
		}
		if u.Param != "" {
			if ps, err := c.paramShape(u.Param); err == nil && slices.Equal(ps, v.Shape) {
				if found != "" && found != u.Param {
					return false
				}
				found = u.Param
			}
			return true
		}
		p := c.g.Producer(id)
		if p < 0 {
			return true
		}
		for _, in := range c.g.Ops[p].Inputs {
			if !walk(in, depth+1) {
				return false
			}
		}
		return true
	}
	if !walk(id, 0) {
		return ""
	}
	return found
}

// weightOf is the parameter a conv or linear op reads as its weight, as op
// finds it ("" when the weight is computed).
func (c *counter) weightOf(op *ir.Op) string {
	switch ops.Lookup(ops.Aten(op.Kind)).Cost {
	case ops.ConvCost, ops.LinearCost:
		return c.weightSource(in(op, 1))
	case ops.AddmmCost:
		return c.weightParam(in(op, 2))
	case ops.MatmulCost:
		return c.weightParam(in(op, 1))
	}
	return ""
}

func (c *counter) conv(op *ir.Op, out int) (Layer, bool, error) {
	w := c.weightSource(in(op, 1))
	var ws []int64
	var err error
	if w != "" {
		ws, err = c.paramShape(w)
	} else {
		ws, err = c.shape(in(op, 1))
	}
	if err != nil {
		return Layer{}, false, err
	}
	xs, err := c.shape(in(op, 0))
	if err != nil {
		return Layer{}, false, err
	}
	os, err := c.shape(out)
	if err != nil {
		return Layer{}, false, err
	}
	if len(xs) < 3 || len(os) < 3 {
		return Layer{}, false, fmt.Errorf("conv shapes %v -> %v", xs, os)
	}
	active, err := mul(append([]int64{xs[0]}, os[2:]...)...)
	if err != nil {
		return Layer{}, false, err
	}
	kw, err := numel(ws)
	if err != nil {
		return Layer{}, false, err
	}
	macs, err := mul(active, kw)
	if err != nil {
		return Layer{}, false, err
	}
	b := ""
	if c.present(in(op, 2)) {
		bias, err := mul(os[1], active)
		if err != nil {
			return Layer{}, false, err
		}
		if macs, err = add(macs, bias); err != nil {
			return Layer{}, false, err
		}
		b = c.paramOf(op, 2)
	}
	p, err := c.params(w, b)
	if err != nil {
		return Layer{}, false, err
	}
	return Layer{Kind: "conv", MACs: macs, Params: p}, true, nil
}

// linear is the nn.Linear rule: (in·out + out with bias)·∏leading dims.
func (c *counter) linear(x, out int, w string, bias int) (Layer, bool, error) {
	xs, err := c.shape(x)
	if err != nil {
		return Layer{}, false, err
	}
	os, err := c.shape(out)
	if err != nil {
		return Layer{}, false, err
	}
	if len(xs) == 0 || len(os) == 0 {
		return Layer{}, false, fmt.Errorf("linear shapes %v -> %v", xs, os)
	}
	inF, outF := xs[len(xs)-1], os[len(os)-1]
	per, err := mul(inF, outF)
	if err != nil {
		return Layer{}, false, err
	}
	b := ""
	if bias != math.MinInt && c.present(bias) {
		if per, err = add(per, outF); err != nil {
			return Layer{}, false, err
		}
		b = c.paramName(bias)
	}
	macs, err := mul(append([]int64{per}, xs[:len(xs)-1]...)...)
	if err != nil {
		return Layer{}, false, err
	}
	p, err := c.params(w, b)
	if err != nil {
		return Layer{}, false, err
	}
	return Layer{Kind: "linear", MACs: macs, Params: p}, true, nil
}
