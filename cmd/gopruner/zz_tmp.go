package main

import (
	"context"
	"errors"

	"github.com/gopruner/gopruner/pruning/model"
)

// myPruning is wired to pruning/mypruning in the next commit.
func (r *pruneRun) myPruning(ctx context.Context, am *model.Analyzed) (*outcome, error) {
	return nil, errors.New("my_pruning is not wired into this build yet")
}
