//go:build cgo

// Package prune turns scores and a MACs target into a plan and applies it:
// the one-shot L2Norm path, iskl exclusion, and the checks that a pruned
// model still runs. The search algorithms build on it.
package prune

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/oneshot"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/surgery"
	"github.com/gopruner/gopruner/torch"
)

// Excluded returns the ids of the groups that iskl keeps whole: every group
// that touches a tensor of a listed layer (its filters or its input slice),
// so the layer stays exactly as it was. A name may be a layer or a module
// above several layers ("layer1"). A name that matches no parameter is a
// usage error naming it.
func Excluded(a *graph.Analysis, params map[string][]int64, iskl []string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, raw := range iskl {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		prefix := name + "."
		found := false
		for p := range params {
			if strings.HasPrefix(p, prefix) {
				found = true
				break
			}
		}
		if !found {
			return nil, fail.Usagef("iskl: %q matches no layer of the model (names are module paths such as %s)", name, exampleLayers(params))
		}
		for i := range a.Groups {
			g := &a.Groups[i]
			for _, m := range g.Members {
				if strings.HasPrefix(m.Tensor, prefix) {
					out[g.ID] = true
					break
				}
			}
		}
	}
	return out, nil
}

func exampleLayers(params map[string][]int64) string {
	var ls []string
	for p := range params {
		if strings.HasSuffix(p, ".weight") {
			ls = append(ls, strings.TrimSuffix(p, ".weight"))
		}
	}
	slices.Sort(ls)
	if len(ls) > 3 {
		ls = ls[:3]
	}
	return strings.Join(ls, ", ")
}

// Candidates are the prunable groups not excluded, in analysis order.
func Candidates(a *graph.Analysis, excluded map[int]bool) []*graph.Group {
	var out []*graph.Group
	for _, g := range a.Prunable() {
		if !excluded[g.ID] {
			out = append(out, g)
		}
	}
	return out
}

// MACsFunc counts the model's MACs under a keep-count vector.
func MACsFunc(am *model.Analyzed) oneshot.MACsFunc {
	return func(keep map[int]int) int64 {
		r, err := flops.Count(am.Graph, am.Analysis, keep)
		if err != nil {
			return 1<<62 - 1
		}
		return r.MACs
	}
}

// OneShotOptions are the one-shot pruning knobs.
type OneShotOptions struct {
	P      float64 // fraction of MACs to remove
	Alf    int
	ISKL   []string
	Global bool
}

// Outcome is a computed plan and how close it came to the target.
type Outcome struct {
	Plan    *plan.Plan
	Kept    map[int][]int
	Target  int64
	Reached bool
}

// OneShot decides keep counts for the target from the scores (uniform ratio
// by default, global ranking as an option) and builds the plan.
func OneShot(am *model.Analyzed, scores map[int][]float64, opt OneShotOptions) (*Outcome, error) {
	if !(opt.P > 0 && opt.P < 1) {
		return nil, fail.Usagef("P: %g is outside (0,1)", opt.P)
	}
	if opt.Alf < 1 {
		return nil, fail.Usagef("alf: %d must be at least 1", opt.Alf)
	}
	excl, err := Excluded(am.Analysis, am.Params, opt.ISKL)
	if err != nil {
		return nil, err
	}
	groups := Candidates(am.Analysis, excl)
	before, err := flops.Count(am.Graph, am.Analysis, nil)
	if err != nil {
		return nil, err
	}
	target := int64(float64(before.MACs) * (1 - opt.P))
	macs := MACsFunc(am)
	var res oneshot.Result
	if opt.Global {
		res = oneshot.Global(groups, scores, macs, target, opt.Alf)
	} else {
		res = oneshot.Uniform(groups, macs, target, opt.Alf)
	}
	kept := oneshot.Select(scores, res.Keep)
	p, err := Plan(am, kept)
	if err != nil {
		return nil, err
	}
	return &Outcome{Plan: p, Kept: kept, Target: target, Reached: p.MACsAfter <= target}, nil
}

// Plan builds the plan for kept channel indices, with MACs and params
// before and after.
func Plan(am *model.Analyzed, kept map[int][]int) (*plan.Plan, error) {
	p, err := plan.Build(am.Analysis, am.Params, kept, am.InputShape)
	if err != nil {
		return nil, err
	}
	before, err := flops.Count(am.Graph, am.Analysis, nil)
	if err != nil {
		return nil, err
	}
	counts := make(map[int]int, len(kept))
	for id, k := range kept {
		counts[id] = len(k)
	}
	after, err := flops.Count(am.Graph, am.Analysis, counts)
	if err != nil {
		return nil, err
	}
	p.MACsBefore, p.MACsAfter = before.MACs, after.MACs
	p.ParamsBefore, p.ParamsAfter = before.Params, after.Params
	return p, nil
}

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
