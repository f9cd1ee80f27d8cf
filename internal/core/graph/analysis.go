package graph

import (
	"cmp"
	"fmt"
	"slices"
	"sort"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// Analysis is the result of Analyze: the channel groups of a graph and what
// is needed to derive shapes and kept indices from a choice of channels.
// It is read-only after Analyze and safe for concurrent use.
type Analysis struct {
	// Groups lists every group, frozen ones included, ordered by the first
	// op that creates one of its spaces; Groups[i].ID == i.
	Groups []Group
	// SizedOps are the ops whose size arguments write a followed channel
	// count in; surgery rewrites them.
	SizedOps []SizedOp

	g        *ir.Graph
	vmaps    map[int]valueMap
	pmembers map[string][]pmember
	pshape   map[string][]int64
	layers   map[string]bool
	byLayer  map[string][]int
	wnorms   map[string]string
	wvals    map[int]wval
}

// rseg is a seg resolved to a public group id (-1: a space no tensor
// indexes, whose size therefore never changes).
type rseg struct{ gid, n, stride int }

type valueMap struct {
	dim  int
	segs []rseg
}

type pmember struct {
	gid int
	m   Member
}

func (a *analyzer) finish() *Analysis {
	a.tieShared()
	type cls struct {
		root    int
		members []mrec
	}
	var classes []*cls
	byRoot := map[int]*cls{}
	for i := range a.spaces {
		if a.find(i) != i || len(a.spaces[i].members) == 0 {
			continue
		}
		ms := slices.Clone(a.spaces[i].members)
		slices.SortStableFunc(ms, func(x, y mrec) int { return cmp.Compare(x.seq, y.seq) })
		var out []mrec
		seen := map[Member]int{}
		for _, m := range ms {
			if j, ok := seen[m.m]; ok {
				out[j].producer = out[j].producer || m.producer
				continue
			}
			seen[m.m] = len(out)
			out = append(out, m)
		}
		c := &cls{root: i, members: out}
		classes = append(classes, c)
		byRoot[i] = c
	}

	// Every member must fit its tensor and may not be a dim some op needs
	// at its current size.
	for _, c := range classes {
		n := a.spaces[c.root].n
		hasProducer := false
		for _, mr := range c.members {
			m := mr.m
			hasProducer = hasProducer || mr.producer
			if r := a.pinReason(m.Tensor, m.Dim); r != "" {
				a.freezeSp(c.root, fmt.Sprintf("%s %s", m.Tensor, r))
				continue
			}
			s := a.paramShape(m.Tensor)
			if m.Dim < 0 || m.Dim >= len(s) || m.Stride < 1 || m.Offset < 0 || s[m.Dim] > maxExtent ||
				int64(m.Offset)+int64(n)*int64(m.Stride) > s[m.Dim] {
				a.freezeSp(c.root, fmt.Sprintf("%s does not fit tensor %s", m, m.Tensor))
			}
		}
		if !hasProducer {
			a.freezeSp(c.root, "no conv or linear produces these channels")
		}
		if b := a.spaces[c.root].block; b > 1 && n%b != 0 {
			a.freezeSp(c.root, fmt.Sprintf("grouped convs need blocks of %d channels, which do not tile the %d channels", b, n))
		}
	}

	// Index ranges of different groups on one tensor dim must not overlap
	// (a weight shared by two layers, say), or pruning one would corrupt
	// the other.
	type iv struct {
		root   int
		lo, hi int64
	}
	type tdim struct {
		t string
		d int
	}
	ivs := map[tdim][]iv{}
	for _, c := range classes {
		n := int64(a.spaces[c.root].n)
		for _, mr := range c.members {
			k := tdim{mr.m.Tensor, mr.m.Dim}
			lo := int64(mr.m.Offset)
			ivs[k] = append(ivs[k], iv{c.root, lo, lo + n*int64(max(mr.m.Stride, 1))})
		}
	}
	for _, list := range ivs {
		sort.Slice(list, func(i, j int) bool { return list[i].lo < list[j].lo })
		top := list[0]
		for _, x := range list[1:] {
			if x.lo < top.hi {
				r := "channel ranges overlap on a shared tensor"
				a.freezeSp(x.root, r)
				a.freezeSp(top.root, r)
			}
			if x.hi > top.hi {
				top = x
			}
		}
	}

	res := &Analysis{
		g:        a.g,
		vmaps:    map[int]valueMap{},
		pmembers: map[string][]pmember{},
		pshape:   map[string][]int64{},
		layers:   a.layers,
		byLayer:  map[string][]int{},
		wnorms:   a.wnorms,
		wvals:    a.wvals,

		SizedOps: a.sized,
	}
	gid := map[int]int{}
	for _, c := range classes {
		sp := &a.spaces[c.root]
		id := len(res.Groups)
		gid[c.root] = id
		grp := Group{ID: id, Channels: sp.n, Frozen: sp.frozen, Reason: sp.reason, Exact: sp.inexact == "", Inexact: sp.inexact}
		if sp.block > 1 {
			grp.Block = sp.block
		}
		for _, mr := range c.members {
			grp.Members = append(grp.Members, mr.m)
			if mr.producer {
				grp.Producers = append(grp.Producers, mr.m)
			}
			res.pmembers[mr.m.Tensor] = append(res.pmembers[mr.m.Tensor], pmember{id, mr.m})
			if _, ok := res.pshape[mr.m.Tensor]; !ok {
				res.pshape[mr.m.Tensor] = slices.Clone(a.paramShape(mr.m.Tensor))
			}
		}
		grp.Layers = uniq(sp.layers)
		grp.GroupedConvs = uniqConvs(sp.convs)
		grp.DepthwiseConvs = depthwise(grp.GroupedConvs)
		grp.LayerNorms = uniq(sp.ln)
		grp.SizedWeights = uniq(sp.sized)
		for _, l := range grp.Layers {
			res.byLayer[l] = append(res.byLayer[l], id)
		}
		res.Groups = append(res.Groups, grp)
	}
	for id, m := range a.maps {
		vm := valueMap{dim: m.dim, segs: make([]rseg, len(m.segs))}
		for i, s := range m.segs {
			g, ok := gid[a.find(s.sp)]
			if !ok {
				g = -1
			}
			vm.segs[i] = rseg{g, s.n, s.stride}
		}
		res.vmaps[id] = vm
	}
	return res
}

// tieShared unites spaces that index the very same rows of a parameter: a
// module called twice (a Siamese twin's backbone, the MLP that CBAM runs on
// both poolings, a weight tied between an encoder and a decoder) writes or
// reads its channels in every call, so every call's space must lose the
// same ones. Ranges that only partly coincide stay apart and are frozen
// below.
func (a *analyzer) tieShared() {
	type key struct {
		m Member
		n int
	}
	first := map[key]int{}
	for i := range a.spaces {
		if a.find(i) != i {
			continue
		}
		n := a.spaces[i].n
		// union appends to the root's members; a snapshot is enough, as a
		// space united here brings only members that are keys already.
		for _, mr := range slices.Clone(a.spaces[i].members) {
			k := key{mr.m, n}
			if j, ok := first[k]; ok {
				a.union(j, i)
				continue
			}
			first[k] = i
		}
	}
}

// depthwise lists the weights of the convs with one channel per group.
func depthwise(cs []GroupedConv) []string {
	var out []string
	for _, c := range cs {
		if c.PerGroup == 1 {
			out = append(out, c.Weight)
		}
	}
	return out
}

func uniq(xs []srec) []string {
	return uniqBySeq(xs, func(x srec) int { return x.seq }, func(x srec) string { return x.s })
}

func uniqConvs(xs []crec) []GroupedConv {
	return uniqBySeq(xs, func(x crec) int { return x.seq }, func(x crec) GroupedConv { return x.c })
}

// uniqBySeq lists the values of xs in the order of their registration
// (seq), each once.
func uniqBySeq[R any, T comparable](xs []R, seq func(R) int, val func(R) T) []T {
	slices.SortStableFunc(xs, func(x, y R) int { return cmp.Compare(seq(x), seq(y)) })
	var out []T
	for _, x := range xs {
		if v := val(x); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Prunable returns the groups that may lose channels, in Groups order.
func (a *Analysis) Prunable() []*Group {
	var out []*Group
	for i := range a.Groups {
		if a.Groups[i].Prunable() {
			out = append(out, &a.Groups[i])
		}
	}
	return out
}

// Group returns the group with the given id, or nil.
func (a *Analysis) Group(id int) *Group {
	if id < 0 || id >= len(a.Groups) {
		return nil
	}
	return &a.Groups[id]
}

// keptCount is how many channels group id keeps under kept: all of them
// when the group is missing from kept, unknown or frozen (frozen groups
// never change, whatever a caller asks).
func (a *Analysis) keptCount(id int, kept map[int]int) int {
	g := a.Group(id)
	if g == nil {
		return -1
	}
	k, ok := kept[id]
	if !ok || g.Frozen {
		return g.Channels
	}
	return min(max(k, 0), g.Channels)
}

// ValueShape returns the shape value id would have if every group gid kept
// kept[gid] channels (groups missing from kept keep all). Values whose
// channels no group follows keep their traced shape; unknown ids give nil.
func (a *Analysis) ValueShape(id int, kept map[int]int) []int64 {
	v := a.g.Value(id)
	if v == nil {
		return nil
	}
	if v.Param != "" {
		return a.ParamShape(v.Param, kept)
	}
	if w, ok := a.wvals[id]; ok {
		return w.shape(slices.Clone(v.Shape), a.ParamShape(w.src, kept))
	}
	s := slices.Clone(v.Shape)
	vm, ok := a.vmaps[id]
	if !ok || vm.dim < 0 || vm.dim >= len(s) {
		return s
	}
	var e int64
	for _, sg := range vm.segs {
		n := sg.n
		if sg.gid >= 0 {
			n = a.keptCount(sg.gid, kept)
		}
		e += int64(n) * int64(sg.stride)
	}
	s[vm.dim] = e
	return s
}

// ParamShape returns the shape parameter or buffer name would have under
// kept (see ValueShape), or nil if the graph does not know the name.
func (a *Analysis) ParamShape(name string, kept map[int]int) []int64 {
	var s []int64
	if p, ok := a.g.Params[name]; ok {
		s = slices.Clone(p.Shape)
	} else if ps, ok := a.pshape[name]; ok {
		s = slices.Clone(ps)
	} else {
		for i := range a.g.Values {
			if a.g.Values[i].Param == name {
				s = slices.Clone(a.g.Values[i].Shape)
				break
			}
		}
		if s == nil {
			return nil
		}
	}
	for _, pm := range a.pmembers[name] {
		g := &a.Groups[pm.gid]
		k := a.keptCount(pm.gid, kept)
		if k == g.Channels || pm.m.Dim >= len(s) {
			continue
		}
		s[pm.m.Dim] -= int64(g.Channels-k) * int64(max(pm.m.Stride, 1))
	}
	return s
}

// TensorKeeps turns kept channel indices per group into kept indices per
// tensor dim: for every parameter or buffer whose shape changes, and every
// dim of it that changes, the ascending indices to index_select. Offsets
// (concatenations), strides (flatten into Linear) and several groups on one
// dim are resolved here. Indices out of range are dropped and frozen or
// unknown groups ignored; use ValidateKept to reject such input instead.
func (a *Analysis) TensorKeeps(kept map[int][]int) map[string]map[int][]int {
	out := map[string]map[int][]int{}
	names := make([]string, 0, len(a.pmembers))
	for name := range a.pmembers {
		names = append(names, name)
	}
	sort.Strings(names)
	// A group's indices, cleaned once: a densenet121's first groups reach
	// every later layer through the concatenations, and cleaning them for
	// each member was half of what a one-shot prune allocated here.
	clean := map[int][]int{}
	for _, name := range names {
		shape := a.ParamShape(name, nil)
		byDim := map[int][]pmember{}
		for _, pm := range a.pmembers[name] {
			g := &a.Groups[pm.gid]
			if _, ok := kept[pm.gid]; !ok || g.Frozen {
				continue
			}
			byDim[pm.m.Dim] = append(byDim[pm.m.Dim], pm)
		}
		for dim, pms := range byDim {
			if dim < 0 || dim >= len(shape) || shape[dim] > maxExtent {
				continue
			}
			keep := make([]bool, shape[dim])
			for i := range keep {
				keep[i] = true
			}
			for _, pm := range pms {
				g := &a.Groups[pm.gid]
				stride := max(pm.m.Stride, 1)
				hi := min(pm.m.Offset+g.Channels*stride, len(keep))
				for i := max(pm.m.Offset, 0); i < hi; i++ {
					keep[i] = false
				}
				ch, ok := clean[pm.gid]
				if !ok {
					ch = cleanIndices(kept[pm.gid], g.Channels)
					clean[pm.gid] = ch
				}
				for i := range pm.m.each(ch) {
					if i >= 0 && i < len(keep) {
						keep[i] = true
					}
				}
			}
			n := 0
			for _, k := range keep {
				if k {
					n++
				}
			}
			if n == len(keep) {
				continue
			}
			idx := make([]int, 0, n)
			for i, k := range keep {
				if k {
					idx = append(idx, i)
				}
			}
			if out[name] == nil {
				out[name] = map[int][]int{}
			}
			out[name][dim] = idx
		}
	}
	return out
}

// cleanIndices sorts, dedups and bounds channel indices.
func cleanIndices(xs []int, n int) []int {
	out := make([]int, 0, len(xs))
	for _, x := range xs {
		if x >= 0 && x < n {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ValidateKept checks a choice of kept channels: every group exists and is
// prunable, and its indices are ascending, unique, in range and not empty.
func (a *Analysis) ValidateKept(kept map[int][]int) error {
	ids := make([]int, 0, len(kept))
	for id := range kept {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		g := a.Group(id)
		if g == nil {
			return fmt.Errorf("kept channels for unknown group %d", id)
		}
		if !g.Prunable() {
			return fmt.Errorf("group %d is not prunable (%s)", id, g.Reason)
		}
		idx := kept[id]
		if len(idx) == 0 {
			return fmt.Errorf("group %d would keep no channels", id)
		}
		for i, c := range idx {
			if c < 0 || c >= g.Channels {
				return fmt.Errorf("group %d: channel %d out of range [0,%d)", id, c, g.Channels)
			}
			if i > 0 && c <= idx[i-1] {
				return fmt.Errorf("group %d: kept channels not strictly ascending at %d", id, c)
			}
		}
		if err := g.CheckBlocks(idx); err != nil {
			return fmt.Errorf("group %d: %w", id, err)
		}
	}
	return nil
}

// GroupOfLayer returns the groups holding the output channels of layer path
// (a conv or linear module path such as "layer1.0.conv1"; a depthwise conv
// counts for the group it passes through). It is empty for layers whose
// outputs no group follows; HasLayer tells those apart from unknown names.
func (a *Analysis) GroupOfLayer(path string) []*Group {
	var out []*Group
	for _, id := range a.byLayer[path] {
		out = append(out, &a.Groups[id])
	}
	return out
}

// HasLayer reports whether path is the module path of a conv or linear the
// model runs (`iskl` entries that match nothing are errors).
func (a *Analysis) HasLayer(path string) bool { return a.layers[path] }

// WeightSource is the parameter a computed weight (value id) of a layer
// the analysis follows is made from, and has the shape of: a weight norm's
// direction v, a standardised weight's raw P (and so is a value inside
// such an expression that has P's layout). "" for any other value.
func (a *Analysis) WeightSource(id int) string {
	if w, ok := a.wvals[id]; ok && w.form == wFull {
		return w.src
	}
	return ""
}

// WeightNorm reports whether parameter v is the direction of a
// weight-normalised layer the analysis follows (w = g·v/‖v‖ per dim-0
// slice), and names its magnitude g. Cutting v's other dims changes ‖v‖:
// surgery then scales g's rows by the kept part's norm over the whole's, so
// that w keeps its values; and zeroing v's rows would divide by zero, so a
// masked reference zeroes g's instead.
func (a *Analysis) WeightNorm(v string) (g string, ok bool) {
	g, ok = a.wnorms[v]
	return g, ok
}

// Layers returns the module paths of every conv and linear the model runs,
// sorted.
func (a *Analysis) Layers() []string {
	out := make([]string, 0, len(a.layers))
	for l := range a.layers {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
