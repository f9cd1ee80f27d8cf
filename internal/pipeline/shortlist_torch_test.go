//go:build cgo && !race

package pipeline

import (
	"context"
	"testing"

	"github.com/gopruner/gopruner/internal/torchengine"
)

// TestShortlistSearch runs the shortlist on libtorch, through the embedded
// broker. Without a short-term fine-tune a screen and a full evaluation
// are the same computation (cut, the iteration's BatchNorm batches,
// validation), so the shortlisted candidate's two accuracies must agree
// exactly: the screen measures the cut the search then fine-tunes. With a
// fine-tune, the search still reaches its target, every iteration with
// more candidates than the shortlist screens them all, and the winner is
// never one it screened out.
func TestShortlistSearch(t *testing.T) {
	tr, val, b := setup(t)
	for _, steps := range []int{0, 5} {
		am := analyzed(t, b)
		o := smallOptions(t)
		o.ShortTermSteps, o.Shortlist, o.BNBatches = steps, 1, 2
		res, err := MyPruning(context.Background(), torchengine.Engine{}, torchengine.FromAnalyzed(am), tr, val, o)
		if err != nil {
			t.Fatalf("short-term steps %d: %v", steps, err)
		}
		res.Module.Close()
		if !res.State.Done || res.State.MACs > res.State.Target {
			t.Errorf("short-term steps %d: done %v, MACs %d above the target %d", steps, res.State.Done, res.State.MACs, res.State.Target)
		}
		wantScreens := 0
		for _, rec := range res.State.History {
			if len(rec.Candidates) <= 1 {
				continue
			}
			wantScreens += len(rec.Candidates)
			for _, c := range rec.Candidates {
				switch {
				case c.ScreenAccuracy == 0:
					t.Errorf("steps %d iteration %d group %d: no screen accuracy", steps, rec.Iteration, c.Group)
				case c.ScreenedOut && c.Group == rec.Group:
					t.Errorf("steps %d iteration %d: the winner %d was screened out", steps, rec.Iteration, c.Group)
				case !c.ScreenedOut && c.Group != rec.Group:
					t.Errorf("steps %d iteration %d: group %d was shortlisted with a shortlist of 1 but lost", steps, rec.Iteration, c.Group)
				case !c.ScreenedOut && steps == 0 && c.Accuracy != c.ScreenAccuracy:
					t.Errorf("iteration %d group %d without a fine-tune: screen accuracy %v, evaluation %v",
						rec.Iteration, c.Group, c.ScreenAccuracy, c.Accuracy)
				}
			}
		}
		if wantScreens == 0 {
			t.Fatalf("short-term steps %d: no iteration had more than one candidate", steps)
		}
		if res.Screens != wantScreens {
			t.Errorf("short-term steps %d: %d screens run, the history has %d screened candidates", steps, res.Screens, wantScreens)
		}
		t.Logf("short-term steps %d: %d iterations, %d screens, %d runs in all, acc %.4f → %.4f",
			steps, res.State.Iteration, res.Screens, res.Runs, res.AccBefore, res.AccAfter)
	}
}
