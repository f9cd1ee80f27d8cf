package graph

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// mstr spells a member as "tensor:dim", with "+offset" and "*stride" when
// they are not the defaults.
func mstr(m Member) string {
	s := m.String()
	if m.Offset != 0 {
		s += fmt.Sprintf("+%d", m.Offset)
	}
	if m.Stride != 1 {
		s += fmt.Sprintf("*%d", m.Stride)
	}
	return s
}

func mstrs(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = mstr(m)
	}
	return out
}

// groupWith returns the group holding member key (as mstr spells it).
func groupWith(a *Analysis, key string) *Group {
	for i := range a.Groups {
		if slices.Contains(mstrs(a.Groups[i].Members), key) {
			return &a.Groups[i]
		}
	}
	return nil
}

type wantGroup struct {
	has       string // a member (mstr spelling) that identifies the group
	channels  int
	prunable  bool
	reason    string   // substring of Reason for frozen groups
	members   []string // exact members in order, when set
	contains  []string // members that must be present
	producers []string
	layers    []string
	dw        []string
	block     int
	convs     []GroupedConv
	inexact   string   // substring of Inexact; "" wants an exact group
	ln        []string // LayerNorms whose normalized_shape follows the group
}

// splitNet is a Res2Net block in small: a conv's 8 channels split into
// parts of 2, the first through a conv and added to the second, all
// concatenated again; site marks the split as found in the code.
func splitNet(b *irtest.Builder, site string) {
	x := b.Input(1, 3, 4, 4)
	y := b.Relu(b.Conv(x, "c1", 8, 1, irtest.ConvOpts{}))
	list := b.OpValues("aten::split", "", []int{y, b.Int(2), b.Int(1)}, ir.Value{Kind: ir.KindTensorList})[0]
	if site != "" {
		b.Sited(list, site)
	}
	part := []int64{1, 2, 4, 4}
	p := b.Op("prim::ListUnpack", "", []int{list}, part, part, part, part)
	s := b.Add(b.Relu(b.Conv(p[0], "a", 2, 3, irtest.ConvOpts{Pad: 1})), p[1])
	b.Output(b.Conv(b.Cat(1, s, p[1], p[2], p[3]), "e", 2, 1, irtest.ConvOpts{}))
}

func mustBuild(t testing.TB, b *irtest.Builder) *ir.Graph {
	t.Helper()
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func convBNReLU(b *irtest.Builder, x int, name string, cout, k int64, o irtest.ConvOpts) int {
	if o.Pad == 0 {
		o.Pad = k / 2
	}
	return b.Relu(b.BN(b.Conv(x, name, cout, k, o), name+".bn"))
}

func sizeOf(b *irtest.Builder, x int, d int64) int {
	return b.OpValues("aten::size", "", []int{x, b.Int(d)}, ir.Value{Kind: ir.KindInt})[0]
}

var bnStats = func(name string) []string {
	return []string{name + ".weight:0", name + ".bias:0", name + ".running_mean:0", name + ".running_var:0"}
}

func join(xs ...[]string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x...)
	}
	return out
}

