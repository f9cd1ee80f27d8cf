//go:build cgo

package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// runIn runs the binary in dir (where a Pruning.yaml may be).
func runIn(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	return execCLI(t, dir, nil, args...)
}

// readSummary decodes a run's summary.json (exp_save/model_name under dir)
// into v, failing the test when it cannot, and returns the raw JSON.
func readSummary(t *testing.T, dir, expSave, name string, v any) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, expSave, name, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestOldStylePruningYAML is issue 6's acceptance: the old tool's layout
// runs as written, iskl leaves its layer untouched, and a misspelt key is
// exit 2 with a suggestion.
func TestOldStylePruningYAML(t *testing.T) {
	model, _ := fixtures.Model(t, "resnet18_scripted")
	dir := t.TempDir()
	yaml := `algorithm: L2Norm
L2Norm:
  P: 0.3
  training: false
my_pruning:
  algoritm: TaylorFOWeight
  P: 0.5
alf: 8
iskl: [layer1.0.conv1]
path:
  model: ` + model + `
  exp_save: exp
  model_name: r18
input_shape: [1, 3, 224, 224]
`
	if err := os.WriteFile(filepath.Join(dir, "Pruning.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, dir, "--config", "Pruning.yaml")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "exp", "r18.txt")); err != nil {
		t.Fatalf("no exp_save/model_name.txt: %v", err)
	}
	var s struct {
		Algorithm  string   `json:"algorithm"`
		MACsBefore int64    `json:"macs_before"`
		MACsAfter  int64    `json:"macs_after"`
		AccBefore  *float64 `json:"acc_before"`
		ModelOut   string   `json:"model_out"`
		Iterations []any    `json:"iterations"`
	}
	readSummary(t, dir, "exp", "r18", &s)
	if s.Algorithm != "L2Norm" || float64(s.MACsAfter) > 0.7*float64(s.MACsBefore) || s.Iterations == nil {
		t.Errorf("summary.json: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, s.ModelOut)); err != nil {
		t.Errorf("model_out %s: %v", s.ModelOut, err)
	}
	p, err := plan.Read(filepath.Join(dir, "exp", "r18", "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range p.Tensors {
		if strings.HasPrefix(name, "layer1.0.conv1.") {
			t.Errorf("iskl layer1.0.conv1 was changed: %s in the plan", name)
		}
	}
	if len(p.Tensors) == 0 {
		t.Error("nothing was pruned")
	}

	bad := strings.Replace(yaml, "alf: 8", "alff: 8", 1)
	if err := os.WriteFile(filepath.Join(dir, "Pruning.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runIn(t, dir, "--config", "Pruning.yaml")
	if r.code != 2 || !strings.Contains(r.stderr, "alff") || !strings.Contains(r.stderr, "alf?") {
		t.Errorf("alff: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "gopruner: ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("error is not one 'gopruner: ' line: %q", r.stderr)
	}
}

func TestHelpListsCommands(t *testing.T) {
	r := runIn(t, t.TempDir(), "--help")
	for _, c := range []string{"prune", "flops", "graph", "apply", "train", "eval", "demo", "version", "bench-model"} {
		if !strings.Contains(r.stdout, "\n  "+c+" ") {
			t.Errorf("--help does not list %s", c)
		}
	}
}

func TestVersionNamesLibtorch(t *testing.T) {
	r := runIn(t, t.TempDir(), "version")
	if r.code != 0 || !strings.Contains(r.stdout, "libtorch 1.") && !strings.Contains(r.stdout, "libtorch 2.") {
		t.Fatalf("version: exit %d, %q", r.code, r.stdout)
	}
}

// TestFlopsMatchesFormulas compares `gopruner flops --json` with the MACs
// the fixture script worked out independently from ptflops' formulas.
func TestFlopsMatchesFormulas(t *testing.T) {
	for _, name := range fixtures.Names(fixtures.Architectures) {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			shape := make([]string, len(meta.InputShape))
			for i, d := range meta.InputShape {
				shape[i] = strconv.FormatInt(d, 10)
			}
			r := runIn(t, t.TempDir(), "flops", "--model", path, "--input-shape", strings.Join(shape, ","), "--json")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var got struct {
				MACs   int64 `json:"macs"`
				Params int64 `json:"params"`
				Layers []struct {
					Name string `json:"name"`
					Kind string `json:"kind"`
					MACs int64  `json:"macs"`
				} `json:"layers"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatal(err)
			}
			rel := math.Abs(float64(got.MACs-meta.MACs)) / float64(meta.MACs)
			if rel > 0.005 {
				t.Errorf("MACs %d vs formulas %d (%.3f%%)", got.MACs, meta.MACs, 100*rel)
			}
			if got.Params != meta.Params {
				t.Errorf("params %d vs %d", got.Params, meta.Params)
			}
			if len(got.Layers) == 0 {
				t.Error("no layers")
			}
		})
	}
}

// TestPlanOutThenApply: prune --plan-out, then apply the plan to the
// original; a plan from another model is refused with exit 2.
func TestPlanOutThenApply(t *testing.T) {
	model, _ := fixtures.Model(t, "residual_traced")
	other, _ := fixtures.Model(t, "smallcnn_scripted")
	dir := t.TempDir()
	r := runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
		"--input-shape", "1,3,32,32", "--exp-save", "exp", "--plan-out", "plan.json", "--out", "pruned.pt")
	if r.code != 0 {
		t.Fatalf("prune: exit %d: %s", r.code, r.stderr)
	}
	// Latency is measured only when asked for: it is not pruning work.
	latencyOf := func(name string) []any {
		t.Helper()
		var s struct {
			Latency []any `json:"latency"`
		}
		readSummary(t, dir, "exp", name, &s)
		return s.Latency
	}
	if l := latencyOf("residual_traced"); len(l) != 0 {
		t.Errorf("latency measured without --latency: %v", l)
	}
	r = runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
		"--input-shape", "1,3,32,32", "--exp-save", "exp", "--model-name", "lat", "--latency", "--out", "lat.pt")
	if r.code != 0 {
		t.Fatalf("prune --latency: exit %d: %s", r.code, r.stderr)
	}
	if l := latencyOf("lat"); len(l) != 1 {
		t.Errorf("--latency: summary latency %v, want one entry", l)
	}
	r = runIn(t, dir, "apply", "--model", model, "--plan", "plan.json", "--out", "applied.pt")
	if r.code != 0 {
		t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "pruned.pt"))
	b, _ := os.ReadFile(filepath.Join(dir, "applied.pt"))
	if len(a) == 0 || len(b) == 0 {
		t.Fatal("missing outputs")
	}
	r = runIn(t, dir, "apply", "--model", other, "--plan", "plan.json", "--out", "x.pt")
	if r.code != 2 || !strings.HasPrefix(r.stderr, "gopruner: ") {
		t.Errorf("plan from another model: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.pt")); err == nil {
		t.Error("a refused apply left an output file")
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{not json"), 0o644)
	r = runIn(t, dir, "apply", "--model", model, "--plan", "bad.json", "--out", "y.pt")
	if r.code != 2 {
		t.Errorf("malformed plan: exit %d, %q", r.code, r.stderr)
	}
	r = runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
		"--input-shape", "1,3,32,32", "--exp-save", "exp", "--out", model)
	if r.code != 2 {
		t.Errorf("--out equal to the model: exit %d, %q", r.code, r.stderr)
	}
}
