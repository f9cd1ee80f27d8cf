package graph

import (
	"fmt"
	"slices"
)

// Grouped convolutions (1 < groups). Output channel c of group j reads only
// the input channels of group j, so when the conv keeps the channel count
// (Cin == Cout) channel c in and channel c out can share one space, as a
// depthwise conv does. (Convs that change the count are regroupedConv's,
// below.) The conv can then lose whole groups only: the space
// gets a block of Cin/groups channels, and groups becomes the new count over
// that block. Keeping the groups count and thinning every group instead
// would need the same positions kept in every group's input block (the
// weight's dim 1 is shared by all groups), which a member's
// offset + c·stride layout cannot express; that mode is not built.

// segBlock is the block a run of m must be pruned in so that the conv
// loses whole groups of per channels: a run of stride s owns s conv
// channels per space channel, so per/s space channels when s divides per,
// and any single channel when per divides s. ok is false when neither holds
// or the run does not end on a group boundary (then neither would the next
// run start on one).
func segBlock(sg seg, per int64) (block int, ok bool) {
	s := int64(sg.stride)
	if s < 1 || int64(sg.n)*s%per != 0 {
		return 0, false
	}
	switch {
	case per%s == 0:
		return int(per / s), true
	case s%per == 0:
		return 1, true
	}
	return 0, false
}

// blocksFit reports whether every run of m fits whole groups of per
// channels (segBlock).
func blocksFit(m *cmap, per int64) bool {
	for _, sg := range m.segs {
		if _, ok := segBlock(sg, per); !ok {
			return false
		}
	}
	return true
}

// groupedConv ties the input and output channels of a conv with groups > 1
// and Cin == Cout whose input map m fits whole groups of per channels: its
// weight's dim 0 and its bias become members of m's spaces, which get the
// block and record the conv so its groups argument follows them.
func (a *analyzer) groupedConv(m *cmap, w int, wname, layer string, per int64, addBias func(*cmap)) {
	a.addMembers(m, wname, 0, true)
	for _, s := range m.segs {
		a.addLayer(s.sp, layer)
		r := &a.spaces[a.find(s.sp)]
		r.convs = append(r.convs, crec{a.nextSeq(), GroupedConv{Weight: wname, PerGroup: int(per)}})
		if b, _ := segBlock(s, per); b > 1 {
			r.block = lcm(r.block, b)
		}
	}
	addBias(m)
	a.useParam(w, wname, 0)
}

// groupedReason says why a conv with groups > 1 was not followed.
func groupedReason(layer string, groups, cin, cout int64, transposed bool, m *cmap) string {
	kind := "grouped conv"
	if transposed {
		kind = "grouped transposed conv"
	}
	switch {
	case m == nil || m.dim != 1 || m.extent() != cin:
		return fmt.Sprintf("%s %s (groups=%d) reads channels that are not followed on dim 1", kind, layer, groups)
	case cin != cout:
		// regroupedConv says why it refused; this is its fallback.
		return fmt.Sprintf("%s %s (groups=%d, %d to %d channels) changes the channel count", kind, layer, groups, cin, cout)
	default:
		return fmt.Sprintf("%s %s (groups=%d) on concatenated or strided channels that do not split into whole groups", kind, layer, groups)
	}
}

// lcm is the least common multiple of two block sizes, 0 standing for none.
func lcm(x, y int) int {
	if x <= 1 {
		return max(y, x)
	}
	if y <= 1 {
		return x
	}
	a, b := x, y
	for b != 0 {
		a, b = b, a%b
	}
	if l := x / a * y; l <= maxExtent {
		return l
	}
	return maxExtent + 1 // divides no channel count: finish freezes the space
}

// Grouped convs that change the channel count (Cin != Cout, groups g) can
// still lose whole conv groups: group j reads input channels
// [j·Cin/g, (j+1)·Cin/g) and writes output channels [j·Cout/g, (j+1)·Cout/g),
// so removing it removes both blocks, and g drops. The analysis models this
// with one channel per conv group on both sides: the output gets a new space
// of g channels of stride Cout/g, and the input's space is re-strided so
// that each of its channels is one block of Cin/g channels (restride). Both
// then have g channels and unite.