var analyzeCases = []struct {
	name  string
	build func(b *irtest.Builder)
	want  []wantGroup
	check func(t *testing.T, a *Analysis)
}{
	{
		name: "conv-bn-relu chain",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.BN(b.Conv(x, "conv1", 8, 3, irtest.ConvOpts{Pad: 1}), "bn1"))
			y = b.Relu(b.BN(b.Conv(y, "conv2", 16, 3, irtest.ConvOpts{Pad: 1, Bias: true}), "bn2"))
			b.Output(y)
		},
		want: []wantGroup{
			{has: "conv1.weight:1", channels: 3, reason: "model input", members: []string{"conv1.weight:1"}},
			{has: "conv1.weight:0", channels: 8, prunable: true,
				members:   join([]string{"conv1.weight:0"}, bnStats("bn1"), []string{"conv2.weight:1"}),
				producers: []string{"conv1.weight:0"}, layers: []string{"conv1"}},
			{has: "conv2.weight:0", channels: 16, reason: "model output",
				members: join([]string{"conv2.weight:0", "conv2.bias:0"}, bnStats("bn2")),
				layers:  []string{"conv2"}},
		},
	},
	{
		name: "conv2d functional spelling",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 3, irtest.ConvOpts{Pad: 1, Func: true}))
			b.Output(b.Conv(y, "d", 4, 1, irtest.ConvOpts{Func: true}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true,
			members: []string{"c.weight:0", "d.weight:1"}}},
	},
	{
		name: "resnet basic blocks with downsample",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 4, 8, 8)
			s := convBNReLU(b, x, "conv1", 8, 3, irtest.ConvOpts{})
			y := convBNReLU(b, s, "l.conv1", 16, 3, irtest.ConvOpts{Stride: 2})
			y = b.BN(b.Conv(y, "l.conv2", 16, 3, irtest.ConvOpts{Pad: 1}), "l.bn2")
			ds := b.BN(b.Conv(s, "l.ds.0", 16, 1, irtest.ConvOpts{Stride: 2}), "l.ds.1")
			z := b.Relu(b.Add(y, ds))
			y = convBNReLU(b, z, "m.conv1", 16, 3, irtest.ConvOpts{})
			y = b.BN(b.Conv(y, "m.conv2", 16, 3, irtest.ConvOpts{Pad: 1}), "m.bn2")
			z = b.Relu(b.Add(y, z))
			b.Output(b.Linear(b.Flatten(b.AdaptiveAvgPool(z, 1, 1), 1), "fc", 10, true))
		},
		want: []wantGroup{
			{has: "conv1.weight:0", channels: 8, prunable: true, layers: []string{"conv1"},
				members: join([]string{"conv1.weight:0"}, bnStats("conv1.bn"),
					[]string{"l.conv1.weight:1", "l.ds.0.weight:1"})},
			{has: "l.conv1.weight:0", channels: 16, prunable: true, layers: []string{"l.conv1"}},
			{has: "l.conv2.weight:0", channels: 16, prunable: true,
				layers:    []string{"l.conv2", "l.ds.0", "m.conv2"},
				producers: []string{"l.conv2.weight:0", "l.ds.0.weight:0", "m.conv2.weight:0"},
				members: join([]string{"l.conv2.weight:0"}, bnStats("l.bn2"), []string{"l.ds.0.weight:0"},
					bnStats("l.ds.1"), []string{"m.conv1.weight:1", "m.conv2.weight:0"}, bnStats("m.bn2"),
					[]string{"fc.weight:1"})},
			{has: "fc.weight:0", channels: 10, reason: "model output"},
		},
		check: func(t *testing.T, a *Analysis) {
			if gs := a.GroupOfLayer("l.ds.0"); len(gs) != 1 || !slices.Contains(gs[0].Layers, "m.conv2") {
				t.Errorf("GroupOfLayer(l.ds.0) = %v", gs)
			}
			if !a.HasLayer("fc") || len(a.GroupOfLayer("fc")) != 1 || a.GroupOfLayer("fc")[0].Prunable() {
				t.Errorf("fc should be a known layer with a frozen group")
			}
			if a.HasLayer("l.bn2") || a.HasLayer("nope") || len(a.GroupOfLayer("nope")) != 0 {
				t.Errorf("unknown layers must not match")
			}
			want := []string{"conv1", "fc", "l.conv1", "l.conv2", "l.ds.0", "m.conv1", "m.conv2"}
			if got := a.Layers(); !slices.Equal(got, want) {
				t.Errorf("Layers() = %v, want %v", got, want)
			}
		},
	},
	{
		name: "SE block with 1x1 convs and broadcast mul",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			h := convBNReLU(b, x, "c0", 16, 3, irtest.ConvOpts{})
			s := b.AdaptiveAvgPool(h, 1, 1)
			s = b.Relu(b.Conv(s, "se.fc1", 4, 1, irtest.ConvOpts{Bias: true}))
			s = b.Act("aten::hardsigmoid", b.Conv(s, "se.fc2", 16, 1, irtest.ConvOpts{Bias: true}))
			b.Output(b.Conv(b.Mul(s, h), "c1", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "c0.weight:0", channels: 16, prunable: true, layers: []string{"c0", "se.fc2"},
				members: join([]string{"c0.weight:0"}, bnStats("c0.bn"),
					[]string{"se.fc1.weight:1", "se.fc2.weight:0", "se.fc2.bias:0", "c1.weight:1"})},
			{has: "se.fc1.weight:0", channels: 4, prunable: true,
				members: []string{"se.fc1.weight:0", "se.fc1.bias:0", "se.fc2.weight:1"}},
		},
	},
	{
		name: "SE block with linears and a size-driven view",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			h := convBNReLU(b, x, "c0", 16, 3, irtest.ConvOpts{})
			s := b.Flatten(b.AdaptiveAvgPool(h, 1, 1), 1)
			s = b.Act("aten::sigmoid", b.Linear(b.Relu(b.Linear(s, "fc1", 4, true)), "fc2", 16, true))
			sizes := b.OpValues("prim::ListConstruct", "", []int{sizeOf(b, h, 0), sizeOf(b, h, 1), b.Int(1), b.Int(1)},
				ir.Value{Kind: ir.KindIntList})[0]
			s = b.Reshape("aten::view", s, sizes, 1, 16, 1, 1)
			b.Output(b.Conv(b.Mul(h, s), "c1", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "c0.weight:0", channels: 16, prunable: true, layers: []string{"c0", "fc2"},
				contains: []string{"fc1.weight:1", "fc2.weight:0", "fc2.bias:0", "c1.weight:1"}},
			{has: "fc1.weight:0", channels: 4, prunable: true,
				members: []string{"fc1.weight:0", "fc1.bias:0", "fc2.weight:1"}},
		},
	},
	{
		name: "view that hard-codes the channel count freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			h := convBNReLU(b, x, "c0", 16, 3, irtest.ConvOpts{})
			s := b.Linear(b.Flatten(b.AdaptiveAvgPool(h, 1, 1), 1), "fc", 16, true)
			b.Output(b.Mul(h, b.View(s, 1, 16, 1, 1)))
		},
		want: []wantGroup{{has: "fc.weight:0", channels: 16, reason: "hard-codes"}},
	},
	{
		name: "densenet-like concat with offsets",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			f0 := b.Conv(x, "c0", 8, 3, irtest.ConvOpts{Pad: 1})
			f1 := b.Conv(b.Relu(b.BN(f0, "n1")), "c1", 4, 3, irtest.ConvOpts{Pad: 1})
			y := b.Relu(b.BN(b.Cat(1, f0, f1), "n2"))
			b.Output(b.Relu(b.Conv(y, "c2", 6, 1, irtest.ConvOpts{})))
		},
		want: []wantGroup{
			{has: "c0.weight:0", channels: 8, prunable: true, layers: []string{"c0"},
				members: join([]string{"c0.weight:0"}, bnStats("n1"), []string{"c1.weight:1"},
					bnStats("n2"), []string{"c2.weight:1"})},
			{has: "c1.weight:0", channels: 4, prunable: true, layers: []string{"c1"},
				members: []string{"c1.weight:0", "n2.weight:0+8", "n2.bias:0+8", "n2.running_mean:0+8",
					"n2.running_var:0+8", "c2.weight:1+8"}},
		},
		check: func(t *testing.T, a *Analysis) {
			g0, g1 := groupWith(a, "c0.weight:0"), groupWith(a, "c1.weight:0")
			keeps := a.TensorKeeps(map[int][]int{g0.ID: {0, 2, 5}, g1.ID: {1, 3}})
			cat := []int{0, 2, 5, 9, 11}
			want := map[string]map[int][]int{
				"c0.weight": {0: {0, 2, 5}}, "n1.weight": {0: {0, 2, 5}}, "n1.bias": {0: {0, 2, 5}},
				"n1.running_mean": {0: {0, 2, 5}}, "n1.running_var": {0: {0, 2, 5}},
				"c1.weight": {0: {1, 3}, 1: {0, 2, 5}},
				"n2.weight": {0: cat}, "n2.bias": {0: cat}, "n2.running_mean": {0: cat}, "n2.running_var": {0: cat},
				"c2.weight": {1: cat},
			}
			if !reflect.DeepEqual(keeps, want) {
				t.Errorf("TensorKeeps =\n %v\nwant\n %v", keeps, want)
			}
			// Only one part of the concatenation pruned.
			keeps = a.TensorKeeps(map[int][]int{g1.ID: {2}})
			if got := keeps["c2.weight"][1]; !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 10}) {
				t.Errorf("c2.weight dim 1 keeps %v", got)
			}
		},
	},
	{
		name: "mobilenet depthwise ties in and out",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			relu6 := func(y int) int { return b.Act("aten::hardtanh_", y, b.Int(0), b.Int(6)) }
			y := relu6(b.BN(b.Conv(x, "pw1", 16, 1, irtest.ConvOpts{}), "b1"))
			y = relu6(b.BN(b.Conv(y, "dw", 16, 3, irtest.ConvOpts{Pad: 1, Groups: 16}), "b2"))
			b.Output(b.BN(b.Conv(y, "pw2", 8, 1, irtest.ConvOpts{}), "b3"))
		},
		want: []wantGroup{{has: "pw1.weight:0", channels: 16, prunable: true,
			layers: []string{"pw1", "dw"}, dw: []string{"dw.weight"},
			producers: []string{"pw1.weight:0", "dw.weight:0"},
			members: join([]string{"pw1.weight:0"}, bnStats("b1"), []string{"dw.weight:0"}, bnStats("b2"),
				[]string{"pw2.weight:1"})}},
		check: func(t *testing.T, a *Analysis) {
			g := groupWith(a, "pw1.weight:0")
			kept := map[int]int{g.ID: 10}
			if s := a.ParamShape("dw.weight", kept); !slices.Equal(s, []int64{10, 1, 3, 3}) {
				t.Errorf("dw.weight -> %v", s)
			}
			if s := a.ParamShape("pw2.weight", kept); !slices.Equal(s, []int64{8, 10, 1, 1}) {
				t.Errorf("pw2.weight -> %v", s)
			}
		},
	},
	{
		name: "grouped conv ties in and out in blocks",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.BN(b.Conv(x, "a", 16, 1, irtest.ConvOpts{}), "a.bn"))
			y = b.Relu(b.BN(b.Conv(y, "g", 16, 3, irtest.ConvOpts{Pad: 1, Groups: 4, Bias: true}), "g.bn"))
			b.Output(b.Conv(y, "c", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 16, prunable: true, block: 4,
			layers: []string{"a", "g"}, dw: []string{}, convs: []GroupedConv{{"g.weight", 4}},
			producers: []string{"a.weight:0", "g.weight:0"},
			members: join([]string{"a.weight:0"}, bnStats("a.bn"), []string{"g.weight:0", "g.bias:0"},
				bnStats("g.bn"), []string{"c.weight:1"})}},
		check: func(t *testing.T, a *Analysis) {
			g := groupWith(a, "a.weight:0")
			if s := a.ParamShape("g.weight", map[int]int{g.ID: 8}); !slices.Equal(s, []int64{8, 4, 3, 3}) {
				t.Errorf("g.weight -> %v", s)
			}
			for _, tc := range []struct {
				kept []int
				err  string
			}{
				{[]int{4, 5, 6, 7, 12, 13, 14, 15}, ""},
				{[]int{0, 1, 2}, "not a whole number of blocks"},
				{[]int{1, 2, 3, 4}, "does not start a block"},
				{[]int{0, 1, 2, 4}, "part of the block"},
			} {
				err := a.ValidateKept(map[int][]int{g.ID: tc.kept})
				if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
					t.Errorf("ValidateKept(%v) = %v, want %q", tc.kept, err, tc.err)
				}
			}
		},
	},
	{
		name: "grouped convs of different widths on one space take the lcm block",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 24, 1, irtest.ConvOpts{}))
			y = b.Relu(b.Conv(y, "g1", 24, 3, irtest.ConvOpts{Pad: 1, Groups: 6}))
			y = b.Relu(b.Conv(y, "g2", 24, 3, irtest.ConvOpts{Pad: 1, Groups: 4, Func: true}))
			b.Output(b.Conv(y, "c", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 24, prunable: true, block: 12,
			convs: []GroupedConv{{"g1.weight", 4}, {"g2.weight", 6}}}},
	},
	{
		name: "grouped transposed conv ties in and out in blocks",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 16, 1, irtest.ConvOpts{}))
			// conv_transpose2d(input, weight [Cin, Cout/groups, k, k], bias,
			// stride, padding, output_padding, groups, dilation)
			w := b.Param("t.weight", 16, 4, 3, 3)
			y = b.Op1("aten::conv_transpose2d", "t", []int{y, w, b.Param("t.bias", 16), b.IntList(1, 1),
				b.IntList(1, 1), b.IntList(0, 0), b.Int(4), b.IntList(1, 1)}, []int64{1, 16, 8, 8})
			b.Output(b.Conv(b.Relu(y), "c", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 16, prunable: true, block: 4,
			layers: []string{"a", "t"}, convs: []GroupedConv{{"t.weight", 4}},
			members: []string{"a.weight:0", "t.weight:0", "t.bias:0", "c.weight:1"}}},
	},
	{
		// Conv group j reads input channels 6j..6j+5 and writes output
		// channels 4j..4j+3: a's channels are re-strided into the 4 conv
		// groups (stride 6) and g's output channels join them (stride 4).
		name: "grouped conv that changes the channel count loses whole groups",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.BN(b.Conv(x, "a", 24, 1, irtest.ConvOpts{}), "bn"))
			y = b.Relu(b.BN(b.Conv(y, "g", 16, 3, irtest.ConvOpts{Pad: 1, Groups: 4, Bias: true}), "bn2"))
			b.Output(b.Conv(y, "c", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0*6", channels: 4, prunable: true, layers: []string{"a", "g"},
			convs:     []GroupedConv{{"g.weight", 4}},
			producers: []string{"a.weight:0*6", "g.weight:0*4"},
			members: []string{"a.weight:0*6", "bn.weight:0*6", "bn.bias:0*6", "bn.running_mean:0*6", "bn.running_var:0*6",
				"g.weight:0*4", "g.bias:0*4", "bn2.weight:0*4", "bn2.bias:0*4", "bn2.running_mean:0*4", "bn2.running_var:0*4",
				"c.weight:1*4"}}},
	},
	{
		// A transposed weight is [Cin, Cout/groups, k, k]: a conv group's
		// weights are its 6 input rows, so PerGroup counts input rows.
		name: "grouped transposed conv that changes the channel count loses whole groups",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 24, 1, irtest.ConvOpts{}))
			w := b.Param("t.weight", 24, 4, 3, 3)
			y = b.Op1("aten::conv_transpose2d", "t", []int{y, w, b.Param("t.bias", 16), b.IntList(1, 1),
				b.IntList(1, 1), b.IntList(0, 0), b.Int(4), b.IntList(1, 1)}, []int64{1, 16, 8, 8})
			b.Output(b.Conv(b.Relu(y), "c", 8, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0*6", channels: 4, prunable: true, layers: []string{"a", "t"},
			convs:     []GroupedConv{{"t.weight", 6}},
			producers: []string{"a.weight:0*6", "t.weight:0*6"},
			members:   []string{"a.weight:0*6", "t.weight:0*6", "t.bias:0*4", "c.weight:1*4"}}},
	},
	{
		// The 16->16 conv needs blocks of 8 channels (2 groups); re-strided
		// into blocks of 4 for the 16->8 conv that becomes blocks of 2.
		name: "re-strided channels keep an earlier grouped conv's block",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 16, 1, irtest.ConvOpts{}))
			y = b.Relu(b.Conv(y, "g1", 16, 3, irtest.ConvOpts{Pad: 1, Groups: 2}))
			y = b.Relu(b.Conv(y, "g2", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0*4", channels: 4, prunable: true, block: 2,
			convs:   []GroupedConv{{"g1.weight", 8}, {"g2.weight", 2}},
			members: []string{"a.weight:0*4", "g1.weight:0*4", "g2.weight:0*2", "c.weight:1*2"}}},
	},
	{
		// 12 -> 6 channels in 3 groups of 4 in, 2 out: p's 8 channels are
		// two groups, q's 4 one; the output splits the same way.
		name: "grouped conv that changes the channel count over a concatenation",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "p", 8, 1, irtest.ConvOpts{}), b.Conv(x, "q", 4, 1, irtest.ConvOpts{}))
			y := b.Relu(b.Conv(c, "g", 6, 3, irtest.ConvOpts{Pad: 1, Groups: 3}))
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "p.weight:0*4", channels: 2, prunable: true, convs: []GroupedConv{{"g.weight", 2}},
				members: []string{"p.weight:0*4", "g.weight:0*2", "d.weight:1*2"}},
			{has: "q.weight:0*4", channels: 1, prunable: true, convs: []GroupedConv{{"g.weight", 2}},
				members: []string{"q.weight:0*4", "g.weight:0+4*2", "d.weight:1+4*2"}},
		},
	},
	{
		name: "grouped conv that changes the channel count over a concatenation that splits a group freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "p", 5, 1, irtest.ConvOpts{}), b.Conv(x, "q", 7, 1, irtest.ConvOpts{}))
			y := b.Relu(b.Conv(c, "g", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "p.weight:0", channels: 5, reason: "grouped conv g (groups=4, 12 to 8 channels) cannot lose whole groups: a concatenated run of its input does not end on a group boundary"},
			{has: "q.weight:0", channels: 7, reason: "grouped conv g (groups=4, 12 to 8 channels) cannot lose whole groups"},
			{has: "g.weight:0", channels: 8, reason: "grouped conv g (groups=4, 12 to 8 channels) cannot lose whole groups"},
		},
	},
	{
		// view [1,3,8,4] -> [1,6,4,4]: each of a's channels owns two conv
		// input channels, and a conv group three: neither divides the other.
		name: "grouped conv that changes the channel count over strided channels that cut a group freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 4)
			y := b.View(b.Relu(b.Conv(x, "a", 3, 1, irtest.ConvOpts{})), 1, -1, 4, 4)
			b.Output(b.Conv(b.Relu(b.Conv(y, "g", 4, 3, irtest.ConvOpts{Pad: 1, Groups: 2})), "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 3,
			reason: "grouped conv g (groups=2, 6 to 4 channels) cannot lose whole groups: input channels strided by 2 do not split into groups of 3"}},
	},
	{
		name: "grouped conv over a concatenation of whole groups",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "p", 8, 1, irtest.ConvOpts{}), b.Conv(x, "q", 4, 1, irtest.ConvOpts{}))
			y := b.Relu(b.Conv(c, "g", 12, 3, irtest.ConvOpts{Pad: 1, Groups: 3}))
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "p.weight:0", channels: 8, prunable: true, block: 4, convs: []GroupedConv{{"g.weight", 4}},
				members: []string{"p.weight:0", "g.weight:0", "d.weight:1"}},
			{has: "q.weight:0", channels: 4, prunable: true, block: 4, convs: []GroupedConv{{"g.weight", 4}},
				members: []string{"q.weight:0", "g.weight:0+8", "d.weight:1+8"}},
		},
	},
	{
		name: "grouped conv over a concatenation that splits a group freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "p", 6, 1, irtest.ConvOpts{}), b.Conv(x, "q", 6, 1, irtest.ConvOpts{}))
			y := b.Relu(b.Conv(c, "g", 12, 3, irtest.ConvOpts{Pad: 1, Groups: 3}))
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "p.weight:0", channels: 6, reason: "that do not split into whole groups"},
			{has: "q.weight:0", channels: 6, reason: "grouped conv g (groups=3) on concatenated or strided"},
		},
	},
	{
		// view [1,4,8,4] -> [1,8,4,4]: each of a's channels owns two
		// consecutive channels of the conv input (stride 2).
		name: "grouped and depthwise convs over strided channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 4)
			y := b.View(b.Relu(b.Conv(x, "a", 4, 1, irtest.ConvOpts{})), 1, -1, 4, 4)
			y = b.Relu(b.Conv(y, "dw", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 8}))
			y = b.Relu(b.Conv(y, "g2", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
			y = b.Relu(b.Conv(y, "g4", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 2}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 4, prunable: true, block: 2,
			dw: []string{"dw.weight"}, convs: []GroupedConv{{"dw.weight", 1}, {"g2.weight", 2}, {"g4.weight", 4}},
			members: []string{"a.weight:0", "dw.weight:0*2", "g2.weight:0*2", "g4.weight:0*2", "c.weight:1*2"}}},
	},
	{
		name: "grouped conv whose groups cut strided channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 12, 4)
			y := b.View(b.Relu(b.Conv(x, "a", 4, 1, irtest.ConvOpts{})), 1, -1, 4, 4)
			b.Output(b.Conv(b.Relu(b.Conv(y, "g", 12, 3, irtest.ConvOpts{Pad: 1, Groups: 6})), "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 4,
			reason: "grouped conv g (groups=6) on concatenated or strided channels that do not split into whole groups"}},
	},
	{
		name: "depthwise conv over a concatenation",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "p", 5, 1, irtest.ConvOpts{}), b.Conv(x, "q", 3, 1, irtest.ConvOpts{}))
			y := b.Relu(b.Conv(c, "dw", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 8}))
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "p.weight:0", channels: 5, prunable: true, dw: []string{"dw.weight"},
				members: []string{"p.weight:0", "dw.weight:0", "d.weight:1"}},
			{has: "q.weight:0", channels: 3, prunable: true, dw: []string{"dw.weight"},
				members: []string{"q.weight:0", "dw.weight:0+5", "d.weight:1+5"}},
		},
	},
	{
		name: "flatten into linear with H*W>1 strides",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.MaxPool(b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1})), 2, 2)
			y = b.Relu(b.Linear(b.Flatten(y, 1), "fc1", 10, true))
			b.Output(b.Linear(b.Act("aten::dropout", y, b.Float(0.5), b.Bool(false)), "fc2", 5, true))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 4, prunable: true, members: []string{"c.weight:0", "fc1.weight:1*16"}},
			{has: "fc1.weight:0", channels: 10, prunable: true,
				members: []string{"fc1.weight:0", "fc1.bias:0", "fc2.weight:1"}, layers: []string{"fc1"}},
		},
		check: func(t *testing.T, a *Analysis) {
			g := groupWith(a, "c.weight:0")
			keeps := a.TensorKeeps(map[int][]int{g.ID: {1, 3}})
			var want []int
			for i := 16; i < 32; i++ {
				want = append(want, i)
			}
			for i := 48; i < 64; i++ {
				want = append(want, i)
			}
			if got := keeps["fc1.weight"][1]; !slices.Equal(got, want) {
				t.Errorf("fc1.weight dim 1 keeps %v, want %v", got, want)
			}
			if s := a.ParamShape("fc1.weight", map[int]int{g.ID: 2}); !slices.Equal(s, []int64{10, 32}) {
				t.Errorf("fc1.weight -> %v", s)
			}
		},
	},
	{
		name: "pool to 1x1, flatten, linear: stride 1",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.AdaptiveAvgPool(b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1})), 1, 1)
			b.Output(b.Linear(b.Flatten(y, 1), "fc", 5, false))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, prunable: true, members: []string{"c.weight:0", "fc.weight:1"}}},
	},
	{
		name: "view(N, -1) into linear, and mean over H,W",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1}))
			f := b.Linear(b.View(y, 1, -1), "fa", 5, false)
			m := b.Op1("aten::mean", "", []int{y, b.IntList(2, 3), b.Bool(false), b.None()}, []int64{1, 4})
			b.Output(b.Add(f, b.Linear(m, "fb", 5, false)))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, prunable: true,
			members: []string{"c.weight:0", "fa.weight:1*16", "fb.weight:1"}}},
	},
	{
		// LeNet's x.view(-1, 16 * 5 * 5): where the trace found the view
		// in the code, surgery rewrites the count and the channels follow.
		name: "view with a baked feature count follows where the code is known",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1}))
			b.Output(b.Linear(b.Sited(b.View(y, -1, 64), "lenet.py:10-20"), "fa", 5, false))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, prunable: true,
			members: []string{"c.weight:0", "fa.weight:1*16"}}},
	},
	{
		// Res2Net's torch.split(out, self.width, 1): where the trace found
		// the split in the code, the parts are tied as a chunk's are and
		// surgery writes the kept width in; elsewhere the split freezes.
		name:  "split by a written-in width follows where the code is known",
		build: func(b *irtest.Builder) { splitNet(b, "res2.py:3-9") },
		want: []wantGroup{{has: "c1.weight:0", channels: 2, prunable: true,
			contains: []string{"c1.weight:0+2", "c1.weight:0+6", "a.weight:0", "a.weight:1", "e.weight:1", "e.weight:1+6"}}},
	},
	{
		name:  "split by a written-in width freezes without a site",
		build: func(b *irtest.Builder) { splitNet(b, "") },
		want:  []wantGroup{{has: "c1.weight:0", channels: 8, reason: "splits the channels"}},
	},
	{
		name: "view with a baked feature count freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1}))
			b.Output(b.Linear(b.View(y, -1, 64), "fa", 5, false))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, reason: "hard-codes"}},
	},
	{
		name: "linear to linear, and addmm with t()",
		build: func(b *irtest.Builder) {
			x := b.Input(2, 12)
			y := b.Linear(b.Relu(b.Linear(x, "a", 8, true)), "b", 6, false)
			y = b.Addmm(b.Relu(b.Addmm(b.Relu(y), "c", 7)), "d", 3)
			b.Output(y)
		},
		want: []wantGroup{
			{has: "a.weight:1", channels: 12, reason: "model input"},
			{has: "a.weight:0", channels: 8, prunable: true, members: []string{"a.weight:0", "a.bias:0", "b.weight:1"}},
			{has: "b.weight:0", channels: 6, prunable: true, members: []string{"b.weight:0", "c.weight:1"}},
			{has: "c.weight:0", channels: 7, prunable: true, members: []string{"c.weight:0", "c.bias:0", "d.weight:1"},
				layers: []string{"c"}},
			{has: "d.weight:0", channels: 3, reason: "model output"},
		},
	},
	{
		name: "layer_norm over the channels is prunable but inexact",
		build: func(b *irtest.Builder) {
			x := b.Input(2, 12)
			y := b.Linear(x, "a", 8, true)
			y = b.Op1("aten::layer_norm", "ln", []int{y, b.IntList(8), b.Param("ln.weight", 8), b.Param("ln.bias", 8),
				b.Float(1e-5), b.Bool(true)}, []int64{2, 8})
			b.Output(b.Linear(y, "b", 4, true))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 8, prunable: true, inexact: "changes its mean and variance",
			contains: []string{"ln.weight:0", "ln.bias:0", "b.weight:1"}, ln: []string{"ln.weight"}}},
	},
	{
		name: "layer_norm over the channels without a weight freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(2, 12)
			y := b.Linear(x, "a", 8, true)
			y = b.Op1("aten::layer_norm", "ln", []int{y, b.IntList(8), b.None(), b.None(),
				b.Float(1e-5), b.Bool(true)}, []int64{2, 8})
			b.Output(b.Linear(y, "b", 4, true))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 8, reason: "no per-channel weight"}},
	},
	{
		// torchvision's ConvNeXt block: depthwise conv, permute to
		// channels-last, LayerNorm over C, Linear C->4C, GELU, Linear
		// 4C->C, permute back, layer scale [C,1,1], residual add.
		name: "convnext block: channels-last MLP exact, residual stream inexact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			s := b.Conv(x, "stem", 8, 1, irtest.ConvOpts{})
			y := b.Conv(s, "dw", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 8})
			y = b.Op1("aten::permute", "blk", []int{y, b.IntList(0, 2, 3, 1)}, []int64{1, 8, 8, 8})
			y = b.Op1("aten::layer_norm", "ln", []int{y, b.IntList(8), b.Param("ln.weight", 8), b.Param("ln.bias", 8),
				b.Float(1e-6), b.Bool(true)}, []int64{1, 8, 8, 8})
			y = b.Linear(y, "fc1", 32, true)
			y = b.Act("aten::gelu", y)
			y = b.Linear(y, "fc2", 8, true)
			y = b.Op1("aten::permute", "blk", []int{y, b.IntList(0, 3, 1, 2)}, []int64{1, 8, 8, 8})
			y = b.Mul(b.Param("layer_scale", 8, 1, 1), y)
			y = b.Add(y, s)
			b.Output(b.Conv(y, "head", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "stem.weight:0", channels: 8, prunable: true, inexact: "normalizes over these channels",
				contains: []string{"dw.weight:0", "ln.weight:0", "ln.bias:0", "fc1.weight:1", "fc2.weight:0",
					"fc2.bias:0", "layer_scale:0", "head.weight:1"},
				ln: []string{"ln.weight"}, dw: []string{"dw.weight"}},
			{has: "fc1.weight:0", channels: 32, prunable: true,
				members: []string{"fc1.weight:0", "fc1.bias:0", "fc2.weight:1"}},
		},
	},
	{
		name: "channels-last conv input freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::permute", "", []int{y, b.IntList(0, 2, 3, 1)}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(y, "d", 4, 1, irtest.ConvOpts{Stride: 2}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, reason: "not on dim 1"}},
	},
	{
		// Channel attention normalised by a softmax over the channels.
		name: "softmax over the channels is inexact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 8, 1, irtest.ConvOpts{})
			g := b.Op1("aten::softmax", "", []int{y, b.Int(1), b.None()}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(b.Mul(y, g), "e", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, inexact: "normalizes over the channels",
			members: []string{"c.weight:0", "e.weight:1"}}},
	},
	{
		// Along the width it leaves the channels alone.
		name: "softmax along another dim keeps the channels exact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Op1("aten::softmax", "", []int{b.Conv(x, "c", 8, 1, irtest.ConvOpts{}), b.Int(-1), b.None()}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(y, "e", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "e.weight:1"}}},
	},
	{
		// ECA: a conv that slides along the channels, keeping their
		// positions, mixes neighbours: prunable, not exact.
		name: "conv sliding along the channels is inexact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::permute", "", []int{y, b.IntList(0, 2, 3, 1)}, []int64{1, 8, 8, 8})
			y = b.Conv(y, "d", 8, 3, irtest.ConvOpts{Pad: 1, Bias: true})
			y = b.Op1("aten::permute", "", []int{y, b.IntList(0, 3, 1, 2)}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(y, "e", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, inexact: "slides along the channels",
			members: []string{"c.weight:0", "e.weight:1"}}},
	},
	{
		name: "group_norm prunes whole groups",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "a", 8, 1, irtest.ConvOpts{})
			y = b.Op1("aten::group_norm", "gn", []int{y, b.Int(2), b.Param("gn.weight", 8), b.Param("gn.bias", 8),
				b.Float(1e-5), b.Bool(true)}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(y, "c", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 8, prunable: true, block: 4,
			convs: []GroupedConv{{"gn.weight", 4}}, dw: []string{},
			members: []string{"a.weight:0", "gn.weight:0", "gn.bias:0", "c.weight:1"}}},
	},
	{
		name: "channel shuffle freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.View(y, 1, 2, 4, 8, 8)
			y = b.Act("aten::contiguous", b.Transpose(y, 1, 2), b.Int(0))
			y = b.View(y, 1, 8, 8, 8)
			b.Output(b.Relu(b.Conv(y, "d", 8, 1, irtest.ConvOpts{})))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, reason: "splits or merges the channel dim"},
			{has: "d.weight:1", channels: 8, reason: "aten::view"},
		},
	},
	{
		name: "channels-last permute follows into a Linear over the channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::permute", "", []int{y, b.IntList(0, 2, 3, 1)}, []int64{1, 8, 8, 8})
			b.Output(b.Linear(y, "fc", 4, true))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "fc.weight:1"}}},
	},
	{
		// torch.chunk sizes its parts from the channel count as it runs:
		// the parts must stay equal, so channel k of each goes together.
		name: "chunk along the channels ties its parts",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			p := b.Chunk(y, 2, 1)
			b.Output(b.Add(b.Conv(p[0], "a", 4, 1, irtest.ConvOpts{}), b.Conv(p[1], "b", 4, 1, irtest.ConvOpts{})))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 4, prunable: true, members: []string{"c.weight:0", "c.weight:0+4", "a.weight:1", "b.weight:1"}},
		},
	},
	{
		// YOLOv8's C2f: one half passed on, the other through a residual
		// bottleneck, all concatenated.
		name: "chunk in a C2f block",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "cv1", 8, 1, irtest.ConvOpts{}))
			p := b.Chunk(y, 2, 1)
			m := b.Add(p[1], b.Conv(p[1], "m", 4, 3, irtest.ConvOpts{Pad: 1}))
			b.Output(b.Conv(b.Cat(1, p[0], p[1], m), "cv2", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "cv1.weight:0", channels: 4, prunable: true,
				members: []string{"cv1.weight:0", "cv1.weight:0+4", "m.weight:1", "m.weight:0", "cv2.weight:1", "cv2.weight:1+4", "cv2.weight:1+8"}},
		},
	},
	{
		// The parts of a concatenation are already apart: no cut, tied.
		name: "chunk of a concatenation ties the concatenated parts",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			p := b.Chunk(b.Cat(1, b.Conv(x, "a", 4, 1, irtest.ConvOpts{}), b.Conv(x, "b", 4, 1, irtest.ConvOpts{})), 2, 1)
			b.Output(b.Conv(b.Mul(p[0], p[1]), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, prunable: true, members: []string{"a.weight:0", "b.weight:0", "e.weight:1"}},
		},
	},
	{
		// Parts of unequal size would not stay as the code sizes them.
		name: "chunk into unequal parts freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 9, 1, irtest.ConvOpts{})
			list := b.OpValues("aten::chunk", "", []int{y, b.Int(2), b.Int(1)}, ir.Value{Kind: ir.KindTensorList})[0]
			p := b.Op("prim::ListUnpack", "", []int{list}, []int64{1, 5, 8, 8}, []int64{1, 4, 8, 8})
			b.Output(b.Conv(p[0], "a", 2, 1, irtest.ConvOpts{}), b.Conv(p[1], "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 9, reason: "splits the channels"}},
	},
	{
		// split(x, 4) bakes the part size: the channels stay.
		name: "split by a size along the channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 8, 1, irtest.ConvOpts{})
			list := b.OpValues("aten::split", "", []int{y, b.Int(4), b.Int(1)}, ir.Value{Kind: ir.KindTensorList})[0]
			p := b.Op("prim::ListUnpack", "", []int{list}, []int64{1, 4, 8, 8}, []int64{1, 4, 8, 8})
			b.Output(b.Conv(b.Add(p[0], p[1]), "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, reason: "splits the channels"}},
	},
	{
		name: "chunk along a spatial dim follows",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			p := b.Chunk(y, 2, 2)
			b.Output(b.Conv(b.Add(p[0], p[1]), "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}}},
	},
	{
		// SKNet: branches stacked, summed over the new dim. Stacked
		// tensors have one shape, so channel k of each goes together.
		name: "stack ties its inputs and carries their channels one dim out",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			p := b.Relu(b.Conv(x, "p", 8, 3, irtest.ConvOpts{Pad: 1}))
			q := b.Relu(b.Conv(x, "q", 8, 1, irtest.ConvOpts{}))
			s := b.Op1("aten::stack", "", []int{b.List(p, q), b.Int(1)}, []int64{1, 2, 8, 8, 8})
			u := b.Op1("aten::sum", "", []int{s, b.IntList(1), b.Bool(false), b.None()}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(u, "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "p.weight:0", channels: 8, prunable: true, members: []string{"p.weight:0", "q.weight:0", "d.weight:1"}}},
	},
	{
		name: "stack after the channels leaves their dim",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			p := b.Relu(b.Conv(x, "p", 8, 3, irtest.ConvOpts{Pad: 1}))
			q := b.Relu(b.Conv(x, "q", 8, 1, irtest.ConvOpts{}))
			s := b.Op1("aten::stack", "", []int{b.List(p, q), b.Int(-1)}, []int64{1, 8, 8, 8, 2})
			u := b.Op1("aten::mean", "", []int{s, b.IntList(-1), b.Bool(false), b.None()}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(u, "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "p.weight:0", channels: 8, prunable: true, members: []string{"p.weight:0", "q.weight:0", "d.weight:1"}}},
	},
	{
		// glu(x, 1) = a·σ(b) for x's channel halves a, b: channel k of
		// the output is channel k of each half.
		name: "glu over the channels ties its halves",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 8, 1, irtest.ConvOpts{Bias: true})
			g := b.Op1("aten::glu", "", []int{y, b.Int(1)}, []int64{1, 4, 8, 8})
			b.Output(b.Conv(g, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, prunable: true,
			members: []string{"c.weight:0", "c.weight:0+4", "c.bias:0", "c.bias:0+4", "d.weight:1"}}},
	},
	{
		name: "glu along another dim passes the channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 8, 1, irtest.ConvOpts{})
			g := b.Op1("aten::glu", "", []int{y, b.Int(-1)}, []int64{1, 8, 8, 4})
			b.Output(b.Conv(g, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}}},
	},
	{
		// F.normalize(x, dim=1): x / x.norm(2, 1, keepdim).clamp_min(eps).
		// Zeroed channels add nothing to the norm: exact.
		name: "normalize over the channels stays exact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			n := b.Op1("aten::norm", "", []int{y, b.Float(2), b.IntList(1), b.Bool(true)}, []int64{1, 1, 8, 8})
			n = b.Op1("aten::clamp_min", "", []int{n, b.Float(1e-12)}, []int64{1, 1, 8, 8})
			e := b.Op1("aten::expand_as", "", []int{n, y}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(b.Binary("aten::div", y, e), "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}}},
	},
	{
		// The norm of order -1 is changed by a zero (1/|0| is infinite).
		name: "norm of negative order over the channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			n := b.Op1("aten::linalg_vector_norm", "", []int{y, b.Float(-1), b.IntList(1), b.Bool(true), b.None()}, []int64{1, 1, 8, 8})
			b.Output(b.Conv(b.Binary("aten::div", y, n), "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, reason: "has an order a zero changes"}},
	},
	{
		name: "norm over the spatial dims keeps the channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			n := b.Op1("aten::linalg_vector_norm", "", []int{y, b.Float(2), b.IntList(2, 3), b.Bool(false), b.None()}, []int64{1, 8})
			b.Output(b.Linear(n, "fc", 4, true))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "fc.weight:1"}}},
	},
	{
		// SegNet: the decoder unpools its input where the encoder's
		// maxima were, channel for channel.
		name: "max_unpool2d ties its input's channels to the pooling's",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			e := b.Relu(b.Conv(x, "e", 8, 3, irtest.ConvOpts{Pad: 1}))
			p := b.Op("aten::max_pool2d_with_indices", "", []int{e, b.IntList(2, 2), b.IntList(2, 2), b.IntList(0, 0),
				b.IntList(1, 1), b.Bool(false)}, []int64{1, 8, 4, 4}, []int64{1, 8, 4, 4})
			m := b.Relu(b.Conv(p[0], "m", 8, 3, irtest.ConvOpts{Pad: 1}))
			u := b.Op1("aten::max_unpool2d", "", []int{m, p[1], b.IntList(8, 8)}, []int64{1, 8, 8, 8})
			b.Output(b.Conv(u, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "e.weight:0", channels: 8, prunable: true, members: []string{"e.weight:0", "m.weight:1", "m.weight:0", "d.weight:1"}}},
	},
	{
		// Sub-pixel upsampling: output channel c is input channels 4c to
		// 4c+3, so the conv's filters go four at a time.
		name: "pixel_shuffle makes r² of its input's channels one",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 16, 3, irtest.ConvOpts{Pad: 1, Bias: true})
			p := b.Op1("aten::pixel_shuffle", "", []int{y, b.Int(2)}, []int64{1, 4, 16, 16})
			b.Output(b.Conv(b.BN(p, "bn"), "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0*4", channels: 4, prunable: true,
			members: []string{"c.weight:0*4", "c.bias:0*4", "bn.weight:0", "bn.bias:0", "bn.running_mean:0", "bn.running_var:0", "d.weight:1"}}},
	},
	{
		// Space to depth: input channel c becomes channels 4c to 4c+3.
		name: "pixel_unshuffle gives each channel r² consecutive ones",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1}))
			p := b.Op1("aten::pixel_unshuffle", "", []int{y, b.Int(2)}, []int64{1, 16, 4, 4})
			b.Output(b.Conv(p, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, prunable: true, members: []string{"c.weight:0", "d.weight:1*4"}}},
	},
	{
		// The shuffle's r² channels must come from one conv's filters; a
		// space that is also cut elsewhere cannot be regrouped.
		name: "pixel_shuffle of a concatenation groups each part",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Cat(1, b.Conv(x, "a", 8, 1, irtest.ConvOpts{}), b.Conv(x, "e", 4, 1, irtest.ConvOpts{}))
			p := b.Op1("aten::pixel_shuffle", "", []int{y, b.Int(2)}, []int64{1, 3, 16, 16})
			b.Output(b.Conv(p, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0*4", channels: 2, prunable: true, members: []string{"a.weight:0*4", "d.weight:1"}},
			{has: "e.weight:0*4", channels: 1, prunable: true, members: []string{"e.weight:0*4", "d.weight:1+2"}},
		},
	},
	{
		// Channels from the model input cannot be regrouped: frozen.
		name: "pixel_shuffle of channels that cannot be grouped freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 4, 8, 8)
			y := b.Add(x, b.Conv(x, "c", 4, 1, irtest.ConvOpts{}))
			p := b.Op1("aten::pixel_shuffle", "", []int{y, b.Int(2)}, []int64{1, 1, 16, 16})
			b.Output(b.Conv(p, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, reason: "model input"}},
	},
	{
		// Output channel 1 would be a's last two filters and e's two.
		name: "pixel_shuffle across parts that do not tile by r² freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Cat(1, b.Conv(x, "a", 6, 1, irtest.ConvOpts{}), b.Conv(x, "e", 2, 1, irtest.ConvOpts{}))
			p := b.Op1("aten::pixel_shuffle", "", []int{y, b.Int(2)}, []int64{1, 2, 16, 16})
			b.Output(b.Conv(p, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 6, reason: "cannot be grouped by 4"},
			{has: "e.weight:0", channels: 2, reason: "cannot be grouped by 4"},
		},
	},
	{
		// padding="same" traces as aten::_convolution_mode, with convNd's
		// arguments: its groups count follows as a conv2d's does.
		name: "convs with padding same follow, depthwise included",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 4, irtest.ConvOpts{Same: true}))
			y = b.Conv(y, "dw", 8, 5, irtest.ConvOpts{Same: true, Groups: 8})
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true,
			members: []string{"c.weight:0", "dw.weight:0", "d.weight:1"}, dw: []string{"dw.weight"}}},
	},
	{
		name: "slice along the channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::slice", "", []int{y, b.Int(1), b.Int(0), b.Int(4), b.Int(1)}, []int64{1, 4, 8, 8})
			b.Output(b.Conv(y, "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, reason: "cuts the channels"}},
	},
	{
		name: "unknown op freezes what it touches",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::frobnicate", "", []int{y}, []int64{1, 8, 8, 8})
			y = b.Relu(b.Conv(y, "d", 8, 1, irtest.ConvOpts{}))
			b.Output(b.Conv(y, "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, reason: "unsupported op aten::frobnicate"},
			{has: "d.weight:1", channels: 8, reason: "unsupported op aten::frobnicate"},
			{has: "d.weight:0", channels: 8, prunable: true},
		},
	},
	{
		name: "parameter read by an unknown op is pinned",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			z := b.Op1("aten::frobnicate", "", []int{x, b.Param("c.weight", 8, 3, 1, 1)}, []int64{1, 3})
			b.Output(b.Conv(y, "d", 4, 1, irtest.ConvOpts{}), z)
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, reason: "c.weight is read where its channels are not followed: unsupported op aten::frobnicate"}},
	},
	{
		name: "tuple output freezes every element",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			d1 := b.Conv(y, "d1", 4, 1, irtest.ConvOpts{})
			d2 := b.Conv(y, "d2", 5, 1, irtest.ConvOpts{})
			b.Output(b.OpValues("prim::TupleConstruct", "", []int{d1, d2}, ir.Value{Kind: ir.KindOther})[0])
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d1.weight:1", "d2.weight:1"}},
			{has: "d1.weight:0", channels: 4, reason: "model output"},
			{has: "d2.weight:0", channels: 5, reason: "model output"},
		},
	},
	{
		// A module called twice: each call's spaces index the same rows of
		// its weight, so they lose the same channels.
		name: "a conv called twice ties its calls' spaces",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			ya := b.Conv(b.Relu(b.Conv(x, "ca", 8, 1, irtest.ConvOpts{})), "s", 8, 1, irtest.ConvOpts{})
			yb := b.Conv(b.Relu(b.Conv(x, "cb", 8, 1, irtest.ConvOpts{})), "s", 8, 1, irtest.ConvOpts{})
			b.Output(b.Conv(b.Relu(ya), "e", 2, 1, irtest.ConvOpts{}), b.Conv(b.Relu(yb), "f", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "ca.weight:0", channels: 8, prunable: true, members: []string{"ca.weight:0", "s.weight:1", "cb.weight:0"},
				producers: []string{"ca.weight:0", "cb.weight:0"}, layers: []string{"ca", "cb"}},
			{has: "s.weight:0", channels: 8, prunable: true, members: []string{"s.weight:0", "e.weight:1", "f.weight:1"},
				producers: []string{"s.weight:0"}, layers: []string{"s"}},
		},
	},
	{
		// A Siamese pair: one backbone on two inputs, the embeddings
		// concatenated. The shared conv's channels go from both halves of
		// the head's input.
		name: "a shared backbone's channels reach both halves of a concatenation",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			emb := func(in int) int {
				return b.AdaptiveAvgPool(b.Relu(b.Conv(b.Relu(b.Conv(in, "stem", 8, 3, irtest.ConvOpts{Pad: 1})), "body", 4, 3, irtest.ConvOpts{Pad: 1})), 1, 1)
			}
			flipped := b.Op1("aten::flip", "", []int{x, b.IntList(3)}, []int64{1, 3, 8, 8})
			b.Output(b.Conv(b.Cat(1, emb(x), emb(flipped)), "head", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "stem.weight:0", channels: 8, prunable: true, members: []string{"stem.weight:0", "body.weight:1"}},
			{has: "body.weight:0", channels: 4, prunable: true, members: []string{"body.weight:0", "head.weight:1", "head.weight:1+4"}},
		},
	},
	{
		// The head reads [A B] in one call and [C D] in the other, with
		// A, C and B, D of different widths: its input rows cannot follow
		// both.
		name: "a weight whose calls split its channels differently freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			conv := func(name string, n int64) int { return b.Relu(b.Conv(x, name, n, 1, irtest.ConvOpts{})) }
			y1 := b.Conv(b.Cat(1, conv("a", 4), conv("b", 4)), "head", 2, 1, irtest.ConvOpts{})
			y2 := b.Conv(b.Cat(1, conv("c", 6), conv("d", 2)), "head", 2, 1, irtest.ConvOpts{})
			b.Output(b.Add(y1, y2))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, reason: "overlap"},
			{has: "b.weight:0", channels: 4, reason: "overlap"},
			{has: "c.weight:0", channels: 6, reason: "overlap"},
			{has: "d.weight:0", channels: 2, reason: "overlap"},
		},
	},
	{
		// CBAM's spatial attention: the mean and the max over the channels,
		// concatenated, make a 2-channel map for a conv.
		name: "mean and max over the channels leave the channels prunable, inexact",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			avg := b.Op1("aten::mean", "", []int{y, b.IntList(1), b.Bool(true), b.None()}, []int64{1, 1, 8, 8})
			mx := b.Op1("aten::amax", "", []int{y, b.IntList(1), b.Bool(true)}, []int64{1, 1, 8, 8})
			att := b.Act("aten::sigmoid", b.Conv(b.Cat(1, avg, mx), "sa", 1, 3, irtest.ConvOpts{Pad: 1}))
			b.Output(b.Conv(b.Mul(y, att), "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"},
				inexact: "aten::mean (op 7) reduces over the channels"},
		},
	},
	{
		name: "a sum over the channels keeps them exact, an argmax freezes them",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			s := b.Op1("aten::sum", "", []int{y, b.IntList(1), b.Bool(true), b.None()}, []int64{1, 1, 8, 8})
			z := b.Relu(b.Conv(x, "e", 6, 1, irtest.ConvOpts{}))
			am := b.Op1("aten::argmax", "", []int{z, b.Int(1), b.Bool(true)}, []int64{1, 1, 8, 8})
			b.Output(b.Conv(b.Mul(y, s), "d", 4, 1, irtest.ConvOpts{}), am)
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}},
			{has: "e.weight:0", channels: 6, reason: "aten::argmax (op"},
		},
	},
	{
		// CBAM as usually written: torch.max(x, dim=1)[0], the indices
		// dropped. Where they are read, they index the channels.
		name: "max along the channels: its values alone leave them inexact, its indices read freeze them",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			vy := b.Op("aten::max", "", []int{y, b.Int(1), b.Bool(true)}, []int64{1, 1, 8, 8}, []int64{1, 1, 8, 8})
			z := b.Relu(b.Conv(x, "e", 6, 1, irtest.ConvOpts{}))
			vz := b.Op("aten::max", "", []int{z, b.Int(1), b.Bool(true)}, []int64{1, 1, 8, 8}, []int64{1, 1, 8, 8})
			b.Output(b.Conv(b.Mul(y, vy[0]), "d", 4, 1, irtest.ConvOpts{}), b.Conv(b.Mul(z, vz[0]), "f", 4, 1, irtest.ConvOpts{}), vz[1])
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}, inexact: "aten::max (op"},
			{has: "e.weight:0", channels: 6, reason: "reduces over the channels"},
		},
	},
	{
		// p's single channel moves to dim 2 and broadcasts there; its
		// height, of fixed size 4, lands on c's channels.
		name: "an operand whose channels broadcast elsewhere still spans the channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			p := b.Relu(b.Conv(x, "p", 1, 1, irtest.ConvOpts{}))
			t := b.Op1("aten::transpose", "", []int{p, b.Int(1), b.Int(2)}, []int64{1, 4, 1, 4})
			y := b.Add(b.Relu(b.Conv(x, "c", 4, 1, irtest.ConvOpts{})), t)
			b.Output(b.Conv(y, "d", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 4, reason: "an operand of fixed size spans the channels"}},
	},
	{
		name: "flip along the channels freezes, along space passes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "c", 8, 1, irtest.ConvOpts{}))
			y = b.Op1("aten::flip", "", []int{y, b.IntList(2, -1)}, []int64{1, 8, 8, 8})
			z := b.Relu(b.Conv(y, "d", 4, 1, irtest.ConvOpts{}))
			z = b.Op1("aten::flip", "", []int{z, b.IntList(1)}, []int64{1, 4, 8, 8})
			b.Output(b.Conv(z, "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "c.weight:0", channels: 8, prunable: true, members: []string{"c.weight:0", "d.weight:1"}},
			{has: "d.weight:0", channels: 4, reason: "aten::flip (op 15) works along the channels"},
		},
	},
	{
		name: "layer scale parameter becomes a member",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Conv(x, "c", 8, 1, irtest.ConvOpts{})
			y = b.Mul(b.Param("gamma", 8, 1, 1), y)
			b.Output(b.Conv(y, "d", 4, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "c.weight:0", channels: 8, prunable: true,
			members: []string{"c.weight:0", "gamma:0", "d.weight:1"}}},
	},
	{
		// The plain operand's space is cut where the concatenation's parts
		// meet, and each part is pruned with its own share of d.
		name: "add of concatenated and plain channels cuts the plain one",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			c := b.Cat(1, b.Conv(x, "a", 4, 1, irtest.ConvOpts{}), b.Conv(x, "b", 4, 1, irtest.ConvOpts{}))
			y := b.Add(c, b.Conv(x, "d", 8, 1, irtest.ConvOpts{}))
			b.Output(b.Conv(y, "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, prunable: true, members: []string{"a.weight:0", "d.weight:0", "e.weight:1"}, layers: []string{"a", "d"}},
			{has: "b.weight:0", channels: 4, prunable: true, members: []string{"b.weight:0", "d.weight:0+4", "e.weight:1+4"}, layers: []string{"b", "d"}},
		},
	},
	{
		// GhostNet: cat(primary, depthwise(primary)) added to the block's
		// input, the same channels twice: both halves of d lose the same.
		name: "add of one space concatenated twice and plain channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			d := b.Conv(x, "d", 8, 1, irtest.ConvOpts{})
			p := b.Conv(d, "p", 4, 1, irtest.ConvOpts{})
			c := b.Cat(1, p, b.Conv(p, "q", 4, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
			b.Output(b.Conv(b.Add(c, d), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "d.weight:0", channels: 4, prunable: true,
				contains: []string{"d.weight:0", "d.weight:0+4", "p.weight:1", "p.weight:1+4", "p.weight:0", "q.weight:0", "e.weight:1", "e.weight:1+4"}},
		},
	},
	{
		// Nested: the cut of d's space at 4 meets f's, which is cut there
		// too in a later pass.
		name: "cuts carried through a second add",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			f := b.Conv(x, "f", 8, 1, irtest.ConvOpts{})
			d := b.Add(b.Conv(x, "d", 8, 1, irtest.ConvOpts{}), f)
			c := b.Cat(1, b.Conv(x, "a", 4, 1, irtest.ConvOpts{}), b.Conv(x, "b", 4, 1, irtest.ConvOpts{}))
			b.Output(b.Conv(b.Add(d, c), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, prunable: true, members: []string{"f.weight:0", "d.weight:0", "a.weight:0", "e.weight:1"}},
			{has: "b.weight:0", channels: 4, prunable: true, members: []string{"f.weight:0+4", "d.weight:0+4", "b.weight:0", "e.weight:1+4"}},
		},
	},
	{
		// CIFAR ResNet "option A": the shortcut pads the channels with
		// zeros. The padded channels' share of each conv is frozen (the
		// code fixes their count); the rest follows the stream, through
		// the next block's identity shortcut too.
		name: "channel padding in a shortcut",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			s := b.Relu(b.Conv(x, "s", 4, 1, irtest.ConvOpts{}))
			sc := b.Op1("aten::constant_pad_nd", "", []int{s, b.IntList(0, 0, 0, 0, 2, 2), b.Float(0)}, []int64{1, 8, 8, 8})
			z := b.Relu(b.Add(b.Conv(s, "c", 8, 3, irtest.ConvOpts{Pad: 1}), sc))
			z = b.Relu(b.Add(b.Conv(z, "d", 8, 3, irtest.ConvOpts{Pad: 1}), z))
			b.Output(b.Conv(z, "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "s.weight:0", channels: 4, prunable: true,
				members: []string{"s.weight:0", "c.weight:1", "c.weight:0+2", "d.weight:1+2", "d.weight:0+2", "e.weight:1+2"}},
			{has: "c.weight:0", channels: 2, reason: "pads the channels"},
			{has: "d.weight:0+6", channels: 2, reason: "pads the channels"},
		},
	},
	{
		// CoordConv: planes that do not depend on the input (coordinates)
		// concatenated to the features. Their count is fixed, so they are
		// a frozen space of their own; the features stay prunable.
		name: "constant channels concatenated to the features",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			s := b.Relu(b.Conv(x, "s", 4, 1, irtest.ConvOpts{}))
			coords := b.Tensor(1, 2, 8, 8)
			b.Output(b.Conv(b.Cat(1, coords, s), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "s.weight:0", channels: 4, prunable: true, members: []string{"s.weight:0", "e.weight:1+2"}},
			{has: "e.weight:1", channels: 2, reason: "do not depend on the model input"},
		},
	},
	{
		// Along another dim the constant would have to lose channels with
		// the features: frozen.
		name: "constant concatenated along another dim freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			s := b.Relu(b.Conv(x, "s", 4, 1, irtest.ConvOpts{}))
			b.Output(b.Conv(b.Cat(2, s, b.Tensor(1, 4, 2, 8)), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "s.weight:0", channels: 4, reason: "inputs do not all carry followed channels"}},
	},
	{
		// TCNs normalise their weights: w = g·v/‖v‖ per filter. v stands
		// for the weight on both sides; g goes with the filters and holds
		// their norms, so it is the producer the criteria score. Exact:
		// surgery rescales g where v loses input channels (cut.Slice.Renorm).
		name: "weight-normalised convs follow",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1, WeightNorm: true, Bias: true}))
			y = b.Relu(b.Conv(y, "b", 4, 3, irtest.ConvOpts{Pad: 1, WeightNorm: true}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight_g:0", channels: 6, prunable: true,
				members: []string{"a.weight_g:0", "a.weight_v:0", "a.bias:0", "b.weight_v:1"}},
			{has: "b.weight_g:0", channels: 4, prunable: true,
				members: []string{"b.weight_g:0", "b.weight_v:0", "c.weight:1"}},
			{has: "a.weight_v:1", channels: 3, reason: "model input"},
		},
	},
	{
		// A weight-normalised grouped conv is not followed: its weight
		// stays a value the analysis cannot cut.
		name: "weight-normalised depthwise conv freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 6, 1, irtest.ConvOpts{}))
			y = b.Relu(b.Conv(y, "dw", 6, 3, irtest.ConvOpts{Pad: 1, Groups: 6, WeightNorm: true}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 6, reason: "weight normalisation of a grouped"}},
	},
	{
		// Weight standardisation (BiT, timm's StdConv2d): each filter is
		// made zero-mean and unit-variance in forward. The filters stay
		// independent (exact), but a filter's statistics run over its
		// input channels, so that side is inexact.
		name: "standardised weights follow, inexact on the input side",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1, Std: "bn"}))
			y = b.Relu(b.Conv(y, "b", 4, 3, irtest.ConvOpts{Pad: 1, Std: "var_mean"}))
			y = b.Relu(b.Conv(y, "n", 5, 1, irtest.ConvOpts{Std: "gain"}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 6, prunable: true, inexact: "standardises each filter",
				members: []string{"a.weight:0", "b.weight:1"}},
			{has: "b.weight:0", channels: 4, prunable: true, inexact: "standardises each filter",
				members: []string{"b.weight:0", "n.weight:1"}},
			{has: "n.weight:0", channels: 5, prunable: true,
				members: []string{"n.weight:0", "n.gain:0", "c.weight:1"}},
		},
	},
	{
		// A standardised weight of a depthwise conv is not followed.
		name: "standardised depthwise conv freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			y := b.Relu(b.Conv(x, "a", 6, 1, irtest.ConvOpts{}))
			y = b.Relu(b.Conv(y, "dw", 6, 3, irtest.ConvOpts{Pad: 1, Groups: 6, Std: "bn"}))
			b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 6, reason: "computed weight of a grouped"}},
	},
	{
		// A reflection pad would copy channels: frozen.
		name: "reflection pad across the channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 8, 8)
			s := b.Conv(x, "s", 4, 1, irtest.ConvOpts{})
			y := b.Op1("aten::pad", "", []int{s, b.IntList(0, 0, 0, 0, 1, 1), b.Value(ir.Value{Kind: ir.KindString, Const: true, Str: "reflect"}), b.None()}, []int64{1, 6, 8, 8})
			b.Output(b.Conv(y, "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "s.weight:0", channels: 4, reason: "changes the channel count"}},
	},
	{
		// The model input cannot be cut (nor pruned): the parts of the
		// concatenation added to it stay.
		name: "add of concatenated channels and the model input freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 8, 8, 8)
			c := b.Cat(1, b.Conv(x, "a", 4, 1, irtest.ConvOpts{}), b.Conv(x, "b", 4, 1, irtest.ConvOpts{}))
			b.Output(b.Conv(b.Add(c, x), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, reason: "differently concatenated"},
			{has: "b.weight:0", channels: 4, reason: "differently concatenated"},
		},
	},
	{
		// SAGAN's self-attention: bmm(q, k) contracts q's and k's channels
		// (tied, exact: zeroed channels add nothing to the sum), the
		// attention map carries none, and v's channels pass through the
		// second product (a matmul here) to the residual add.
		name: "self-attention products follow",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 8, 3, irtest.ConvOpts{Pad: 1}))
			q := b.Permute(b.Flatten(b.Conv(y, "q", 4, 1, irtest.ConvOpts{Bias: true}), 2), 0, 2, 1)
			k := b.Flatten(b.Conv(y, "k", 4, 1, irtest.ConvOpts{Bias: true}), 2)
			att := b.Op1("aten::softmax", "", []int{b.Bmm(q, k), b.Int(-1), b.None()}, []int64{1, 16, 16})
			v := b.Flatten(b.Conv(y, "v", 8, 1, irtest.ConvOpts{}), 2)
			o := b.Op1("aten::matmul", "", []int{v, b.Permute(att, 0, 2, 1)}, []int64{1, 8, 16})
			b.Output(b.Conv(b.Add(b.View(o, 1, -1, 4, 4), y), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "q.weight:0", channels: 4, prunable: true,
				members: []string{"q.weight:0", "q.bias:0", "k.weight:0", "k.bias:0"}},
			{has: "a.weight:0", channels: 8, prunable: true,
				contains: []string{"q.weight:1", "k.weight:1", "v.weight:0", "v.weight:1", "e.weight:1"}},
		},
	},
	{
		// An SE gate written as einsum: the kept label c ties the gate's
		// channels to the features', as a broadcasting mul would.
		name: "einsum channel gate follows",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1}))
			m := b.Op1("aten::mean", "", []int{y, b.IntList(2, 3), b.Bool(false), b.None()}, []int64{1, 6})
			w := b.Act("aten::sigmoid", b.Linear(m, "fc", 6, true))
			b.Output(b.Conv(b.Einsum("bchw,bc->bchw", []int64{1, 6, 4, 4}, y, w), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 6, prunable: true,
			contains: []string{"fc.weight:0", "fc.weight:1", "fc.bias:0", "e.weight:1"}}},
	},
	{
		// A per-pixel dot product of two projections gates the features:
		// the contraction leaves a map without channels, which unsqueeze
		// must not turn into frozen channels on the height dim.
		name: "contraction to a spatial gate follows",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1}))
			g := b.Einsum("bchw,bchw->bhw", []int64{1, 4, 4}, b.Conv(y, "q", 3, 1, irtest.ConvOpts{}), b.Conv(y, "k", 3, 1, irtest.ConvOpts{}))
			g = b.Act("aten::sigmoid", b.Op1("aten::unsqueeze", "", []int{g, b.Int(1)}, []int64{1, 1, 4, 4}))
			b.Output(b.Conv(b.Mul(y, g), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "q.weight:0", channels: 3, prunable: true, members: []string{"q.weight:0", "k.weight:0"}},
			{has: "a.weight:0", channels: 6, prunable: true, contains: []string{"q.weight:1", "k.weight:1", "e.weight:1"}},
		},
	},
	{
		// CBAM as its authors wrote it: max and mean over the channels
		// without keepdim, unsqueezed and concatenated. The pooled planes
		// carry no channels (the spatial conv's input dim is in no group);
		// the features stay prunable, inexact as with keepdim.
		name: "channel pooling without keepdim follows",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1}))
			mx := b.OpValues("aten::max", "", []int{y, b.Int(1), b.Bool(false)},
				ir.Value{Kind: ir.KindTensor, Shape: []int64{1, 4, 4}}, ir.Value{Kind: ir.KindTensor, Shape: []int64{1, 4, 4}, DType: "long"})[0]
			mean := b.Op1("aten::mean", "", []int{y, b.IntList(1), b.Bool(false), b.None()}, []int64{1, 4, 4})
			un := func(v int) int { return b.Op1("aten::unsqueeze", "", []int{v, b.Int(1)}, []int64{1, 1, 4, 4}) }
			att := b.Act("aten::sigmoid", b.Conv(b.Cat(1, un(mx), un(mean)), "sa", 1, 3, irtest.ConvOpts{Pad: 1}))
			b.Output(b.Conv(b.Mul(y, att), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 6, prunable: true, contains: []string{"e.weight:1"},
				inexact: "reduces over the channels"},
			{has: "sa.weight:0", channels: 1, prunable: true, members: []string{"sa.weight:0"}},
		},
	},
	{
		// A plane pooled across the channels, concatenated to them (a GAN
		// critic's minibatch-deviation plane is built this way): its count
		// is fixed, the features around it stay prunable.
		name: "pooled plane concatenated to the channels",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1}))
			mean := b.Op1("aten::mean", "", []int{y, b.IntList(1), b.Bool(false), b.None()}, []int64{1, 4, 4})
			p := b.Op1("aten::unsqueeze", "", []int{mean, b.Int(1)}, []int64{1, 1, 4, 4})
			b.Output(b.Conv(b.Cat(1, y, p), "e", 2, 1, irtest.ConvOpts{}))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 6, prunable: true, members: []string{"a.weight:0", "e.weight:1"},
				inexact: "reduces over the channels"},
			{has: "e.weight:1+6", channels: 1, reason: "computed across the channels"},
		},
	},
	{
		// An outer product would carry channels on two dims of one value.
		name: "outer product of channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			mean := func(v int, c int64) int {
				return b.Op1("aten::mean", "", []int{v, b.IntList(2, 3), b.Bool(false), b.None()}, []int64{1, c})
			}
			u := mean(b.Relu(b.Conv(x, "a", 4, 1, irtest.ConvOpts{})), 4)
			w := mean(b.Relu(b.Conv(x, "c", 5, 1, irtest.ConvOpts{})), 5)
			z := b.Einsum("bc,bd->bcd", []int64{1, 4, 5}, u, w)
			b.Output(b.Linear(b.Flatten(z, 1), "fc", 2, true))
		},
		want: []wantGroup{
			{has: "a.weight:0", channels: 4, reason: "two dims"},
			{has: "c.weight:0", channels: 5, reason: "two dims"},
		},
	},
	{
		// A weight spanning the channels keeps its size: frozen.
		name: "einsum with a fixed-size operand over the channels freezes",
		build: func(b *irtest.Builder) {
			x := b.Input(1, 3, 4, 4)
			y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1}))
			z := b.Einsum("bchw,c->bhw", []int64{1, 4, 4}, y, b.Param("p", 6))
			b.Output(b.Op1("aten::unsqueeze", "", []int{z, b.Int(1)}, []int64{1, 1, 4, 4}))
		},
		want: []wantGroup{{has: "a.weight:0", channels: 6, reason: "fixed size spans the channels"}},
	},
}

