// Package irtest builds small ir.Graphs by hand for tests, in the shape the
// exporter writes them: parameters are values with a Param name and no
// shape (the shape lives in Graph.Params), int lists are prim::ListConstruct
// ops over constants, and every op records concrete output shapes.
package irtest

import (
	"fmt"
	"slices"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// Builder accumulates a graph. Methods that compute shapes record the first
// inconsistency and Build reports it.
type Builder struct {
	g    ir.Graph
	next int
	err  error
}

// New starts an empty graph.
func New() *Builder {
	return &Builder{g: ir.Graph{Format: ir.Format, Params: map[string]ir.Param{}}}
}

func (b *Builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(format, args...)
	}
}

// Value adds a value and returns its id (v.ID is overwritten).
func (b *Builder) Value(v ir.Value) int {
	v.ID = b.next
	b.next++
	b.g.Values = append(b.g.Values, v)
	return v.ID
}

func (b *Builder) val(id int) *ir.Value {
	for i := range b.g.Values {
		if b.g.Values[i].ID == id {
			return &b.g.Values[i]
		}
	}
	return nil
}

// Shape returns the recorded shape of a value (the declared one for
// parameters).
func (b *Builder) Shape(id int) []int64 {
	v := b.val(id)
	if v == nil {
		b.fail("irtest: unknown value %d", id)
		return nil
	}
	if v.Param != "" {
		return b.g.Params[v.Param].Shape
	}
	return v.Shape
}

// Tensor adds a bare tensor value with the given shape.
func (b *Builder) Tensor(shape ...int64) int {
	return b.Value(ir.Value{Kind: ir.KindTensor, Shape: shape, DType: "float"})
}

// Input adds a model input.
func (b *Builder) Input(shape ...int64) int {
	id := b.Tensor(shape...)
	b.g.Inputs = append(b.g.Inputs, id)
	return id
}

// Output marks model outputs.
func (b *Builder) Output(ids ...int) { b.g.Outputs = append(b.g.Outputs, ids...) }

// Param reads a parameter (registered on first use).
func (b *Builder) Param(name string, shape ...int64) int {
	if _, ok := b.g.Params[name]; !ok {
		b.g.Params[name] = ir.Param{Shape: shape}
	}
	return b.Value(ir.Value{Kind: ir.KindTensor, Param: name})
}

// Buffer reads a buffer (running stats).
func (b *Builder) Buffer(name string, shape ...int64) int {
	if _, ok := b.g.Params[name]; !ok {
		b.g.Params[name] = ir.Param{Shape: shape, Buffer: true}
	}
	return b.Value(ir.Value{Kind: ir.KindTensor, Param: name})
}

// Int adds a constant int.
func (b *Builder) Int(v int64) int {
	return b.Value(ir.Value{Kind: ir.KindInt, Const: true, Int: v})
}

// Bool adds a constant bool.
func (b *Builder) Bool(v bool) int {
	return b.Value(ir.Value{Kind: ir.KindBool, Const: true, Bool: v})
}

// Float adds a constant float.
func (b *Builder) Float(v float64) int {
	return b.Value(ir.Value{Kind: ir.KindFloat, Const: true, Float: v})
}

// None adds a None constant.
func (b *Builder) None() int { return b.Value(ir.Value{Kind: ir.KindNone, Const: true}) }

// IntList builds an int[] with prim::ListConstruct over constants, the
// way traced graphs spell stride, padding and sizes.
func (b *Builder) IntList(vs ...int64) int {
	ins := make([]int, len(vs))
	for i, v := range vs {
		ins[i] = b.Int(v)
	}
	return b.OpValues("prim::ListConstruct", "", ins, ir.Value{Kind: ir.KindIntList})[0]
}

// List builds a tensor[] with prim::ListConstruct.
func (b *Builder) List(xs ...int) int {
	return b.OpValues("prim::ListConstruct", "", xs, ir.Value{Kind: ir.KindTensorList})[0]
}

// OpValues adds an op whose outputs are the given values.
func (b *Builder) OpValues(kind, scope string, inputs []int, outs ...ir.Value) []int {
	ids := make([]int, len(outs))
	for i, o := range outs {
		ids[i] = b.Value(o)
	}
	b.g.Ops = append(b.g.Ops, ir.Op{Kind: kind, Inputs: inputs, Outputs: ids, Scope: scope})
	return ids
}

// Sited gives the op that produced value id the site the trace stamps on
// views and reshapes it found in the code (ir.Op.Site), and returns id.
func (b *Builder) Sited(id int, site string) int {
	for i := range b.g.Ops {
		if slices.Contains(b.g.Ops[i].Outputs, id) {
			b.g.Ops[i].Site = site
			return id
		}
	}
	b.fail("irtest: no op produces value %d", id)
	return id
}

