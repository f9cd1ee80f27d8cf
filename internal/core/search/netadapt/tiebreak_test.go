package netadapt

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

func TestStdErr(t *testing.T) {
	tests := []struct {
		r    Result
		want float64
	}{
		{Result{Accuracy: 0.9, Samples: 1000}, math.Sqrt(0.9 * 0.1 / 1000)},
		{Result{Accuracy: 0.5, Samples: 100}, 0.05},
		{Result{Accuracy: 1, Samples: 100}, 0},
		{Result{Accuracy: 0.9}, 0},                     // samples unknown
		{Result{Accuracy: 1.2, Samples: 100}, 0},       // clamped into [0,1]
		{Result{Accuracy: -0.1, Samples: -5}, 0},       // nonsense counts give no noise
		{Result{Accuracy: 0.25, Samples: 3}, 0.25},     // sqrt(0.1875/3)
		{Result{Accuracy: 0.1, Samples: 10000}, 0.003}, // sqrt(0.09/1e4)
	}
	for _, tt := range tests {
		if got := tt.r.StdErr(); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%+v.StdErr() = %v, want %v", tt.r, got, tt.want)
		}
	}
	if o := (Outcome{Accuracy: 0.5, Samples: 100}); o.StdErr() != 0.05 {
		t.Errorf("Outcome.StdErr = %v", o.StdErr())
	}
}

func TestBreakTie(t *testing.T) {
	cands := []Candidate{
		{Group: 0, MACs: 90}, // removes 10
		{Group: 1, MACs: 95}, // removes 5
		{Group: 2, MACs: 92}, // removes 8
	}
	// With 1000 samples at p ≈ 0.9 one SE is about 0.0095.
	res := func(n int, accLoss ...float64) []Result {
		out := make([]Result, len(accLoss)/2)
		for i := range out {
			out[i] = Result{Accuracy: accLoss[2*i], TrainLoss: accLoss[2*i+1], Samples: n}
		}
		return out
	}
	tests := []struct {
		name    string
		rule    kinds.TieBreak
		mode    kinds.Select
		results []Result
		want    int
		target  int64 // 0: far below every candidate
	}{
		{"none keeps the best score", kinds.TieBreakNone, kinds.SelectAcc, res(1000, .900, .5, .905, .4, .895, .3), 1, 0},
		{"empty rule is none", "", kinds.SelectAcc, res(1000, .900, .5, .905, .4, .895, .3), 1, 0},
		{"macs: most removed within one SE", kinds.TieBreakMACs, kinds.SelectAcc, res(1000, .900, .5, .905, .4, .895, .3), 0, 0},
		{"macs: outside one SE does not count", kinds.TieBreakMACs, kinds.SelectAcc, res(1000, .890, .5, .905, .4, .900, .3), 2, 0},
		{"macs: precise validation leaves no tie", kinds.TieBreakMACs, kinds.SelectAcc, res(1000000, .900, .5, .905, .4, .895, .3), 1, 0},
		{"macs: no sample counts leaves no tie", kinds.TieBreakMACs, kinds.SelectAcc, res(0, .900, .5, .905, .4, .895, .3), 1, 0},
		{"loss: lowest loss within one SE", kinds.TieBreakLoss, kinds.SelectAcc, res(1000, .900, .5, .905, .4, .897, .3), 2, 0},
		{"loss: lowest loss outside one SE does not count", kinds.TieBreakLoss, kinds.SelectAcc, res(1000, .900, .3, .905, .4, .890, .1), 0, 0},
		{"loss: equal losses go to the better score", kinds.TieBreakLoss, kinds.SelectAcc, res(1000, .900, .2, .905, .2, .897, .2), 1, 0},
		{"loss: the best also has the lowest loss", kinds.TieBreakLoss, kinds.SelectAcc, res(1000, .900, .5, .905, .1, .897, .3), 1, 0},
		// acc_per_mac from 0.95: −0.005, −0.004, −0.005 per MAC; one SE of
		// the best is 0.0081/5 ≈ 0.0016 per MAC, so all three are tied.
		{"acc_per_mac macs", kinds.TieBreakMACs, kinds.SelectAccPerMAC, res(1000, .90, .5, .93, .4, .91, .3), 0, 0},
		{"acc_per_mac loss", kinds.TieBreakLoss, kinds.SelectAccPerMAC, res(1000, .90, .5, .93, .4, .91, .3), 2, 0},
		{"acc_per_mac: a precise best stands", kinds.TieBreakMACs, kinds.SelectAccPerMAC, res(100000, .90, .5, .93, .4, .91, .3), 1, 0},
		// Exactly one SE below (0.03 at p=0.9, n=100) is within noise.
		{"exactly one SE below is tied", kinds.TieBreakMACs, kinds.SelectAcc, res(100, .87, .5, .90, .4, .80, .3), 0, 0},
		// The last step: every candidate reaches the target (95), so removing
		// more does not count and the best score stands.
		{"macs: removal past the target does not count", kinds.TieBreakMACs, kinds.SelectAcc, res(1000, .900, .5, .905, .4, .895, .3), 1, 95},
		// Target 92: candidates 0 and 2 both reach it and tie on removal;
		// the better score of the two (2) wins over 1, which stops short.
		{"macs: removal counted down to the target", kinds.TieBreakMACs, kinds.SelectAcc, res(1000, .900, .5, .905, .4, .902, .3), 2, 92},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accs := make([]float64, len(tt.results))
			for i, r := range tt.results {
				accs[i] = r.Accuracy
			}
			top := choose(tt.mode, cands, accs, 0.95, 100)
			if got := breakTie(tt.rule, tt.mode, cands, tt.results, 0.95, 100, tt.target, top); got != tt.want {
				t.Errorf("breakTie = %d (top %d), want %d", got, top, tt.want)
			}
		})
	}
}

