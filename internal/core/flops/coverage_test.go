package flops

import (
	"math"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// shuffle is a channel shuffle between conv "a" and conv "d".
func shuffle(b *irtest.Builder, y int) int {
	y = b.View(y, 1, 2, 4, 8, 8)
	y = b.Act("aten::contiguous", b.Transpose(y, 1, 2), b.Int(0))
	return b.View(y, 1, 8, 8, 8)
}

func TestAttribute(t *testing.T) {
	type frozen struct {
		reason string
		layers []string // the frozen layers blamed on it
	}
	for _, tc := range []struct {
		name  string
		build func(b *irtest.Builder)
		// prunable are the layers with a prunable group.
		prunable []string
		// frozen are the reasons that freeze MACs, in rank order.
		frozen []frozen
		// groups: the layers of the group whose output channels the key
		// layer writes.
		groups map[string][]string
		// zero are reasons listed with no MACs.
		zero []string
	}{
		{
			name:     "small cnn: all prunable",
			build:    smallCNN,
			prunable: []string{"conv1", "conv2", "conv3", "fc"},
			groups: map[string][]string{
				"conv1": {"conv1", "conv2"}, "conv2": {"conv2", "conv3"}, "conv3": {"conv3", "fc"},
			},
			zero: []string{"model input", "model output"},
		},
		{
			name: "channel shuffle freezes the conv before it",
			build: func(b *irtest.Builder) {
				y := b.Relu(b.Conv(b.Input(1, 3, 8, 8), "a", 8, 1, irtest.ConvOpts{}))
				y = b.Relu(b.Conv(shuffle(b, y), "d", 16, 3, irtest.ConvOpts{Pad: 1}))
				b.Output(b.Conv(y, "e", 4, 1, irtest.ConvOpts{}))
			},
			prunable: []string{"d", "e"},
			frozen:   []frozen{{"aten::view splits or merges the channel dim with another dim", []string{"a"}}},
			groups:   map[string][]string{"a": {"a"}, "d": {"d", "e"}, "e": {"e"}},
			zero:     []string{"model input", "model output", "output of aten::view is not followed"},
		},
		{
			name: "two reasons ranked by MACs",
			build: func(b *irtest.Builder) {
				x := b.Input(1, 3, 8, 8)
				// "a" and "b" are frozen by an op the analysis does not know,
				// "c" (cheaper) by a transpose that mixes the channel dim
				// with a spatial one; "d" stays prunable.
				y := b.Relu(b.Conv(x, "a", 8, 3, irtest.ConvOpts{Pad: 1}))
				y = b.Op1("my::op", "blk", []int{y}, []int64{1, 8, 8, 8})
				y = b.Relu(b.Conv(y, "b", 8, 3, irtest.ConvOpts{Pad: 1}))
				y = b.Op1("my::op", "blk2", []int{y}, []int64{1, 8, 8, 8})
				y = b.Relu(b.Conv(y, "c", 4, 1, irtest.ConvOpts{}))
				y = b.Op1("aten::permute", "head", []int{y, b.IntList(0, 2, 3, 1)}, []int64{1, 8, 8, 4})
				y = b.Op1("aten::reshape", "head", []int{y, b.IntList(1, 8, 32)}, []int64{1, 8, 32})
				z := b.Relu(b.Conv(x, "d", 16, 3, irtest.ConvOpts{Pad: 1}))
				z = b.Conv(z, "d2", 4, 1, irtest.ConvOpts{})
				b.Output(y, z)
			},
			prunable: []string{"d", "d2"},
			frozen: []frozen{
				{"unsupported op my::op", []string{"a", "b"}},
				{"aten::reshape splits or merges the channel dim with another dim", []string{"c"}},
			},
			groups: map[string][]string{"d": {"d", "d2"}, "b": {"b"}},
			zero:   []string{"model input", "model output"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := build(t, tc.build)
			a, err := graph.Analyze(g)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Count(g, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			macs := map[string]int64{}
			var total int64
			for _, l := range r.Layers {
				if l.Kind == "conv" || l.Kind == "linear" {
					macs[l.Name] += l.MACs
					total += l.MACs
				}
			}
			sum := func(names []string) int64 {
				var s int64
				for _, n := range names {
					if _, ok := macs[n]; !ok {
						t.Fatalf("no layer %s", n)
					}
					s += macs[n]
				}
				return s
			}
			cov, err := Attribute(g, a)
			if err != nil {
				t.Fatal(err)
			}
			if cov.LayerMACs != total || cov.PrunableMACs != sum(tc.prunable) {
				t.Errorf("layer MACs %d prunable %d, want %d %d", cov.LayerMACs, cov.PrunableMACs, total, sum(tc.prunable))
			}
			if want := float64(sum(tc.prunable)) / float64(total); math.Abs(cov.PrunableShare-want) > 1e-12 {
				t.Errorf("share %v, want %v", cov.PrunableShare, want)
			}
			top := cov.TopFrozen(len(cov.Frozen))
			if len(top) != len(tc.frozen) {
				t.Fatalf("frozen %+v, want %+v", cov.Frozen, tc.frozen)
			}
			frozenMACs := int64(0)
			for i, f := range tc.frozen {
				if top[i].Reason != f.reason || top[i].MACs != sum(f.layers) {
					t.Errorf("frozen[%d] = %+v, want %s with %d MACs", i, top[i], f.reason, sum(f.layers))
				}
				if want := float64(top[i].MACs) / float64(total); top[i].Share != want {
					t.Errorf("frozen[%d] share %v, want %v", i, top[i].Share, want)
				}
				frozenMACs += top[i].MACs
			}
			if cov.PrunableMACs+frozenMACs != cov.LayerMACs {
				t.Errorf("prunable %d + frozen %d != %d", cov.PrunableMACs, frozenMACs, cov.LayerMACs)
			}
			for _, z := range tc.zero {
				found := false
				for _, f := range cov.Frozen {
					if f.Reason == z {
						found = f.MACs == 0 && f.Groups > 0
					}
				}
				if !found {
					t.Errorf("reason %q missing or not zero: %+v", z, cov.Frozen)
				}
			}
			for i := 1; i < len(cov.Frozen); i++ {
				if cov.Frozen[i].MACs > cov.Frozen[i-1].MACs {
					t.Errorf("frozen reasons not ranked: %+v", cov.Frozen)
				}
			}
			for layer, members := range tc.groups {
				gs := a.GroupOfLayer(layer)
				if len(gs) != 1 {
					t.Fatalf("layer %s: groups %+v", layer, gs)
				}
				if got, want := cov.GroupMACs[gs[0].ID], sum(members); got != want {
					t.Errorf("group of %s: %d MACs, want %d (%v)", layer, got, want, members)
				}
			}
			if len(tc.frozen) == 0 && cov.FrozenText(3) != "" {
				t.Errorf("FrozenText %q with nothing frozen", cov.FrozenText(3))
			}
			if len(tc.frozen) > 0 && !strings.HasSuffix(cov.FrozenText(1), "% "+tc.frozen[0].reason) {
				t.Errorf("FrozenText(1) = %q", cov.FrozenText(1))
			}
		})
	}
}

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		share float64
		want  string
	}{{0, "0.0%"}, {0.0001, "<0.1%"}, {0.0005, "0.1%"}, {0.27267, "27.3%"}, {0.9998, ">99.9%"}, {1, "100.0%"}} {
		if got := Percent(tc.share); got != tc.want {
			t.Errorf("Percent(%v) = %q, want %q", tc.share, got, tc.want)
		}
	}
}

