package graph

import (
	"fmt"
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// bytesReader hands out small choices from fuzz input, zero when exhausted.
type bytesReader struct {
	b []byte
	i int
}

func (r *bytesReader) byte() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *bytesReader) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.byte()) % n
}

func (r *bytesReader) done() bool { return r.i >= len(r.b) }

// rawKinds are op kinds the generator wires to arbitrary inputs and output
// shapes, to reach every handler with malformed arguments.
var rawKinds = []string{
	"aten::_convolution", "aten::conv2d", "aten::conv_transpose2d", "aten::linear", "aten::addmm",
	"aten::matmul", "aten::batch_norm", "aten::layer_norm", "aten::group_norm", "aten::prelu",
	"aten::cat", "aten::chunk", "aten::split", "prim::ListUnpack", "prim::TupleUnpack",
	"aten::__getitem__", "prim::ListConstruct", "prim::TupleConstruct", "aten::size", "aten::slice",
	"aten::narrow", "aten::select", "aten::view", "aten::reshape", "aten::flatten", "aten::view_as",
	"aten::expand", "aten::expand_as", "aten::transpose", "aten::permute", "aten::t", "aten::mean",
	"aten::sum", "aten::max", "aten::softmax", "aten::add", "aten::mul_", "aten::where", "aten::relu",
	"aten::clamp", "aten::to", "aten::upsample_nearest2d", "prim::ConstantChunk", "aten::frobnicate",
	"aten::unsqueeze", "aten::index_select", "aten::roll", "aten::flip", "aten::amax", "aten::argmax", "aten::Int",
	"aten::stack", "aten::glu", "aten::norm", "aten::linalg_vector_norm", "aten::pixel_shuffle",
	"aten::pixel_unshuffle", "aten::max_unpool2d", "aten::bmm", "aten::einsum",
}

