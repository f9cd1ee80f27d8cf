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

// blocksFit reports whether every run of m is a plain (stride 1) run of
// whole blocks of per channels, so that conv group boundaries fall on run
// boundaries or inside runs at multiples of per from the run's start.
func blocksFit(m *cmap, per int64) bool {
	for _, s := range m.segs {
		if s.stride != 1 || int64(s.n)%per != 0 {
			return false
		}
	}
	return true
}

// groupedConv ties the input and output channels of a conv with groups > 1
// and Cin == Cout whose input map m fits whole blocks of per channels: its
// weight's dim 0 and its bias become members of m's spaces, which get the
// block and record the conv so its groups argument follows them.
func (a *analyzer) groupedConv(m *cmap, w int, wname, layer string, per int64, addBias func(*cmap)) {
	a.addMembers(m, wname, 0, true)
	for _, s := range m.segs {
		a.addLayer(s.sp, layer)
		r := &a.spaces[a.find(s.sp)]
		r.convs = append(r.convs, crec{a.nextSeq(), GroupedConv{Weight: wname, PerGroup: int(per)}})
		if per > 1 {
			r.block = lcm(r.block, int(per))
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
	case groups == cin:
		return fmt.Sprintf("depthwise conv %s on strided channels", layer)
	default:
		return fmt.Sprintf("%s %s (groups=%d) on strided channels or concatenated ones that do not split into whole groups", kind, layer, groups)
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
