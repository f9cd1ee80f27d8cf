package netadapt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

func baseOptions() Options {
	return Options{P: 0.5, DeltaCrop: 0.1, Alf: 1, Slots: []string{"cpu"}, BaseAccuracy: 1}
}

// jsonRound is what a checkpoint file does to a state.
func jsonRound(t *testing.T, s *State) *State {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal state: %v", err)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal state: %v", err)
	}
	return &out
}

func TestTargetReached(t *testing.T) {
	for _, step := range []kinds.Step{kinds.StepChannels, kinds.StepMACs} {
		t.Run(string(step), func(t *testing.T) {
			f := newFakeNet(t, 16, 32, 24, 40)
			ck := &memCheckpoints{}
			opt := baseOptions()
			opt.Step = step
			st, err := Run(context.Background(), f.groups, f, ck, nil, opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			f.checkContract()
			if !st.Done || st.Reason != ReasonTargetReached {
				t.Fatalf("done %v reason %q, want %q", st.Done, st.Reason, ReasonTargetReached)
			}
			if float64(st.MACs) > (1-opt.P)*float64(st.MACs0) {
				t.Errorf("MACs %d above (1−P)·MACs₀ = %v", st.MACs, (1-opt.P)*float64(st.MACs0))
			}
			if len(st.History) == 0 || st.Iteration != len(st.History) {
				t.Fatalf("iteration %d with %d history records", st.Iteration, len(st.History))
			}
			for i, rec := range st.History[:len(st.History)-1] {
				if rec.MACs <= st.Target {
					t.Errorf("iteration %d already reached the target (%d <= %d) but the search went on", i+1, rec.MACs, st.Target)
				}
			}
			if len(ck.states) != st.Iteration {
				t.Errorf("%d checkpoints for %d iterations", len(ck.states), st.Iteration)
			}
			if last := ck.last(); !reflect.DeepEqual(last, st) {
				t.Errorf("last checkpoint differs from the result")
			}
			if len(f.commits) != st.Iteration {
				t.Errorf("%d commits for %d iterations", len(f.commits), st.Iteration)
			}
			if got := f.MACs(st.Keep); got != st.MACs {
				t.Errorf("state MACs %d, keep gives %d", st.MACs, got)
			}
			// The last cut goes no further than the target: one more alf of
			// the winning group kept would leave the model above it.
			last := st.History[len(st.History)-1]
			if up := last.To + max(1, opt.Alf); up < last.From {
				if m := f.MACs(withKeep(st.Keep, last.Group, up)); m <= st.Target {
					t.Errorf("last iteration cut group %d %d→%d, but %d channels already reach the target (%d <= %d)",
						last.Group, last.From, last.To, up, m, st.Target)
				}
			}
			// Each record continues from the previous one.
			macs, acc := st.MACs0, 1.0
			for _, rec := range st.History {
				if rec.MACsBefore != macs || rec.AccuracyBefore != acc || rec.MACs >= macs {
					t.Errorf("iteration %d: before %d/%v, want %d/%v; after %d", rec.Iteration, rec.MACsBefore, rec.AccuracyBefore, macs, acc, rec.MACs)
				}
				macs, acc = rec.MACs, rec.Accuracy
			}
		})
	}
}

func TestNothingLeftToPrune(t *testing.T) {
	f := newFakeNet(t, 64, 64, 96)
	opt := baseOptions()
	opt.P, opt.Alf = 0.95, 32
	ck := &memCheckpoints{}
	st, err := Run(context.Background(), f.groups, f, ck, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !st.Done || st.Reason != ReasonNothingLeft {
		t.Fatalf("done %v reason %q, want %q", st.Done, st.Reason, ReasonNothingLeft)
	}
	if st.MACs <= st.Target {
		t.Errorf("reached the target (%d <= %d), expected to run out first", st.MACs, st.Target)
	}
	for _, g := range f.groups {
		if st.Keep[g.ID] != 32 {
			t.Errorf("group %d kept %d, want alf=32", g.ID, st.Keep[g.ID])
		}
	}
	last := ck.last()
	if last == nil || !last.Done || last.Reason != ReasonNothingLeft {
		t.Fatalf("the final checkpoint does not record the end: %+v", last)
	}
	// Resuming a finished search does nothing.
	n := f.evaluated
	again, err := Run(context.Background(), f.groups, f, nil, jsonRound(t, last), opt)
	if err != nil || f.evaluated != n || !reflect.DeepEqual(again, jsonRound(t, st)) {
		t.Errorf("resuming a finished search: err %v, %d more evaluations", err, f.evaluated-n)
	}
}

func TestAlfMultiplesKept(t *testing.T) {
	f := newFakeNet(t, 33, 65, 48, 100)
	opt := baseOptions()
	opt.P, opt.Alf, opt.DeltaCrop = 0.6, 8, 0.1
	seen := map[[2]int]bool{}
	opt.OnIterationStart = func(_ int, _ int64, cands []Candidate) {
		for _, c := range cands {
			seen[[2]int{c.From, c.To}] = true
			if c.To%8 != 0 || c.To < 8 || c.To >= c.From {
				t.Errorf("candidate group %d %d→%d breaks alf 8", c.Group, c.From, c.To)
			}
		}
	}
	st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The first cuts of the misaligned groups: 33−4=29 → 24, 65−7=58 → 56.
	for _, want := range [][2]int{{33, 24}, {65, 56}, {48, 40}, {100, 88}} {
		if !seen[want] {
			t.Errorf("no candidate %d→%d", want[0], want[1])
		}
	}
	for id, k := range st.Keep {
		if k != f.groups[id].Channels && k%8 != 0 {
			t.Errorf("group %d ends at %d, not a multiple of 8", id, k)
		}
	}
}

func TestExclude(t *testing.T) {
	f := newFakeNet(t, 16, 32, 24, 40)
	opt := baseOptions()
	opt.Exclude = map[int]bool{1: true, 3: true}
	opt.P = 0.3
	opt.OnIterationStart = func(_ int, _ int64, cands []Candidate) {
		for _, c := range cands {
			if opt.Exclude[c.Group] {
				t.Errorf("excluded group %d got a candidate", c.Group)
			}
		}
	}
	st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st.Keep[1] != 32 || st.Keep[3] != 40 {
		t.Errorf("excluded groups changed: %v", st.Keep)
	}
	if st.Keep[0] == 16 && st.Keep[2] == 24 {
		t.Errorf("nothing was pruned: %v", st.Keep)
	}

	opt.Exclude = map[int]bool{9: true}
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "9") {
		t.Errorf("unknown excluded group: err = %v", err)
	}
}

func TestSelectModes(t *testing.T) {
	// Group 0 is expensive per channel and hurts accuracy a little; group 1
	// is cheap and hurts less in absolute terms but more per MAC.
	run := func(sel kinds.Select) IterationRecord {
		ev := &linearNet{cost: []int64{10, 1}, drop: []float64{0.10, 0.05}}
		opt := baseOptions()
		opt.Select, opt.P = sel, 0.05
		st, err := Run(context.Background(), []Group{{ID: 0, Channels: 10}, {ID: 1, Channels: 10}}, ev, nil, nil, opt)
		if err != nil {
			t.Fatalf("Run(%s): %v", sel, err)
		}
		return st.History[0]
	}
	if rec := run(kinds.SelectAcc); rec.Group != 1 {
		t.Errorf("acc chose group %d, want 1 (accuracy 0.95 over 0.90)", rec.Group)
	}
	if rec := run(kinds.SelectAccPerMAC); rec.Group != 0 {
		t.Errorf("acc_per_mac chose group %d, want 0 (−0.01/MAC over −0.05/MAC)", rec.Group)
	}
}

// linearNet: MACs = Σ cost_g·keep_g; a candidate's accuracy is 1 − drop_g
// per channel removed from the unpruned model.
type linearNet struct {
	cost []int64
	drop []float64
}

func (l *linearNet) MACs(keep map[int]int) int64 {
	var s int64
	for id, c := range l.cost {
		k, ok := keep[id]
		if !ok {
			k = 10
		}
		s += c * int64(k)
	}
	return s
}

func (l *linearNet) Evaluate(_ context.Context, _ int, c Candidate) (Result, error) {
	acc := 1.0
	for id, k := range c.Keep {
		acc -= l.drop[id] * float64(10-k)
	}
	return Result{Accuracy: acc}, nil
}

func (l *linearNet) Commit(context.Context, Candidate) error { return nil }

func TestStepMACsEqualReduction(t *testing.T) {
	f := newFakeNet(t, 64, 48, 96, 80)
	opt := baseOptions()
	opt.Step, opt.Alf, opt.DeltaCrop, opt.P = kinds.StepMACs, 4, 0.05, 0.4
	var iterations int
	opt.OnIterationStart = func(_ int, budget int64, cands []Candidate) {
		iterations++
		macs := f.MACs(f.current)
		macs0 := f.MACs(nil)
		if want := min(int64(0.05*float64(macs0)+1), macs-int64(0.6*float64(macs0))); budget > want || budget < want-2 {
			t.Errorf("budget %d, want about %d", budget, want)
		}
		if len(cands) < 2 {
			t.Errorf("only %d candidates", len(cands))
		}
		for _, c := range cands {
			removed := macs - c.MACs
			if c.To == 4 {
				continue // could not reach the budget, cut all it could
			}
			if removed < budget {
				t.Errorf("group %d %d→%d removes %d MACs, under the budget %d", c.Group, c.From, c.To, removed, budget)
			}
			up := withKeep(c.Keep, c.Group, c.To+4)
			if c.To+4 < c.From && macs-f.MACs(up) >= budget {
				t.Errorf("group %d: keeping %d would also reach the budget; %d cuts too much", c.Group, c.To+4, c.To)
			}
			if c.To%4 != 0 {
				t.Errorf("group %d keeps %d, not a multiple of alf 4", c.Group, c.To)
			}
		}
	}
	st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st.Reason != ReasonTargetReached || iterations < 3 {
		t.Errorf("reason %q after %d iterations", st.Reason, iterations)
	}
	for _, rec := range st.History {
		if rec.Budget <= 0 {
			t.Errorf("iteration %d has no budget recorded", rec.Iteration)
		}
	}
}

func TestConcurrentSlots(t *testing.T) {
	run := func(slots []string) (*State, *fakeNet) {
		f := newFakeNet(t, 16, 32, 24, 40, 20)
		// Later groups finish first, so completion order is not candidate order.
		f.sleep = func(c Candidate) time.Duration { return time.Duration(6-c.Group) * 2 * time.Millisecond }
		opt := baseOptions()
		opt.Slots, opt.P = slots, 0.3
		var mu sync.Mutex
		var overlapping, running int
		// With several slots, every candidate waits until two have started:
		// the slots provably run at once, however loaded the machine is
		// (no timing involved; the guard only turns a hang into an error).
		together := make(chan struct{})
		var met sync.Once
		opt.OnCandidateStart = func(int, Candidate) {
			mu.Lock()
			running++
			overlapping = max(overlapping, running)
			if running >= 2 {
				met.Do(func() { close(together) })
			}
			mu.Unlock()
		}
		if len(slots) > 1 {
			f.before = func(ctx context.Context, _ Candidate) error {
				select {
				case <-together:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(2 * time.Minute):
					return fmt.Errorf("no second candidate started while the first waited on %d slots", len(slots))
				}
			}
		}
		opt.OnCandidate = func(o Outcome) {
			mu.Lock()
			running--
			mu.Unlock()
			if o.SlotName != slots[o.Slot] || o.Err != nil || o.Duration <= 0 {
				t.Errorf("outcome %+v", o)
			}
		}
		st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
		if err != nil {
			t.Fatalf("Run on %v: %v", slots, err)
		}
		f.checkContract()
		return st, f
	}
	one, f1 := run([]string{"cpu"})
	two, f2 := run([]string{"cuda:0", "cuda:1"})
	three, _ := run([]string{"cuda:0", "cuda:0", "cuda:1"})
	if f1.maxInflight != 1 {
		t.Errorf("one slot ran %d candidates at once", f1.maxInflight)
	}
	if f2.maxInflight < 2 {
		t.Errorf("two slots never overlapped (max %d at once)", f2.maxInflight)
	}
	if !reflect.DeepEqual(one, two) || !reflect.DeepEqual(one, three) {
		t.Errorf("results depend on the number of slots:\n1: %+v\n2: %+v\n3: %+v", one.History, two.History, three.History)
	}
}

func TestCancelAndResume(t *testing.T) {
	opt := baseOptions()
	opt.Slots = []string{"cuda:0", "cuda:1"}
	opt.Select = kinds.SelectAccPerMAC
	channels := []int{16, 32, 24, 40}

	full := newFakeNet(t, channels...)
	want, err := Run(context.Background(), full.groups, full, nil, nil, opt)
	if err != nil {
		t.Fatalf("uninterrupted Run: %v", err)
	}
	if want.Iteration < 4 {
		t.Fatalf("only %d iterations; the test needs more", want.Iteration)
	}

	const stopAt = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFakeNet(t, channels...)
	f.sleep = func(Candidate) time.Duration { return 2 * time.Millisecond }
	var cancelled []Candidate
	var mu sync.Mutex
	f.before = func(cctx context.Context, c Candidate) error {
		if c.Iteration == stopAt && c.Group == 1 {
			cancel()
		}
		return nil
	}
	opt2 := opt
	opt2.OnCandidate = func(o Outcome) {
		if o.Err != nil {
			mu.Lock()
			cancelled = append(cancelled, o.Candidate)
			mu.Unlock()
		}
	}
	ck := &memCheckpoints{}
	st, err := Run(ctx, f.groups, f, ck, nil, opt2)
	if err != context.Canceled { //nolint:errorlint // Run promises ctx.Err() itself
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if st.Iteration != stopAt-1 {
		t.Errorf("returned state at iteration %d, want %d", st.Iteration, stopAt-1)
	}
	last := ck.last()
	if last == nil || last.Iteration != stopAt-1 || len(ck.states) != stopAt-1 {
		t.Fatalf("last checkpoint %+v after %d saves, want iteration %d", last, len(ck.states), stopAt-1)
	}
	if !reflect.DeepEqual(last, st) {
		t.Errorf("returned state differs from the last checkpoint")
	}
	if len(f.commits) != stopAt-1 {
		t.Errorf("%d commits, the cancelled iteration must not commit", len(f.commits))
	}
	if len(cancelled) == 0 {
		t.Errorf("no running candidate saw the cancellation")
	}

	// Resume from the checkpoint file with a fresh evaluator whose model
	// the caller restored to the checkpoint.
	resumed := newFakeNet(t, channels...)
	start := jsonRound(t, last)
	resumed.current = start.Keep
	got, err := Run(context.Background(), resumed.groups, resumed, nil, start, opt)
	if err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	resumed.checkContract()
	if !reflect.DeepEqual(jsonRound(t, got), jsonRound(t, want)) {
		t.Errorf("resumed run differs from the uninterrupted one:\n got %+v\nwant %+v", got, want)
	}
}

func TestCandidateErrorNamesGroup(t *testing.T) {
	f := newFakeNet(t, 16, 32, 24, 40)
	f.sleep = func(Candidate) time.Duration { return time.Millisecond }
	f.before = func(_ context.Context, c Candidate) error {
		if c.Iteration == 2 && c.Group == 2 {
			return errBoom
		}
		return nil
	}
	opt := baseOptions()
	opt.Slots = []string{"cpu", "cpu"}
	ck := &memCheckpoints{}
	st, err := Run(context.Background(), f.groups, f, ck, nil, opt)
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want errBoom", err)
	}
	for _, want := range []string{"iteration 2", "group 2", "blocks.2.conv"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if st == nil || st.Iteration != 1 || len(ck.states) != 1 || len(f.commits) != 1 {
		t.Errorf("state %+v, %d checkpoints, %d commits: want iteration 1 kept", st, len(ck.states), len(f.commits))
	}
}

// TestFailedCandidateIsSkipped: a candidate whose error wraps
// ErrCandidateFailed is recorded as failed and the iteration chooses among
// the others (even when it would have won); when every candidate of an
// iteration fails, the search stops naming one.
func TestFailedCandidateIsSkipped(t *testing.T) {
	ref := newFakeNet(t, 16, 32, 24, 40)
	want, err := Run(context.Background(), ref.groups, ref, nil, nil, baseOptions())
	if err != nil {
		t.Fatal(err)
	}
	winner := want.History[0].Group
	f := newFakeNet(t, 16, 32, 24, 40)
	f.before = func(_ context.Context, c Candidate) error {
		if c.Iteration == 1 && c.Group == winner {
			return fmt.Errorf("worker w/0 after 3 deliveries: out of memory: %w", ErrCandidateFailed)
		}
		return nil
	}
	opt := baseOptions()
	opt.Slots = []string{"cpu", "cpu"}
	st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
	if err != nil {
		t.Fatalf("a failed candidate ended the search: %v", err)
	}
	it := st.History[0]
	if it.Group == winner {
		t.Fatalf("iteration 1 kept group %d, whose candidate failed", winner)
	}
	for _, c := range it.Candidates {
		if failed := c.Failed != ""; failed != (c.Group == winner) {
			t.Errorf("candidate of group %d: failed %q", c.Group, c.Failed)
		}
		if c.Group == winner && !strings.Contains(c.Failed, "out of memory") {
			t.Errorf("the failed candidate's record does not say why: %q", c.Failed)
		}
	}
	if !st.Done || st.MACs > st.Target {
		t.Errorf("the search did not reach its target after the failure: %+v", st)
	}

	all := newFakeNet(t, 16, 32)
	all.before = func(context.Context, Candidate) error {
		return fmt.Errorf("corrupt archive: %w", ErrCandidateFailed)
	}
	_, err = Run(context.Background(), all.groups, all, nil, nil, baseOptions())
	if err == nil || !strings.Contains(err.Error(), "every candidate failed") || !strings.Contains(err.Error(), "corrupt archive") {
		t.Errorf("all candidates failing: err = %v", err)
	}
}

func TestNonFiniteAccuracyIsAnError(t *testing.T) {
	ev := &nanNet{}
	_, err := Run(context.Background(), []Group{{ID: 0, Layers: []string{"fc"}, Channels: 10}}, ev, nil, nil, baseOptions())
	if err == nil || !strings.Contains(err.Error(), "not a finite number") || !strings.Contains(err.Error(), "group 0") {
		t.Errorf("err = %v", err)
	}
}

type nanNet struct{ linearNet }

func (nanNet) MACs(keep map[int]int) int64 {
	if k, ok := keep[0]; ok {
		return int64(k)
	}
	return 10
}
func (nanNet) Evaluate(context.Context, int, Candidate) (Result, error) {
	return Result{Accuracy: nanValue()}, nil
}

func nanValue() float64 { var z float64; return z / z }

func TestSaveFailureStops(t *testing.T) {
	f := newFakeNet(t, 16, 32)
	ck := &memCheckpoints{fail: errBoom}
	st, err := Run(context.Background(), f.groups, f, ck, nil, baseOptions())
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "after iteration 1") {
		t.Fatalf("err = %v, want the save error after iteration 1", err)
	}
	if f.evaluated != 2 || st.Iteration != 1 {
		t.Errorf("%d evaluations, state at iteration %d: the search must stop at the failed save", f.evaluated, st.Iteration)
	}
}

func TestFinishStages(t *testing.T) {
	f := newFakeNet(t, 33, 65, 40)
	opt := baseOptions()
	opt.Alf, opt.ResizeAlf, opt.FineTune = 32, true, true
	opt.Exclude = map[int]bool{2: true}
	// A finished search with misaligned counts left (as alf 1 would leave them).
	start := &State{Keep: map[int]int{0: 33, 1: 65, 2: 40}, MACs0: f.MACs(nil), MACs: f.MACs(nil),
		Target: int64(0.5 * float64(f.MACs(nil))), Accuracy0: 1, Accuracy: 1, Done: true, Reason: ReasonNothingLeft}
	ck := &memCheckpoints{}
	st, err := Run(context.Background(), f.groups, f, ck, start, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !reflect.DeepEqual(f.calls, []string{"resize", "finetune"}) {
		t.Errorf("finisher calls %v", f.calls)
	}
	want := map[int]int{0: 32, 1: 64, 2: 40}
	if !reflect.DeepEqual(f.resized, []map[int]int{want}) || !reflect.DeepEqual(st.Keep, want) {
		t.Errorf("resized to %v, state keep %v; want %v", f.resized, st.Keep, want)
	}
	if st.MACs != f.MACs(want) || !st.Resized || !st.FineTuned || st.Accuracy != f.accuracy(want)+0.01 {
		t.Errorf("state after finishing: %+v", st)
	}
	if len(ck.states) != 2 || !ck.states[0].Resized || ck.states[0].FineTuned || !ck.states[1].FineTuned {
		t.Errorf("checkpoints after the stages: %+v", ck.states)
	}
	// Nothing is redone on resume.
	if _, err := Run(context.Background(), f.groups, f, nil, jsonRound(t, st), opt); err != nil || len(f.calls) != 2 {
		t.Errorf("resuming a finished run: err %v, calls %v", err, f.calls)
	}
	// Without a Finisher the options are refused up front.
	opt.Exclude = nil
	if _, err := Run(context.Background(), []Group{{ID: 0, Channels: 10}, {ID: 1, Channels: 10}},
		&linearNet{cost: []int64{1, 1}, drop: []float64{0, 0}}, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "Finisher") {
		t.Errorf("err = %v, want a missing Finisher error", err)
	}
}

func TestResumeChecks(t *testing.T) {
	f := newFakeNet(t, 16, 32)
	opt := baseOptions()
	st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(s *State, o *Options)
		want   string
	}{
		{"other P", func(_ *State, o *Options) { o.P = 0.3 }, "target"},
		{"other model", func(s *State, _ *Options) { s.MACs0++ }, "model"},
		{"missing group", func(s *State, _ *Options) { delete(s.Keep, 1) }, "groups"},
		{"keep above channels", func(s *State, _ *Options) { s.Keep[1] = 33 }, "group 1"},
		{"MACs mismatch", func(s *State, _ *Options) { s.MACs++ }, "MACs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, o := jsonRound(t, st), opt
			tt.mutate(s, &o)
			if _, err := Run(context.Background(), f.groups, f, nil, s, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	f := newFakeNet(t, 16)
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   string
	}{
		{"P zero", func(o *Options) { o.P = 0 }, "P"},
		{"P one", func(o *Options) { o.P = 1 }, "P"},
		{"delta", func(o *Options) { o.DeltaCrop = 1.5 }, "delta_crop"},
		{"alf", func(o *Options) { o.Alf = 0 }, "alf"},
		{"select", func(o *Options) { o.Select = "best" }, "select"},
		{"step", func(o *Options) { o.Step = "flops" }, "step"},
		{"slots", func(o *Options) { o.Slots = nil }, "slots"},
		{"max_group_cut above 1", func(o *Options) { o.MaxGroupCut = 1.5 }, "max_group_cut"},
		{"max_group_cut negative", func(o *Options) { o.MaxGroupCut = -0.5 }, "max_group_cut"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOptions()
			tt.mutate(&o)
			if _, err := Run(context.Background(), f.groups, f, nil, nil, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := Run(context.Background(), []Group{{ID: 1, Channels: 4}, {ID: 1, Channels: 4}}, f, nil, nil, baseOptions()); err == nil {
		t.Error("duplicate group ids accepted")
	}
}

func TestStateJSON(t *testing.T) {
	f := newFakeNet(t, 16, 32)
	st, err := Run(context.Background(), f.groups, f, nil, nil, baseOptions())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := jsonRound(t, st); !reflect.DeepEqual(got, st) {
		t.Errorf("state does not survive JSON:\n got %+v\nwant %+v", got, st)
	}
	b, _ := json.Marshal(st.History[0])
	for _, key := range []string{`"iteration"`, `"group"`, `"layers"`, `"from"`, `"to"`, `"macs"`, `"acc"`, `"candidates"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("iteration record JSON lacks %s: %s", key, b)
		}
	}
}

// A group with blocks (a grouped conv's channels per group) only ever steps
// by whole blocks combined with alf, in both step kinds; groups without
// blocks step by alf alone.
func TestBlocksKeptWhole(t *testing.T) {
	for _, step := range []kinds.Step{kinds.StepChannels, kinds.StepMACs} {
		t.Run(string(step), func(t *testing.T) {
			f := newFakeNet(t, 64, 96, 48)
			f.groups[0].Block = 4  // unit lcm(2, 4) = 4
			f.groups[1].Block = 12 // unit lcm(2, 12) = 12
			unit := map[int]int{0: 4, 1: 12, 2: 2}
			opt := baseOptions()
			opt.P, opt.Alf, opt.DeltaCrop, opt.Step = 0.6, 2, 0.1, step
			n := 0
			opt.OnIterationStart = func(_ int, _ int64, cands []Candidate) {
				for _, c := range cands {
					n++
					if u := unit[c.Group]; c.To%u != 0 || c.To < u || c.To >= c.From {
						t.Errorf("candidate group %d %d→%d is not whole units of %d", c.Group, c.From, c.To, u)
					}
				}
			}
			st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if n == 0 {
				t.Fatal("no candidates")
			}
			for id, k := range st.Keep {
				if k%unit[id] != 0 {
					t.Errorf("group %d ends at %d, not whole units of %d", id, k, unit[id])
				}
			}
		})
	}
}
