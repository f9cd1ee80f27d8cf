package pipeline

import (
	"context"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// With common_batches every candidate of an iteration, and the commit of
// its winner, fine-tunes with the seed of stream 0; without it each group
// keeps its own seed, as before the option existed.
func TestCommonBatchesSeeds(t *testing.T) {
	base := smallCNN(t)
	eng := fake.New(base)
	bm := openSmall(context.Background(), t, eng)
	defer bm.Close()
	archive, _ := bm.Module.Bytes()
	tr, val := mnistSplits(t)
	cands := base.Candidates(nil)
	if len(cands) < 2 {
		t.Fatalf("%d candidate groups", len(cands))
	}
	for _, common := range []bool{false, true} {
		o, err := normalize(myOptions(t, "cpu"))
		if err != nil {
			t.Fatal(err)
		}
		o.CommonBatches = common
		e := newEvaluator(eng, &base, tr, val, o, []string{"cpu"}, []int{0}, cands, archive)
		for it := 1; it <= 2; it++ {
			for _, g := range cands[:2] {
				req, err := e.request(0, netadapt.Candidate{Iteration: it, Group: g.ID, From: g.Channels, To: g.Channels - 4}, true)
				if err != nil {
					t.Fatal(err)
				}
				stream := g.ID
				if common {
					stream = 0
				}
				if want := cut.DeriveSeed(o.Seed, "short-term", it, stream); req.Train == nil || req.Train.Seed != want {
					t.Errorf("common %v iteration %d group %d: seed %v, want %d", common, it, g.ID, req.Train, want)
				}
			}
		}
	}
}

// The evaluator reports the size of the candidates' validation subset
// (eval_samples), so the search's standard errors and tie-breaks work on
// the real pipeline, and a run with common_batches and tie_break finishes
// at the target.
func TestNoiseAwareMyPruning(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	for _, rule := range []kinds.TieBreak{kinds.TieBreakMACs, kinds.TieBreakLoss} {
		t.Run(string(rule), func(t *testing.T) {
			eng := fake.New(base)
			bm := openSmall(context.Background(), t, eng)
			defer bm.Close()
			o := myOptions(t, "cpu", "cpu")
			o.CommonBatches, o.TieBreak, o.EvalSamples = true, rule, 100
			var outs []netadapt.Outcome
			o.Hooks.OnCandidate = func(oc netadapt.Outcome) { outs = append(outs, oc) }
			res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
			if err != nil {
				t.Fatal(err)
			}
			res.Module.Close()
			if res.State.Reason != netadapt.ReasonTargetReached || len(outs) == 0 {
				t.Fatalf("reason %q, %d outcomes", res.State.Reason, len(outs))
			}
			for _, oc := range outs {
				if oc.Samples != 100 || oc.StdErr() <= 0 || oc.TrainLoss <= 0 {
					t.Errorf("outcome of group %d: %d samples (eval_samples 100), SE %v, loss %v", oc.Candidate.Group, oc.Samples, oc.StdErr(), oc.TrainLoss)
				}
			}
		})
	}
	o := myOptions(t, "cpu")
	o.TieBreak = "acc"
	if _, err := normalize(o); err == nil {
		t.Error("tie_break acc accepted")
	}
}
