package netadapt

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// screenNet is fakeNet with a Screener: a screen sees the accuracy a
// candidate would have after its fine-tune, lowered by offset(group) (a
// screen that is not fine-tuned misjudges some cuts more than others).
type screenNet struct {
	*fakeNet
	offset func(group int) float64
	fail   map[int]bool // groups whose screen fails for good

	smu      sync.Mutex
	screened map[int][]int // iteration → groups screened
	full     map[int][]int // iteration → groups fully evaluated
}

func newScreenNet(t *testing.T, channels ...int) *screenNet {
	return &screenNet{fakeNet: newFakeNet(t, channels...), offset: func(int) float64 { return 0.05 },
		screened: map[int][]int{}, full: map[int][]int{}}
}

func (s *screenNet) Screen(_ context.Context, slot int, c Candidate) (Result, error) {
	s.smu.Lock()
	s.screened[c.Iteration] = append(s.screened[c.Iteration], c.Group)
	s.smu.Unlock()
	if s.fail[c.Group] {
		return Result{}, fmt.Errorf("screen of group %d: %w", c.Group, ErrCandidateFailed)
	}
	acc := s.accuracy(c.Keep) - s.offset(c.Group)
	return Result{Accuracy: acc, Samples: s.samples}, nil
}

func (s *screenNet) Evaluate(ctx context.Context, slot int, c Candidate) (Result, error) {
	s.smu.Lock()
	s.full[c.Iteration] = append(s.full[c.Iteration], c.Group)
	s.smu.Unlock()
	return s.fakeNet.Evaluate(ctx, slot, c)
}

