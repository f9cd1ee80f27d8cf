// Package cut holds the pure decisions about which channels go, for both
// algorithms: iskl exclusion, the candidate groups, the MACs cost model, the
// one-shot plan, and the translation that my_pruning needs because it keeps
// channel indices relative to the ORIGINAL model while every cut is applied
// to the current, already pruned one.
//
// It sees only the analysis and the parameter shapes, never a tensor, so all
// of it runs (and is fuzzed and race-tested) without libtorch.
package cut

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/oneshot"
)

// Base describes the original model: its IR, channel groups and the shape
// of every parameter and buffer.
type Base struct {
	Graph      *ir.Graph
	Analysis   *graph.Analysis
	Params     map[string][]int64
	InputShape []int64
}

// FromGraph analyses g's channel groups and describes the model it is the
// IR of, run on an input of shape.
func FromGraph(g *ir.Graph, shape []int64) (*Base, error) {
	a, err := graph.Analyze(g)
	if err != nil {
		return nil, fmt.Errorf("channel analysis: %w", err)
	}
	params := make(map[string][]int64, len(g.Params))
	for n, p := range g.Params {
		params[n] = p.Shape
	}
	return &Base{Graph: g, Analysis: a, Params: params, InputShape: slices.Clone(shape)}, nil
}

// Slice is the surgery of one tensor: the kept indices (ascending, in
// positions of the tensor as it is now) of every dim that shrinks.
type Slice struct {
	Tensor string
	Keep   map[int][]int
	// Renorm, when Tensor is the direction v of a weight-normalised layer
	// and loses part of a dim other than 0, is its magnitude g: each row of
	// g is scaled by the norm of v's kept part over that of v's row, so the
	// layer's weight g·v/‖v‖ keeps its values.
	Renorm string `json:",omitempty"`
}

// renorm sets s.Renorm where s cuts a weight-normalised direction across
// its norm.
func (b *Base) renorm(s *Slice) {
	g, ok := b.Analysis.WeightNorm(s.Tensor)
	if !ok {
		return
	}
	for d := range s.Keep {
		if d != 0 {
			s.Renorm = g
			return
		}
	}
}

