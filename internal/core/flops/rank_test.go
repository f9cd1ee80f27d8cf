package flops

import (
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
)

// convN adds aten::_convolution over any number of spatial dims, the way
// a Conv1d/2d/3d or ConvTranspose1d/2d/3d module traces: a cubic kernel k,
// one stride and padding for every dim, output_padding for transposed ones.
func convN(b *irtest.Builder, x int, name string, cout, k, stride, pad, outPad, groups int64, transposed, bias bool) int {
	s := b.Shape(x)
	nd := len(s) - 2
	cin := s[1]
	w := []int64{cout, cin / groups}
	if transposed {
		// ConvTranspose weights are [C_in, C_out/groups, k...].
		w = []int64{cin, cout / groups}
	}
	out := []int64{s[0], cout}
	ks, st, pd, dl, op := make([]int64, nd), make([]int64, nd), make([]int64, nd), make([]int64, nd), make([]int64, nd)
	for i := range nd {
		ks[i], st[i], pd[i], dl[i], op[i] = k, stride, pad, 1, outPad
		in := s[2+i]
		if transposed {
			out = append(out, (in-1)*stride-2*pad+k+outPad)
		} else {
			out = append(out, (in+2*pad-k)/stride+1)
		}
	}
	wv := b.Param(name+".weight", append(w, ks...)...)
	bv := b.None()
	if bias {
		bv = b.Param(name+".bias", cout)
	}
	return b.Op1("aten::_convolution", name, []int{x, wv, bv, b.IntList(st...), b.IntList(pd...), b.IntList(dl...),
		b.Bool(transposed), b.IntList(op...), b.Int(groups), b.Bool(false), b.Bool(false), b.Bool(true), b.Bool(true)}, out)
}

// norm adds aten::instance_norm or aten::batch_norm on x, affine or not.
func norm(b *irtest.Builder, kind string, x int, name string, affine bool) int {
	c := b.Shape(x)[1]
	w, bias := b.None(), b.None()
	if affine {
		w, bias = b.Param(name+".weight", c), b.Param(name+".bias", c)
	}
	rm, rv := b.None(), b.None()
	if kind == "aten::batch_norm" {
		rm, rv = b.Buffer(name+".running_mean", c), b.Buffer(name+".running_var", c)
	}
	return b.Op1(kind, name, []int{x, w, bias, rm, rv, b.Bool(kind == "aten::instance_norm"), b.Float(0.1),
		b.Float(1e-5), b.Bool(true)}, b.Shape(x))
}

