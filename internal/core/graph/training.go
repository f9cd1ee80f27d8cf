package graph

import (
	"fmt"
	"slices"
	"sort"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// UnreadParams lists the parameters (not buffers) that no op of g reads,
// sorted: in an eval-mode trace, the layers that only training runs (a
// GoogLeNet's or an Inception's auxiliary classifiers), or dead weights.
func UnreadParams(g *ir.Graph) []string {
	read := map[string]bool{}
	for i := range g.Values {
		if p := g.Values[i].Param; p != "" {
			read[p] = true
		}
	}
	var out []string
	for name, p := range g.Params {
		if !p.Buffer && !read[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// WithTraining folds in tr, the analysis of the same model traced in
// training mode. Layers that only training runs read channels that the
// eval-mode trace never shows: an auxiliary classifier's first conv reads
// the output of an inception block. Each prunable group takes, from the one
// training-mode group that holds its members, the members that only
// training reads, so that surgery cuts those input slices too and the
// pruned model still trains. Where the two traces disagree (the training
// group spans other groups' channels, has another size or block, or is
// frozen), the group is frozen: a fine-tune would fail on it.
//
// Layers and MACs stay the eval trace's: they describe the deployed model.
func (a *Analysis) WithTraining(tr *Analysis) {
	evOf := map[Member]int{}
	for i := range a.Groups {
		for _, m := range a.Groups[i].Members {
			evOf[m] = i
		}
	}
	type tdim struct {
		tensor string
		dim    int
	}
	trOf := map[Member]int{}
	odd := map[tdim]bool{} // dims the training trace indexes where the eval trace does not
	for i := range tr.Groups {
		for _, m := range tr.Groups[i].Members {
			trOf[m] = i
			if _, ok := evOf[m]; !ok {
				odd[tdim{m.Tensor, m.Dim}] = true
			}
		}
	}
	// Views whose size lists only the training-mode forward runs (an
	// auxiliary head's flatten with its count written in): surgery
	// rewrites the eval trace's only, so their channels stay.
	evalSites := map[string]bool{}
	for _, r := range a.SizedOps {
		evalSites[r.Site] = true
	}
	trainSized := map[int]bool{}
	for _, r := range tr.SizedOps {
		if !evalSites[r.Site] {
			for _, sg := range tr.vmaps[r.Value].segs {
				trainSized[sg.gid] = true
			}
		}
	}
	for i := range a.Groups {
		g := &a.Groups[i]
		if !g.Prunable() {
			continue
		}
		if slices.ContainsFunc(g.Members, func(m Member) bool { return odd[tdim{m.Tensor, m.Dim}] }) {
			a.freezeForTraining(g, "the training-mode forward indexes its tensors at other channels")
			continue
		}
		var ts []int
		for _, m := range g.Members {
			if t, ok := trOf[m]; ok && !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
		if len(ts) == 0 {
			continue // training reads none of its tensors
		}
		if len(ts) > 1 {
			a.freezeForTraining(g, "the training-mode forward splits its channels into several groups")
			continue
		}
		t := &tr.Groups[ts[0]]
		switch {
		case t.Frozen:
			a.freezeForTraining(g, t.Reason)
			continue
		case trainSized[ts[0]]:
			a.freezeForTraining(g, "the training-mode forward writes its count into a view's size list")
			continue
		case t.Channels != g.Channels || t.Unit() != g.Unit():
			a.freezeForTraining(g, fmt.Sprintf("the training-mode forward gives its channels as %d in blocks of %d",
				t.Channels, t.Unit()))
			continue
		}
		var extra []Member
		tie := -1
		for _, m := range t.Members {
			if j, ok := evOf[m]; !ok {
				extra = append(extra, m)
			} else if j != i {
				tie = j
				break
			}
		}
		if tie >= 0 {
			a.freezeForTraining(g, fmt.Sprintf("the training-mode forward ties its channels to group %d's", tie))
			continue
		}
		if len(extra) == 0 {
			continue
		}
		for _, m := range extra {
			g.Members = append(g.Members, m)
			if slices.Contains(t.Producers, m) {
				g.Producers = append(g.Producers, m)
			}
			a.pmembers[m.Tensor] = append(a.pmembers[m.Tensor], pmember{g.ID, m})
			if _, ok := a.pshape[m.Tensor]; !ok {
				if s, ok := tr.pshape[m.Tensor]; ok {
					a.pshape[m.Tensor] = slices.Clone(s)
				}
			}
		}
		for _, c := range t.GroupedConvs {
			if !slices.Contains(g.GroupedConvs, c) {
				g.GroupedConvs = append(g.GroupedConvs, c)
			}
		}
		g.DepthwiseConvs = depthwise(g.GroupedConvs)
		for _, ln := range t.LayerNorms {
			if !slices.Contains(g.LayerNorms, ln) {
				g.LayerNorms = append(g.LayerNorms, ln)
			}
		}
		for _, w := range t.SizedWeights {
			if !slices.Contains(g.SizedWeights, w) {
				g.SizedWeights = append(g.SizedWeights, w)
			}
		}
	}
}

func (a *Analysis) freezeForTraining(g *Group, why string) {
	g.Frozen = true
	g.Reason = "in training mode: " + why
}
