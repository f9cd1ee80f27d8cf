package graph

import (
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// wantPrunable is the number of prunable groups of the dumps we know: one
// per residual stage plus one per block-internal conv (resnet18); one per
// expansion (tied through the depthwise conv) plus one per stage
// (mobilenet_v2).
var wantPrunable = map[string]int{
	"resnet18_scripted":     12,
	"resnet18_traced":       12,
	"mobilenet_v2_scripted": 25,
	"mobilenet_v2_traced":   25,
	"smallcnn_scripted":     3,
	"smallcnn_traced":       3,
}

// TestRealIR analyses the IR libtorch exports for every fixture (written by
// `make fixtures` into .cache/ir; skips without it, fails in CI).
func TestRealIR(t *testing.T) {
	fixtures.EachIR(t, func(t *testing.T, name string, g *ir.Graph) {
		a, err := Analyze(g)
		if err != nil {
			t.Fatal(err)
		}
		checkAnalysis(t, g, a)
		n := len(a.Prunable())
		t.Logf("%d groups, %d prunable", len(a.Groups), n)
		if want, ok := wantPrunable[name]; ok && n != want {
			t.Errorf("%d prunable groups, want %d:\n%s", n, want, dump(a))
		}
		for _, grp := range a.Groups {
			// The known dumps have nothing to refuse but their ends.
			if _, known := wantPrunable[name]; known && grp.Frozen && grp.Reason != "model input" && grp.Reason != "model output" {
				t.Errorf("group %d frozen for %q", grp.ID, grp.Reason)
			}
		}
		// Every conv/linear the fixture metadata lists is a known layer.
		for _, l := range fixtures.ReadMeta(t, name).Layers {
			if (strings.HasPrefix(l.Kind, "Conv") || l.Kind == "Linear") && !a.HasLayer(l.Name) {
				t.Errorf("layer %s (%s) unknown to the analysis", l.Name, l.Kind)
			}
		}
	})
}
