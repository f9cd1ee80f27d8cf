//go:build cgo

package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestLatencyTargetCLI runs my_pruning with target: latency on libtorch,
// end to end and small: the table is built (and cached in the run
// directory), every commit is measured to anchor the prediction, the search
// stops at the latency target, and summary.json reports the prediction
// against the final model's measurement. The numbers are timings, so only
// their presence and consistency are checked, never their values.
func TestLatencyTargetCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a latency table and runs a short search")
	}
	ds := mnistCSV(t, goMNIST(t), 600, 200)
	dir := t.TempDir()
	r := runIn(t, dir, "prune", "--algorithm", "my_pruning", "--model", demoModel(t), "--dataset", ds,
		"--input-shape", "1,1,28,28", "--target", "latency", "--latency-threads", "1", "--P", "0.15", "--alf", "4",
		"--short-steps", "2", "--bn-batches", "1", "--long-epochs", "0", "--batch-size", "32", "--threads", "2",
		"--seed", "1", "--exp-save", "exp", "--model-name", "m")
	if r.code != 0 {
		t.Fatalf("prune --target latency: exit %d: %s", r.code, lastLine(r.stderr))
	}
	var s struct {
		Target        string `json:"target"`
		TargetMACs    int64  `json:"target_macs"`
		LatencyTarget *struct {
			PredictedBeforeMs float64  `json:"predicted_before_ms"`
			PredictedAfterMs  float64  `json:"predicted_after_ms"`
			MeasuredBeforeMs  float64  `json:"measured_before_ms"`
			MeasuredAfterMs   float64  `json:"measured_after_ms"`
			SpeedupErrorPct   *float64 `json:"speedup_error_pct"`
			Anchors           int      `json:"anchors"`
			Layers            int      `json:"layers"`
			Tables            []struct {
				OriginalMs       float64 `json:"original_ms"`
				PredictedAfterMs float64 `json:"predicted_after_ms"`
			} `json:"tables"`
			FinalTable int `json:"final_table"`
		} `json:"latency_target"`
		Iterations []struct {
			MACs int64 `json:"macs"`
		} `json:"iterations"`
	}
	readSummary(t, dir, "exp", "m", &s)
	l := s.LatencyTarget
	if s.Target != "latency" || l == nil || len(s.Iterations) == 0 {
		t.Fatalf("summary.json: target %q, latency_target %v, %d iterations", s.Target, l, len(s.Iterations))
	}
	if l.Layers == 0 || l.Anchors != len(s.Iterations) {
		t.Errorf("%d tabled layers, %d anchoring measurements for %d iterations", l.Layers, l.Anchors, len(s.Iterations))
	}
	// The last iteration's cost is the prediction of the final model, made
	// before that model was measured, by the table of the machine state
	// the search was in, scaled to the first table's nanoseconds. The
	// reported prediction is the table's of the state the final check ran
	// in: another one when the machine changed speed, as a loaded machine
	// does. It is below the unpruned one.
	last := float64(s.Iterations[len(s.Iterations)-1].MACs)
	by := -1
	for i, tb := range l.Tables {
		if math.Abs(tb.PredictedAfterMs*1e6*l.Tables[0].OriginalMs/tb.OriginalMs-last) <= 2 {
			by = i
		}
	}
	if by < 0 {
		t.Errorf("last iteration %.0f ns: no table predicted it: %+v", last, l.Tables)
	}
	of := -1
	for i, tb := range l.Tables {
		if tb.PredictedAfterMs == l.PredictedAfterMs && (l.FinalTable < 0 || l.FinalTable == i) {
			of = i
		}
	}
	if of < 0 || !(l.PredictedAfterMs < l.PredictedBeforeMs) {
		t.Errorf("predicted %.4f -> %.4f ms, final table %d, tables %+v", l.PredictedBeforeMs, l.PredictedAfterMs, l.FinalTable, l.Tables)
	}
	if !(l.MeasuredBeforeMs > 0) || !(l.MeasuredAfterMs > 0) || l.SpeedupErrorPct == nil {
		t.Errorf("final measurement missing: %+v", *l)
	}
	if _, err := os.Stat(filepath.Join(dir, "exp", "m", "latency_lut.json")); err != nil {
		t.Errorf("latency table not cached: %v", err)
	}
}