// Op adds an op with tensor outputs of the given shapes and returns their ids.
func (b *Builder) Op(kind, scope string, inputs []int, outShapes ...[]int64) []int {
	outs := make([]ir.Value, len(outShapes))
	for i, s := range outShapes {
		outs[i] = ir.Value{Kind: ir.KindTensor, Shape: s, DType: "float"}
	}
	return b.OpValues(kind, scope, inputs, outs...)
}

// Op1 is Op with a single tensor output.
func (b *Builder) Op1(kind, scope string, inputs []int, outShape []int64) int {
	return b.Op(kind, scope, inputs, outShape)[0]
}

// ConvOpts are the optional arguments of Conv.
type ConvOpts struct {
	Stride, Pad, Groups int64
	Bias                bool
	// Func emits aten::conv2d instead of aten::_convolution.
	Func bool
	// Same emits aten::_convolution_mode with padding "same" (stride 1,
	// the input's size out), as a conv with a string padding traces.
	Same bool
	// WeightNorm reads the weight through weight normalisation,
	// aten::_weight_norm(name.weight_v, name.weight_g, 0).
	WeightNorm bool
	// Std standardises each filter of name.weight in forward: "bn" as
	// timm's StdConv2d (reshape to [1, cout, -1] with cout written in,
	// batch_norm in training mode, reshape_as back), "gain" the same with
	// a per-filter name.gain [cout, 1, 1, 1] as batch_norm's weight
	// (ScaledStdConv2d), "var_mean" as BiT's own ((w - mean) / sqrt(var
	// + eps) from aten::var_mean).
	Std string
}

// standardise computes a standardised copy of weight p (see ConvOpts.Std).
func (b *Builder) standardise(p int, name, how string) int {
	W := b.Shape(p)
	rest := int64(1)
	for _, d := range W[1:] {
		rest *= d
	}
	if how == "var_mean" {
		stat := make([]int64, len(W)) // [cout, 1, 1, 1]
		for i := range stat {
			stat[i] = 1
		}
		stat[0] = W[0]
		vm := b.Op("aten::var_mean", name, []int{p, b.IntList(1, 2, 3), b.Bool(false), b.Bool(true)}, stat, stat)
		c := b.Op1("aten::sub", name, []int{p, vm[1], b.Int(1)}, W)
		d := b.Op1("aten::sqrt", name, []int{b.Op1("aten::add", name, []int{vm[0], b.Float(1e-10), b.Int(1)}, stat)}, stat)
		return b.Op1("aten::div", name, []int{c, d}, W)
	}
	flat := []int64{1, W[0], rest}
	x := b.Op1("aten::reshape", name, []int{p, b.IntList(1, W[0], -1)}, flat)
	gain := b.None()
	if how == "gain" {
		g := b.Param(name+".gain", W[0], 1, 1, 1)
		gain = b.Op1("aten::view", name, []int{b.Op1("aten::mul", name, []int{g, b.Float(0.5)}, []int64{W[0], 1, 1, 1}), b.IntList(-1)}, []int64{W[0]})
	}
	x = b.Op1("aten::batch_norm", name, []int{x, gain, b.None(), b.None(), b.None(), b.Bool(true), b.Float(0), b.Float(1e-6), b.Bool(true)}, flat)
	return b.Op1("aten::reshape_as", name, []int{x, p}, W)
}