// TestFormulasAnyRank checks every counted kind on the ranks other than
// [N,C,H,W] against ptflops' formulas written out by hand (the numbers
// scripts/flopcount.py gives for the same modules).
func TestFormulasAnyRank(t *testing.T) {
	for _, tc := range []struct {
		name      string
		build     func(b *irtest.Builder)
		kind      string
		macs, par int64
	}{
		{"conv1d", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(2, 4, 64), "c", 8, 5, 1, 2, 0, 1, false, true))
		}, "conv", 2*64*(8*4*5) + 2*8*64, 8*4*5 + 8},
		{"conv1d functional", func(b *irtest.Builder) {
			x := b.Input(1, 4, 16)
			w := b.Param("c.weight", 6, 4, 3)
			b.Output(b.Op1("aten::conv1d", "c", []int{x, w, b.None(), b.IntList(1), b.IntList(0), b.IntList(1), b.Int(1)},
				[]int64{1, 6, 14}))
		}, "conv", 14 * 6 * 4 * 3, 6 * 4 * 3},
		{"conv3d stride", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(1, 3, 4, 8, 8), "c", 16, 3, 2, 1, 0, 1, false, false))
		}, "conv", (2 * 4 * 4) * 16 * 3 * 27, 16 * 3 * 27},
		{"conv3d grouped", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(1, 8, 2, 4, 4), "c", 8, 1, 1, 0, 0, 4, false, false))
		}, "conv", 32 * 8 * 2, 8 * 2},
		// Transposed convs count per OUTPUT position (ptflops' conv hook):
		// numel(weight) = C_in·C_out/groups·∏k.
		{"conv_transpose1d", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(1, 32, 64), "up", 24, 4, 2, 1, 0, 1, true, true))
		}, "conv", 128*(32*24*4) + 24*128, 32*24*4 + 24},
		{"conv_transpose2d output_padding", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(2, 24, 16, 16), "d", 16, 3, 2, 1, 1, 1, true, false))
		}, "conv", 2 * 32 * 32 * (24 * 16 * 9), 24 * 16 * 9},
		{"conv_transpose2d functional", func(b *irtest.Builder) {
			x := b.Input(1, 8, 4, 4)
			w := b.Param("d.weight", 8, 4, 2, 2)
			b.Output(b.Op1("aten::conv_transpose2d", "d", []int{x, w, b.Param("d.bias", 4), b.IntList(2, 2),
				b.IntList(0, 0), b.IntList(0, 0), b.Int(1), b.IntList(1, 1)}, []int64{1, 4, 8, 8}))
		}, "conv", 64*(8*4*4) + 4*64, 8*4*4 + 4},
		{"conv_transpose3d grouped", func(b *irtest.Builder) {
			b.Output(convN(b, b.Input(1, 8, 2, 2, 2), "d", 12, 2, 2, 0, 0, 2, true, false))
		}, "conv", 64 * (8 * 6 * 8), 8 * 6 * 8},
		{"batch_norm1d on [N,F]", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::batch_norm", b.Input(4, 64), "bn", true))
		}, "batchnorm", 2 * 256, 128},
		{"batch_norm1d on [N,C,L] plain", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::batch_norm", b.Input(2, 8, 10), "bn", false))
		}, "batchnorm", 160, 0},
		{"batch_norm3d", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::batch_norm", b.Input(1, 4, 2, 4, 4), "bn", true))
		}, "batchnorm", 2 * 128, 8},
		{"instance_norm1d plain", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::instance_norm", b.Input(1, 32, 64), "in", false))
		}, "instancenorm", 32 * 64, 0},
		{"instance_norm2d affine", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::instance_norm", b.Input(2, 16, 8, 8), "in", true))
		}, "instancenorm", 2 * 2 * 16 * 64, 32},
		{"instance_norm3d affine", func(b *irtest.Builder) {
			b.Output(norm(b, "aten::instance_norm", b.Input(1, 32, 1, 4, 4), "in", true))
		}, "instancenorm", 2 * 512, 64},
		{"group_norm plain 1d", func(b *irtest.Builder) {
			x := b.Input(1, 32, 64)
			b.Output(b.Op1("aten::group_norm", "gn", []int{x, b.Int(4), b.None(), b.None(), b.Float(1e-5), b.Bool(true)}, b.Shape(x)))
		}, "groupnorm", 32 * 64, 0},
		{"group_norm affine 3d", func(b *irtest.Builder) {
			x := b.Input(1, 12, 2, 4, 4)
			b.Output(b.Op1("aten::group_norm", "gn", []int{x, b.Int(3), b.Param("gn.weight", 12),
				b.Param("gn.bias", 12), b.Float(1e-5), b.Bool(true)}, b.Shape(x)))
		}, "groupnorm", 2 * 12 * 32, 24},
		{"prelu on [N,C,L]", func(b *irtest.Builder) {
			b.Output(b.Act("aten::prelu", b.Input(1, 16, 128), b.Param("a.weight", 16)))
		}, "prelu", 16 * 128, 16},
		{"max_pool1d", func(b *irtest.Builder) {
			x := b.Input(1, 16, 256)
			b.Output(b.Op1("aten::max_pool1d", "", []int{x, b.IntList(2), b.IntList(2), b.IntList(0), b.IntList(1), b.Bool(false)},
				[]int64{1, 16, 128}))
		}, "pool", 16 * 256, 0},
		{"avg_pool1d", func(b *irtest.Builder) {
			x := b.Input(1, 32, 128)
			b.Output(b.Op1("aten::avg_pool1d", "", []int{x, b.IntList(2), b.IntList(2), b.IntList(0), b.Bool(false), b.Bool(true)},
				[]int64{1, 32, 64}))
		}, "pool", 32 * 128, 0},
		{"adaptive_avg_pool1d", func(b *irtest.Builder) {
			x := b.Input(1, 16, 256)
			b.Output(b.Op1("aten::adaptive_avg_pool1d", "", []int{x, b.IntList(1)}, []int64{1, 16, 1}))
		}, "pool", 16 * 256, 0},
		{"max_pool3d", func(b *irtest.Builder) {
			x := b.Input(1, 16, 4, 16, 16)
			b.Output(b.Op1("aten::max_pool3d", "", []int{x, b.IntList(2, 2, 2), b.IntList(2, 2, 2), b.IntList(0, 0, 0),
				b.IntList(1, 1, 1), b.Bool(false)}, []int64{1, 16, 2, 8, 8}))
		}, "pool", 16 * 4 * 256, 0},
		{"avg_pool3d", func(b *irtest.Builder) {
			x := b.Input(1, 8, 2, 8, 8)
			b.Output(b.Op1("aten::avg_pool3d", "", []int{x, b.IntList(1, 2, 2), b.IntList(1, 2, 2), b.IntList(0, 0, 0),
				b.Bool(false), b.Bool(true), b.None()}, []int64{1, 8, 2, 4, 4}))
		}, "pool", 8 * 128, 0},
		{"adaptive_avg_pool3d", func(b *irtest.Builder) {
			x := b.Input(2, 32, 1, 4, 4)
			b.Output(b.Op1("aten::adaptive_avg_pool3d", "", []int{x, b.IntList(1, 1, 1)}, []int64{2, 32, 1, 1, 1}))
		}, "pool", 2 * 32 * 16, 0},
		{"adaptive_max_pool1d", func(b *irtest.Builder) {
			x := b.Input(1, 4, 10)
			b.Output(b.Op("aten::adaptive_max_pool1d", "", []int{x, b.IntList(2)}, []int64{1, 4, 2}, []int64{1, 4, 2})[0])
		}, "pool", 40, 0},
		{"upsample_nearest1d", func(b *irtest.Builder) {
			x := b.Input(1, 24, 128)
			b.Output(b.Op1("aten::upsample_nearest1d", "", []int{x, b.None(), b.None()}, []int64{1, 24, 256}))
		}, "upsample", 24 * 256, 0},
		{"upsample_trilinear3d", func(b *irtest.Builder) {
			x := b.Input(1, 4, 2, 4, 4)
			b.Output(b.Op1("aten::upsample_trilinear3d", "", []int{x, b.None(), b.Bool(false), b.None()}, []int64{1, 4, 4, 8, 8}))
		}, "upsample", 4 * 256, 0},
		{"linear on [N,F]", func(b *irtest.Builder) {
			b.Output(b.Linear(b.Input(4, 20), "fc", 64, true))
		}, "linear", 4 * (20*64 + 64), 20*64 + 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Count(build(t, tc.build), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Layers) != 1 {
				t.Fatalf("layers %+v, want 1", r.Layers)
			}
			if l := r.Layers[0]; l.Kind != tc.kind || l.MACs != tc.macs || l.Params != tc.par || r.MACs != tc.macs {
				t.Errorf("layer %+v (total %d), want kind %s MACs %d params %d", l, r.MACs, tc.kind, tc.macs, tc.par)
			}
		})
	}
}