func TestAnalyze(t *testing.T) {
	for _, tc := range analyzeCases {
		t.Run(tc.name, func(t *testing.T) {
			b := irtest.New()
			tc.build(b)
			g := mustBuild(t, b)
			a, err := Analyze(g)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				grp := groupWith(a, w.has)
				if grp == nil {
					t.Errorf("no group has %s; groups:\n%s", w.has, dump(a))
					continue
				}
				if grp.Channels != w.channels {
					t.Errorf("%s: channels %d, want %d", w.has, grp.Channels, w.channels)
				}
				if grp.Prunable() != w.prunable {
					t.Errorf("%s: prunable=%v (reason %q), want %v", w.has, grp.Prunable(), grp.Reason, w.prunable)
				}
				if w.reason != "" && !strings.Contains(grp.Reason, w.reason) {
					t.Errorf("%s: reason %q, want it to contain %q", w.has, grp.Reason, w.reason)
				}
				if w.inexact == "" && (!grp.Exact || grp.Inexact != "") {
					t.Errorf("%s: inexact (%q), want exact", w.has, grp.Inexact)
				}
				if w.inexact != "" && (grp.Exact || !strings.Contains(grp.Inexact, w.inexact)) {
					t.Errorf("%s: exact=%v inexact %q, want inexact containing %q", w.has, grp.Exact, grp.Inexact, w.inexact)
				}
				if w.ln != nil && !slices.Equal(grp.LayerNorms, w.ln) {
					t.Errorf("%s: layer norms %v, want %v", w.has, grp.LayerNorms, w.ln)
				}
				got := mstrs(grp.Members)
				if w.members != nil && !slices.Equal(got, w.members) {
					t.Errorf("%s: members\n got %v\nwant %v", w.has, got, w.members)
				}
				for _, m := range w.contains {
					if !slices.Contains(got, m) {
						t.Errorf("%s: members %v lack %s", w.has, got, m)
					}
				}
				if w.producers != nil && !slices.Equal(mstrs(grp.Producers), w.producers) {
					t.Errorf("%s: producers %v, want %v", w.has, mstrs(grp.Producers), w.producers)
				}
				if w.layers != nil && !slices.Equal(grp.Layers, w.layers) {
					t.Errorf("%s: layers %v, want %v", w.has, grp.Layers, w.layers)
				}
				if grp.Block != w.block {
					t.Errorf("%s: block %d, want %d", w.has, grp.Block, w.block)
				}
				if w.convs != nil && !slices.Equal(grp.GroupedConvs, w.convs) {
					t.Errorf("%s: grouped convs %v, want %v", w.has, grp.GroupedConvs, w.convs)
				}
				if w.dw != nil && !slices.Equal(grp.DepthwiseConvs, w.dw) && (len(w.dw) > 0 || len(grp.DepthwiseConvs) > 0) {
					t.Errorf("%s: depthwise %v, want %v", w.has, grp.DepthwiseConvs, w.dw)
				}
			}
			if tc.check != nil {
				tc.check(t, a)
			}
			checkAnalysis(t, g, a)
			again, err := Analyze(g)
			if err != nil || !reflect.DeepEqual(again.Groups, a.Groups) {
				t.Errorf("second analysis differs")
			}
			if t.Failed() {
				t.Logf("groups:\n%s", dump(a))
			}
		})
	}
}

