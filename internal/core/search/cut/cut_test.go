package cut

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/plan"
)

// testBase is a CNN with a residual add (merged group), a ResNeXt-style
// grouped conv (a group of blocks of 4), a concat (offset members), a
// depthwise conv (groups edit) and a flatten into Linear (strided members).
func testBase(t testing.TB) *Base {
	t.Helper()
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	c1 := b.Relu(b.BN(b.Conv(x, "c1", 8, 3, irtest.ConvOpts{Pad: 1}), "bn1"))
	c2 := b.BN(b.Conv(c1, "c2", 8, 3, irtest.ConvOpts{Pad: 1}), "bn2")
	r := b.Relu(b.Add(c2, c1))
	ga := b.Relu(b.BN(b.Conv(r, "ga", 12, 1, irtest.ConvOpts{}), "bna"))
	gg := b.Relu(b.BN(b.Conv(ga, "gg", 12, 3, irtest.ConvOpts{Pad: 1, Groups: 3}), "bng"))
	r = b.Relu(b.Add(r, b.Conv(gg, "gb", 8, 1, irtest.ConvOpts{})))
	dw := b.Relu(b.Conv(r, "dw", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 8}))
	c3 := b.Conv(dw, "c3", 6, 1, irtest.ConvOpts{})
	c4 := b.Conv(dw, "c4", 4, 1, irtest.ConvOpts{})
	cat := b.Relu(b.Cat(1, c3, c4))
	flat := b.Flatten(b.MaxPool(cat, 4, 4), 1)
	b.Output(b.Linear(flat, "fc", 5, true))
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	base, err := FromGraph(g, []int64{1, 3, 8, 8})
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// applySlices index-selects shapes as surgery would, checking every index.
func applySlices(t testing.TB, shapes map[string][]int64, sl []Slice) {
	t.Helper()
	for _, s := range sl {
		sh := shapes[s.Tensor]
		for d, idx := range s.Keep {
			for i, k := range idx {
				if k < 0 || int64(k) >= sh[d] || (i > 0 && k <= idx[i-1]) {
					t.Fatalf("%s dim %d: index %d out of range %d or order", s.Tensor, d, k, sh[d])
				}
			}
			sh[d] = int64(len(idx))
		}
	}
}

// randomCuts applies n random cuts, each removing channels of one group
// chosen by random scores, and checks after each that the edits turn the
// current shapes into the expected ones and that current groups address
// rows inside the current tensors.
func randomCuts(t testing.TB, b *Base, rng *rand.Rand, n int) {
	cands := b.Candidates(nil)
	if len(cands) == 0 {
		t.Fatal("no candidates")
	}
	kept := All(cands)
	shapes := map[string][]int64{}
	for k, v := range b.Params {
		shapes[k] = slices.Clone(v)
	}
	for step := 0; step < n; step++ {
		g := cands[rng.IntN(len(cands))]
		u := g.Unit()
		cur := len(kept[g.ID])
		if cur <= u {
			continue
		}
		to := u * (1 + rng.IntN(cur/u-1))
		cgs, err := b.CurrentGroups(cands, kept)
		if err != nil {
			t.Fatal(err)
		}
		scores := map[int][]float64{}
		for _, cg := range cgs {
			s := make([]float64, cg.Channels)
			for i := range s {
				s[i] = rng.Float64()
			}
			scores[cg.ID] = s
			for _, p := range cg.Producers {
				last := p.Offset + (cg.Channels-1)*max(p.Stride, 1)
				if int64(last) >= shapes[p.Tensor][p.Dim] {
					t.Fatalf("step %d: group %d member %s addresses row %d of %v", step, cg.ID, p.Tensor, last, shapes[p.Tensor])
				}
			}
		}
		next, err := b.CutBy(kept, scores, map[int]int{g.ID: to})
		if err != nil {
			t.Fatal(err)
		}
		if len(next[g.ID]) != to || !slices.IsSorted(next[g.ID]) {
			t.Fatalf("step %d: cut to %d gave %v", step, to, next[g.ID])
		}
		if err := b.Analysis.ValidateKept(next); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		sl, _, err := b.Edits(kept, next)
		if err != nil {
			t.Fatal(err)
		}
		applySlices(t, shapes, sl)
		if err := b.CheckShapes(shapes, next); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		kept = next
	}
	// The plan of the final keep, applied to the original, gives the same
	// shapes as the sequence of cuts.
	p, err := b.Plan(kept)
	if err != nil {
		t.Fatal(err)
	}
	orig := map[string][]int64{}
	for k, v := range b.Params {
		orig[k] = slices.Clone(v)
	}
	sl, groups, err := b.PlanSlices(p)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(groups, p.ConvGroups) && (len(groups) > 0 || len(p.ConvGroups) > 0) {
		t.Fatalf("plan slices give conv groups %v, the plan records %v", groups, p.ConvGroups)
	}
	applySlices(t, orig, sl)
	for name, s := range shapes {
		if !slices.Equal(orig[name], s) {
			t.Fatalf("%s: plan gives %v, the cuts %v", name, orig[name], s)
		}
	}
}

