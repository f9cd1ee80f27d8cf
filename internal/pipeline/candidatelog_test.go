package pipeline

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// summary.json lists every candidate of every iteration with what was
// measured of it, and the report shows them.
func TestSummaryCandidateResults(t *testing.T) {
	base := smallCNN(t)
	cfg := testConfig(t, kinds.AlgorithmMyPruning)
	cfg.TieBreak, cfg.CommonBatches = kinds.TieBreakMACs, true
	cfg.Step, cfg.DeltaSchedule, cfg.DeltaDecay, cfg.DeltaCrop = kinds.StepMACs, kinds.ScheduleDecay, 0.9, 0.1
	ds := mnistData(t)
	r := newRun(t, cfg, fake.New(base), ds)
	if err := r.Execute(context.Background(), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
	if len(s.Iterations) == 0 {
		t.Fatal("no iterations")
	}
	val, _ := ds.Split(data.Val)
	for _, it := range s.Iterations {
		if it.Budget <= 0 || it.Delta != 0.1*math.Pow(0.9, float64(it.Iteration-1)) {
			t.Errorf("iteration %d: budget %d, delta %v", it.Iteration, it.Budget, it.Delta)
		}
		if len(it.Results) != it.Candidates {
			t.Errorf("iteration %d: %d candidate results, %d candidates", it.Iteration, len(it.Results), it.Candidates)
		}
		kept := 0
		for _, c := range it.Results {
			if c.Kept {
				kept++
				if c.Group != it.Group || c.MACs != it.MACs || c.Accuracy != it.Accuracy {
					t.Errorf("iteration %d: kept candidate %+v is not the iteration's winner %+v", it.Iteration, c, it)
				}
			}
			if c.Samples != val.Len() || !(c.AccuracySE > 0) || !(c.TrainLoss > 0) || !(c.Seconds > 0) || c.Slot != "cpu" || len(c.Layers) == 0 ||
				!(c.ValLoss > 0) || !(c.ValLossSE > 0) {
				t.Errorf("iteration %d candidate %+v lacks a measurement", it.Iteration, c)
			}
		}
		if kept != 1 {
			t.Errorf("iteration %d: %d kept candidates", it.Iteration, kept)
		}
	}
	page, err := os.ReadFile(filepath.Join(r.RunDir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `id="candidates"`) || !strings.Contains(string(page), "±") {
		t.Error("the report does not show the candidates")
	}
}

// select: loss keeps, in every iteration, the candidate with the lowest
// validation loss (tie_break none), as summary.json records it.
func TestSelectLossKeepsLowestValLoss(t *testing.T) {
	base := smallCNN(t)
	cfg := testConfig(t, kinds.AlgorithmMyPruning)
	cfg.Select, cfg.TieBreak, cfg.Step, cfg.DeltaCrop = kinds.SelectLoss, kinds.TieBreakNone, kinds.StepMACs, 0.1
	r := newRun(t, cfg, fake.New(base), mnistData(t))
	if err := r.Execute(context.Background(), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
	if len(s.Iterations) == 0 {
		t.Fatal("no iterations")
	}
	for _, it := range s.Iterations {
		var kept, lowest float64 = math.NaN(), math.Inf(1)
		for _, c := range it.Results {
			lowest = min(lowest, c.ValLoss)
			if c.Kept {
				kept = c.ValLoss
			}
		}
		if kept != lowest {
			t.Errorf("iteration %d kept a candidate with validation loss %v; the lowest is %v", it.Iteration, kept, lowest)
		}
	}
}
