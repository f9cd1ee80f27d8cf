package cut

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
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
	return baseOf(t, b)
}

// baseOf builds b's graph and its Base for a 1×3×8×8 input.
func baseOf(t testing.TB, b *irtest.Builder) *Base {
	t.Helper()
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
	// The plan records the groups of grouped convs; a depthwise conv's
	// groups is its channel count, which PlanSlices derives.
	recorded := maps.Clone(groups)
	for _, c := range b.sizeArgs() {
		if c.PerGroup == 1 {
			if n, ok := recorded[c.Weight]; ok && n != p.Tensors[c.Weight].ShapeAfter[0] {
				t.Fatalf("depthwise %s: groups %d, channels %d", c.Weight, n, p.Tensors[c.Weight].ShapeAfter[0])
			}
			delete(recorded, c.Weight)
		}
	}
	if !maps.Equal(recorded, p.ConvGroups) && (len(recorded) > 0 || len(p.ConvGroups) > 0) {
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
	for name, b := range map[string]*Base{"base": testBase(t), "regroup": testRegroupBase(t)} {
		for seed := range uint64(50) {
			t.Run(name, func(t *testing.T) { randomCuts(t, b, rand.New(rand.NewPCG(seed, 1)), 12) })
		}
	}
}

// testRegroupBase chains grouped convs that change the channel count (whole
// conv groups, re-strided input channels): 12 -> 8 in 4 groups, a
// transposed 8 -> 12 in 4 groups, and 24 -> 8 in 4 groups over a
// concatenation (which re-strides the first two's channels again), into a
// flatten and Linear.
func testRegroupBase(t testing.TB) *Base {
	t.Helper()
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	a := b.Relu(b.BN(b.Conv(x, "a", 12, 3, irtest.ConvOpts{Pad: 1}), "bna"))
	g := b.Relu(b.BN(b.Conv(a, "g", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 4, Bias: true}), "bng"))
	w := b.Param("t.weight", 8, 3, 3, 3)
	tc := b.Relu(b.Op1("aten::conv_transpose2d", "t", []int{g, w, b.Param("t.bias", 12), b.IntList(1, 1),
		b.IntList(1, 1), b.IntList(0, 0), b.Int(4), b.IntList(1, 1)}, []int64{1, 12, 8, 8}))
	cat := b.Cat(1, tc, b.Conv(x, "q", 12, 1, irtest.ConvOpts{}))
	h := b.Relu(b.Conv(cat, "h", 8, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
	flat := b.Flatten(b.MaxPool(h, 4, 4), 1)
	b.Output(b.Linear(flat, "fc", 5, true))
	gr, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	base, err := FromGraph(gr, []int64{1, 3, 8, 8})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range base.Candidates(nil) {
		if len(c.GroupedConvs) > 0 {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("want the regrouped convs' groups prunable, got %d candidates with grouped convs", n)
	}
	return base
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

// groupedOf returns testBase's group of blocks (the ResNeXt-style conv gg).
func groupedOf(t *testing.T, b *Base) *graph.Group {
	t.Helper()
	for _, g := range b.Candidates(nil) {
		if len(g.GroupedConvs) > 0 && g.Block > 1 {
			return g
		}
	}
	t.Fatal("no prunable group with blocks")
	return nil
}

func TestGroupedEditsSetGroups(t *testing.T) {
	b := testBase(t)
	g := groupedOf(t, b)
	if g.Channels != 12 || g.Block != 4 || !slices.Equal(g.GroupedConvs, []graph.GroupedConv{{Weight: "gg.weight", PerGroup: 4}}) {
		t.Fatalf("grouped group: %d channels, block %d, convs %v", g.Channels, g.Block, g.GroupedConvs)
	}
	cands := b.Candidates(nil)
	kept := All(cands)
	next := All(cands)
	next[g.ID] = []int{4, 5, 6, 7}
	sl, groups, err := b.Edits(kept, next)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(groups, map[string]int64{"gg.weight": 1}) {
		t.Errorf("groups %v, want gg.weight: 1", groups)
	}
	for _, s := range sl {
		if s.Tensor == "gg.weight" && (!slices.Equal(s.Keep[0], []int{4, 5, 6, 7}) || s.Keep[1] != nil) {
			t.Errorf("gg.weight keeps %v", s.Keep)
		}
	}
	// Part of a block is refused, by Edits and by the plan.
	next[g.ID] = []int{4, 5, 6, 8}
	if _, _, err := b.Edits(kept, next); err == nil || !strings.Contains(err.Error(), "block") {
		t.Errorf("Edits of a partial block: %v", err)
	}
	if _, err := b.Plan(next); err == nil || !strings.Contains(err.Error(), "block") {
		t.Errorf("Plan of a partial block: %v", err)
	}
}

func TestCutByBlocks(t *testing.T) {
	b := testBase(t)
	g := groupedOf(t, b)
	kept := All(b.Candidates(nil))
	// Block sums: 1+1+1+1, 0+5+0+0, 2+2+2+2: the middle block has the best
	// channel but not the best sum.
	sc := map[int][]float64{g.ID: {1, 1, 1, 1, 0, 5, 0, 0, 2, 2, 2, 2}}
	next, err := b.CutBy(kept, sc, map[int]int{g.ID: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(next[g.ID], []int{8, 9, 10, 11}) {
		t.Errorf("kept %v, want the block of highest sum 8..11", next[g.ID])
	}
	// A second cut works in current positions: [0..3 | 8..11] -> the better block.
	two := map[int][]int{g.ID: {0, 1, 2, 3, 8, 9, 10, 11}}
	next, err = b.CutBy(two, map[int][]float64{g.ID: {5, 5, 5, 5, 1, 1, 1, 1}}, map[int]int{g.ID: 4})
	if err != nil || !slices.Equal(next[g.ID], []int{0, 1, 2, 3}) {
		t.Errorf("second cut: %v %v", next[g.ID], err)
	}
	for _, to := range []int{6, 0, 2} {
		if _, err := b.CutBy(kept, sc, map[int]int{g.ID: to}); err == nil || !strings.Contains(err.Error(), "whole blocks") {
			t.Errorf("CutBy to %d: %v", to, err)
		}
	}
}

func TestOneShotKeepsWholeBlocks(t *testing.T) {
	b := testBase(t)
	g := groupedOf(t, b)
	scores := map[int][]float64{}
	for _, c := range b.Candidates(nil) {
		scores[c.ID] = make([]float64, c.Channels)
		for i := range scores[c.ID] {
			scores[c.ID][i] = float64((i*5)%c.Channels) + 1
		}
	}
	for _, tc := range []struct {
		alf    int
		global bool
		unit   int
	}{
		{1, false, 4}, {1, true, 4}, {2, false, 4}, {3, true, 12}, {8, false, 8},
	} {
		out, err := b.OneShot(scores, OneShotOptions{P: 0.5, Alf: tc.alf, Global: tc.global})
		if err != nil {
			t.Fatal(err)
		}
		k := out.Kept[g.ID]
		if len(k) == 0 || (len(k)%tc.unit != 0 && len(k) != g.Channels) {
			t.Errorf("alf %d global %v: the grouped group keeps %v, not whole units of %d", tc.alf, tc.global, k, tc.unit)
		}
		if err := g.CheckBlocks(k); err != nil {
			t.Errorf("alf %d global %v: %v", tc.alf, tc.global, err)
		}
		if w := out.Plan.ConvGroups["gg.weight"]; len(k) < g.Channels && w != int64(len(k)/4) {
			t.Errorf("alf %d global %v: plan conv_groups %v for %d kept", tc.alf, tc.global, out.Plan.ConvGroups, len(k))
		}
	}
}

func TestPlanSlicesChecksGroups(t *testing.T) {
	b := testBase(t)
	g := groupedOf(t, b)
	kept := All(b.Candidates(nil))
	kept[g.ID] = []int{0, 1, 2, 3, 8, 9, 10, 11}
	p, err := b.Plan(kept)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(p.ConvGroups, map[string]int64{"gg.weight": 2}) {
		t.Fatalf("plan conv_groups %v", p.ConvGroups)
	}
	_, groups, err := b.PlanSlices(p)
	if err != nil || !maps.Equal(groups, p.ConvGroups) {
		t.Fatalf("PlanSlices: %v %v", groups, err)
	}
	// A plan written before conv_groups existed replays the same.
	p.ConvGroups = nil
	if _, groups, err := b.PlanSlices(p); err != nil || groups["gg.weight"] != 2 {
		t.Errorf("plan without conv_groups: %v %v", groups, err)
	}
	for name, mut := range map[string]func(q *plan.Plan){
		"disagreeing conv_groups": func(q *plan.Plan) { q.ConvGroups = map[string]int64{"gg.weight": 3} },
		"conv_groups of a plain conv": func(q *plan.Plan) {
			q.ConvGroups = map[string]int64{"gg.weight": 2, "c1.weight": 1}
		},
		"part of a conv group": func(q *plan.Plan) {
			t := q.Tensors["gg.weight"]
			t.Kept = map[string][]int{"0": {0, 1, 2, 3, 8, 9, 10, 12}}
			q.Tensors["gg.weight"] = t
		},
	} {
		q := *p
		q.Tensors = maps.Clone(p.Tensors)
		mut(&q)
		if _, _, err := b.PlanSlices(&q); err == nil || fail.Code(err) != 2 || !strings.Contains(err.Error(), "gg.weight") && !strings.Contains(err.Error(), "c1.weight") {
			t.Errorf("%s: %v, want a usage error naming the conv", name, err)
		}
	}
}

func TestEditsRenormWeightNorm(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	y := b.Relu(b.Conv(x, "a", 6, 3, irtest.ConvOpts{Pad: 1, WeightNorm: true}))
	y = b.Relu(b.Conv(y, "b", 4, 3, irtest.ConvOpts{Pad: 1, WeightNorm: true}))
	b.Output(b.Conv(y, "c", 2, 1, irtest.ConvOpts{}))
	base := baseOf(t, b)
	group := func(tensor string) *graph.Group {
		for _, grp := range base.Candidates(nil) {
			for _, m := range grp.Members {
				if m.Tensor == tensor && m.Dim == 0 {
					return grp
				}
			}
		}
		t.Fatalf("no candidate group has %s:0", tensor)
		return nil
	}
	ga, gb := group("a.weight_g"), group("b.weight_g")
	renorms := func(next map[int][]int) map[string]string {
		sl, _, err := base.Edits(All(base.Candidates(nil)), next)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, s := range sl {
			if s.Renorm != "" {
				out[s.Tensor] = s.Renorm
			}
		}
		return out
	}
	// a loses filters: b's direction loses input channels, across its norm.
	next := All(base.Candidates(nil))
	next[ga.ID] = []int{0, 2, 5}
	if got := renorms(next); len(got) != 1 || got["b.weight_v"] != "b.weight_g" {
		t.Errorf("cutting a's filters: renorms %v, want b.weight_v: b.weight_g", got)
	}
	// b loses filters only: rows of v and g go whole, nothing to rescale.
	next = All(base.Candidates(nil))
	next[gb.ID] = []int{1, 3}
	if got := renorms(next); len(got) != 0 {
		t.Errorf("cutting b's filters: renorms %v, want none", got)
	}
	// The plan path agrees.
	next[ga.ID] = []int{0, 2, 5}
	p, err := base.Plan(next)
	if err != nil {
		t.Fatal(err)
	}
	sl, _, err := base.PlanSlices(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sl {
		if want := map[string]string{"b.weight_v": "b.weight_g"}[s.Tensor]; s.Renorm != want {
			t.Errorf("plan slice %s: Renorm %q, want %q", s.Tensor, s.Renorm, want)
		}
	}
}

// A size list that writes a channel count in (LeNet's view(-1, 64)) gets
// its new entry from the step's counts and from a plan, keyed by its
// site; a step that leaves the count alone lists nothing.
func TestSizedOpEdits(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 4, 4)
	y := b.Relu(b.Conv(x, "c", 4, 3, irtest.ConvOpts{Pad: 1}))
	z := b.Relu(b.Conv(y, "d", 3, 3, irtest.ConvOpts{Pad: 1}))
	b.Output(b.Add(b.Linear(b.Sited(b.View(y, -1, 64), "lenet:1-2"), "fa", 5, false),
		b.Linear(b.Flatten(z, 1), "fb", 5, false)))
	base := baseOf(t, b)
	var gc, gd *graph.Group
	for _, g := range base.Candidates(nil) {
		for _, m := range g.Members {
			switch m.Tensor + ":" + strconv.Itoa(m.Dim) {
			case "c.weight:0":
				gc = g
			case "d.weight:0":
				gd = g
			}
		}
	}
	if gc == nil || gd == nil {
		t.Fatal("c's or d's group is not a candidate")
	}
	all := All(base.Candidates(nil))
	next := maps.Clone(all)
	next[gc.ID] = []int{1, 3}
	_, sizes, err := base.Edits(all, next)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(sizes, map[string]int64{"@1@lenet:1-2": 32}) {
		t.Errorf("cutting c to 2: sizes %v, want @1@lenet:1-2: 32", sizes)
	}
	p, err := base.Plan(next)
	if err != nil {
		t.Fatal(err)
	}
	if _, sizes, err := base.PlanSlices(p); err != nil || !maps.Equal(sizes, map[string]int64{"@1@lenet:1-2": 32}) {
		t.Errorf("plan: sizes %v (%v), want @1@lenet:1-2: 32", sizes, err)
	}
	after := maps.Clone(next)
	after[gd.ID] = []int{0}
	if _, sizes, err := base.Edits(next, after); err != nil || len(sizes) != 0 {
		t.Errorf("cutting d only: sizes %v (%v), want none", sizes, err)
	}
}

// A split by a written-in width (Res2Net) gets the kept width of its tied
// parts as entry 0 of its site.
func TestSizedSplitEdits(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 4, 4)
	y := b.Relu(b.Conv(x, "c1", 8, 1, irtest.ConvOpts{}))
	list := b.Sited(b.OpValues("aten::split", "", []int{y, b.Int(2), b.Int(1)}, ir.Value{Kind: ir.KindTensorList})[0], "res2:3-9")
	part := []int64{1, 2, 4, 4}
	p := b.Op("prim::ListUnpack", "", []int{list}, part, part, part, part)
	s := b.Add(b.Relu(b.Conv(p[0], "a", 2, 3, irtest.ConvOpts{Pad: 1})), p[1])
	b.Output(b.Conv(b.Cat(1, s, p[2], p[3]), "e", 2, 1, irtest.ConvOpts{}))
	base := baseOf(t, b)
	var g *graph.Group
	for _, c := range base.Candidates(nil) {
		if slices.ContainsFunc(c.Members, func(m graph.Member) bool { return m.Tensor == "c1.weight" && m.Dim == 0 }) {
			g = c
		}
	}
	if g == nil || g.Channels != 2 {
		t.Fatalf("c1's parts are not one candidate group of 2: %+v", g)
	}
	all := All(base.Candidates(nil))
	next := maps.Clone(all)
	next[g.ID] = []int{1}
	sl, sizes, err := base.Edits(all, next)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(sizes, map[string]int64{"@0@res2:3-9": 1}) {
		t.Errorf("sizes %v, want @0@res2:3-9: 1", sizes)
	}
	for _, c := range sl {
		if c.Tensor == "c1.weight" && !slices.Equal(c.Keep[0], []int{1, 3, 5, 7}) {
			t.Errorf("c1.weight keeps rows %v, want channel 1 of each part", c.Keep[0])
		}
	}
}
