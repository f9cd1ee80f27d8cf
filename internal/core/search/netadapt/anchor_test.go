package netadapt

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"testing"
)

// anchoredNet is fakeNet whose cost model a "measurement" corrects: the
// committed model measures factor × its predicted MACs, and after Anchor
// MACs adds that difference (a constant offset) to every prediction.
type anchoredNet struct {
	*fakeNet
	factor  float64
	offset  int64
	anchors []map[int]int
	fail    error
}

func (a *anchoredNet) MACs(keep map[int]int) int64 { return a.fakeNet.MACs(keep) + a.offset }

func (a *anchoredNet) Anchor(_ context.Context, keep map[int]int) (bool, error) {
	if a.fail != nil {
		return false, a.fail
	}
	a.anchors = append(a.anchors, maps.Clone(keep))
	if a.factor == 1 {
		return false, nil
	}
	pred := a.fakeNet.MACs(keep)
	a.offset = int64(a.factor*float64(pred)) - pred
	return true, nil
}

// TestAnchor: after every commit the evaluator measures the committed
// model; the state's cost is the corrected one, so the search stops only
// when the measurement reaches the target, while the iteration record
// keeps the winner's cost as predicted before the measurement.
func TestAnchor(t *testing.T) {
	opt := baseOptions()
	plain := newFakeNet(t, 16, 32, 24, 40)
	want, err := Run(context.Background(), plain.groups, plain, nil, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	// The model measures 20% slower than predicted: the search needs more
	// than the plain run's iterations to get the measurement to the target.
	a := &anchoredNet{fakeNet: newFakeNet(t, 16, 32, 24, 40), factor: 1.2}
	ck := &memCheckpoints{}
	st, err := Run(context.Background(), a.groups, a, ck, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.anchors) != st.Iteration || !maps.Equal(a.anchors[len(a.anchors)-1], st.Keep) {
		t.Fatalf("%d anchors for %d iterations (last %v, keep %v)", len(a.anchors), st.Iteration, a.anchors, st.Keep)
	}
	if got := int64(1.2 * float64(a.fakeNet.MACs(st.Keep))); st.MACs != got || st.MACs > st.Target {
		t.Errorf("final cost %d, want the measured %d, at most the target %d", st.MACs, got, st.Target)
	}
	if st.Iteration <= want.Iteration {
		t.Errorf("%d iterations, the uncorrected search took %d: the measurement did not hold the search back", st.Iteration, want.Iteration)
	}
	for i, rec := range st.History {
		// The record's cost is the prediction made before the measurement:
		// the previous anchor's offset on the winner's keep counts.
		if rec.MACs != rec.Candidates[indexOf(rec)].MACs {
			t.Errorf("iteration %d: record cost %d is not the winner's predicted %d", i+1, rec.MACs, rec.Candidates[indexOf(rec)].MACs)
		}
		if i > 0 && rec.MACsBefore != int64(1.2*float64(a.fakeNet.MACs(keepAfter(st, i-1)))) {
			t.Errorf("iteration %d starts from %d, not the measured cost of the model before it", i+1, rec.MACsBefore)
		}
	}
	if last := ck.last(); last.MACs != st.MACs {
		t.Errorf("checkpoint cost %d, state %d", last.MACs, st.MACs)
	}

	// A resumed search measures its model again before going on.
	resumed := &anchoredNet{fakeNet: newFakeNet(t, 16, 32, 24, 40), factor: 1.2}
	mid := jsonRound(t, &ck.states[1])
	resumed.current = mid.Keep
	if _, err := Run(context.Background(), resumed.groups, resumed, nil, mid, opt); err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	if len(resumed.anchors) == 0 || !maps.Equal(resumed.anchors[0], mid.Keep) {
		t.Errorf("resume did not measure the checkpoint's model first: %v", resumed.anchors)
	}

	// An Anchorer that reports no move leaves the search as it was.
	same := &anchoredNet{fakeNet: newFakeNet(t, 16, 32, 24, 40), factor: 1}
	got, err := Run(context.Background(), same.groups, same, nil, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, got, want) {
		t.Errorf("an unmoved anchor changed the search")
	}

	// A failed measurement stops the search naming it.
	bad := &anchoredNet{fakeNet: newFakeNet(t, 16, 32, 24, 40), factor: 1.2, fail: errors.New("no device")}
	if _, err := Run(context.Background(), bad.groups, bad, nil, nil, opt); err == nil || !errors.Is(err, bad.fail) {
		t.Errorf("err = %v, want the measurement's error", err)
	}
}

func indexOf(rec IterationRecord) int {
	for i, c := range rec.Candidates {
		if c.Group == rec.Group && c.To == rec.To {
			return i
		}
	}
	return 0
}

// keepAfter is the keep vector after iteration i (0-based) of st.History.
func keepAfter(st *State, i int) map[int]int {
	keep := map[int]int{}
	for _, rec := range st.History[:i+1] {
		keep[rec.Group] = rec.To
	}
	return keep
}

func equalJSON(t *testing.T, a, b *State) bool {
	t.Helper()
	return reflect.DeepEqual(jsonRound(t, a), jsonRound(t, b))
}