// Through Run: with a coarse validation (50 samples) the macs rule keeps,
// in every iteration, the candidate removing the most MACs among those
// within one SE of the best, and records when that is not the best; the
// sample counts and losses reach the hooks but not the history, so
// tie_break none gives exactly the history of a run without them.
func TestTieBreakRun(t *testing.T) {
	run := func(rule kinds.TieBreak, samples int) (*State, map[[2]int]Outcome) {
		f := newFakeNet(t, 16, 32, 24, 40)
		f.samples = samples
		opt := baseOptions()
		opt.P, opt.TieBreak, opt.Select = 0.6, rule, kinds.SelectAcc
		outs := map[[2]int]Outcome{}
		opt.OnCandidate = func(o Outcome) { outs[[2]int{o.Candidate.Iteration, o.Candidate.Group}] = o }
		st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
		if err != nil {
			t.Fatalf("Run(%s): %v", rule, err)
		}
		f.checkContract()
		return st, outs
	}
	plain, _ := run("", 0)
	none, outs := run(kinds.TieBreakNone, 50)
	if !reflect.DeepEqual(plain, none) {
		t.Errorf("tie_break none with sample counts changed the history")
	}
	for k, o := range outs {
		if o.Samples != 50 || o.TrainLoss != 2*(1-o.Accuracy) || o.StdErr() <= 0 {
			t.Errorf("outcome %v: samples %d, loss %v, SE %v", k, o.Samples, o.TrainLoss, o.StdErr())
		}
	}

	st, outs := run(kinds.TieBreakMACs, 50)
	broken := 0
	for _, rec := range st.History {
		bestAcc, bestIdx := math.Inf(-1), -1
		for i, c := range rec.Candidates {
			if c.Accuracy > bestAcc {
				bestAcc, bestIdx = c.Accuracy, i
			}
		}
		best := rec.Candidates[bestIdx]
		se := outs[[2]int{rec.Iteration, best.Group}].StdErr()
		// Removal counts only down to the target: past it, the best score
		// among the tied wins.
		minMACs := int64(math.MaxInt64)
		for _, c := range rec.Candidates {
			if c.Accuracy >= bestAcc-se {
				minMACs = min(minMACs, max(c.MACs, st.Target))
			}
		}
		if rec.MACs <= st.Target {
			for _, c := range rec.Candidates {
				if c.MACs <= st.Target && c.Accuracy >= bestAcc-se && c.Accuracy > rec.Accuracy {
					t.Errorf("iteration %d (the last) kept group %d at %.4f; group %d also reaches the target at %.4f",
						rec.Iteration, rec.Group, rec.Accuracy, c.Group, c.Accuracy)
				}
			}
		}
		if max(rec.MACs, st.Target) != minMACs {
			t.Errorf("iteration %d kept group %d with %d MACs; %d MACs is within one SE (%.4f) of the best", rec.Iteration, rec.Group, rec.MACs, minMACs, se)
		}
		if rec.TieBroken != (rec.Group != best.Group) {
			t.Errorf("iteration %d: tie_broken %v, winner %d, best score %d", rec.Iteration, rec.TieBroken, rec.Group, best.Group)
		}
		if rec.TieBroken {
			broken++
		}
	}
	if broken == 0 {
		t.Errorf("no iteration broke a tie; the test needs noisier candidates")
	}
	if reflect.DeepEqual(st.History, none.History) {
		t.Errorf("tie_break macs chose as none did")
	}
}

