//go:build cgo

// Package prune applies a plan of the original model to a module and checks
// that the result still runs (`gopruner apply`, and the tests that prove
// surgery correct). The decisions themselves are pure: package cut.
package prune

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/surgery"
	"github.com/gopruner/gopruner/torch"
)

// Apply prunes m by the plan and checks that it still runs on an input of
// the plan's shape.
func Apply(m *torch.Module, a *graph.Analysis, p *plan.Plan) error {
	if err := surgery.Apply(m, p, surgery.DepthwiseGroups(a, p)); err != nil {
		return err
	}
	x, err := model.Example(p.InputShape, m.Device())
	if err != nil {
		return err
	}
	defer x.Close()
	y, err := m.Forward(true, x)
	if err != nil {
		return fmt.Errorf("the pruned model does not run: %w", err)
	}
	y.Close()
	return nil
}
