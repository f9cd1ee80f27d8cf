//go:build cgo

package main

import (
	"path/filepath"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestMyPruningAcceptance is issue 5's acceptance through the CLI: the demo
// CNN trained on MNIST (12,000/2,000 PNG images with a data.csv), then
// my_pruning with P=0.5, alf 4, delta_crop 0.25, cart cpu, 50 short-term
// steps and 1 long-term epoch, once with TaylorFOWeight and once with
// L2Norm: MACs halve, accuracy drops by at most a point, Python loads the
// pruned model, and summary.json lists every iteration.
func TestMyPruningAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and prunes on 12,000 images")
	}
	ds := mnistCSV(t, goMNIST(t), 12000, 2000)
	work := t.TempDir()
	trained := filepath.Join(work, "democnn_mnist.pt")
	r := runIn(t, work, "train", "--model", demoModel(t), "--dataset", ds, "--input-shape", "1,1,28,28",
		"--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--momentum", "0.9", "--cosine", "--warmup-steps", "20",
		"--threads", "2", "--seed", "1", "--out", trained)
	if r.code != 0 {
		t.Fatalf("train: exit %d: %s", r.code, lastLine(r.stderr))
	}
	for _, crit := range []string{"TaylorFOWeight", "L2Norm"} {
		t.Run(crit, func(t *testing.T) {
			dir := t.TempDir()
			r := runIn(t, dir, "prune", "--algorithm", "my_pruning", "--model", trained, "--dataset", ds,
				"--input-shape", "1,1,28,28", "--criterion", crit, "--P", "0.5", "--alf", "4", "--delta-crop", "0.25", "--step", "channels",
				"--common-batches=false", "--bn-batches", "0", "--tie-break", "none",
				"--cart", "cpu", "--short-steps", "50", "--long-epochs", "1", "--batch-size", "64", "--lr", "0.01",
				"--momentum", "0.9", "--cosine", "--threads", "2", "--seed", "1", "--exp-save", "exp", "--model-name", "m")
			if r.code != 0 {
				t.Fatalf("prune: exit %d: %s", r.code, lastLine(r.stderr))
			}
			var s struct {
				MACsBefore int64    `json:"macs_before"`
				MACsAfter  int64    `json:"macs_after"`
				AccBefore  *float64 `json:"acc_before"`
				AccAfter   *float64 `json:"acc_after"`
				ModelOut   string   `json:"model_out"`
				Iterations []struct {
					Iteration int `json:"iteration"`
				} `json:"iterations"`
			}
			js := readSummary(t, dir, "exp", "m", &s)
			if s.AccBefore == nil || s.AccAfter == nil {
				t.Fatalf("summary.json has no accuracies: %s", js)
			}
			t.Logf("%s: MACs %d -> %d (%.3f), accuracy %.4f -> %.4f, %d iterations", crit, s.MACsBefore, s.MACsAfter,
				float64(s.MACsAfter)/float64(s.MACsBefore), *s.AccBefore, *s.AccAfter, len(s.Iterations))
			if 2*s.MACsAfter > s.MACsBefore {
				t.Errorf("MACs %d > half of %d", s.MACsAfter, s.MACsBefore)
			}
			if *s.AccAfter < *s.AccBefore-0.01 {
				t.Errorf("accuracy %.4f -> %.4f: dropped more than a point", *s.AccBefore, *s.AccAfter)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "exp", "m", "iterations", "iter_*.json"))
			if len(s.Iterations) == 0 || len(s.Iterations) != len(files) {
				t.Errorf("summary.json lists %d iterations, the run wrote %d", len(s.Iterations), len(files))
			}
			for i, it := range s.Iterations {
				if it.Iteration != i+1 {
					t.Errorf("iteration %d listed as %d", i+1, it.Iteration)
				}
			}
			fixtures.PyLoad(t, filepath.Join(dir, s.ModelOut), []int64{1, 1, 28, 28})
		})
	}
}