func dump(a *Analysis) string {
	var sb strings.Builder
	for _, g := range a.Groups {
		fmt.Fprintf(&sb, "  g%d ch=%d prunable=%v reason=%q layers=%v members=%v\n",
			g.ID, g.Channels, g.Prunable(), g.Reason, g.Layers, mstrs(g.Members))
	}
	return sb.String()
}

func TestValueShape(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	f0 := b.Conv(x, "c0", 8, 3, irtest.ConvOpts{Pad: 1})
	f1 := b.Conv(x, "c1", 4, 3, irtest.ConvOpts{Pad: 1})
	cat := b.Cat(1, f0, f1)
	flat := b.Flatten(b.MaxPool(b.Relu(cat), 2, 2), 1)
	out := b.Linear(flat, "fc", 3, true)
	b.Output(out)
	g := mustBuild(t, b)
	a, err := Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	g0, g1 := groupWith(a, "c0.weight:0").ID, groupWith(a, "c1.weight:0").ID
	kept := map[int]int{g0: 5, g1: 1}
	for _, tc := range []struct {
		id   int
		want []int64
	}{
		{x, []int64{1, 3, 8, 8}},
		{f0, []int64{1, 5, 8, 8}},
		{cat, []int64{1, 6, 8, 8}},
		{flat, []int64{1, 6 * 16}},
		{out, []int64{1, 3}},
	} {
		if got := a.ValueShape(tc.id, kept); !slices.Equal(got, tc.want) {
			t.Errorf("ValueShape(%d) = %v, want %v", tc.id, got, tc.want)
		}
		if got := a.ValueShape(tc.id, nil); !slices.Equal(got, g.Value(tc.id).Shape) {
			t.Errorf("ValueShape(%d, nil) = %v, want traced %v", tc.id, got, g.Value(tc.id).Shape)
		}
	}
	if got := a.ParamShape("fc.weight", kept); !slices.Equal(got, []int64{3, 96}) {
		t.Errorf("fc.weight -> %v", got)
	}
	if a.ParamShape("nope", kept) != nil || a.ValueShape(12345, kept) != nil {
		t.Errorf("unknown names must give nil")
	}
	// Frozen groups never change, whatever the caller asks.
	in := groupWith(a, "c0.weight:1")
	if got := a.ParamShape("c0.weight", map[int]int{in.ID: 1}); !slices.Equal(got, []int64{8, 3, 3, 3}) {
		t.Errorf("frozen group changed c0.weight to %v", got)
	}
}

