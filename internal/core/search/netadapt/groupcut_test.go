package netadapt

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

func TestCapKeep(t *testing.T) {
	tests := []struct {
		name      string
		cur, unit int
		share     float64
		want      int
	}{
		{"half of 64", 64, 1, 0.5, 32},
		{"half of 64, alf 4", 64, 4, 0.5, 32},
		{"ceil keeps a channel more", 7, 1, 0.5, 4},      // keeps ceil(3.5)
		{"alf rounds the floor up", 20, 8, 0.5, 16},      // keeps 10 → 16
		{"share 1 cuts to one unit", 64, 4, 1, 4},        // the uncapped floor
		{"share below one unit: one unit", 8, 4, 0.1, 4}, // ceil(7.2)=8 → 8 → one unit below
		{"one unit left cannot be cut", 4, 4, 0.5, 4},    // returns cur
		{"under one unit cannot be cut", 3, 4, 0.9, 3},   // returns cur
		{"float error in the share", 30, 1, 0.9, 3},      // 0.1·30 is 3.0000000000000004
		{"unit 0 treated as 1", 10, 0, 0.5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capKeep(tt.cur, tt.unit, tt.share); got != tt.want {
				t.Errorf("capKeep(%d, %d, %v) = %d, want %d", tt.cur, tt.unit, tt.share, got, tt.want)
			}
		})
	}
}

// With max_group_cut below 1, no candidate loses more than that share of its
// group's channels (or one alf step), the budget is at most the upper median
// of what the groups can remove within it, every candidate removes at least
// the budget, the groups that cannot are left out, and the search still
// stops at the target.
func TestMaxGroupCut(t *testing.T) {
	for _, tt := range []struct {
		name  string
		share float64
		alf   int
		p     float64
	}{
		{"half", 0.5, 1, 0.5},
		{"half alf 4", 0.5, 4, 0.7},
		{"quarter", 0.25, 2, 0.5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNet(t, 64, 48, 96, 80, 32, 128)
			opt := baseOptions()
			opt.Step, opt.Alf, opt.DeltaCrop, opt.P, opt.MaxGroupCut = kinds.StepMACs, tt.alf, 0.3, tt.p, tt.share
			macs0 := f.MACs(nil)
			target := int64(math.Floor((1 - tt.p) * float64(macs0) * (1 + 1e-12)))
			var iterations, capped int
			opt.OnIterationStart = func(it int, budget int64, cands []Candidate) {
				iterations++
				macs := f.MACs(f.current)
				var reach []int64
				byGroup := map[int]int64{}
				for _, g := range f.groups {
					floor := capKeep(f.current[g.ID], tt.alf, tt.share)
					if floor < f.current[g.ID] {
						m := macs - f.MACs(withKeep(f.current, g.ID, floor))
						reach = append(reach, m)
						byGroup[g.ID] = m
					}
				}
				slices.Sort(reach)
				median := reach[len(reach)/2]
				want := min(int64(math.Ceil(0.3*float64(macs0)-eps)), macs-target, median)
				if budget != want {
					t.Errorf("iteration %d: budget %d, want %d (median reach %d)", it, budget, want, median)
				}
				if want == median {
					capped++
				}
				in := map[int]bool{}
				for _, c := range cands {
					in[c.Group] = true
					if floor := capKeep(c.From, tt.alf, tt.share); c.To < floor {
						t.Errorf("iteration %d group %d cuts %d→%d, below its floor %d", it, c.Group, c.From, c.To, floor)
					}
					if removed := macs - c.MACs; removed < budget {
						t.Errorf("iteration %d group %d removes %d, under the budget %d", it, c.Group, removed, budget)
					}
				}
				for id, m := range byGroup {
					if m >= budget && !in[id] {
						t.Errorf("iteration %d: group %d can remove %d >= budget %d but is no candidate", it, id, m, budget)
					}
					if m < budget && in[id] {
						t.Errorf("iteration %d: group %d reaches only %d < budget %d but is a candidate", it, id, m, budget)
					}
				}
				if 2*len(cands) < len(reach) {
					t.Errorf("iteration %d: %d candidates of %d cuttable groups, want at least half", it, len(cands), len(reach))
				}
			}
			st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if st.Reason != ReasonTargetReached {
				t.Fatalf("reason %q after %d iterations", st.Reason, iterations)
			}
			if st.MACs > target {
				t.Errorf("MACs %d above the target %d", st.MACs, target)
			}
			if capped == 0 {
				t.Error("the median never capped the budget: the test does not exercise the rule")
			}
		})
	}
}

// max_group_cut 1 (and 0, its default) is the uncapped search: the same
// history as before the option existed.
func TestMaxGroupCutOneIsUncapped(t *testing.T) {
	run := func(share float64) *State {
		f := newFakeNet(t, 64, 48, 96, 80)
		opt := baseOptions()
		opt.Step, opt.Alf, opt.DeltaCrop, opt.P, opt.MaxGroupCut = kinds.StepMACs, 4, 0.2, 0.6, share
		st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return st
	}
	a, b := run(0), run(1)
	if len(a.History) != len(b.History) {
		t.Fatalf("%d iterations with 0, %d with 1", len(a.History), len(b.History))
	}
	for i := range a.History {
		if a.History[i].Group != b.History[i].Group || a.History[i].To != b.History[i].To {
			t.Errorf("iteration %d: group %d→%d with 0, %d→%d with 1", i+1, a.History[i].Group, a.History[i].To, b.History[i].Group, b.History[i].To)
		}
	}
	// Uncapped, some candidate collapses to alf in one step here; that is
	// what the cap exists to prevent.
	collapsed := false
	for _, h := range a.History {
		for _, c := range h.Candidates {
			collapsed = collapsed || (c.To == 4 && c.From > 8)
		}
	}
	if !collapsed {
		t.Error("no uncapped candidate collapsed to alf: the comparison shows nothing")
	}
}
