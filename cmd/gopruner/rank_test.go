//go:build cgo

package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

func shapeArg(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, ",")
}

// flopsJSON runs `gopruner flops --json` and returns MACs and params.
func flopsJSON(t *testing.T, model, shape string) (int64, int64) {
	t.Helper()
	r := runCLI(t, "flops", "--model", model, "--input-shape", shape, "--json")
	if r.code != 0 {
		t.Fatalf("flops %s: exit %d: %s", model, r.code, r.stderr)
	}
	var got struct {
		MACs   int64 `json:"macs"`
		Params int64 `json:"params"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	return got.MACs, got.Params
}

// TestAnyRankCLI: for models of every input rank ([N,F] MLP, [N,C,L]
// Conv1d net, [N,C,D,H,W] Conv3d net, transposed-conv decoders), scripted
// and traced,
//   - `flops --json` gives exactly the MACs and params of scripts/flopcount.py
//     (ptflops' formulas on the eager module);
//   - `graph --json` finds a prunable group;
//   - `prune --algorithm L2Norm --P 0.5 --finetune=false` reaches MACs ≤ 0.5
//     of the original, and the pruned model counts what summary.json says;
//   - `apply` of its plan writes a model with the same count;
//   - `bench-model` times the pruned model
//
// (the last three on the scripted exports only, for time).
func TestAnyRankCLI(t *testing.T) {
	dir, meta := fixtures.RankModels(t)
	for _, name := range fixtures.RankNames(meta) {
		t.Run(name, func(t *testing.T) {
			m := meta[name[:strings.LastIndex(name, "_")]]
			model := filepath.Join(dir, name+".pt")
			shape := shapeArg(m.InputShape)
			macs, params := flopsJSON(t, model, shape)
			if macs != m.MACs || params != m.Params {
				t.Errorf("flops: MACs %d params %d, flopcount.py %d %d", macs, params, m.MACs, m.Params)
			}
			r := runCLI(t, "graph", "--model", model, "--input-shape", shape, "--json")
			if r.code != 0 {
				t.Fatalf("graph: exit %d: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, `"frozen": false`) && !strings.Contains(r.stdout, `"frozen":false`) {
				t.Errorf("graph: no prunable group: %.400s", r.stdout)
			}

			if strings.HasSuffix(name, "_traced") {
				// The prune chain is the same code for both exports; the
				// equivalence tests (internal/torchengine/prune) prune both.
				return
			}
			work := t.TempDir()
			r = runIn(t, work, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
				"--input-shape", shape, "--exp-save", "exp", "--model-name", "m", "--plan-out", "plan.json", "--out", "pruned.pt")
			if r.code != 0 {
				t.Fatalf("prune: exit %d: %s", r.code, r.stderr)
			}
			var s struct {
				MACsBefore int64 `json:"macs_before"`
				MACsAfter  int64 `json:"macs_after"`
			}
			readSummary(t, work, "exp", "m", &s)
			if s.MACsBefore != m.MACs || s.MACsAfter <= 0 || 2*s.MACsAfter > s.MACsBefore {
				t.Errorf("summary.json MACs %d -> %d, want %d -> at most half", s.MACsBefore, s.MACsAfter, m.MACs)
			}
			if got, _ := flopsJSON(t, filepath.Join(work, "pruned.pt"), shape); got != s.MACsAfter {
				t.Errorf("pruned model counts %d MACs, summary.json %d", got, s.MACsAfter)
			}
			r = runIn(t, work, "apply", "--model", model, "--plan", "plan.json", "--out", "applied.pt")
			if r.code != 0 {
				t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
			}
			if got, _ := flopsJSON(t, filepath.Join(work, "applied.pt"), shape); got != s.MACsAfter {
				t.Errorf("applied plan counts %d MACs, summary.json %d", got, s.MACsAfter)
			}
			r = runCLI(t, "bench-model", "--model", filepath.Join(work, "pruned.pt"), "--input-shape", shape, "--runs", "2", "--warmup", "1", "--json")
			if r.code != 0 || !strings.Contains(r.stdout, "median_ms") {
				t.Errorf("bench-model: exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestDatasetNeedsImageShape: the dataset reader makes N,C,H,W image
// batches only, so a command that reads data with an input shape of
// another rank is a usage error naming both, before any work.
func TestDatasetNeedsImageShape(t *testing.T) {
	t.Parallel() // each case is its own process
	demo := demoModel(t)
	data := tinyDataset(t, 16)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"prune finetune=false", []string{"prune", "--algorithm", "L2Norm", "--finetune=false", "--exp-save", "exp", "--out", "out.pt"}},
		{"prune finetune", []string{"prune", "--algorithm", "L2Norm", "--exp-save", "exp", "--out", "out.pt"}},
		{"my_pruning", []string{"prune", "--algorithm", "my_pruning", "--exp-save", "exp", "--out", "out.pt"}},
		{"train", []string{"train", "--epochs", "1", "--out", "out.pt"}},
		{"eval", []string{"eval"}},
	} {
		for _, shape := range []string{"1,784", "1,1,784", "1,1,1,28,28"} {
			t.Run(tc.name+"/"+shape, func(t *testing.T) {
				dir := t.TempDir()
				args := append(append([]string{}, tc.args...), "--model", demo, "--dataset", data, "--input-shape", shape)
				r := runIn(t, dir, args...)
				dims := strconv.Itoa(strings.Count(shape, ",") + 1)
				checkErrLine(t, r, 2, "--dataset "+data, "--input-shape "+shape, dims+" dimensions", "N,C,H,W")
				checkNoOutputs(t, dir, nil)
			})
		}
	}
}
