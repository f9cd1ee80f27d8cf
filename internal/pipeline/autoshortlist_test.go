package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// chainCNN is a plain chain of n convs, so n-1 prunable groups (the last
// conv feeds the classifier and is a group too: n in all).
func chainCNN(t *testing.T, n int) cut.Base {
	t.Helper()
	b := irtest.New()
	x := b.Input(1, 1, 28, 28)
	for i := range n {
		x = b.Relu(b.BN(b.Conv(x, fmt.Sprintf("conv%d", i), 8, 3, irtest.ConvOpts{Pad: 1}), fmt.Sprintf("bn%d", i)))
	}
	flat := b.Flatten(b.AdaptiveAvgPool(x, 1, 1), 1)
	b.Output(b.Linear(flat, "fc", 10, true))
	return mnistBase(t, b)
}

// TestAutoShortlist: shortlist -1 screens (a shortlist of 4, BatchNorm
// re-estimated on 5 batches when bn_batches was left to its default) only
// for a model with more than 16 prunable groups; a smaller one gets the
// full search, and an explicit 0 is the full search whatever the model.
func TestAutoShortlist(t *testing.T) {
	tr, val := mnistSplits(t)
	run := func(base cut.Base, shortlist int, bnAuto bool) (screens, recalibrated, groups int) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		o := myOptions(t, "cpu")
		o.P, o.LongTermEpochs, o.ShortTermSteps = 0.1, 0, 2
		o.Shortlist, o.BNBatchesAuto = shortlist, bnAuto
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Module.Close()
		return res.Screens, recalibrations(t, res), len(bm.Candidates(nil))
	}
	big := chainCNN(t, 18)
	if s, r, g := run(big, ShortlistAuto, true); g <= autoShortlistGroups || s == 0 || r == 0 {
		t.Errorf("auto on %d groups: %d screens, re-estimated %d times; want screens and re-estimation", g, s, r)
	}
	if s, r, _ := run(big, ShortlistAuto, false); s == 0 || r != 0 {
		t.Errorf("auto with bn_batches set to 0: %d screens, re-estimated %d times; want screens, no re-estimation", s, r)
	}
	if s, _, _ := run(big, 0, true); s != 0 {
		t.Errorf("shortlist 0 on the big model: %d screens", s)
	}
	if s, r, g := run(chainCNN(t, 16), ShortlistAuto, true); g > autoShortlistGroups || s != 0 || r != 0 {
		t.Errorf("auto on %d groups: %d screens, re-estimated %d times; want the full search", g, s, r)
	}
	for groups, want := range map[int]int{1: 0, 16: 0, 17: 4, 50: 4} {
		if got := autoShortlist(groups); got != want {
			t.Errorf("autoShortlist(%d) = %d, want %d", groups, got, want)
		}
	}
}

// TestAutoCommitTop: commit_top -1 commits the 3 best candidates of an
// iteration together only for a model with more than 16 prunable groups;
// a smaller one commits the winner alone.
func TestAutoCommitTop(t *testing.T) {
	tr, val := mnistSplits(t)
	run := func(base cut.Base, commitTop int) (joined, iterations int) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		o := myOptions(t, "cpu")
		o.P, o.LongTermEpochs, o.ShortTermSteps, o.Shortlist = 0.1, 0, 2, 0
		o.CommitTop = commitTop
		settings := 0
		o.Hooks.OnSettings = func(shortlist, ct int) {
			settings++
			if want := commitTop; (want > 0 && ct != want) || (want == CommitTopAuto && ct != autoCommitTop(len(bm.Candidates(nil)))) || shortlist != 0 {
				t.Errorf("commit_top %d: OnSettings got shortlist %d, commit_top %d", commitTop, shortlist, ct)
			}
		}
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Module.Close()
		if settings != 1 {
			t.Errorf("OnSettings ran %d times", settings)
		}
		for _, rec := range res.State.History {
			joined += len(rec.Joined)
			if len(rec.Joined) > autoCommitTopK-1 {
				t.Errorf("iteration %d joined %d runners-up", rec.Iteration, len(rec.Joined))
			}
		}
		return joined, res.State.Iteration
	}
	big := chainCNN(t, 18)
	if j, _ := run(big, CommitTopAuto); j == 0 {
		t.Errorf("auto on 18 groups: no runner-up joined")
	}
	if j, _ := run(big, 1); j != 0 {
		t.Errorf("commit_top 1 on 18 groups: %d runners-up joined", j)
	}
	if j, n := run(chainCNN(t, 16), CommitTopAuto); j != 0 || n == 0 {
		t.Errorf("auto on 16 groups: %d runners-up joined in %d iterations; want the winner alone", j, n)
	}
	for groups, want := range map[int]int{1: 1, 16: 1, 17: 3, 50: 3} {
		if got := autoCommitTop(groups); got != want {
			t.Errorf("autoCommitTop(%d) = %d, want %d", groups, got, want)
		}
	}
}
