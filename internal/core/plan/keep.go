package plan

import (
	"cmp"
	"slices"
)

// RoundAlf rounds a channel count down to a multiple of alf, never below
// alf (33 → 32 and 65 → 64 with alf 32 and 64). A group smaller than alf
// keeps what it has. alf ≤ 1 leaves n as it is.
func RoundAlf(n, alf int) int { return RoundAlfWithin(n, n, alf) }

// RoundAlfWithin rounds k down to a multiple of alf, but not below alf,
// and never above the group's n channels.
func RoundAlfWithin(k, n, alf int) int {
	if alf > 1 {
		k = k / alf * alf
		if k < alf {
			k = alf
		}
	}
	return min(k, n)
}

// KeepCount is how many of n channels a uniform keep ratio leaves, rounded
// by alf, and at least one.
func KeepCount(n int, ratio float64, alf int) int {
	k := int(float64(n)*ratio + 1e-9)
	if k < 1 {
		k = 1
	}
	if k > n {
		k = n
	}
	return RoundAlfWithin(k, n, alf)
}

// TopK returns the indices of the k highest scores, ascending. Ties keep the
// lower index, so plans are deterministic.
func TopK(scores []float64, k int) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	if k > len(idx) {
		k = len(idx)
	}
	out := slices.Clone(idx[:k])
	slices.Sort(out)
	return out
}

// All is 0..n-1.
func All(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
