package graph

import "fmt"

// groupNormReason says why a GroupNorm over the followed channels (C on
// dim 1, num_groups G) freezes them. Its mean and variance run over each
// group of C/G consecutive channels, so a pruned model is equivalent to
// the original with the removed channels zeroed only when whole groups go
// (then num_groups must drop to the groups kept), never when some channels
// of a group go: the group's statistics would be over fewer channels.
// Neither whole-group (block) pruning of a norm nor the rewrite of its
// num_groups argument is built, so every case freezes; the reason says
// which one it is.
func groupNormReason(desc string, groups, channels int64, known bool) string {
	switch {
	case !known:
		return fmt.Sprintf("%s: num_groups is not a constant; pruning would change the channels per group", desc)
	case groups == 1:
		return fmt.Sprintf("%s normalizes all the channels as one group: removing some would change its mean and variance", desc)
	case groups == channels:
		return fmt.Sprintf("%s has one channel per group: pruning needs its num_groups lowered to the channels kept, which surgery does not do", desc)
	default:
		return fmt.Sprintf("%s: pruning would change the channels per group; only whole groups could go, and block pruning of norms is not built", desc)
	}
}