// Conv adds a square 2-D convolution reading parameter name+".weight"
// (and ".bias") with cout filters of size k.
func (b *Builder) Conv(x int, name string, cout, k int64, o ConvOpts) int {
	s := b.Shape(x)
	if len(s) != 4 {
		b.fail("irtest: conv %s on shape %v", name, s)
		return x
	}
	if o.Stride == 0 {
		o.Stride = 1
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	var w int
	if o.WeightNorm {
		v := b.Param(name+".weight_v", cout, s[1]/o.Groups, k, k)
		g := b.Param(name+".weight_g", cout, 1, 1, 1)
		w = b.Op1("aten::_weight_norm", name, []int{v, g, b.Int(0)}, []int64{cout, s[1] / o.Groups, k, k})
	} else {
		w = b.Param(name+".weight", cout, s[1]/o.Groups, k, k)
		if o.Std != "" {
			w = b.standardise(w, name, o.Std)
		}
	}
	bias := b.None()
	if o.Bias {
		bias = b.Param(name+".bias", cout)
	}
	oh := (s[2]+2*o.Pad-k)/o.Stride + 1
	ow := (s[3]+2*o.Pad-k)/o.Stride + 1
	out := []int64{s[0], cout, oh, ow}
	st, pd, dl := b.IntList(o.Stride, o.Stride), b.IntList(o.Pad, o.Pad), b.IntList(1, 1)
	if o.Same {
		same := b.Value(ir.Value{Kind: ir.KindString, Const: true, Str: "same"})
		return b.Op1("aten::_convolution_mode", name, []int{x, w, bias, st, same, dl, b.Int(o.Groups)},
			[]int64{s[0], cout, s[2], s[3]})
	}
	if o.Func {
		return b.Op1("aten::conv2d", name, []int{x, w, bias, st, pd, dl, b.Int(o.Groups)}, out)
	}
	ins := []int{x, w, bias, st, pd, dl, b.Bool(false), b.IntList(0, 0), b.Int(o.Groups),
		b.Bool(false), b.Bool(false), b.Bool(true), b.Bool(true)}
	return b.Op1("aten::_convolution", name, ins, out)
}

// BN adds aten::batch_norm with affine parameters and running stats.
func (b *Builder) BN(x int, name string) int {
	s := b.Shape(x)
	if len(s) < 2 {
		b.fail("irtest: bn %s on shape %v", name, s)
		return x
	}
	c := s[1]
	ins := []int{x, b.Param(name+".weight", c), b.Param(name+".bias", c),
		b.Buffer(name+".running_mean", c), b.Buffer(name+".running_var", c),
		b.Bool(false), b.Float(0.1), b.Float(1e-5), b.Bool(true)}
	return b.Op1("aten::batch_norm", name, ins, s)
}

// Act adds a shape-preserving op (aten::relu_, aten::sigmoid, ...) with
// extra inputs appended after x.
func (b *Builder) Act(kind string, x int, extra ...int) int {
	return b.Op1(kind, "", append([]int{x}, extra...), b.Shape(x))
}

// Relu adds aten::relu_.
func (b *Builder) Relu(x int) int { return b.Act("aten::relu_", x) }

// MaxPool adds aten::max_pool2d with kernel k and stride s.
func (b *Builder) MaxPool(x int, k, st int64) int {
	s := b.Shape(x)
	out := []int64{s[0], s[1], (s[2]-k)/st + 1, (s[3]-k)/st + 1}
	return b.Op1("aten::max_pool2d", "", []int{x, b.IntList(k, k), b.IntList(st, st),
		b.IntList(0, 0), b.IntList(1, 1), b.Bool(false)}, out)
}

// AdaptiveAvgPool adds aten::adaptive_avg_pool2d to oh x ow.
func (b *Builder) AdaptiveAvgPool(x int, oh, ow int64) int {
	s := b.Shape(x)
	return b.Op1("aten::adaptive_avg_pool2d", "", []int{x, b.IntList(oh, ow)},
		[]int64{s[0], s[1], oh, ow})
}

func broadcast(x, y []int64) ([]int64, bool) {
	n := max(len(x), len(y))
	out := make([]int64, n)
	for i := range n {
		dx, dy := int64(1), int64(1)
		if j := i - (n - len(x)); j >= 0 {
			dx = x[j]
		}
		if j := i - (n - len(y)); j >= 0 {
			dy = y[j]
		}
		switch {
		case dx == dy || dy == 1:
			out[i] = dx
		case dx == 1:
			out[i] = dy
		default:
			return nil, false
		}
	}
	return out, true
}

// Binary adds a broadcasting binary op (aten::add, aten::mul_, ...); add
// and sub get the alpha constant the tracer records.
func (b *Builder) Binary(kind string, x, y int) int {
	out, ok := broadcast(b.Shape(x), b.Shape(y))
	if !ok {
		b.fail("irtest: %s of %v and %v", kind, b.Shape(x), b.Shape(y))
		return x
	}
	ins := []int{x, y}
	switch kind {
	case "aten::add", "aten::add_", "aten::sub", "aten::sub_":
		ins = append(ins, b.Int(1))
	}
	return b.Op1(kind, "", ins, out)
}

// Add adds aten::add_ (residual connections).
func (b *Builder) Add(x, y int) int { return b.Binary("aten::add_", x, y) }

// Mul adds aten::mul.
func (b *Builder) Mul(x, y int) int { return b.Binary("aten::mul", x, y) }

// Cat adds aten::cat of xs along dim.
func (b *Builder) Cat(dim int64, xs ...int) int {
	s := append([]int64(nil), b.Shape(xs[0])...)
	d := dim
	if d < 0 {
		d += int64(len(s))
	}
	for _, x := range xs[1:] {
		s[d] += b.Shape(x)[d]
	}
	return b.Op1("aten::cat", "", []int{b.List(xs...), b.Int(dim)}, s)
}

// Flatten adds aten::flatten(x, start, -1).
func (b *Builder) Flatten(x int, start int64) int {
	s := b.Shape(x)
	out := append([]int64(nil), s[:start]...)
	n := int64(1)
	for _, d := range s[start:] {
		n *= d
	}
	return b.Op1("aten::flatten", "", []int{x, b.Int(start), b.Int(-1)}, append(out, n))
}

// View adds aten::view with a constant size list (one entry may be -1).
func (b *Builder) View(x int, shape ...int64) int {
	return b.Reshape("aten::view", x, b.IntList(shape...), shape...)
}

// Reshape adds a view-like op with the given size-list value; shape may
// hold one -1, resolved from x's element count.
func (b *Builder) Reshape(kind string, x, sizes int, shape ...int64) int {
	n := int64(1)
	for _, d := range b.Shape(x) {
		n *= d
	}
	out := append([]int64(nil), shape...)
	known, neg := int64(1), -1
	for i, d := range out {
		if d == -1 {
			neg = i
		} else {
			known *= d
		}
	}
	if neg >= 0 && known > 0 {
		out[neg] = n / known
	}
	return b.Op1(kind, "", []int{x, sizes}, out)
}

// Linear adds aten::linear reading name+".weight" [out, in] (and ".bias").
func (b *Builder) Linear(x int, name string, out int64, bias bool) int {
	s := b.Shape(x)
	w := b.Param(name+".weight", out, s[len(s)-1])
	bv := b.None()
	if bias {
		bv = b.Param(name+".bias", out)
	}
	os := append(append([]int64(nil), s[:len(s)-1]...), out)
	return b.Op1("aten::linear", name, []int{x, w, bv}, os)
}

// Addmm adds the pre-1.x spelling of a linear layer: addmm(bias, x, w.t()).
func (b *Builder) Addmm(x int, name string, out int64) int {
	s := b.Shape(x)
	w := b.Param(name+".weight", out, s[1])
	wt := b.Op1("aten::t", name, []int{w}, []int64{s[1], out})
	return b.Op1("aten::addmm", name, []int{b.Param(name+".bias", out), x, wt, b.Int(1), b.Int(1)},
		[]int64{s[0], out})
}

// Chunk adds aten::chunk(x, n, dim) + prim::ListUnpack and returns the pieces.
func (b *Builder) Chunk(x int, n, dim int64) []int {
	s := b.Shape(x)
	list := b.OpValues("aten::chunk", "", []int{x, b.Int(n), b.Int(dim)}, ir.Value{Kind: ir.KindTensorList})[0]
	p := append([]int64(nil), s...)
	p[dim] /= n
	shapes := make([][]int64, n)
	for i := range shapes {
		shapes[i] = p
	}
	return b.Op("prim::ListUnpack", "", []int{list}, shapes...)
}

// Transpose adds aten::transpose(x, d0, d1).
func (b *Builder) Transpose(x int, d0, d1 int64) int {
	s := append([]int64(nil), b.Shape(x)...)
	s[d0], s[d1] = s[d1], s[d0]
	return b.Op1("aten::transpose", "", []int{x, b.Int(d0), b.Int(d1)}, s)
}

// Permute adds aten::permute(x, perm).
func (b *Builder) Permute(x int, perm ...int64) int {
	s := b.Shape(x)
	out := make([]int64, len(perm))
	for i, p := range perm {
		out[i] = s[p]
	}
	return b.Op1("aten::permute", "", []int{x, b.IntList(perm...)}, out)
}

// Bmm adds aten::bmm(x, y) of [B, n, k] and [B, k, m].
func (b *Builder) Bmm(x, y int) int {
	s, t := b.Shape(x), b.Shape(y)
	return b.Op1("aten::bmm", "", []int{x, y}, []int64{s[0], s[1], t[2]})
}

// Einsum adds aten::einsum(eq, [xs...], None) with the given output shape.
func (b *Builder) Einsum(eq string, out []int64, xs ...int) int {
	e := b.Value(ir.Value{Kind: ir.KindString, Const: true, Str: eq})
	return b.Op1("aten::einsum", "", []int{e, b.List(xs...), b.None()}, out)
}

// Build indexes and returns the graph.
func (b *Builder) Build() (*ir.Graph, error) {
	if b.err != nil {
		return nil, b.err
	}
	g := b.g
	if err := g.Index(); err != nil {
		return nil, fmt.Errorf("irtest: %w", err)
	}
	return &g, nil
}
