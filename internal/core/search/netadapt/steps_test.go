package netadapt

import (
	"maps"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

func TestResizeAlf(t *testing.T) {
	keep := map[int]int{0: 33, 1: 65, 2: 7, 3: 33, 4: 64, 5: 72, 6: 36}
	// Group 5 has blocks of 8 (with alf 32: steps of 32); group 6 blocks
	// of 12 (steps of 96), so 36 is below one step and stays.
	got := ResizeAlf(keep, 32, map[int]bool{3: true}, map[int]int{5: 8, 6: 12, 4: 1})
	want := map[int]int{0: 32, 1: 64, 2: 7, 3: 33, 4: 64, 5: 64, 6: 36}
	if !maps.Equal(got, want) {
		t.Errorf("ResizeAlf = %v, want %v", got, want)
	}
	if keep[0] != 33 {
		t.Error("ResizeAlf changed its input")
	}
}

func TestChannelStep(t *testing.T) {
	tests := []struct {
		name    string
		current int
		alf     int
		delta   float64
		want    int
		wantOK  bool
	}{
		{"alf 1 plain", 64, 1, 0.1, 57, true},                  // ceil(6.4)=7
		{"float error in delta·current", 30, 1, 0.1, 27, true}, // 0.1·30 is 3.0000000000000004
		{"cut at least one channel", 5, 1, 0.1, 4, true},
		{"one channel left", 1, 1, 0.5, 1, false},
		{"two to one", 2, 1, 0.1, 1, true},
		{"alf 8 cut rounds up to alf", 64, 8, 0.1, 56, true},
		{"alf 8 bigger cut", 64, 8, 0.3, 40, true}, // ceil(19.2)=20 → 44 → 40
		{"alf 8 at alf", 8, 8, 0.1, 8, false},
		{"alf 8 clamp at alf", 16, 8, 0.9, 8, true},
		{"33 alf 32 small delta", 33, 32, 0.01, 32, true},
		{"65 alf 32 small delta", 65, 32, 0.01, 64, true},
		{"33 alf 32 remainder under alf clamps", 33, 32, 0.1, 32, true},
		{"65 alf 32 delta 0.1", 65, 32, 0.1, 32, true},
		{"33 alf 8", 33, 8, 0.1, 24, true}, // 33−4=29 → 24
		{"32 alf 32 drops out", 32, 32, 0.5, 32, false},
		{"under alf drops out", 20, 32, 0.1, 20, false},
		{"alf 0 treated as 1", 10, 0, 0.1, 9, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := channelStep(tt.current, tt.alf, tt.delta)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("channelStep(%d, %d, %v) = %d, %v; want %d, %v", tt.current, tt.alf, tt.delta, got, ok, tt.want, tt.wantOK)
			}
			if ok && tt.alf > 1 && got%tt.alf != 0 {
				t.Errorf("keep %d is not a multiple of %d", got, tt.alf)
			}
		})
	}
}

func TestMacsStep(t *testing.T) {
	// 10 MACs per channel plus 5 fixed.
	lin := func(k int) int64 { return int64(10*k + 5) }
	tests := []struct {
		name    string
		current int
		alf     int
		goal    int64
		want    int
		wantOK  bool
	}{
		{"exact", 64, 1, 545, 54, true},
		{"between", 64, 1, 549, 54, true},
		{"alf 8 rounds to a multiple that reaches the goal", 64, 8, 549, 48, true},
		{"unreachable: cut all it can", 64, 8, 10, 8, true},
		{"nothing to cut", 8, 8, 10, 8, false},
		{"goal already met by smallest cut", 64, 8, 10000, 56, true},
		{"non-multiple current", 65, 32, 10000, 64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := macsStep(tt.current, tt.alf, tt.goal, lin)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("macsStep(%d, %d, %d) = %d, %v; want %d, %v", tt.current, tt.alf, tt.goal, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	cands := []Candidate{
		{Group: 0, MACs: 90}, // removes 10
		{Group: 1, MACs: 99}, // removes 1
		{Group: 2, MACs: 95}, // removes 5
	}
	tests := []struct {
		name string
		mode kinds.Select
		accs []float64
		want int
	}{
		{"acc: highest accuracy", kinds.SelectAcc, []float64{0.90, 0.95, 0.93}, 1},
		{"acc per mac: smallest drop per MAC", kinds.SelectAccPerMAC, []float64{0.90, 0.95, 0.93}, 0}, // −0.01, −0.05, −0.014
		{"acc tie: fewer MACs", kinds.SelectAcc, []float64{0.9, 0.95, 0.95}, 2},
		{"acc tie everywhere: fewer MACs", kinds.SelectAcc, []float64{0.9, 0.9, 0.9}, 0},
		{"acc per mac: a gain beats a drop", kinds.SelectAccPerMAC, []float64{0.90, 1.01, 0.99}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := choose(tt.mode, cands, tt.accs, 1.0, 100); got != tt.want {
				t.Errorf("choose = %d, want %d", got, tt.want)
			}
		})
	}
	// Same score and MACs: the lower group id wins, wherever it sits.
	tied := []Candidate{{Group: 5, MACs: 90}, {Group: 3, MACs: 90}}
	if got := choose(kinds.SelectAcc, tied, []float64{0.5, 0.5}, 1, 100); got != 1 {
		t.Errorf("tie on score and MACs chose %d, want the lower group id (index 1)", got)
	}
}
