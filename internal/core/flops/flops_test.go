package flops

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/fixtures"
)

func build(t *testing.T, f func(b *irtest.Builder)) *ir.Graph {
	t.Helper()
	b := irtest.New()
	f(b)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestFormulas(t *testing.T) {
	for _, tc := range []struct {
		name       string
		build      func(b *irtest.Builder)
		kind       string
		macs, par  int64
		wantLayers int
	}{
		{"conv batch 2", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(2, 3, 8, 8), "c", 4, 3, irtest.ConvOpts{Pad: 1}))
		}, "conv", 2 * 64 * 4 * 3 * 9, 4 * 3 * 9, 1},
		{"conv bias stride 2", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(1, 3, 8, 8), "c", 4, 3, irtest.ConvOpts{Pad: 1, Stride: 2, Bias: true}))
		}, "conv", 16*4*3*9 + 4*16, 4*3*9 + 4, 1},
		{"conv2d functional", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(1, 3, 8, 8), "c", 4, 1, irtest.ConvOpts{Func: true, Bias: true}))
		}, "conv", 64*4*3 + 4*64, 4*3 + 4, 1},
		{"conv padding same", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(1, 3, 8, 8), "c", 4, 4, irtest.ConvOpts{Same: true, Bias: true}))
		}, "conv", 64*4*3*16 + 4*64, 4*3*16 + 4, 1},
		{"conv weight standardised in forward", func(b *irtest.Builder) {
			// The batch_norm over the filters runs on parameters alone: no
			// layer. The params counted are the conv's raw weight.
			b.Output(b.Conv(b.Input(1, 3, 8, 8), "c", 4, 3, irtest.ConvOpts{Pad: 1, Std: "bn"}))
		}, "conv", 64 * 4 * 3 * 9, 4 * 3 * 9, 1},
		{"depthwise", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(1, 8, 8, 8), "c", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 8}))
		}, "conv", 64 * 8 * 9, 8 * 9, 1},
		{"grouped", func(b *irtest.Builder) {
			b.Output(b.Conv(b.Input(1, 8, 8, 8), "c", 16, 1, irtest.ConvOpts{Groups: 4}))
		}, "conv", 64 * 8 * 16 / 4, 16 * 2, 1},
		{"linear bias", func(b *irtest.Builder) {
			b.Output(b.Linear(b.Input(2, 10), "fc", 5, true))
		}, "linear", (10*5 + 5) * 2, 55, 1},
		{"linear no bias", func(b *irtest.Builder) {
			b.Output(b.Linear(b.Input(2, 10), "fc", 5, false))
		}, "linear", 100, 50, 1},
		{"linear 3-D input", func(b *irtest.Builder) {
			b.Output(b.Linear(b.Input(2, 3, 10), "fc", 5, true))
		}, "linear", (10*5 + 5) * 6, 55, 1},
		{"addmm", func(b *irtest.Builder) {
			b.Output(b.Addmm(b.Input(1, 10), "fc", 5))
		}, "linear", 55, 55, 1},
		{"batch_norm affine", func(b *irtest.Builder) {
			b.Output(b.BN(b.Input(1, 4, 8, 8), "bn"))
		}, "batchnorm", 2 * 256, 8, 1},
		{"batch_norm plain", func(b *irtest.Builder) {
			x := b.Input(1, 4, 8, 8)
			b.Output(b.Op1("aten::batch_norm", "bn", []int{x, b.None(), b.None(), b.Buffer("bn.running_mean", 4),
				b.Buffer("bn.running_var", 4), b.Bool(false), b.Float(0.1), b.Float(1e-5), b.Bool(true)}, b.Shape(x)))
		}, "batchnorm", 256, 0, 1},
		{"layer_norm", func(b *irtest.Builder) {
			x := b.Input(2, 8)
			b.Output(b.Op1("aten::layer_norm", "ln", []int{x, b.IntList(8), b.Param("ln.weight", 8),
				b.Param("ln.bias", 8), b.Float(1e-5), b.Bool(true)}, b.Shape(x)))
		}, "", 0, 16, 0},
		{"group_norm affine", func(b *irtest.Builder) {
			x := b.Input(1, 8, 4, 4)
			b.Output(b.Op1("aten::group_norm", "gn", []int{x, b.Int(2), b.Param("gn.weight", 8),
				b.Param("gn.bias", 8), b.Float(1e-5), b.Bool(true)}, b.Shape(x)))
		}, "groupnorm", 2 * 128, 16, 1},
		{"relu_", func(b *irtest.Builder) { b.Output(b.Relu(b.Input(1, 4, 8, 8))) }, "relu", 256, 0, 1},
		{"relu6 as hardtanh_", func(b *irtest.Builder) {
			b.Output(b.Act("aten::hardtanh_", b.Input(1, 4, 8, 8), b.Int(0), b.Int(6)))
		}, "relu", 256, 0, 1},
		{"gelu is free", func(b *irtest.Builder) { b.Output(b.Act("aten::gelu", b.Input(1, 4, 8, 8))) }, "", 0, 0, 0},
		{"prelu", func(b *irtest.Builder) {
			b.Output(b.Act("aten::prelu", b.Input(1, 4, 8, 8), b.Param("p.weight", 4)))
		}, "prelu", 256, 4, 1},
		{"sigmoid is free", func(b *irtest.Builder) { b.Output(b.Act("aten::sigmoid", b.Input(1, 4, 8, 8))) }, "", 0, 0, 0},
		{"hardswish is free", func(b *irtest.Builder) { b.Output(b.Act("aten::hardswish_", b.Input(1, 4, 8, 8))) }, "", 0, 0, 0},
		{"max_pool2d counts its input", func(b *irtest.Builder) { b.Output(b.MaxPool(b.Input(1, 4, 8, 8), 2, 2)) }, "pool", 256, 0, 1},
		{"adaptive_avg_pool2d", func(b *irtest.Builder) { b.Output(b.AdaptiveAvgPool(b.Input(1, 4, 8, 8), 1, 1)) }, "pool", 256, 0, 1},
		{"upsample counts its output", func(b *irtest.Builder) {
			x := b.Input(2, 4, 4, 4)
			b.Output(b.Op1("aten::upsample_nearest2d", "", []int{x, b.IntList(8, 8), b.None(), b.None()}, []int64{2, 4, 8, 8}))
		}, "upsample", 2 * 4 * 64, 0, 1},
		{"add is free", func(b *irtest.Builder) {
			x := b.Input(1, 4, 8, 8)
			b.Output(b.Add(x, x))
		}, "", 0, 0, 0},
		{"matmul of activations is free", func(b *irtest.Builder) {
			x := b.Input(4, 4)
			b.Output(b.Op1("aten::matmul", "", []int{x, x}, []int64{4, 4}))
		}, "", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Count(build(t, tc.build), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Layers) != tc.wantLayers {
				t.Fatalf("layers %+v, want %d", r.Layers, tc.wantLayers)
			}
			if r.MACs != tc.macs || r.Params != tc.par {
				t.Errorf("MACs %d params %d, want %d %d", r.MACs, r.Params, tc.macs, tc.par)
			}
			if tc.wantLayers == 1 {
				if l := r.Layers[0]; l.Kind != tc.kind || l.MACs != tc.macs || l.Params != tc.par {
					t.Errorf("layer %+v, want kind %s MACs %d params %d", l, tc.kind, tc.macs, tc.par)
				}
			}
		})
	}
}