func TestAttributeErrors(t *testing.T) {
	g := build(t, smallCNN)
	if _, err := Attribute(g, nil); err == nil {
		t.Error("no analysis accepted")
	}
}

// TestAttributeRealIR checks the coverage of every fixture's IR: the shares
// add up, each group's MACs are at most the total, and the torchvision
// nets, which the analysis follows end to end, are almost all prunable.
func TestAttributeRealIR(t *testing.T) {
	fixtures.EachIR(t, func(t *testing.T, name string, g *ir.Graph) {
		a, err := graph.Analyze(g)
		if err != nil {
			t.Fatal(err)
		}
		cov, err := Attribute(g, a)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("prunable %.4f of %d conv/linear MACs; frozen: %s", cov.PrunableShare, cov.LayerMACs, cov.FrozenText(3))
		frozen := cov.PrunableMACs
		for _, fr := range cov.Frozen {
			frozen += fr.MACs
		}
		if frozen != cov.LayerMACs {
			t.Errorf("prunable + frozen = %d, want %d", frozen, cov.LayerMACs)
		}
		// Every prunable layer is in a prunable group, so their MACs
		// cover PrunableMACs (at least once: a layer is in two groups).
		var inPrunable int64
		for i, m := range cov.GroupMACs {
			if m > cov.LayerMACs {
				t.Errorf("group %d: %d MACs of %d", i, m, cov.LayerMACs)
			}
			if a.Groups[i].Prunable() {
				inPrunable += m
			}
		}
		if inPrunable < cov.PrunableMACs {
			t.Errorf("prunable groups hold %d MACs, fewer than the %d prunable", inPrunable, cov.PrunableMACs)
		}
		arch := name[:strings.LastIndex(name, "_")]
		switch arch {
		case "resnet18", "resnet50", "mobilenet_v2", "densenet121", "vgg11_bn", "concat", "se", "residual", "smallcnn":
			// The analysis follows these end to end: only the classifier's
			// output (and the model input) is frozen.
			if cov.PrunableShare != 1 {
				t.Errorf("prunable share %.6f, want 1 (frozen: %+v)", cov.PrunableShare, cov.Frozen)
			}
		case "shuffle":
			// The conv before the channel shuffle cannot lose channels
			// (its input is the 3-channel image).
			top := cov.TopFrozen(1)
			if len(top) != 1 || !strings.HasPrefix(top[0].Reason, "aten::view ") || cov.PrunableShare > 0.9 {
				t.Errorf("shuffle: share %.4f, frozen %+v", cov.PrunableShare, cov.Frozen)
			}
		case "tuple_out":
			// The features returned next to the logits are the
			// classifier's input: both its groups are model outputs.
			top := cov.TopFrozen(1)
			if len(top) != 1 || top[0].Reason != "model output" {
				t.Errorf("tuple_out: frozen %+v", cov.Frozen)
			}
		}
	})
}
