package netadapt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// jointNet is fakeNet with a JointCommitter: a joint commit checks that
// every cut starts from the current model and leaves the other groups as
// they are, applies them all, and validates the result like a candidate.
type jointNet struct {
	*fakeNet
	joints [][]Candidate
	acc    func(keep map[int]int) float64 // the joint model's accuracy; nil: fakeNet's
}

func (j *jointNet) CommitJoint(_ context.Context, cs []Candidate) (Result, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	next := maps.Clone(j.current)
	seen := map[int]bool{}
	for _, c := range cs {
		if seen[c.Group] {
			j.violations = append(j.violations, fmt.Sprintf("joint commit cuts group %d twice", c.Group))
		}
		seen[c.Group] = true
		if c.From != j.current[c.Group] {
			j.violations = append(j.violations, fmt.Sprintf("joint cut of group %d from %d, the model has %d", c.Group, c.From, j.current[c.Group]))
		}
		for id, n := range c.Keep {
			if id != c.Group && n != j.current[id] {
				j.violations = append(j.violations, fmt.Sprintf("joint cut of group %d also changes group %d", c.Group, id))
			}
		}
		next[c.Group] = c.To
	}
	j.joints = append(j.joints, slices.Clone(cs))
	j.current = next
	acc := j.accuracy(next)
	if j.acc != nil {
		acc = j.acc(next)
	}
	return Result{Accuracy: acc, Samples: j.samples}, nil
}

func TestCommitTop(t *testing.T) {
	channels := []int{16, 32, 24, 40, 48, 32, 24}
	opt := baseOptions()
	opt.Step, opt.DeltaCrop, opt.P = kinds.StepMACs, 0.03, 0.6

	single := newFakeNet(t, channels...)
	one, err := Run(context.Background(), single.groups, single, nil, nil, opt)
	if err != nil {
		t.Fatalf("Run, the winner alone: %v", err)
	}

	j := &jointNet{fakeNet: newFakeNet(t, channels...)}
	o := opt
	o.CommitTop = 3
	var hooked []IterationRecord
	o.OnIteration = func(rec IterationRecord) { hooked = append(hooked, rec) }
	ck := &memCheckpoints{}
	got, err := Run(context.Background(), j.groups, j, ck, nil, o)
	if err != nil {
		t.Fatalf("Run with commit_top 3: %v", err)
	}
	j.checkContract()
	if !got.Done || got.Reason != ReasonTargetReached || got.MACs > got.Target {
		t.Fatalf("ended %v (%s) at %d MACs, target %d", got.Done, got.Reason, got.MACs, got.Target)
	}
	if n1, n3 := len(one.History), len(got.History); n3*2 > n1 {
		t.Errorf("%d iterations with commit_top 3 against %d with the winner alone: want at most half", n3, n1)
	}
	if len(j.joints) == 0 {
		t.Fatal("no joint commit ran")
	}
	if !maps.Equal(j.current, got.Keep) {
		t.Errorf("the evaluator holds %v, the search %v", j.current, got.Keep)
	}
	if len(hooked) != len(got.History) {
		t.Errorf("OnIteration saw %d records, history has %d", len(hooked), len(got.History))
	}

	joints := 0
	macs := got.MACs0
	for i, rec := range got.History {
		if rec.MACsBefore != macs {
			t.Errorf("iteration %d starts at %d MACs, the one before ended at %d", rec.Iteration, rec.MACsBefore, macs)
		}
		macs = rec.MACs
		// The winner, then the runners-up by accuracy, on distinct groups.
		var ranked []CandidateRecord
		for _, c := range rec.Candidates {
			if c.Group != rec.Group {
				ranked = append(ranked, c)
			}
		}
		slices.SortStableFunc(ranked, func(a, b CandidateRecord) int {
			switch {
			case a.Accuracy > b.Accuracy:
				return -1
			case a.Accuracy < b.Accuracy:
				return 1
			}
			return int(a.MACs - b.MACs)
		})
		// One whose cut would pass the target cuts only down to it.
		var want []CandidateRecord
		wk := ck.states[i].Keep
		cur := maps.Clone(wk) // the winner's cut alone
		for _, c := range rec.Joined {
			cur[c.Group] = c.From
		}
		jm := j.MACs(cur)
		for _, c := range ranked {
			if len(want) == 2 || jm <= got.Target {
				break
			}
			k := maps.Clone(cur)
			k[c.Group] = c.To
			if j.MACs(k) < got.Target {
				for n := c.From - 1; n > c.To; n-- { // alf 1: the largest count that reaches the target
					if k[c.Group] = n; j.MACs(k) <= got.Target {
						break
					}
				}
				if j.MACs(k) > got.Target {
					k[c.Group] = c.To
				}
				c.To = k[c.Group]
			}
			if m := j.MACs(k); m < jm {
				cur, jm, want = k, m, append(want, c)
			}
		}
		keep := wk
		if len(rec.Joined) > 2 {
			t.Errorf("iteration %d joined %d runners-up, commit_top 3 allows 2", rec.Iteration, len(rec.Joined))
		}
		if len(rec.Joined) > 0 {
			joints++
			if last := rec.Joined[len(rec.Joined)-1]; rec.MACs < got.Target {
				// Past the target only by less than the last cut's one channel.
				k := maps.Clone(keep)
				k[last.Group]++
				if m := j.MACs(k); m <= got.Target {
					t.Errorf("iteration %d overshoots the target: %d MACs, and %d with one channel more of group %d (target %d)",
						rec.Iteration, rec.MACs, m, last.Group, got.Target)
				}
			}
			if len(rec.Joined) != len(want) {
				t.Errorf("iteration %d joined %d runners-up, want %d", rec.Iteration, len(rec.Joined), len(want))
			}
			for k, c := range rec.Joined {
				if k < len(want) && (c.Group != want[k].Group || c.To != want[k].To) {
					t.Errorf("iteration %d: runner-up %d is group %d →%d, want group %d →%d",
						rec.Iteration, k+1, c.Group, c.To, want[k].Group, want[k].To)
				}
				if keep[c.Group] != c.To {
					t.Errorf("iteration %d: checkpoint keeps %d of group %d, the joint cut %d", rec.Iteration, keep[c.Group], c.Group, c.To)
				}
			}
			if want := j.MACs(keep); rec.MACs != want {
				t.Errorf("iteration %d records %d MACs, its keep counts give %d", rec.Iteration, rec.MACs, want)
			}
			if want := j.accuracy(keep); rec.Accuracy != want {
				t.Errorf("iteration %d records accuracy %v, the joint model validates %v", rec.Iteration, rec.Accuracy, want)
			}
		} else if i < len(got.History)-1 {
			t.Errorf("iteration %d (not the last) committed the winner alone", rec.Iteration)
		}
	}
	if joints != len(j.joints) {
		t.Errorf("%d records with runners-up, %d joint commits", joints, len(j.joints))
	}
	// Only iterations where the winner alone was enough (the last) call
	// Commit.
	if len(j.commits) > 1 {
		t.Errorf("Commit ran %d times beside %d joint commits", len(j.commits), len(j.joints))
	}

	// The same run again gives the same history: the ranking is total.
	j2 := &jointNet{fakeNet: newFakeNet(t, channels...)}
	again, err := Run(context.Background(), j2.groups, j2, nil, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.History) != len(got.History) {
		t.Fatalf("a second run took %d iterations, the first %d", len(again.History), len(got.History))
	}
	for i := range again.History {
		a, b := again.History[i], got.History[i]
		if a.Group != b.Group || !slices.EqualFunc(a.Joined, b.Joined, func(x, y Cut) bool { return x.Group == y.Group && x.To == y.To }) {
			t.Errorf("iteration %d differs between two runs: %d+%v against %d+%v", i+1, a.Group, a.Joined, b.Group, b.Joined)
		}
	}
}