// genGraph turns fuzz bytes into a small graph: mostly well-formed CNN
// pieces, with raw ops over arbitrary values mixed in.
func genGraph(data []byte) (*ir.Graph, error) {
	r := &bytesReader{b: data}
	b := irtest.New()
	x := b.Input(1, int64(1+r.intn(4)), 4, 4)
	acts := []int{x}
	all := []int{x}
	pick := func() int { return acts[r.intn(len(acts))] }
	add := func(ids ...int) {
		for _, id := range ids {
			acts = append(acts, id)
			all = append(all, id)
		}
	}
	layer := 0
	name := func() string { layer++; return fmt.Sprintf("l%d", layer) }
	for n := 0; n < 24 && !r.done(); n++ {
		y := pick()
		s := b.Shape(y)
		switch r.intn(27) {
		case 0, 1: // conv, maybe depthwise or grouped
			if len(s) != 4 || s[1] == 0 {
				continue
			}
			o := irtest.ConvOpts{Bias: r.intn(2) == 0, Pad: 1, Func: r.intn(3) == 0}
			switch r.intn(8) {
			case 0:
				o.WeightNorm = true
			case 1, 2:
				o.Std = []string{"bn", "gain", "var_mean"}[r.intn(3)]
			}
			cout := int64(1 + r.intn(8))
			switch r.intn(5) {
			case 0:
				o.Groups, cout = s[1], s[1]
			case 1:
				if s[1]%2 == 0 {
					o.Groups, cout = 2, 2*cout
				}
			case 2: // grouped, channel count kept (ResNeXt, RegNet)
				if g := int64(1 + r.intn(4)); s[1]%g == 0 {
					o.Groups, cout = g, s[1]
				}
			case 3: // grouped, channel count changed (whole conv groups)
				if g := int64(1 + r.intn(4)); s[1]%g == 0 {
					o.Groups, cout = g, g*int64(1+r.intn(3))
				}
			}
			add(b.Conv(y, name(), cout, 3, o))
		case 2:
			if len(s) >= 2 {
				add(b.BN(y, name()))
			}
		case 3:
			add(b.Relu(y))
		case 4, 5: // broadcasting binary op, possibly malformed
			z := pick()
			out, ok := broadcastShapes(s, b.Shape(z))
			if !ok {
				out = s
			}
			add(b.Op1([]string{"aten::add_", "aten::mul", "aten::sub"}[r.intn(3)], "", []int{y, z, b.Int(1)}, out))
		case 6: // cat of a few, along dim 1 or another
			xs := []int{y, pick()}
			if r.intn(2) == 0 {
				xs = append(xs, pick())
			}
			dim := int64(r.intn(3))
			if r.intn(3) == 0 && int(dim) < len(s) { // a constant, as CoordConv's planes
				cs := slices.Clone(s)
				cs[dim] = int64(1 + r.intn(3))
				xs = append(xs, b.Tensor(cs...))
			}
			out := slices.Clone(s)
			if int(dim) < len(out) {
				for _, e := range xs[1:] {
					if es := b.Shape(e); int(dim) < len(es) {
						out[dim] += es[dim]
					}
				}
			}
			add(b.Op1("aten::cat", "", []int{b.List(xs...), b.Int(dim)}, out))
		case 7:
			if len(s) >= 2 {
				add(b.Flatten(y, 1))
			}
		case 8:
			if len(s) >= 1 && s[len(s)-1] > 0 {
				add(b.Linear(y, name(), int64(1+r.intn(8)), r.intn(2) == 0))
			}
		case 9:
			if d := r.intn(4); d < len(s) && s[d] >= 2 {
				add(b.Chunk(y, 2, int64(d))...)
			}
		case 10: // reshape to something, maybe a channel split
			if len(s) == 4 && s[1]%2 == 0 {
				sh := [][]int64{{s[0], -1}, {s[0], 2, s[1] / 2, s[2], s[3]}, {s[0], s[1], s[2] * s[3]}, {-1, s[1] * s[2] * s[3]}}[r.intn(4)]
				add(b.View(y, sh...))
			}
		case 11:
			if len(s) >= 3 {
				add(b.Transpose(y, int64(r.intn(len(s))), int64(r.intn(len(s)))))
			}
		case 12:
			add(b.Op1("aten::frobnicate", "", []int{y}, s))
		case 13:
			if len(s) == 4 {
				add(b.AdaptiveAvgPool(y, 1, 1))
			}
		case 14:
			if len(s) == 4 {
				add(b.Op1("aten::mean", "", []int{y, b.IntList(2, 3), b.Bool(false), b.None()}, s[:2]))
			}
		case 15: // layer-scale parameter
			if len(s) == 4 {
				add(b.Mul(b.Param(name(), s[1], 1, 1), y))
			}
		case 16:
			if len(s) == 2 && s[1] > 0 {
				add(b.Addmm(y, name(), int64(1+r.intn(6))))
			}
		case 17: // slice along a dim
			if d := r.intn(4); d < len(s) && s[d] >= 2 {
				out := slices.Clone(s)
				out[d] = s[d] - int64(r.intn(2))
				add(b.Op1("aten::slice", "", []int{y, b.Int(int64(d)), b.Int(0), b.Int(out[d]), b.Int(1)}, out))
			}
		case 18: // sub-pixel conv's shuffle, or space to depth
			switch {
			case len(s) == 4 && s[1]%4 == 0 && s[1] > 0:
				add(b.Op1("aten::pixel_shuffle", "", []int{y, b.Int(2)}, []int64{s[0], s[1] / 4, 2 * s[2], 2 * s[3]}))
			case len(s) == 4 && s[2]%2 == 0 && s[3]%2 == 0:
				add(b.Op1("aten::pixel_unshuffle", "", []int{y, b.Int(2)}, []int64{s[0], 4 * s[1], s[2] / 2, s[3] / 2}))
			}
		case 19: // gated linear unit, along the channels or another dim
			if d := r.intn(4); d < len(s) && s[d]%2 == 0 && s[d] > 0 {
				out := slices.Clone(s)
				out[d] /= 2
				add(b.Op1("aten::glu", "", []int{y, b.Int(int64(d))}, out))
			}
		case 20: // stack with itself or an activation of the same shape
			z := pick()
			if !slices.Equal(b.Shape(z), s) {
				z = y
			}
			d := r.intn(len(s) + 1)
			out := slices.Insert(slices.Clone(s), d, 2)
			add(b.Op1("aten::stack", "", []int{b.List(y, z), b.Int(int64(d))}, out))
		case 21: // F.normalize along a dim
			if d := r.intn(4); d < len(s) {
				out := slices.Clone(s)
				out[d] = 1
				n := b.Op1("aten::norm", "", []int{y, b.Float(float64(r.intn(3)) - 0.5), b.IntList(int64(d)), b.Bool(true)}, out)
				add(b.Binary("aten::div", y, n))
			}
		case 22: // max pool with indices, unpooled (SegNet)
			if len(s) == 4 && s[2]%2 == 0 && s[3]%2 == 0 && s[2] > 0 && s[3] > 0 {
				half := []int64{s[0], s[1], s[2] / 2, s[3] / 2}
				p := b.Op("aten::max_pool2d_with_indices", "", []int{y, b.IntList(2, 2), b.IntList(2, 2), b.IntList(0, 0),
					b.IntList(1, 1), b.Bool(false)}, half, half)
				add(p[0], b.Op1("aten::max_unpool2d", "", []int{p[0], p[1], b.IntList(s[2], s[3])}, s))
			}
		case 23, 24: // products of activations: matmul, bmm, einsum
			z := pick()
			if r.intn(2) == 0 && len(s) >= 2 {
				z = b.Transpose(y, int64(len(s)-2), int64(len(s)-1)) // y·yᵀ, an attention map
			}
			zs := b.Shape(z)
			if out, ok := matmulShape(s, zs); ok && r.intn(2) == 0 {
				kind := "aten::matmul"
				if len(s) == 3 && len(zs) == 3 && s[0] == zs[0] {
					kind = "aten::bmm"
				}
				add(b.Op1(kind, "", []int{y, z}, out))
			} else if eq, out, ok := genEinsum(r, s, zs); ok {
				add(b.Einsum(eq, out, y, z))
			}
		default: // raw op over arbitrary values with arbitrary outputs
			kind := rawKinds[r.intn(len(rawKinds))]
			var ins []int
			for range r.intn(4) {
				switch r.intn(4) {
				case 0:
					ins = append(ins, b.Int(int64(r.intn(7))-3))
				case 1:
					ins = append(ins, all[r.intn(len(all))])
				case 2:
					ins = append(ins, b.IntList(int64(r.intn(5))-1, int64(r.intn(5))-1))
				default:
					ins = append(ins, pick())
				}
			}
			if len(ins) == 0 {
				ins = []int{y}
			}
			var outs []ir.Value
			for range 1 + r.intn(2) {
				switch r.intn(4) {
				case 0:
					outs = append(outs, ir.Value{Kind: ir.KindTensorList})
				case 1:
					outs = append(outs, ir.Value{Kind: ir.KindInt})
				default:
					sh := make([]int64, r.intn(5))
					for i := range sh {
						sh[i] = int64(r.intn(9)) - 1 // -1 is malformed on purpose
					}
					if len(sh) > 1 && len(s) > 1 && r.intn(2) == 0 {
						sh[1] = s[1]
					}
					outs = append(outs, ir.Value{Kind: ir.KindTensor, Shape: sh})
				}
			}
			ids := b.OpValues(kind, "", ins, outs...)
			all = append(all, ids...)
			for i, o := range outs {
				if o.Kind == ir.KindTensor {
					acts = append(acts, ids[i])
				}
			}
		}
	}
	b.Output(acts[len(acts)-1])
	if r.intn(2) == 0 {
		b.Output(pick())
	}
	return b.Build()
}

