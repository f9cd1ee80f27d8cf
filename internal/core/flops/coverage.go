package flops

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// Coverage says how much of a model's conv and linear work pruning can
// reach, and what keeps it from the rest. It is what `gopruner graph`
// reports and what a prune that misses its target names.
//
// A conv or linear layer belongs to every group that indexes a dim of its
// weight: the group of its output channels (dim 0, or dim 1 of a transposed
// conv) and the group(s) of its input channels (dim 1; several when it
// reads a concatenation). Its MACs shrink when any of them is pruned, so
//
//   - a group's MACs are the MACs of the layers that belong to it; a layer
//     belongs to two groups or more, so the groups' MACs do not add up to
//     the model's;
//   - a layer is prunable when at least one of its groups is prunable, and
//     PrunableShare is the prunable layers' MACs over every conv/linear
//     layer's MACs (batch norm, activations and pooling follow the convs
//     and are left out of both);
//   - a frozen layer (no prunable group) is blamed on one group: the one
//     its weight produces channels for when there is one, else its
//     lowest-numbered group; its MACs go to that group's reason kind
//     (graph.ReasonKind). So PrunableMACs plus the Frozen MACs is LayerMACs.
//     A layer whose weight no group indexes (a computed weight) is blamed on
//     NoGroup.
type Coverage struct {
	// GroupMACs[i] is the MACs of the layers of Analysis.Groups[i].
	GroupMACs []int64
	// LayerMACs is the MACs of every conv and linear layer, PrunableMACs
	// of those with a prunable group.
	LayerMACs, PrunableMACs int64
	// PrunableShare is PrunableMACs/LayerMACs (0 without such layers).
	PrunableShare float64
	// Frozen lists one entry per reason kind of the groups that are not
	// prunable, by the MACs frozen for it (descending), then by the number
	// of groups and the reason. Reasons that freeze no layer's MACs (model
	// input, say) are listed too, with 0.
	Frozen []FrozenReason
}

// FrozenReason is the MACs that one reason kind freezes; the JSON form is
// part of `gopruner graph --json` ("frozen_reasons").
type FrozenReason struct {
	Reason string `json:"reason"`
	MACs   int64  `json:"macs"`
	// Share is MACs over Coverage.LayerMACs.
	Share float64 `json:"share"`
	// Groups is how many non-prunable groups have this reason kind.
	Groups int `json:"groups"`
}

// NoGroup is the reason of layers whose weight no channel group indexes.
const NoGroup = "weight is not a parameter the analysis follows"

// Attribute computes the Coverage of g under its channel analysis a, with
// the traced shapes (nothing pruned).
func Attribute(g *ir.Graph, a *graph.Analysis) (Coverage, error) {
	if a == nil {
		return Coverage{}, errors.New("flops: coverage needs the channel analysis")
	}
	type ref struct {
		gid      int
		producer bool
	}
	byTensor := map[string][]ref{}
	for i := range a.Groups {
		grp := &a.Groups[i]
		for _, m := range grp.Members {
			byTensor[m.Tensor] = append(byTensor[m.Tensor], ref{gid: grp.ID})
		}
		for _, m := range grp.Producers {
			byTensor[m.Tensor] = append(byTensor[m.Tensor], ref{gid: grp.ID, producer: true})
		}
	}
	cov := Coverage{GroupMACs: make([]int64, len(a.Groups))}
	frozen := map[string]*FrozenReason{}
	reason := func(key string) *FrozenReason {
		f := frozen[key]
		if f == nil {
			f = &FrozenReason{Reason: key}
			frozen[key] = f
		}
		return f
	}
	for i := range a.Groups {
		if grp := &a.Groups[i]; !grp.Prunable() {
			reason(graph.ReasonKind(grp.Reason)).Groups++
		}
	}
	var err error
	_, cerr := count(g, a, nil, func(l Layer, weight string) {
		if err != nil {
			return
		}
		if cov.LayerMACs, err = add(cov.LayerMACs, l.MACs); err != nil {
			return
		}
		var gids []int
		blame := -1
		prunable := false
		for _, r := range byTensor[weight] {
			if r.producer && blame < 0 {
				blame = r.gid
			}
			if slices.Contains(gids, r.gid) {
				continue
			}
			gids = append(gids, r.gid)
			prunable = prunable || a.Groups[r.gid].Prunable()
		}
		for _, id := range gids {
			if cov.GroupMACs[id], err = add(cov.GroupMACs[id], l.MACs); err != nil {
				return
			}
		}
		if prunable {
			cov.PrunableMACs, err = add(cov.PrunableMACs, l.MACs)
			return
		}
		key := NoGroup
		if len(gids) > 0 {
			if blame < 0 {
				blame = slices.Min(gids)
			}
			key = graph.ReasonKind(a.Groups[blame].Reason)
		}
		f := reason(key)
		f.MACs, err = add(f.MACs, l.MACs)
	}, false)
	if cerr != nil {
		return Coverage{}, cerr
	}
	if err != nil {
		return Coverage{}, err
	}
	for _, f := range frozen {
		if cov.LayerMACs > 0 {
			f.Share = float64(f.MACs) / float64(cov.LayerMACs)
		}
		cov.Frozen = append(cov.Frozen, *f)
	}
	slices.SortFunc(cov.Frozen, func(x, y FrozenReason) int {
		return cmp.Or(cmp.Compare(y.MACs, x.MACs), cmp.Compare(y.Groups, x.Groups), cmp.Compare(x.Reason, y.Reason))
	})
	if cov.LayerMACs > 0 {
		cov.PrunableShare = float64(cov.PrunableMACs) / float64(cov.LayerMACs)
	}
	return cov, nil
}

// TopFrozen is up to n of the reasons that freeze MACs, most first.
func (c Coverage) TopFrozen(n int) []FrozenReason {
	var out []FrozenReason
	for _, f := range c.Frozen {
		if f.MACs > 0 && len(out) < n {
			out = append(out, f)
		}
	}
	return out
}

// FrozenText is the top n reasons that freeze MACs as one line, "34.0%
// aten::view splits or merges the channel dim with another dim, 2.1% model
// output" ("" when nothing is frozen).
func (c Coverage) FrozenText(n int) string {
	var parts []string
	for _, f := range c.TopFrozen(n) {
		parts = append(parts, Percent(f.Share)+" "+f.Reason)
	}
	return strings.Join(parts, ", ")
}

// Percent writes a share as "34.0%"; a share that is not 0 (1) but would
// round to 0.0% (100.0%) is "<0.1%" (">99.9%").
func Percent(share float64) string {
	switch {
	case share > 0 && share < 0.0005:
		return "<0.1%"
	case share < 1 && share >= 0.9995:
		return ">99.9%"
	}
	return fmt.Sprintf("%.1f%%", 100*share)
}
