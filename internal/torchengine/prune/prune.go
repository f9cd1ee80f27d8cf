//go:build cgo

// Package prune applies a plan of the original model to a module and checks
// that the result still runs (`gopruner apply`, and the tests that prove
// surgery correct). The decisions themselves are pure: package cut.
package prune

import (
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/torchengine"
	"github.com/gopruner/gopruner/torch"
)

// Apply prunes m by the plan and checks that it still runs on an input of
// the plan's shape.
func Apply(m *torch.Module, a *graph.Analysis, p *plan.Plan) error {
	sl, convGroups, err := (&cut.Base{Analysis: a}).PlanSlices(p)
	if err != nil {
		return err
	}
	mod := torchengine.Wrap(m)
	if err := mod.Cut(sl, convGroups); err != nil {
		return err
	}
	return mod.Runs(p.InputShape)
}
