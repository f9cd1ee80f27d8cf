package graph

import "fmt"

// GroupNorm normalizes each group of C/G consecutive channels (C on dim 1,
// num_groups G) with that group's own mean and variance. A pruned model is
// equivalent to the original with the removed channels zeroed only when
// whole groups go: a zeroed group normalizes to 0 and its zeroed weight
// and bias keep it there, while the other groups' statistics are
// untouched; removing part of a group would change its statistics. So the
// norm's channels get a block of C/G channels, like a grouped conv's, and
// the norm is recorded (by its weight) with the conv groups so that its
// num_groups becomes the kept channels over C/G.

// groupNorm follows a GroupNorm in whole groups where it can (groupNormBlocks)
// and freezes its channels otherwise, saying why.
func (a *analyzer) groupNorm() {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	g, known := a.constInt(a.in(1))
	reason := a.groupNormBlocks(m, g, known)
	if reason == "" {
		a.passMap(x, a.out(0))
		return
	}
	a.freezeMap(m, reason)
	if m.dim == 1 {
		a.perChannel(m, a.in(2), a.in(3))
	}
	a.passMap(x, a.out(0))
}

// groupNormBlocks ties the norm's weight and bias to m's channels in blocks
// of C/G and records the norm for its num_groups, or returns why it cannot.
func (a *analyzer) groupNormBlocks(m *cmap, groups int64, known bool) string {
	desc := a.desc()
	c := m.extent()
	switch {
	case m.dim != 1:
		return fmt.Sprintf("%s: channels are not on dim 1", desc)
	case !known:
		return fmt.Sprintf("%s: num_groups is not a constant; pruning would change the channels per group", desc)
	case groups == 1:
		return fmt.Sprintf("%s normalizes all the channels as one group: removing some would change its mean and variance", desc)
	case groups < 1 || c%groups != 0:
		return fmt.Sprintf("%s: %d channels do not split into %d groups", desc, c, groups)
	}
	per := c / groups
	if per == 1 {
		// Its num_groups could follow the channel count, but a one-per-group
		// entry reads as a depthwise conv to graph --json and plan readers.
		return fmt.Sprintf("%s has one channel per group: block pruning of norms needs at least two", desc)
	}
	if !blocksFit(m, per) {
		return fmt.Sprintf("%s normalizes groups of channels that are strided or concatenated across group boundaries", desc)
	}
	w := a.in(2)
	wname := a.param(w)
	if a.isNone(w) || wname == "" {
		// Surgery finds the norm whose num_groups it rewrites by its
		// weight's name.
		return fmt.Sprintf("%s without affine weight: pruning needs its num_groups rewritten, which surgery does by the weight's name", desc)
	}
	if !a.perChannel(m, w, a.in(3)) {
		return fmt.Sprintf("%s: weight or bias is not a per-channel parameter", desc)
	}
	for _, s := range m.segs {
		r := &a.spaces[a.find(s.sp)]
		r.convs = append(r.convs, crec{a.nextSeq(), GroupedConv{Weight: wname, PerGroup: int(per)}})
		r.block = lcm(r.block, int(per))
	}
	return ""
}
