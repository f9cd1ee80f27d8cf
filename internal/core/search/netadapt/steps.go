package netadapt

import (
	"math"
	"sort"

	"github.com/gopruner/gopruner/internal/core/plan"
)

// ResizeAlf is the resize_alf pass: every group in keep that is not excluded
// gets plan.RoundAlf of its count, by alf combined with the group's block
// where blocks has one (plan.Unit). It returns a new map.
func ResizeAlf(keep map[int]int, alf int, exclude map[int]bool, blocks map[int]int) map[int]int {
	out := make(map[int]int, len(keep))
	for id, n := range keep {
		if exclude[id] {
			out[id] = n
			continue
		}
		out[id] = plan.RoundAlf(n, plan.Unit(alf, blocks[id]))
	}
	return out
}

// eps absorbs float error in products such as 0.1·30 = 3.0000000000000004,
// whose ceiling would otherwise cut one channel too many.
const eps = 1e-9

// channelStep is kinds.StepChannels for one group: cut ceil(delta·current)
// channels (at least one), round the remaining count down to a multiple of
// alf and clamp it at alf. Rounding the remainder rather than the cut is what
// aligns a count that is not a multiple (33 → 32 with alf 32); for a multiple
// it equals rounding the cut up to a multiple of alf. ok is false when the
// group cannot lose a channel without going below alf.
func channelStep(current, alf int, delta float64) (keep int, ok bool) {
	if alf < 1 {
		alf = 1
	}
	cut := max(1, int(math.Ceil(delta*float64(current)-eps)))
	keep = current - cut
	if keep > 0 {
		keep = keep / alf * alf
	}
	keep = max(alf, keep)
	if keep >= current {
		return current, false
	}
	return keep, true
}

// macsStep is kinds.StepMACs for one group: the largest keep count k (a multiple
// of alf, alf <= k < current) whose model MACs are at most goal. When even k
// = alf stays above goal, the group cuts all it can (alf). macsAt(k) is the
// model's MACs with the group at k channels and must be non-decreasing in k.
func macsStep(current, alf int, goal int64, macsAt func(k int) int64) (keep int, ok bool) {
	if alf < 1 {
		alf = 1
	}
	n := (current - 1) / alf // valid keeps are alf·1 … alf·n
	if n < 1 {
		return current, false
	}
	// First j (0-based) whose keep (j+1)·alf overshoots the goal; the keeps
	// below it all reach it.
	j := sort.Search(n, func(i int) bool { return macsAt((i+1)*alf) > goal })
	if j == 0 {
		return alf, true
	}
	return j * alf, true
}
