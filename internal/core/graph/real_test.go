package graph

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// irDir holds IR dumps of real models exported with libtorch (not
// committed; the test skips without them). GOPRUNER_IR_DIR overrides it.
func irDir() string {
	if d := os.Getenv("GOPRUNER_IR_DIR"); d != "" {
		return d
	}
	return "../../../.cache/ir"
}

// fixtureDir holds the fixture metadata (ptflops numbers, layer lists).
const fixtureDir = "../../../.cache/fixtures"

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

func TestRealIR(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(irDir(), "*.json"))
	if len(files) == 0 {
		t.Skipf("no IR dumps in %s", irDir())
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			g, err := ir.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
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
			meta, err := os.ReadFile(filepath.Join(fixtureDir, name+".json"))
			if err != nil {
				return
			}
			var fx struct {
				Layers []struct{ Name, Kind string }
			}
			if err := json.Unmarshal(meta, &fx); err != nil {
				t.Fatalf("fixture metadata: %v", err)
			}
			for _, l := range fx.Layers {
				if (strings.HasPrefix(l.Kind, "Conv") || l.Kind == "Linear") && !a.HasLayer(l.Name) {
					t.Errorf("layer %s (%s) unknown to the analysis", l.Name, l.Kind)
				}
			}
		})
	}
}
