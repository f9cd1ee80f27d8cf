package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/core/summary"
)

// 5. Search: my_pruning (NetAdapt) vs L2Norm one-shot + the same fine-tune
// budget. (One iteration's wall time at 1 and 2 cart slots is benchmark 7.)

// searchRun is one pruning run of the search benchmark.
type searchRun struct {
	Name       string           `json:"name"`
	Proc       *proc            `json:"process"`
	Summary    *summary.Summary `json:"summary"`
	TrainSteps int              `json:"train_steps"` // fine-tune batches in all
	// IterationS is the wall time of each NetAdapt iteration, from
	// summary.json (my_pruning only).
	IterationS []float64 `json:"iteration_s,omitempty"`
}

func (b *bench) searchArgs(name, model, ds string, extra ...string) []string {
	args := []string{b.o.bin, "prune", "--model", model, "--dataset", ds, "--input-shape", "1,1,28,28",
		"--alf", fmt.Sprint(b.o.searchAlf), "--batch-size", "64", "--lr", "0.01", "--momentum", "0.9",
		"--mean", "0.5", "--std", "0.5", "--seed", "1", "--threads", "2",
		"--log-format", "json", "--exp-save", filepath.Join(b.o.out, "exp"), "--model-name", name,
		"--out", filepath.Join(b.o.out, "search", name+".pt")}
	return append(args, extra...)
}

// myPruning runs my_pruning on cart (the in-process default); a build where
// it is not wired yet gives errNotWired.
func (b *bench) myPruning(name, model, ds string, p float64, cart string, longEpochs int) (*searchRun, error) {
	return b.myPruningWith(name, model, ds, p, longEpochs, "--cart", cart)
}

// myPruningWith runs my_pruning with extra arguments (cart, broker).
func (b *bench) myPruningWith(name, model, ds string, p float64, longEpochs int, extra ...string) (*searchRun, error) {
	args := b.searchArgs(name, model, ds, append([]string{"--algorithm", "my_pruning", "--P", fmt.Sprint(p),
		"--criterion", "TaylorFOWeight", "--taylor-batches", "10", "--delta-crop", fmt.Sprint(b.o.searchDelta),
		"--step", b.o.searchStep, "--short-steps", fmt.Sprint(b.o.searchShort), "--long-epochs", fmt.Sprint(longEpochs)}, extra...)...)
	pr, err := b.r.run(b.ctx, b.timeout(8*time.Minute), args...)
	if err != nil {
		return nil, err
	}
	if err := pr.ok(); err != nil {
		if msg := pr.lastErr(); strings.Contains(msg, "not wired") || strings.Contains(msg, "not available") || strings.Contains(msg, "unknown algorithm") {
			return nil, errNotWired
		}
		return nil, err
	}
	sr := &searchRun{Name: name, Proc: pr}
	if sr.Summary, err = readJSON[summary.Summary](filepath.Join(b.o.out, "exp", name, "summary.json")); err != nil {
		return nil, err
	}
	// One iteration: from its start to its checkpoint, as the run timed it.
	for _, it := range sr.Summary.Iterations {
		if it.Seconds > 0 {
			sr.IterationS = append(sr.IterationS, it.Seconds)
		}
	}
	return sr, nil
}

var errNotWired = errors.New("my_pruning not available")