// smallCNN is the fixture net "smallcnn": ptflops gives 4112714 MACs and
// 14778 parameters for it (see .cache/fixtures/smallcnn_scripted.json).
func smallCNN(b *irtest.Builder) {
	x := b.Input(1, 3, 32, 32)
	y := b.Relu(b.BN(b.Conv(x, "conv1", 16, 3, irtest.ConvOpts{Pad: 1}), "bn1"))
	y = b.MaxPool(y, 2, 2)
	y = b.Relu(b.BN(b.Conv(y, "conv2", 32, 3, irtest.ConvOpts{Pad: 1}), "bn2"))
	y = b.Relu(b.BN(b.Conv(y, "conv3", 32, 3, irtest.ConvOpts{Pad: 1, Bias: true}), "bn3"))
	y = b.Flatten(b.AdaptiveAvgPool(y, 1, 1), 1)
	b.Output(b.Linear(y, "fc", 10, true))
}

func TestSmallCNN(t *testing.T) {
	g := build(t, smallCNN)
	r, err := Count(g, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.MACs != 4112714 || r.Params != 14778 {
		t.Errorf("MACs %d params %d, want 4112714 14778", r.MACs, r.Params)
	}
	want := []Layer{
		{"conv1", "conv", 442368, 432}, {"bn1", "batchnorm", 32768, 32}, {"relu#6", "relu", 16384, 0},
		{"pool#11", "pool", 16384, 0}, {"conv2", "conv", 1179648, 4608}, {"bn2", "batchnorm", 16384, 64},
		{"relu#18", "relu", 8192, 0}, {"conv3", "conv", 2367488, 9248}, {"bn3", "batchnorm", 16384, 64},
		{"relu#25", "relu", 8192, 0}, {"pool#27", "pool", 8192, 0}, {"fc", "linear", 330, 330},
	}
	if len(r.Layers) != len(want) {
		t.Fatalf("layers %+v", r.Layers)
	}
	for i := range want {
		if r.Layers[i] != want[i] {
			t.Errorf("layer %d = %+v, want %+v", i, r.Layers[i], want[i])
		}
	}

	a, err := graph.Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	same, err := Count(g, a, nil)
	if err != nil || same.MACs != r.MACs || same.Params != r.Params {
		t.Errorf("Count with analysis and no kept = %d/%d (%v), want %d/%d", same.MACs, same.Params, err, r.MACs, r.Params)
	}
	var g1, g2 int = -1, -1
	for _, grp := range a.Prunable() {
		switch grp.Layers[0] {
		case "conv1":
			g1 = grp.ID
		case "conv2":
			g2 = grp.ID
		}
	}
	if g1 < 0 || g2 < 0 {
		t.Fatalf("conv1/conv2 groups missing: %+v", a.Groups)
	}
	// conv1 16->8, conv2 32->16, by hand:
	// conv1 1024·8·27=221184, bn1 2·8192=16384, relu 8192, pool 8192,
	// conv2 256·16·8·9=294912, bn2 8192, relu 4096,
	// conv3 256·32·16·9 + 32·256 = 1187840, bn3 16384, relu 8192, pool 8192, fc 330.
	p, err := Count(g, a, map[int]int{g1: 8, g2: 16})
	if err != nil {
		t.Fatal(err)
	}
	if p.MACs != 1782090 {
		t.Errorf("pruned MACs %d, want 1782090", p.MACs)
	}
	if m, err := MACs(g, a, map[int]int{g1: 8, g2: 16}); err != nil || m != p.MACs {
		t.Errorf("MACs = %d (%v), want %d", m, err, p.MACs)
	}
	// 8·27 + 16 + 16·8·9 + 32 + (32·16·9 + 32) + 64 + 330
	if p.Params != 6450 {
		t.Errorf("pruned params %d, want 6450", p.Params)
	}
}

func TestFlattenStrideUnderKept(t *testing.T) {
	g := build(t, func(b *irtest.Builder) {
		x := b.Input(1, 3, 4, 4)
		y := b.Relu(b.Conv(x, "c", 4, 1, irtest.ConvOpts{}))
		b.Output(b.Linear(b.Flatten(y, 1), "fc", 5, true))
	})
	a, err := graph.Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	id := a.Prunable()[0].ID
	r, err := Count(g, a, map[int]int{id: 1})
	if err != nil {
		t.Fatal(err)
	}
	// conv 16·1·3 = 48, relu 16, fc 16·5+5 = 85; params 3 + 16·5+5 = 88.
	if r.MACs != 48+16+85 || r.Params != 88 {
		t.Errorf("MACs %d params %d, want 149 88", r.MACs, r.Params)
	}
}

func TestCountErrors(t *testing.T) {
	if _, err := Count(nil, nil, nil); err == nil {
		t.Error("nil graph accepted")
	}
	g := build(t, smallCNN)
	if _, err := Count(g, nil, map[int]int{1: 2}); err == nil {
		t.Error("kept without analysis accepted")
	}
	bad := build(t, func(b *irtest.Builder) {
		x := b.Input(1, 3, 8, 8)
		b.Output(b.Op1("aten::_convolution", "c", []int{x, b.Param("c.weight", 4, 3, 1, 1), b.None()}, []int64{1, 4}))
	})
	if _, err := Count(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "op 0") {
		t.Errorf("malformed conv: %v", err)
	}
	huge := build(t, func(b *irtest.Builder) {
		b.Output(b.Relu(b.Input(1<<40, 1<<40)))
	})
	if _, err := Count(huge, nil, nil); err == nil {
		t.Error("overflow not reported")
	}
}

func TestJSON(t *testing.T) {
	r, err := Count(build(t, smallCNN), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"macs", "params", "layers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing %q in %s", k, data)
		}
	}
	l := m["layers"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "kind", "macs", "params"} {
		if _, ok := l[k]; !ok {
			t.Errorf("layer missing %q", k)
		}
	}
}