func TestTieBreakOptionError(t *testing.T) {
	f := newFakeNet(t, 16)
	o := baseOptions()
	o.TieBreak = "acc"
	if _, err := Run(context.Background(), f.groups, f, nil, nil, o); err == nil || !strings.Contains(err.Error(), "tie_break") {
		t.Errorf("err = %v, want one naming tie_break", err)
	}
}

// select loss: the lowest validation loss wins whatever the accuracies say,
// and the tie-break's noise is the loss's own standard error.
func TestSelectLoss(t *testing.T) {
	cands := []Candidate{
		{Group: 0, MACs: 90}, // removes 10
		{Group: 1, MACs: 95}, // removes 5
		{Group: 2, MACs: 92}, // removes 8
	}
	res := []Result{
		{Accuracy: .97, Samples: 1000, ValLoss: 0.110, ValLossSE: 0.004},
		{Accuracy: .96, Samples: 1000, ValLoss: 0.100, ValLossSE: 0.004},
		{Accuracy: .98, Samples: 1000, ValLoss: 0.130, ValLossSE: 0.004},
	}
	scores := make([]float64, len(res))
	for i, r := range res {
		scores[i] = measure(kinds.SelectLoss, r)
	}
	top := choose(kinds.SelectLoss, cands, scores, 0.97, 100)
	if top != 1 {
		t.Fatalf("choose = %d, want 1 (the lowest loss, not the best accuracy)", top)
	}
	if got := breakTie(kinds.TieBreakNone, kinds.SelectLoss, cands, res, 0.97, 100, 0, top); got != 1 {
		t.Errorf("tie_break none = %d, want 1", got)
	}
	// 0.110 is 2.5 SE above 0.100: not within noise, so the macs rule keeps 1.
	if got := breakTie(kinds.TieBreakMACs, kinds.SelectLoss, cands, res, 0.97, 100, 0, top); got != 1 {
		t.Errorf("tie_break macs with a precise loss = %d, want 1", got)
	}
	// With a noisier loss (SE 0.012) 0 is within one SE of 1 (2 is not), and
	// it removes more MACs.
	for i := range res {
		res[i].ValLossSE = 0.012
	}
	if got := breakTie(kinds.TieBreakMACs, kinds.SelectLoss, cands, res, 0.97, 100, 0, top); got != 0 {
		t.Errorf("tie_break macs with a noisy loss = %d, want 0 (most MACs removed within one SE)", got)
	}
	// Unknown SE: no tie-break.
	for i := range res {
		res[i].ValLossSE = 0
	}
	if got := breakTie(kinds.TieBreakMACs, kinds.SelectLoss, cands, res, 0.97, 100, 0, top); got != 1 {
		t.Errorf("tie_break macs without an SE = %d, want 1", got)
	}
}