func (b *bench) search(s *section) error {
	ds, err := b.mnistData()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.o.out, "search"), 0o755); err != nil {
		return err
	}
	start := b.trained
	startNote := "the demo CNN fine-tuned for 1 epoch by benchmark 3"
	if start == "" {
		start = filepath.Join(b.o.root, demoModel)
		startNote = "the untrained demo CNN (benchmark 3 did not run)"
	}
	stepsPerEpoch := b.o.trainN / 64 // batch 64, the last short batch dropped
	data := map[string]any{"start_model": start, "steps_per_epoch": stepsPerEpoch}
	s.Data = data
	t := s.addTable(fmt.Sprintf("demo CNN (%s) on the MNIST subset, P=%.2f, alf %d, batch 64, lr 0.01; my_pruning: TaylorFOWeight, delta_crop %.2f (step %s), %d short-term steps per candidate, %d long-term epoch(s), cart cpu; L2Norm: one shot, then as many fine-tune epochs as my_pruning's total fine-tune steps",
		startNote, b.o.searchP, b.o.searchAlf, b.o.searchDelta, b.o.searchStep, b.o.searchShort, b.o.searchLong),
		"method", "MACs after", "MACs ratio", "val acc before", "val acc after", "fine-tune steps", "iterations", "wall")

	mp, mpErr := b.myPruning("search_mypruning_1slot", start, ds, b.o.searchP, "cpu", b.o.searchLong)
	var budgetSteps int
	if mpErr == nil {
		cands := 0
		for _, it := range mp.Summary.Iterations {
			cands += it.Candidates
		}
		mp.TrainSteps = cands*b.o.searchShort + b.o.searchLong*stepsPerEpoch
		budgetSteps = mp.TrainSteps
		data["my_pruning"] = mp
		sm := mp.Summary
		t.add("my_pruning (NetAdapt)", human(float64(sm.MACsAfter)), fmt.Sprintf("%.3f", float64(sm.MACsAfter)/float64(sm.MACsBefore)),
			accStr(sm.AccBefore), accStr(sm.AccAfter), fmt.Sprintf("%d (%d candidates × %d + %d)", mp.TrainSteps, cands, b.o.searchShort, b.o.searchLong*stepsPerEpoch),
			fmt.Sprint(len(sm.Iterations)), secs(mp.Proc.WallS))
	} else {
		reason := "n/a (my_pruning not available)"
		if !errors.Is(mpErr, errNotWired) {
			reason = "n/a (my_pruning failed: " + mpErr.Error() + ")"
		}
		t.add("my_pruning (NetAdapt)", reason)
		budgetSteps = b.o.searchLong * stepsPerEpoch
	}

	epochs := max(1, int(math.Round(float64(budgetSteps)/float64(stepsPerEpoch))))
	name := "search_l2norm"
	lp, err := b.r.run(b.ctx, b.timeout(8*time.Minute), b.searchArgs(name, start, ds, "--algorithm", "L2Norm",
		"--P", fmt.Sprint(b.o.searchP), "--finetune", "--long-epochs", fmt.Sprint(epochs))...)
	if err == nil {
		err = lp.ok()
	}
	var l2 *searchRun
	if err == nil {
		l2 = &searchRun{Name: name, Proc: lp, TrainSteps: epochs * stepsPerEpoch}
		l2.Summary, err = readJSON[summary.Summary](filepath.Join(b.o.out, "exp", name, "summary.json"))
	}
	if err != nil {
		t.add("L2Norm one-shot + fine-tune", "error: "+err.Error())
		return err
	}
	data["l2norm"] = l2
	sm := l2.Summary
	t.add("L2Norm one-shot + fine-tune", human(float64(sm.MACsAfter)), fmt.Sprintf("%.3f", float64(sm.MACsAfter)/float64(sm.MACsBefore)),
		accStr(sm.AccBefore), accStr(sm.AccAfter), fmt.Sprintf("%d (%d epoch(s))", l2.TrainSteps, epochs), "1", secs(lp.WallS))

	if mpErr != nil {
		reason := "n/a (my_pruning not available)"
		if !errors.Is(mpErr, errNotWired) {
			reason = "n/a (my_pruning failed)"
		}
		s.Summary = &summaryRow{Gopruner: reason,
			Reference: fmt.Sprintf("L2Norm one-shot + %d epoch(s): val acc %s at MACs ×%.3f", epochs, accStr(sm.AccAfter), float64(sm.MACsAfter)/float64(sm.MACsBefore)),
			Ratio:     "n/a", Note: "rerun `make bench` once my_pruning is wired"}
		if !errors.Is(mpErr, errNotWired) {
			return mpErr
		}
		return nil
	}

	ml := mp.Summary
	s.Summary = &summaryRow{
		Gopruner: fmt.Sprintf("my_pruning: val acc %s at MACs ×%.3f, %d fine-tune steps, wall %s",
			accStr(ml.AccAfter), float64(ml.MACsAfter)/float64(ml.MACsBefore), mp.TrainSteps, secs(mp.Proc.WallS)),
		Reference: fmt.Sprintf("L2Norm one-shot + %d epoch(s) (%d steps): val acc %s at MACs ×%.3f, wall %s",
			epochs, l2.TrainSteps, accStr(sm.AccAfter), float64(sm.MACsAfter)/float64(sm.MACsBefore), secs(lp.WallS)),
		Ratio: fmt.Sprintf("acc %+.2f points", 100*(deref(ml.AccAfter)-deref(sm.AccAfter))),
		Note:  "acc difference = my_pruning − L2Norm",
	}
	return err
}

func first(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return v[0]
}

func secStr(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return secs(s)
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
