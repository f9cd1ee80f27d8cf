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

// Unit is the step of a group's keep count: a multiple of both alf and the
// group's block (the channels per group of a grouped conv it feeds), so the
// least common multiple of the two. Rounding by it (RoundAlfWithin,
// KeepCount) keeps whole blocks and at least one of them.
func Unit(alf, block int) int {
	a, b := max(alf, 1), max(block, 1)
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// TopKBlocks is TopK over whole blocks of block consecutive scores: it
// keeps the k/block blocks (at least one) whose scores sum highest, ties to
// the lower block, and returns their channel indices ascending. A block of
// 0 or 1 is TopK; scores that do not split into whole blocks keep all.
func TopKBlocks(scores []float64, k, block int) []int {
	if block <= 1 {
		return TopK(scores, k)
	}
	if len(scores)%block != 0 {
		return All(len(scores))
	}
	sums := make([]float64, len(scores)/block)
	for i, s := range scores {
		sums[i/block] += s
	}
	var out []int
	for _, j := range TopK(sums, max(k/block, 1)) {
		for c := j * block; c < (j+1)*block; c++ {
			out = append(out, c)
		}
	}
	return out
}