func TestValidateKept(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	b.Output(b.Conv(b.Relu(b.Conv(x, "c", 4, 1, irtest.ConvOpts{})), "d", 2, 1, irtest.ConvOpts{}))
	a, err := Analyze(mustBuild(t, b))
	if err != nil {
		t.Fatal(err)
	}
	id := groupWith(a, "c.weight:0").ID
	in := groupWith(a, "c.weight:1").ID
	for _, tc := range []struct {
		kept map[int][]int
		err  string
	}{
		{map[int][]int{id: {0, 3}}, ""},
		{map[int][]int{id: {}}, "no channels"},
		{map[int][]int{id: {3, 0}}, "ascending"},
		{map[int][]int{id: {1, 1}}, "ascending"},
		{map[int][]int{id: {4}}, "out of range"},
		{map[int][]int{in: {0}}, "not prunable"},
		{map[int][]int{99: {0}}, "unknown group"},
	} {
		err := a.ValidateKept(tc.kept)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ValidateKept(%v) = %v, want %q", tc.kept, err, tc.err)
		}
	}
}

func TestAnalyzeBadInput(t *testing.T) {
	if _, err := Analyze(nil); err == nil {
		t.Error("nil graph accepted")
	}
	g := &ir.Graph{Format: ir.Format, Values: []ir.Value{{ID: 1, Kind: ir.KindTensor}},
		Ops: []ir.Op{{Kind: "aten::relu", Inputs: []int{7}, Outputs: []int{1}}}}
	if _, err := Analyze(g); err == nil || !strings.Contains(err.Error(), "unknown value 7") {
		t.Errorf("dangling reference: %v", err)
	}
	// Unindexed but valid: Analyze indexes it.
	b := irtest.New()
	x := b.Input(1, 3, 4, 4)
	b.Output(b.Conv(x, "c", 4, 1, irtest.ConvOpts{}))
	built := mustBuild(t, b)
	raw := &ir.Graph{Format: built.Format, Inputs: built.Inputs, Outputs: built.Outputs,
		Values: built.Values, Ops: built.Ops, Params: built.Params}
	if a, err := Analyze(raw); err != nil || len(a.Groups) != 2 {
		t.Errorf("unindexed graph: %v", err)
	}
}