func TestRandomCutSequences(t *testing.T) {
	b := testBase(t)
	for seed := range uint64(50) {
		randomCuts(t, b, rand.New(rand.NewPCG(seed, 1)), 12)
	}
}

func FuzzCutSequence(f *testing.F) {
	b := testBase(f)
	f.Add(uint64(1), uint8(5))
	f.Add(uint64(7), uint8(30))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		randomCuts(t, b, rand.New(rand.NewPCG(seed, 2)), int(n%40))
	})
}

func TestEditsRefuseGrowth(t *testing.T) {
	b := testBase(t)
	cands := b.Candidates(nil)
	kept := All(cands)
	g := cands[0]
	small := All(cands)
	small[g.ID] = small[g.ID][:2]
	if _, _, err := b.Edits(small, kept); err == nil || !strings.Contains(err.Error(), "grow back") {
		t.Errorf("growing back: %v", err)
	}
}

func TestDepthwiseEditsSetGroups(t *testing.T) {
	b := testBase(t)
	cands := b.Candidates(nil)
	var dw *graph.Group
	for _, g := range cands {
		if len(g.DepthwiseConvs) > 0 {
			dw = g
		}
	}
	if dw == nil {
		t.Fatal("no depthwise group")
	}
	kept := All(cands)
	next := All(cands)
	next[dw.ID] = []int{1, 4, 6}
	_, groups, err := b.Edits(kept, next)
	if err != nil {
		t.Fatal(err)
	}
	if groups["dw.weight"] != 3 {
		t.Errorf("depthwise groups %v, want dw.weight: 3", groups)
	}
}

func TestExcludedAndOneShot(t *testing.T) {
	b := testBase(t)
	ex, err := b.Excluded([]string{"c3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 { // its filters' group and its input's group
		t.Errorf("iskl c3 excludes %d groups, want 2", len(ex))
	}
	if _, err := b.Excluded([]string{"nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown iskl: %v", err)
	}
	scores := map[int][]float64{}
	for _, g := range b.Candidates(nil) {
		scores[g.ID] = make([]float64, g.Channels)
		for i := range scores[g.ID] {
			scores[g.ID][i] = float64((i * 7) % g.Channels)
		}
	}
	out, err := b.OneShot(scores, OneShotOptions{P: 0.4, Alf: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Reached || out.Plan.MACsAfter > out.Target {
		t.Errorf("one-shot: MACs %d, target %d", out.Plan.MACsAfter, out.Target)
	}
	out, err = b.OneShot(scores, OneShotOptions{P: 0.2, Alf: 1, ISKL: []string{"c3"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range b.Analysis.Prunable() {
		if k, ok := out.Kept[g.ID]; ex[g.ID] && ok && !slices.Equal(k, plan.All(g.Channels)) {
			t.Errorf("excluded group %d was cut to %v", g.ID, k)
		}
	}
}