// restride makes every channel of sp's class own f of its current channels:
// the class gets n/f channels, each member f times its stride (channel C
// then owns exactly the indices old channels C·f .. C·f+f-1 owned, so no
// index moves), and every value map run over the class n/f channels of f
// times the stride. The caller checks canRestride first.
func (a *analyzer) restride(sp, f int) {
	root := a.find(sp)
	if f == 1 {
		return
	}
	for i := range a.spaces {
		if a.find(i) == root {
			a.spaces[i].n /= f
		}
	}
	r := &a.spaces[root]
	for i := range r.members {
		r.members[i].m.Stride = max(r.members[i].m.Stride, 1) * f
	}
	// A block of b old channels is whole when the new channels are kept in
	// aligned runs covering lcm(b, f) old ones.
	if r.block > 1 {
		r.block = lcm(r.block, f) / f
		if r.block == 1 {
			r.block = 0
		}
	}
	// Maps are shared between values and documented as never mutated:
	// rebuild each affected map once and point every value holding it at
	// the copy, so that values aliasing one map still alias one map.
	done := map[*cmap]*cmap{}
	for id, m := range a.maps {
		if nm, ok := done[m]; ok {
			a.maps[id] = nm
			continue
		}
		var nm *cmap
		for i, s := range m.segs {
			if a.find(s.sp) != root {
				continue
			}
			if nm == nil {
				nm = &cmap{dim: m.dim, segs: slices.Clone(m.segs)}
			}
			nm.segs[i] = seg{sp: s.sp, n: s.n / f, stride: s.stride * f}
		}
		if nm == nil {
			nm = m
		}
		done[m] = nm
		a.maps[id] = nm
	}
}

// canRestride says why sp's class cannot be re-strided by f ("" when it
// can): every run of it in a value map must hold whole blocks of f.
func (a *analyzer) canRestride(sp, f int) string {
	root := a.find(sp)
	if a.spaces[root].n%f != 0 {
		return fmt.Sprintf("its %d input channels do not split into blocks of %d", a.spaces[root].n, f)
	}
	for _, m := range a.maps {
		for _, s := range m.segs {
			if a.find(s.sp) == root && s.n%f != 0 {
				return fmt.Sprintf("a value holds a run of %d of its input channels, not whole blocks of %d", s.n, f)
			}
		}
	}
	return ""
}

// regroupedConv ties a grouped conv with Cin != Cout to its input by whole
// conv groups of bi = Cin/groups input and bo = Cout/groups output
// channels, or says why it cannot. On success the output's map is set.
func (a *analyzer) regroupedConv(m *cmap, w, out int, wname, layer string, groups, cin, cout int64, transposed bool, addBias func(*cmap)) string {
	if m == nil || m.dim != 1 || m.extent() != cin {
		return groupedReason(layer, groups, cin, cout, transposed, m)
	}
	kind := "grouped conv"
	if transposed {
		kind = "grouped transposed conv"
	}
	bi, bo := int(cin/groups), int(cout/groups)
	refuse := func(why string) string {
		return fmt.Sprintf("%s %s (groups=%d, %d to %d channels) cannot lose whole groups: %s", kind, layer, groups, cin, cout, why)
	}
	// Each run must hold whole conv groups: either a space channel is part
	// of one group (its stride divides bi: re-stride its class by
	// bi/stride) or it spans whole groups (bi divides its stride).
	factor := map[int]int{}
	for _, s := range m.segs {
		if s.stride < 1 || (s.n*s.stride)%bi != 0 {
			return refuse("a concatenated run of its input does not end on a group boundary")
		}
		f := 1
		switch {
		case bi%s.stride == 0:
			f = bi / s.stride
		case s.stride%bi != 0:
			return refuse(fmt.Sprintf("input channels strided by %d do not split into groups of %d", s.stride, bi))
		}
		root := a.find(s.sp)
		if g, seen := factor[root]; seen && g != f {
			return refuse("its input repeats channels at different strides")
		}
		factor[root] = f
	}
	for root, f := range factor {
		if why := a.canRestride(root, f); why != "" {
			return refuse(why)
		}
	}
	for root, f := range factor {
		a.restride(root, f)
	}
	m = a.maps[a.in(0)]
	var osegs []seg
	for _, s := range m.segs {
		// After re-striding every run has stride bi or a multiple of it.
		osegs = append(osegs, seg{sp: a.newSpace(s.n), n: s.n, stride: s.stride / bi * bo})
	}
	om := &cmap{dim: 1, segs: osegs}
	per := bo
	if transposed {
		// A transposed weight is [Cin, Cout/groups, k...]: a group's
		// weights are its block of input rows, and dim 1 keeps its size.
		a.addMembers(m, wname, 0, true)
		per = bi
	} else {
		a.addMembers(om, wname, 0, true)
	}
	addBias(om)
	for i, s := range m.segs {
		a.union(s.sp, om.segs[i].sp)
		a.addLayer(om.segs[i].sp, layer)
		r := &a.spaces[a.find(s.sp)]
		r.convs = append(r.convs, crec{a.nextSeq(), GroupedConv{Weight: wname, PerGroup: per}})
	}
	a.useParam(w, wname, 0)
	a.setMap(out, om)
	return ""
}