// TestKeptAnyRank counts a volumetric encoder-decoder under kept channels:
// conv3d → instance_norm3d → prelu → conv_transpose3d, where the middle
// group is the conv's output and the transposed conv's input (its weight's
// dim 0). Pruning it to k channels must shrink every layer that indexes it.
func TestKeptAnyRank(t *testing.T) {
	g := build(t, func(b *irtest.Builder) {
		x := b.Input(1, 2, 4, 8, 8)
		y := convN(b, x, "enc", 16, 3, 2, 1, 0, 1, false, true)    // [1,16,2,4,4]
		y = norm(b, "aten::instance_norm", y, "in", true)          // affine
		y = b.Act("aten::prelu", y, b.Param("act.weight", 16))     // per channel
		b.Output(convN(b, y, "dec", 3, 2, 2, 0, 0, 1, true, true)) // [1,3,4,8,8]
	})
	a, err := graph.Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	ps := a.Prunable()
	if len(ps) != 1 || ps[0].Channels != 16 {
		t.Fatalf("prunable groups %+v, want the 16 channels between enc and dec", ps)
	}
	for _, k := range []int64{16, 5} {
		r, err := Count(g, a, map[int]int{ps[0].ID: int(k)})
		if err != nil {
			t.Fatal(err)
		}
		const pos, outPos = 2 * 4 * 4, 4 * 8 * 8
		enc := pos*k*2*27 + k*pos
		in := 2 * k * pos
		act := k * pos
		dec := outPos*k*3*8 + 3*outPos
		params := k*2*27 + k + 2*k + k + k*3*8 + 3
		if r.MACs != enc+in+act+dec || r.Params != params {
			t.Errorf("keep %d: MACs %d params %d, want %d %d", k, r.MACs, r.Params, enc+in+act+dec, params)
		}
	}
}