// Excluded returns the ids of the groups that iskl keeps whole: every group
// that touches a tensor of a listed layer (its filters or its input slice),
// so the layer stays exactly as it was. A name may be a layer or a module
// above several layers ("layer1"). A name that matches no parameter is a
// usage error naming it.
func (b *Base) Excluded(iskl []string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, raw := range iskl {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		prefix := name + "."
		found := false
		for p := range b.Params {
			if strings.HasPrefix(p, prefix) {
				found = true
				break
			}
		}
		if !found {
			return nil, fail.Usagef("iskl: %q matches no layer of the model (names are module paths such as %s)", name, exampleLayers(b.Params))
		}
		for i := range b.Analysis.Groups {
			g := &b.Analysis.Groups[i]
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
func (b *Base) Candidates(excluded map[int]bool) []*graph.Group {
	var out []*graph.Group
	for _, g := range b.Analysis.Prunable() {
		if !excluded[g.ID] {
			out = append(out, g)
		}
	}
	return out
}

// MACsFunc counts the model's MACs under a keep-count vector.
func (b *Base) MACsFunc() oneshot.MACsFunc {
	return func(keep map[int]int) int64 {
		macs, err := flops.MACs(b.Graph, b.Analysis, keep)
		if err != nil {
			return 1<<62 - 1
		}
		return macs
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
func (b *Base) OneShot(scores map[int][]float64, opt OneShotOptions) (*Outcome, error) {
	if !(opt.P > 0 && opt.P < 1) {
		return nil, fail.Usagef("P: %g is outside (0,1)", opt.P)
	}
	if opt.Alf < 1 {
		return nil, fail.Usagef("alf: %d must be at least 1", opt.Alf)
	}
	excl, err := b.Excluded(opt.ISKL)
	if err != nil {
		return nil, err
	}
	groups := b.Candidates(excl)
	before, err := flops.Count(b.Graph, b.Analysis, nil)
	if err != nil {
		return nil, err
	}
	target := int64(float64(before.MACs) * (1 - opt.P))
	macs := b.MACsFunc()
	var res oneshot.Result
	if opt.Global {
		res = oneshot.Global(groups, scores, macs, target, opt.Alf)
	} else {
		res = oneshot.Uniform(groups, macs, target, opt.Alf)
	}
	kept := oneshot.Select(groups, scores, res.Keep)
	p, err := b.Plan(kept)
	if err != nil {
		return nil, err
	}
	return &Outcome{Plan: p, Kept: kept, Target: target, Reached: p.MACsAfter <= target}, nil
}

// Plan builds the plan for kept channel indices, with MACs and params
// before and after.
func (b *Base) Plan(kept map[int][]int) (*plan.Plan, error) {
	p, err := plan.Build(b.Analysis, b.Params, kept, b.InputShape)
	if err != nil {
		return nil, err
	}
	before, err := flops.Count(b.Graph, b.Analysis, nil)
	if err != nil {
		return nil, err
	}
	after, err := flops.Count(b.Graph, b.Analysis, lens(kept))
	if err != nil {
		return nil, err
	}
	p.MACsBefore, p.MACsAfter = before.MACs, after.MACs
	p.ParamsBefore, p.ParamsAfter = before.Params, after.Params
	return p, nil
}

// PlanSlices is the surgery of a plan of the original model, tensors in
// name order, and the new size argument of every op that follows a pruned
// group: a grouped or depthwise conv's groups, a LayerNorm's
// normalized_shape (sizeArgs). They are derived from the analysis (a conv's
// kept rows over its channels per group), so plans written before
// conv_groups existed replay the same; a plan's conv_groups must agree with
// them. A plan that keeps part of a conv's group, or names a conv_groups
// entry that is not a grouped conv of the model, is a usage error.
func (b *Base) PlanSlices(p *plan.Plan) ([]Slice, map[string]int64, error) {
	names := slices.Sorted(maps.Keys(p.Tensors))
	out := make([]Slice, 0, len(names))
	for _, n := range names {
		s := Slice{Tensor: n, Keep: p.Tensors[n].KeptByDim()}
		b.renorm(&s)
		out = append(out, s)
	}
	groups := map[string]int64{}
	for _, c := range b.sizeArgs() {
		t, ok := p.Tensors[c.Weight]
		if !ok || len(t.ShapeAfter) == 0 {
			continue
		}
		rows, ok := t.KeptByDim()[0]
		if !ok {
			continue
		}
		if err := graph.CheckBlocks(rows, c.PerGroup); err != nil {
			return nil, nil, fail.Usagef("plan: conv %s: %v (groups of %d channels)", c.Weight, err, c.PerGroup)
		}
		groups[c.Weight] = int64(len(rows) / c.PerGroup)
	}
	known := map[string]bool{}
	for i := range b.Analysis.Groups {
		for _, c := range b.Analysis.Groups[i].GroupedConvs {
			known[c.Weight] = true
		}
	}
	for _, w := range slices.Sorted(maps.Keys(p.ConvGroups)) {
		if !known[w] {
			return nil, nil, fail.Usagef("plan: conv_groups names %s, which is not a grouped conv's weight in this model", w)
		}
		if got, want := p.ConvGroups[w], groups[w]; got != want {
			return nil, nil, fail.Usagef("plan: conv_groups gives %s %d groups, its kept channels give %d", w, got, want)
		}
	}
	b.siteSizes(groups, nil, b.planCounts(p))
	return out, groups, nil
}

// planCounts is the channel count p keeps of every group one of whose
// members it cuts; groups it leaves whole are missing.
func (b *Base) planCounts(p *plan.Plan) map[int]int {
	counts := map[int]int{}
	for i := range b.Analysis.Groups {
		g := &b.Analysis.Groups[i]
		for _, m := range g.Members {
			t, ok := p.Tensors[m.Tensor]
			if !ok {
				continue
			}
			idx, ok := t.KeptByDim()[m.Dim]
			if !ok {
				continue
			}
			stride := max(m.Stride, 1)
			n := 0
			for _, k := range idx {
				if k >= m.Offset && k < m.Offset+g.Channels*stride && (k-m.Offset)%stride == 0 {
					n++
				}
			}
			counts[g.ID] = n
			break
		}
	}
	return counts
}

// siteSizes adds to sizes the new entry of every size list that writes a
// channel count in (graph.SizedOp) and changes from the counts in
// before to those in after (nil: the traced model), keyed as the shim's
// gpt_module_prune reads it: "@<entry>@<site>".
func (b *Base) siteSizes(sizes map[string]int64, before, after map[int]int) {
	for _, r := range b.Analysis.SizedOps {
		was, now := b.Analysis.ValueShape(r.Value, before), b.Analysis.ValueShape(r.Value, after)
		if r.Dim < len(was) && r.Dim < len(now) && was[r.Dim] != now[r.Dim] {
			sizes[fmt.Sprintf("@%d@%s", r.Entry, r.Site)] = now[r.Dim]
		}
	}
}

// sizeArgs lists once, in group order, the weights of the ops whose size
// argument follows their group's channels, with the channels per unit of
// that argument: every grouped conv (groups = kept rows / PerGroup),
// every LayerNorm over the channels (normalized_shape = kept size, as
// PerGroup 1) and every weight reshaped with its filter count written in
// (that count = kept rows, PerGroup 1).
func (b *Base) sizeArgs() []graph.GroupedConv {
	var out []graph.GroupedConv
	for i := range b.Analysis.Groups {
		g := &b.Analysis.Groups[i]
		cs := slices.Clone(g.GroupedConvs)
		for _, ln := range g.LayerNorms {
			cs = append(cs, graph.GroupedConv{Weight: ln, PerGroup: 1})
		}
		for _, w := range g.SizedWeights {
			cs = append(cs, graph.GroupedConv{Weight: w, PerGroup: 1})
		}
		for _, c := range cs {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// All is the identity keep of every group in gs: all its channels.
func All(gs []*graph.Group) map[int][]int {
	out := make(map[int][]int, len(gs))
	for _, g := range gs {
		out[g.ID] = plan.All(g.Channels)
	}
	return out
}

// CutBy reduces every group in counts to its count, keeping the channels
// with the highest scores, in whole blocks where the group has them (each
// block scored by the sum of its channels). kept holds original indices;
// scores[g] holds one score per CURRENT channel of g (in kept order). A count
// that is not a whole number of blocks is an error. The result is a new map.
func (b *Base) CutBy(kept map[int][]int, s map[int][]float64, counts map[int]int) (map[int][]int, error) {
	next := maps.Clone(kept)
	for _, gid := range slices.Sorted(maps.Keys(counts)) {
		to := counts[gid]
		k := kept[gid]
		if to >= len(k) {
			continue
		}
		sc, ok := s[gid]
		if !ok || len(sc) != len(k) {
			return nil, fmt.Errorf("group %d: %d scores for %d channels", gid, len(sc), len(k))
		}
		unit := 1
		if g := b.Analysis.Group(gid); g != nil {
			unit = g.Unit()
		}
		if to < unit || to%unit != 0 {
			return nil, fmt.Errorf("group %d: cannot keep %d channels: it loses whole blocks of %d", gid, to, unit)
		}
		// Kept channels are whole blocks in ascending order, so the current
		// channels' blocks are consecutive runs of unit positions too.
		if err := graph.CheckBlocks(k, unit); err != nil {
			return nil, fmt.Errorf("group %d: %w", gid, err)
		}
		pos := plan.TopKBlocks(sc, to, unit)
		idx := make([]int, len(pos))
		for i, p := range pos {
			idx[i] = k[p]
		}
		next[gid] = idx
	}
	return next, nil
}

// CurrentGroups describes groups as they are in the current model, which
// keeps kept (original indices): the channel count is what is kept, and
// every producer member is moved to where the kept channels' rows now sit
// in the pruned tensor. A criterion then scores current channels in
// kept-index order. groups come back sorted by id.
func (b *Base) CurrentGroups(groups []*graph.Group, kept map[int][]int) ([]*graph.Group, error) {
	tk := b.Analysis.TensorKeeps(kept)
	sorted := slices.Clone(groups)
	slices.SortFunc(sorted, func(x, y *graph.Group) int { return x.ID - y.ID })
	out := make([]*graph.Group, 0, len(sorted))
	for _, g := range sorted {
		k, ok := kept[g.ID]
		if !ok {
			k = plan.All(g.Channels)
		}
		cg := &graph.Group{ID: g.ID, Channels: len(k), Layers: g.Layers}
		for _, p := range g.Producers {
			cm, err := b.currentMember(tk, p, k)
			if err != nil {
				return nil, fmt.Errorf("group %d (%s): %w", g.ID, ShortLayers(g.Layers), err)
			}
			cg.Producers = append(cg.Producers, cm)
		}
		out = append(out, cg)
	}
	return out, nil
}

// currentMember translates an original member of a group that keeps the
// original channels k into the pruned tensor's layout. Surviving rows keep
// their order, so the layout stays Offset + c·Stride; the check makes a
// layout this cannot express an error instead of wrong scores.
func (b *Base) currentMember(tk map[string]map[int][]int, m graph.Member, k []int) (graph.Member, error) {
	pos, err := b.positions(tk, m.Tensor, m.Dim)
	if err != nil {
		return graph.Member{}, err
	}
	stride := max(m.Stride, 1)
	out := graph.Member{Tensor: m.Tensor, Dim: m.Dim, Stride: stride}
	for c, ch := range k {
		for j, r := range m.Indices([]int{ch}) {
			p, ok := pos[r]
			if !ok {
				return graph.Member{}, fmt.Errorf("%s: kept channel %d (row %d) is not in the current tensor", m, ch, r)
			}
			if c == 0 && j == 0 {
				out.Offset = p
			}
			if p != out.Offset+c*stride+j {
				return graph.Member{}, fmt.Errorf("%s: kept rows are not laid out as offset+c·stride", m)
			}
		}
	}
	return out, nil
}

// positions maps original indices of a tensor dim to their positions in the
// current tensor, given the current tensor keeps tk.
func (b *Base) positions(tk map[string]map[int][]int, name string, dim int) (map[int]int, error) {
	idx, ok := tk[name][dim]
	if !ok {
		shape, ok := b.Params[name]
		if !ok || dim < 0 || dim >= len(shape) {
			return nil, fmt.Errorf("the model has no tensor %s with dim %d", name, dim)
		}
		idx = plan.All(int(shape[dim]))
	}
	pos := make(map[int]int, len(idx))
	for i, r := range idx {
		pos[r] = i
	}
	return pos, nil
}

// Edits is the surgery that turns the current model (which keeps cur,
// original indices) into the one that keeps next, in positions of the
// current tensors, plus the new groups count of every grouped or depthwise
// conv it shrinks. Pruned channels cannot come back: next must be a subset
// of cur, and a group with blocks keeps whole ones.
func (b *Base) Edits(cur, next map[int][]int) ([]Slice, map[string]int64, error) {
	a := b.Analysis
	for _, gid := range slices.Sorted(maps.Keys(next)) {
		if g := a.Group(gid); g != nil {
			if err := g.CheckBlocks(next[gid]); err != nil {
				return nil, nil, fmt.Errorf("group %d (%s): %w", gid, ShortLayers(g.Layers), err)
			}
		}
	}
	ck := a.TensorKeeps(cur)
	nk := a.TensorKeeps(next)
	for name, dims := range ck {
		for d := range dims {
			if _, ok := nk[name][d]; !ok {
				return nil, nil, fmt.Errorf("%s dim %d would grow back: pruned channels cannot be restored", name, d)
			}
		}
	}
	var out []Slice
	for _, name := range slices.Sorted(maps.Keys(nk)) {
		s := Slice{Tensor: name, Keep: map[int][]int{}}
		for d, idx := range nk[name] {
			pos, err := b.positions(ck, name, d)
			if err != nil {
				return nil, nil, err
			}
			if len(idx) == len(pos) {
				continue // unchanged by this step
			}
			rel := make([]int, len(idx))
			for i, r := range idx {
				p, ok := pos[r]
				if !ok {
					return nil, nil, fmt.Errorf("%s dim %d: index %d was already pruned", name, d, r)
				}
				rel[i] = p
			}
			s.Keep[d] = rel
		}
		if len(s.Keep) > 0 {
			b.renorm(&s)
			out = append(out, s)
		}
	}
	groups := map[string]int64{}
	for _, c := range b.sizeArgs() {
		for _, s := range out {
			if k, ok := s.Keep[0]; ok && s.Tensor == c.Weight && c.PerGroup > 0 {
				if len(k)%c.PerGroup != 0 {
					return nil, nil, fmt.Errorf("conv %s would keep %d channels, not whole groups of %d", c.Weight, len(k), c.PerGroup)
				}
				groups[c.Weight] = int64(len(k) / c.PerGroup)
			}
		}
	}
	b.siteSizes(groups, lens(cur), lens(next))
	return out, groups, nil
}

// lens is the channel count of every group in kept.
func lens(kept map[int][]int) map[int]int {
	out := make(map[int]int, len(kept))
	for id, k := range kept {
		out[id] = len(k)
	}
	return out
}

// ExpectedShapes is every parameter and buffer shape of the original model
// pruned to kept (original indices).
func (b *Base) ExpectedShapes(kept map[int][]int) map[string][]int64 {
	tk := b.Analysis.TensorKeeps(kept)
	out := make(map[string][]int64, len(b.Params))
	for name, s := range b.Params {
		s = slices.Clone(s)
		for d, idx := range tk[name] {
			s[d] = int64(len(idx))
		}
		out[name] = s
	}
	return out
}

// CheckShapes reports the first tensor (in name order) of got whose shape
// is not what the kept indices give.
func (b *Base) CheckShapes(got map[string][]int64, kept map[int][]int) error {
	want := b.ExpectedShapes(kept)
	for _, n := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[n]
		if !ok {
			return fmt.Errorf("tensor %s is missing", n)
		}
		if !slices.Equal(g, want[n]) {
			return fmt.Errorf("tensor %s has shape %v, the kept channels give %v", n, g, want[n])
		}
	}
	return nil
}

// DeriveSeed mixes the run's seed with what a piece of work is, so that its
// randomness depends on the work and not on the slot or the order it ran in.
func DeriveSeed(seed int64, what string, a, b int) int64 {
	h := fnv.New64a()
	var buf [24]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(seed))
	binary.LittleEndian.PutUint64(buf[8:], uint64(int64(a)))
	binary.LittleEndian.PutUint64(buf[16:], uint64(int64(b)))
	h.Write(buf[:])
	h.Write([]byte(what))
	return int64(h.Sum64() >> 1)
}

// ShortLayers names up to three layers, and how many more there are.
func ShortLayers(ls []string) string {
	if len(ls) > 3 {
		return fmt.Sprintf("%s, … %d more", strings.Join(ls[:3], ", "), len(ls)-3)
	}
	return strings.Join(ls, ", ")
}