// matmulShape is torch.matmul's output shape for operands of rank 2 or more.
func matmulShape(x, y []int64) ([]int64, bool) {
	if len(x) < 2 || len(y) < 2 || x[len(x)-1] != y[len(y)-2] {
		return nil, false
	}
	batch, ok := broadcastShapes(x[:len(x)-2], y[:len(y)-2])
	if !ok {
		return nil, false
	}
	return append(batch, x[len(x)-2], y[len(y)-1]), true
}

// genEinsum makes an equation over operands of shapes xs and ys: y's dims
// share x's letters where the sizes allow, or take their own; the output
// keeps a random subset of the letters, or is left implicit.
func genEinsum(r *bytesReader, xs, ys []int64) (string, []int64, bool) {
	if len(xs) > 6 || len(ys) > 6 {
		return "", nil, false
	}
	size := map[byte]int64{}
	var tx, ty, letters []byte
	for i, d := range xs {
		c := byte('a' + i)
		tx, letters, size[c] = append(tx, c), append(letters, c), d
	}
	for j, d := range ys {
		c := byte('p' + j)
		if i := r.intn(len(xs) + 1); i < len(xs) && !slices.Contains(ty, tx[i]) && (xs[i] == d || xs[i] == 1 || d == 1) {
			c = tx[i]
			size[c] = max(size[c], d)
		} else {
			letters, size[c] = append(letters, c), d
		}
		ty = append(ty, c)
	}
	eq := string(tx) + "," + string(ty)
	if r.intn(3) > 0 {
		var keep []byte
		for _, c := range letters {
			if r.intn(2) == 0 {
				keep = append(keep, c)
			}
		}
		if len(keep) > 1 && r.intn(2) == 0 {
			keep[0], keep[len(keep)-1] = keep[len(keep)-1], keep[0]
		}
		eq += "->" + string(keep)
	}
	spec, err := einsumSpec(eq, []int{len(xs), len(ys)})
	if err != nil {
		return "", nil, false
	}
	out := make([]int64, len(spec.out))
	for i, l := range spec.out {
		out[i] = size[byte(l)]
	}
	return eq, out, true
}

