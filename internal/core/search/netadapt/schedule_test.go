package netadapt

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// The decaying schedule shrinks every iteration's MACs budget by
// delta_decay, each candidate still removes at least the budget (by the
// smallest alf step that does), and the last iteration stops at the target
// rather than past it.
func TestDeltaScheduleStepMACs(t *testing.T) {
	tests := []struct {
		name     string
		schedule kinds.Schedule
		decay    float64
		alf      int
	}{
		{"constant", kinds.ScheduleConstant, 0, 1},
		{"constant empty is constant", "", 0.5, 4},
		{"decay 0.8", kinds.ScheduleDecay, 0.8, 1},
		{"decay 0.9 alf 4", kinds.ScheduleDecay, 0.9, 4},
		{"decay 1 equals constant", kinds.ScheduleDecay, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNet(t, 64, 48, 96, 80)
			opt := baseOptions()
			opt.Step, opt.Alf, opt.DeltaCrop, opt.P = kinds.StepMACs, tt.alf, 0.08, 0.5
			opt.Schedule, opt.DeltaDecay = tt.schedule, tt.decay
			macs0 := f.MACs(nil)
			target := int64(math.Floor(0.5 * float64(macs0) * (1 + 1e-12)))
			budgets := map[int]int64{}
			opt.OnIterationStart = func(it int, budget int64, cands []Candidate) {
				budgets[it] = budget
				macs := f.MACs(f.current)
				d := opt.DeltaCrop
				if tt.schedule == kinds.ScheduleDecay {
					d *= math.Pow(tt.decay, float64(it-1))
				}
				want := min(int64(math.Ceil(d*float64(macs0)-eps)), macs-target)
				if budget != want {
					t.Errorf("iteration %d: budget %d, want %d", it, budget, want)
				}
				for _, c := range cands {
					if c.To == tt.alf {
						continue // could not reach the budget, cut all it could
					}
					if removed := macs - c.MACs; removed < budget {
						t.Errorf("iteration %d group %d removes %d, under the budget %d", it, c.Group, removed, budget)
					}
					// Keeping one more alf step would miss the budget: no
					// candidate cuts more than the granularity requires.
					if up := c.To + tt.alf; up < c.From && macs-f.MACs(withKeep(c.Keep, c.Group, up)) >= budget {
						t.Errorf("iteration %d group %d cuts to %d, %d would reach the budget", it, c.Group, c.To, up)
					}
				}
			}
			st, err := Run(context.Background(), f.groups, f, nil, nil, opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if st.Reason != ReasonTargetReached || st.MACs > target {
				t.Fatalf("reason %q, MACs %d, target %d", st.Reason, st.MACs, target)
			}
			last := st.History[len(st.History)-1]
			if last.Budget > last.MACsBefore-target {
				t.Errorf("last iteration's budget %d, more than was left (%d)", last.Budget, last.MACsBefore-target)
			}
			if up := last.To + tt.alf; up < last.From && f.MACs(withKeep(st.Keep, last.Group, up)) <= target {
				t.Errorf("last iteration overshoots: %d channels of group %d already reach the target", up, last.Group)
			}
			for _, rec := range st.History {
				switch {
				case tt.schedule == kinds.ScheduleDecay:
					if want := opt.DeltaCrop * math.Pow(tt.decay, float64(rec.Iteration-1)); rec.Delta != want {
						t.Errorf("iteration %d records delta %v, want %v", rec.Iteration, rec.Delta, want)
					}
				case rec.Delta != 0:
					t.Errorf("the constant schedule recorded delta %v", rec.Delta)
				}
			}
			if tt.schedule == kinds.ScheduleDecay && tt.decay < 1 && len(budgets) > 2 && budgets[2] >= budgets[1] {
				t.Errorf("budgets do not decay: %v", budgets)
			}
		})
	}
}

// Under step channels the decaying schedule shrinks the share of each
// group's channels a candidate cuts.
func TestDeltaScheduleChannels(t *testing.T) {
	f := newFakeNet(t, 64, 64, 64)
	opt := baseOptions()
	opt.P, opt.DeltaCrop, opt.Schedule, opt.DeltaDecay = 0.6, 0.25, kinds.ScheduleDecay, 0.5
	checked := 0
	opt.OnIterationStart = func(it int, _ int64, cands []Candidate) {
		d := 0.25 * math.Pow(0.5, float64(it-1))
		for _, c := range cands {
			want, _ := channelStep(c.From, 1, d)
			if c.MACs >= f.MACs(nil)*4/10+1 && c.To != want { // not the target-capped cut
				t.Errorf("iteration %d group %d %d→%d, want %d (delta %v)", it, c.Group, c.From, c.To, want, d)
			}
			checked++
		}
	}
	if _, err := Run(context.Background(), f.groups, f, nil, nil, opt); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if checked == 0 {
		t.Fatal("no candidates")
	}
}

func TestDeltaScheduleOptionErrors(t *testing.T) {
	f := newFakeNet(t, 16)
	tests := []struct {
		name     string
		schedule kinds.Schedule
		decay    float64
		want     string
	}{
		{"unknown schedule", "linear", 0.9, "delta_schedule"},
		{"decay zero", kinds.ScheduleDecay, 0, "delta_decay"},
		{"decay above one", kinds.ScheduleDecay, 1.5, "delta_decay"},
		{"decay NaN", kinds.ScheduleDecay, nanValue(), "delta_decay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOptions()
			o.Schedule, o.DeltaDecay = tt.schedule, tt.decay
			if _, err := Run(context.Background(), f.groups, f, nil, nil, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
