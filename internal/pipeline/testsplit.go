package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/engine"
)

// testAccuracy is the accuracy of the original and of the pruned model on
// the data set's test split: the split no algorithm trains on or selects
// by, so it is the honest measure of the result (a my_pruning search picks
// its candidates by their validation accuracy, which makes that one
// optimistic). Both are nil when the run has no data set, the data set no
// test split, or the original was handed over to the cut (no data then).
func (r *Run) testAccuracy(ctx context.Context, base *engine.Model, pruned engine.Module) (before, after *float64, err error) {
	if r.Data == nil || base.Module == nil {
		return nil, nil, nil
	}
	test, err := r.Data.Split(data.Test)
	if err != nil {
		return nil, nil, nil //nolint:nilerr // an empty or absent test split is not an error: there is nothing to report
	}
	t := time.Now()
	b, err := base.Module.Evaluate(ctx, test, r.Cfg.Train.BatchSize)
	if err != nil {
		return nil, nil, fmt.Errorf("the original on the test split: %w", err)
	}
	a, err := pruned.Evaluate(ctx, test, r.Cfg.Train.BatchSize)
	if err != nil {
		return nil, nil, fmt.Errorf("the pruned model on the test split: %w", err)
	}
	r.lap("test_eval", t)
	r.Log.Info().Int("samples", a.Samples).Float64("test_acc_before", b.Accuracy).Float64("test_acc_after", a.Accuracy).
		Msg("test split")
	return &b.Accuracy, &a.Accuracy, nil
}
