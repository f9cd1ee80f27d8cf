package graph

import "fmt"

// Grouped convolutions (1 < groups). Output channel c of group j reads only
// the input channels of group j, so when the conv keeps the channel count
// (Cin == Cout) channel c in and channel c out can share one space, as a
// depthwise conv does. The conv can then lose whole groups only: the space
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
	case cin != cout:
		// Whole groups would drop Cin/groups channels on one side and
		// Cout/groups on the other: two spaces of different sizes.
		return fmt.Sprintf("%s %s (groups=%d, %d to %d channels) changes the channel count", kind, layer, groups, cin, cout)
	case m == nil || m.dim != 1 || m.extent() != cin:
		return fmt.Sprintf("%s %s (groups=%d) reads channels that are not followed on dim 1", kind, layer, groups)
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