func broadcastShapes(x, y []int64) ([]int64, bool) {
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

func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 5, 2, 3, 0, 1, 4, 3, 6, 1, 0, 7, 8, 6})        // conv, bn, relu, ...
	f.Add([]byte{2, 1, 0, 3, 0, 2, 4, 1, 5, 0, 9, 2, 7, 3, 8, 6})     // depthwise, adds, chunk, linear
	f.Add([]byte{4, 0, 2, 6, 6, 0, 1, 13, 0, 7, 8, 4, 2})             // concat then pool
	f.Add([]byte{1, 0, 4, 10, 1, 11, 2, 3, 12, 19, 3, 2, 1, 0, 3, 4}) // views, transposes, raw ops
	f.Add([]byte{2, 0, 8, 15, 7, 16, 3, 17, 1, 1, 14, 1, 18, 20, 9, 1, 2, 2, 0, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := genGraph(data)
		if err != nil {
			return // the generator asked for something the builder refuses
		}
		a, err := Analyze(g)
		if err != nil {
			t.Fatalf("Analyze on an indexed graph: %v", err)
		}
		checkAnalysis(t, g, a)
	})
}

// TestGenerated runs the fuzz body over a deterministic sweep of inputs so
// that plain `go test` covers the generator too.
func TestGenerated(t *testing.T) {
	for seed := range 3000 {
		data := make([]byte, 40)
		x := uint32(seed*2654435761 + 1)
		for i := range data {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			data[i] = byte(x)
		}
		g, err := genGraph(data)
		if err != nil {
			continue
		}
		a, err := Analyze(g)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		checkAnalysis(t, g, a)
		if t.Failed() {
			t.Fatalf("seed %d (data %v):\n%s", seed, data, dump(a))
		}
	}
}