// TestCommitTopStopsAtTarget: the runners-up join only while the joint cut
// stays at or above the target, so a search whose next cut would pass it
// commits fewer.
func TestCommitTopStopsAtTarget(t *testing.T) {
	opt := baseOptions()
	opt.Step, opt.DeltaCrop, opt.P = kinds.StepMACs, 0.1, 0.15
	j := &jointNet{fakeNet: newFakeNet(t, 16, 32, 24, 40, 48, 32)}
	o := opt
	o.CommitTop = 4
	got, err := Run(context.Background(), j.groups, j, nil, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	j.checkContract()
	if len(got.History) != 1 {
		t.Fatalf("%d iterations: P 0.15 in steps of 0.1 with four cuts an iteration takes one", len(got.History))
	}
	rec := got.History[0]
	if len(rec.Joined) != 1 {
		t.Fatalf("joined %d runners-up: the first passes the target, and ends the joint cut", len(rec.Joined))
	}
	if got.MACs > got.Target {
		t.Errorf("ended at %d MACs, target %d", got.MACs, got.Target)
	}
	// The runner-up cut only down to the target: one channel fewer cut
	// stays above it.
	c := rec.Joined[0]
	k := maps.Clone(got.Keep)
	k[c.Group]++
	if m := j.MACs(k); m <= got.Target {
		t.Errorf("the runner-up cut group %d to %d channels (%d MACs); %d channels reach the target too (%d MACs, target %d)",
			c.Group, c.To, got.MACs, c.To+1, m, got.Target)
	}
	if c.To >= c.From {
		t.Errorf("runner-up group %d %d→%d cuts nothing", c.Group, c.From, c.To)
	}
}

func TestCommitTopNeedsJointCommitter(t *testing.T) {
	f := newFakeNet(t, 16, 32, 24)
	opt := baseOptions()
	opt.CommitTop = 2
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "commit_top") {
		t.Errorf("commit_top 2 with an evaluator that cannot commit jointly: %v, want an error naming commit_top", err)
	}
	opt.CommitTop = -1
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err == nil || !strings.Contains(err.Error(), "commit_top") {
		t.Errorf("commit_top -1: %v, want an error naming commit_top", err)
	}
	// 1 is the winner alone, with any evaluator.
	opt.CommitTop = 1
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err != nil {
		t.Errorf("commit_top 1: %v", err)
	}
}
