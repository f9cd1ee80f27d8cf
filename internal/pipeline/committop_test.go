package pipeline

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// TestCommitTopJoint: with commit_top the evaluator applies several cuts
// at once, fine-tunes and validates that model once more, and makes it
// current; the kept channels, the model's shapes and the checkpoint agree,
// the search takes fewer iterations, and a cancelled search resumes to the
// same end.
func TestCommitTopJoint(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	run := func(ctx context.Context, o MyPruningOptions) (*MyPruningResult, error) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(ctx, t, eng)
		defer bm.Close()
		res, err := MyPruning(ctx, eng, bm, tr, val, o)
		if res != nil && res.Module != nil {
			if err == nil {
				if e := checkShapes(&base, res.Module, res.Kept); e != nil {
					t.Errorf("final model: %v", e)
				}
			}
			res.Module.Close()
		}
		if eng.Live() != 1 { // bm's module
			t.Errorf("%d modules left open besides the original", eng.Live()-1)
		}
		return res, err
	}
	single, err := run(context.Background(), myOptions(t, "cpu", "cpu"))
	if err != nil {
		t.Fatal(err)
	}

	o := myOptions(t, "cpu", "cpu")
	o.CommitTop = 3
	var commits int
	afterCommit = func(e *evaluator) {
		commits++
		for id, idx := range e.kept {
			if len(idx) == 0 {
				t.Errorf("after commit %d: group %d keeps no channel", commits, id)
			}
		}
	}
	defer func() { afterCommit = nil }()
	joint, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	afterCommit = nil
	st := joint.State
	joined, cands := 0, 0
	for _, rec := range st.History {
		cands += len(rec.Candidates)
		if len(rec.Joined) > 0 {
			joined++
		}
	}
	if joined == 0 {
		t.Fatalf("no iteration committed runners-up: %+v", st.History)
	}
	if st.Iteration >= single.State.Iteration {
		t.Errorf("%d iterations with commit_top 3, %d without", st.Iteration, single.State.Iteration)
	}
	if commits != st.Iteration {
		t.Errorf("%d commits for %d iterations", commits, st.Iteration)
	}
	// A single winner is adopted as it was fine-tuned; a joint model is one
	// run more.
	if joint.Runs != cands+joined {
		t.Errorf("%d candidate runs, want %d candidates + %d joint commits", joint.Runs, cands, joined)
	}
	for id, idx := range joint.Kept {
		if len(idx) != st.Keep[id] {
			t.Errorf("group %d: the model keeps %d channels, the state %d", id, len(idx), st.Keep[id])
		}
	}
	if st.MACs > st.Target {
		t.Errorf("ended at %d MACs, target %d", st.MACs, st.Target)
	}

	// Cancelled after its first iteration and resumed, the search ends
	// where the uninterrupted one did.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o2 := myOptions(t, "cpu", "cpu")
	o2.CommitTop = 3
	o2.Hooks.OnIteration = func(rec netadapt.IterationRecord) {
		if rec.Iteration == 1 {
			cancel()
		}
	}
	if _, err := run(ctx, o2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	o2.Hooks, o2.Resume = Hooks{}, true
	res, err := run(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, res.State) || !reflect.DeepEqual(joint.Kept, res.Kept) {
		t.Errorf("resumed run differs:\n full:    %+v\n resumed: %+v", st, res.State)
	}
}