func TestWeightNormPairs(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1, WeightNorm: true}))
	y = b.Relu(b.Conv(y, "b", 4, 3, irtest.ConvOpts{Pad: 1}))
	// A norm over dim 1 is not the per-filter one: not followed.
	v := b.Param("d.weight_v", 2, 4, 1, 1)
	g := b.Param("d.weight_g", 1, 4, 1, 1)
	w := b.Op1("aten::_weight_norm", "d", []int{v, g, b.Int(1)}, []int64{2, 4, 1, 1})
	out := b.Op1("aten::_convolution", "d", []int{y, w, b.None(), b.IntList(1, 1), b.IntList(0, 0), b.IntList(1, 1),
		b.Bool(false), b.IntList(0, 0), b.Int(1), b.Bool(false), b.Bool(false), b.Bool(true), b.Bool(true)}, []int64{1, 2, 8, 8})
	b.Output(out)
	a, err := Analyze(mustBuild(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := a.WeightNorm("a.weight_v"); !ok || g != "a.weight_g" {
		t.Errorf("WeightNorm(a.weight_v) = %q, %v; want a.weight_g", g, ok)
	}
	for _, n := range []string{"a.weight_g", "b.weight", "d.weight_v"} {
		if g, ok := a.WeightNorm(n); ok {
			t.Errorf("WeightNorm(%s) = %q, want none", n, g)
		}
	}
	if grp := groupWith(a, "b.weight:0"); grp == nil || grp.Prunable() {
		t.Errorf("b's filters feed a conv whose weight norm runs over its input channels: want frozen, got\n%s", dump(a))
	}
	if !a.HasLayer("a") {
		t.Errorf("layer a (weight a.weight_v) unknown; layers %v", a.Layers())
	}
}

func TestStandardisedWeightSizes(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1, Std: "bn"}))
	y = b.Relu(b.Conv(y, "b", 4, 3, irtest.ConvOpts{Pad: 1, Std: "var_mean"}))
	b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
	g := mustBuild(t, b)
	a, err := Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	// a's reshape writes its 6 filters in; b's var_mean follows any count.
	if grp := groupWith(a, "a.weight:0"); grp == nil || !slices.Equal(grp.SizedWeights, []string{"a.weight"}) {
		t.Errorf("a's group: sized weights %v, want [a.weight]\n%s", grp.SizedWeights, dump(a))
	}
	if grp := groupWith(a, "b.weight:0"); grp == nil || len(grp.SizedWeights) != 0 {
		t.Errorf("b's group: sized weights %v, want none", grp.SizedWeights)
	}
	// The computed weights take their source's pruned shape.
	for i := range g.Ops {
		op := &g.Ops[i]
		if op.Kind != "aten::_convolution" || op.Scope == "c" {
			continue
		}
		src := a.WeightSource(op.Inputs[1])
		if src != op.Scope+".weight" {
			t.Errorf("conv %s: weight source %q", op.Scope, src)
			continue
		}
		kept := map[int]int{groupWith(a, src+":0").ID: 2}
		if got, want := a.ValueShape(op.Inputs[1], kept), a.ParamShape(src, kept); !slices.Equal(got, want) || got[0] != 2 {
			t.Errorf("conv %s: weight shape %v under kept, its source %v", op.Scope, got, want)
		}
	}
}