// TestRealIR compares with the ptflops numbers the fixture script recorded
// for every fixture, on the IR libtorch exports (`make fixtures` writes it
// into .cache/ir; skips without it, fails in CI).
func TestRealIR(t *testing.T) {
	fixtures.EachIR(t, func(t *testing.T, name string, g *ir.Graph) {
		r, err := Count(g, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := graph.Analyze(g)
		if err != nil {
			t.Fatal(err)
		}
		// Halving every prunable group must cost less and stay positive.
		kept := map[int]int{}
		for _, grp := range a.Prunable() {
			kept[grp.ID] = max(1, grp.Channels/2)
		}
		p, err := Count(g, a, kept)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MACs %d params %d; halved %d %d", r.MACs, r.Params, p.MACs, p.Params)
		for _, c := range []struct {
			a    *graph.Analysis
			kept map[int]int
			want int64
		}{{nil, nil, r.MACs}, {a, kept, p.MACs}} {
			if m, err := MACs(g, c.a, c.kept); err != nil || m != c.want {
				t.Errorf("MACs = %d (%v), Count says %d", m, err, c.want)
			}
		}
		if len(kept) > 0 && (p.MACs >= r.MACs || p.Params >= r.Params || p.MACs <= 0) {
			t.Errorf("halving gives %d MACs %d params", p.MACs, p.Params)
		}
		fx := fixtures.ReadMeta(t, name)
		// Functional pooling/activations are counted here but not by
		// ptflops (mobilenet_v2's F.adaptive_avg_pool2d: 0.02%).
		if d := float64(r.MACs-fx.MACs) / float64(fx.MACs); r.Params != fx.Params || d < 0 || d > 0.005 {
			t.Errorf("MACs %d params %d, ptflops says %d %d", r.MACs, r.Params, fx.MACs, fx.Params)
		}
		ours := map[string]int64{}
		for _, l := range r.Layers {
			ours[l.Name] += l.MACs
		}
		for _, l := range fx.Layers {
			if strings.HasPrefix(l.Kind, "Conv") || l.Kind == "Linear" || strings.HasPrefix(l.Kind, "BatchNorm") {
				if ours[l.Name] != l.MACs {
					t.Errorf("%s (%s): %d MACs, ptflops %d", l.Name, l.Kind, ours[l.Name], l.MACs)
				}
			}
		}
	})
}