func TestShortlistRanking(t *testing.T) {
	cands := []Candidate{{Group: 0, MACs: 90}, {Group: 1, MACs: 95}, {Group: 2, MACs: 92}, {Group: 3, MACs: 92}}
	res := func(accs ...float64) []Result {
		out := make([]Result, len(accs))
		for i, a := range accs {
			out[i] = Result{Accuracy: a, ValLoss: 1 - a}
		}
		return out
	}
	tests := []struct {
		name    string
		mode    kinds.Select
		screens []Result
		failed  []string
		k       int
		want    []int
	}{
		{"best two, in candidate order", kinds.SelectAcc, res(.8, .9, .7, .85), nil, 2, []int{1, 3}},
		{"equal scores: fewer MACs, then lower group", kinds.SelectAcc, res(.8, .8, .8, .8), nil, 2, []int{0, 2}},
		{"failed screens never make it", kinds.SelectAcc, res(.8, .9, .7, .85), []string{"", "oom", "", ""}, 2, []int{0, 3}},
		{"k above the count keeps all that did not fail", kinds.SelectAcc, res(.8, .9, .7, .85), []string{"x", "", "", ""}, 9, []int{1, 2, 3}},
		{"loss ranks by validation loss", kinds.SelectLoss, res(.8, .9, .7, .85), nil, 1, []int{1}},
		// From 0.95: −0.015, −0.01, −0.03125, −0.0125 per removed MAC.
		{"acc_per_mac ranks per removed MAC", kinds.SelectAccPerMAC, res(.8, .9, .7, .85), nil, 2, []int{1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failed := tt.failed
			if failed == nil {
				failed = make([]string, len(cands))
			}
			if got := shortlist(tt.mode, cands, tt.screens, failed, 0.95, 100, tt.k); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("shortlist = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestShortlistRun(t *testing.T) {
	opt := baseOptions()
	opt.Step, opt.DeltaCrop = kinds.StepMACs, 0.05

	// Without a shortlist, every candidate is evaluated fully.
	plain := newFakeNet(t, 16, 32, 24, 40, 48)
	want, err := Run(context.Background(), plain.groups, plain, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run without a shortlist: %v", err)
	}

	// A screen that ranks like the fine-tune (a constant offset) finds the
	// same winners, evaluating only two candidates per iteration.
	s := newScreenNet(t, 16, 32, 24, 40, 48)
	var screenOutcomes, fullOutcomes int
	o := opt
	o.Shortlist = 2
	o.OnCandidate = func(out Outcome) {
		if out.Screen {
			screenOutcomes++
		} else {
			fullOutcomes++
		}
	}
	got, err := Run(context.Background(), s.groups, s, nil, nil, o)
	if err != nil {
		t.Fatalf("Run with a shortlist: %v", err)
	}
	s.checkContract()
	if len(got.History) != len(want.History) {
		t.Fatalf("%d iterations with a shortlist, %d without", len(got.History), len(want.History))
	}
	var screens, fulls int
	for i, rec := range got.History {
		w := want.History[i]
		if rec.Group != w.Group || rec.To != w.To || rec.MACs != w.MACs || rec.Accuracy != w.Accuracy {
			t.Errorf("iteration %d: kept group %d %d→%d (acc %v), without a shortlist group %d %d→%d (acc %v)",
				i+1, rec.Group, rec.From, rec.To, rec.Accuracy, w.Group, w.From, w.To, w.Accuracy)
		}
		n := len(rec.Candidates)
		screens += len(s.screened[rec.Iteration])
		fulls += len(s.full[rec.Iteration])
		if n > 2 {
			if len(s.screened[rec.Iteration]) != n || len(s.full[rec.Iteration]) != 2 {
				t.Errorf("iteration %d: %d candidates, %d screened, %d evaluated; want all screened, 2 evaluated",
					rec.Iteration, n, len(s.screened[rec.Iteration]), len(s.full[rec.Iteration]))
			}
		} else if len(s.screened[rec.Iteration]) != 0 {
			t.Errorf("iteration %d: %d candidates (no more than the shortlist) but %d screens", rec.Iteration, n, len(s.screened[rec.Iteration]))
		}
		var out int
		for _, c := range rec.Candidates {
			if n > 2 && c.ScreenAccuracy == 0 {
				t.Errorf("iteration %d group %d: no screen accuracy recorded", rec.Iteration, c.Group)
			}
			if c.ScreenedOut {
				out++
				if c.Group == rec.Group {
					t.Errorf("iteration %d: the winner %d was screened out", rec.Iteration, c.Group)
				}
				if c.Accuracy != c.ScreenAccuracy {
					t.Errorf("iteration %d group %d: screened out with accuracy %v, screen %v", rec.Iteration, c.Group, c.Accuracy, c.ScreenAccuracy)
				}
			}
		}
		if n > 2 && out != n-2 {
			t.Errorf("iteration %d: %d of %d candidates screened out, want %d", rec.Iteration, out, n, n-2)
		}
	}
	if screens == 0 {
		t.Fatal("no iteration screened: the test model has too few groups to show a shortlist")
	}
	if screenOutcomes != screens || fullOutcomes != fulls {
		t.Errorf("hooks saw %d screens and %d evaluations, the evaluator ran %d and %d", screenOutcomes, fullOutcomes, screens, fulls)
	}
	if s.evaluated >= plain.evaluated {
		t.Errorf("%d full evaluations with a shortlist, %d without", s.evaluated, plain.evaluated)
	}

	// A screen that misjudges group 1 badly keeps it out of every
	// shortlist, so it never wins, though it would without the screen.
	won1 := false
	for _, rec := range want.History {
		won1 = won1 || rec.Group == 1
	}
	if !won1 {
		t.Fatal("group 1 never wins without a shortlist; the test needs a model where it does")
	}
	bad := newScreenNet(t, 16, 32, 24, 40, 48)
	bad.offset = func(g int) float64 {
		if g == 1 {
			return 0.5
		}
		return 0
	}
	o.OnCandidate = nil
	st, err := Run(context.Background(), bad.groups, bad, nil, nil, o)
	if err != nil {
		t.Fatalf("Run with a misjudging screen: %v", err)
	}
	for _, rec := range st.History {
		if rec.Group == 1 && len(rec.Candidates) > 2 {
			t.Errorf("iteration %d kept group 1, which its screen ranked last", rec.Iteration)
		}
	}
}

func TestShortlistFailures(t *testing.T) {
	opt := baseOptions()
	opt.Step, opt.DeltaCrop, opt.Shortlist = kinds.StepMACs, 0.05, 2

	// A candidate whose screen fails for good is recorded as failed and
	// never evaluated.
	s := newScreenNet(t, 16, 32, 24, 40, 48)
	s.fail = map[int]bool{2: true}
	st, err := Run(context.Background(), s.groups, s, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec := st.History[0]
	for _, c := range rec.Candidates {
		if c.Group == 2 && (c.Failed == "" || c.ScreenedOut) {
			t.Errorf("group 2: failed %q, screened out %v; want failed, not screened out", c.Failed, c.ScreenedOut)
		}
	}
	for _, g := range s.full[1] {
		if g == 2 {
			t.Error("group 2's screen failed, but it was evaluated")
		}
	}

	// Any other screen error ends the search, naming the screen.
	boom := &boomScreen{screenNet: newScreenNet(t, 16, 32, 24, 40, 48)}
	if _, err := Run(context.Background(), boom.groups, boom, nil, nil, opt); err == nil || !errors.Is(err, errBoom) ||
		!strings.Contains(err.Error(), "screening") || !strings.Contains(err.Error(), "group 3") {
		t.Errorf("Run with a failing screen: %v, want the screen's error naming group 3", err)
	}

	// A shortlist needs a Screener; a negative one is refused.
	f := newFakeNet(t, 16, 32)
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "Screener") {
		t.Errorf("shortlist without a Screener: %v", err)
	}
	opt.Shortlist = -1
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "shortlist") {
		t.Errorf("negative shortlist: %v", err)
	}
}

// boomScreen fails the screen of group 3 with a plain error.
type boomScreen struct{ *screenNet }

func (b *boomScreen) Screen(ctx context.Context, slot int, c Candidate) (Result, error) {
	if c.Group == 3 {
		return Result{}, errBoom
	}
	return b.screenNet.Screen(ctx, slot, c)
}
