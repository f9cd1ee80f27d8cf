// Package oneshot decides how many channels each group keeps to reach a MACs
// target in one shot (the L2Norm algorithm), and which ones, from per-channel
// scores. It is pure Go: the MACs of a keep vector come from a function the
// caller supplies (flops.Count under the analysis).
package oneshot

import (
	"cmp"
	"math"
	"slices"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/plan"
)

// MACsFunc returns the model's MACs when each group keeps keep[id] channels
// (absent groups keep all).
type MACsFunc func(keep map[int]int) int64

// Result is a keep vector and whether it meets the target.
type Result struct {
	Keep    map[int]int
	MACs    int64
	Reached bool
	Ratio   float64 // uniform keep ratio, or the fraction of channels kept (global)
}

// Uniform finds the largest keep ratio r such that every group keeping
// KeepCount(channels, r, unit) channels gives MACs ≤ target, unit being alf
// combined with the group's block (plan.Unit). MACs only grow
// with r, so bisection works. If even the smallest counts miss the target,
// the result keeps the fewest channels allowed and Reached is false.
func Uniform(groups []*graph.Group, macs MACsFunc, target int64, alf int) Result {
	at := func(r float64) map[int]int {
		keep := make(map[int]int, len(groups))
		for _, g := range groups {
			keep[g.ID] = plan.KeepCount(g.Channels, r, plan.Unit(alf, g.Block))
		}
		return keep
	}
	if m := macs(at(1)); m <= target {
		return Result{Keep: at(1), MACs: m, Reached: true, Ratio: 1}
	}
	lo, hi := 0.0, 1.0 // macs(at(lo)) is the floor, macs(at(hi)) > target
	if m := macs(at(lo)); m > target {
		return Result{Keep: at(lo), MACs: m, Reached: false, Ratio: 0}
	}
	// Channel counts are integers, so 40 halvings pin r far below the
	// resolution of any real group.
	for i := 0; i < 40; i++ {
		mid := (lo + hi) / 2
		if macs(at(mid)) <= target {
			lo = mid
		} else {
			hi = mid
		}
	}
	keep := at(lo)
	return Result{Keep: keep, MACs: macs(keep), Reached: true, Ratio: lo}
}

// Global ranks channels across groups by score normalised within each group
// (score / the group's mean score, so layers of different scale compare) and
// finds the largest threshold quantile that meets the target: each group
// keeps its channels above the threshold, rounded by alf, at least alf. In
// a group with blocks every channel ranks with its block's mean, so whole
// blocks cross the threshold together; the count is then rounded to whole
// blocks and alf (plan.Unit).
func Global(groups []*graph.Group, scores map[int][]float64, macs MACsFunc, target int64, alf int) Result {
	norm := make(map[int][]float64, len(groups))
	var all []float64
	for _, g := range groups {
		s := scores[g.ID]
		mean := 0.0
		for _, v := range s {
			mean += v
		}
		if len(s) > 0 {
			mean /= float64(len(s))
		}
		n := make([]float64, len(s))
		for i, v := range s {
			if mean > 0 {
				n[i] = v / mean
			}
		}
		if b := g.Unit(); b > 1 && len(n)%b == 0 {
			for j := 0; j < len(n); j += b {
				bm := 0.0
				for _, v := range n[j : j+b] {
					bm += v
				}
				bm /= float64(b)
				for i := j; i < j+b; i++ {
					n[i] = bm
				}
			}
		}
		norm[g.ID] = n
		all = append(all, n...)
	}
	slices.Sort(all)
	at := func(q float64) map[int]int {
		// q is the fraction of all channels removed; thr the score below
		// which channels go.
		thr := math.Inf(-1)
		if k := int(q * float64(len(all))); k > 0 && k <= len(all) {
			thr = all[k-1]
		}
		keep := make(map[int]int, len(groups))
		for _, g := range groups {
			c := 0
			for _, v := range norm[g.ID] {
				if v > thr {
					c++
				}
			}
			if c < 1 {
				c = 1
			}
			keep[g.ID] = plan.RoundAlfWithin(c, g.Channels, plan.Unit(alf, g.Block))
		}
		return keep
	}
	if m := macs(at(0)); m <= target {
		return Result{Keep: at(0), MACs: m, Reached: true, Ratio: 1}
	}
	if m := macs(at(1)); m > target {
		return Result{Keep: at(1), MACs: m, Reached: false, Ratio: 0}
	}
	lo, hi := 0.0, 1.0 // macs(at(hi)) <= target
	for i := 0; i < 40; i++ {
		mid := (lo + hi) / 2
		if macs(at(mid)) <= target {
			hi = mid
		} else {
			lo = mid
		}
	}
	keep := at(hi)
	kept, total := 0, 0
	for _, g := range groups {
		kept += keep[g.ID]
		total += g.Channels
	}
	return Result{Keep: keep, MACs: macs(keep), Reached: true, Ratio: float64(kept) / float64(max(total, 1))}
}

// Select keeps, in every group, the keep[id] channels with the highest
// scores (ascending indices), in whole blocks for the groups of groups that
// have them. Groups absent from keep are not listed.
func Select(groups []*graph.Group, scores map[int][]float64, keep map[int]int) map[int][]int {
	block := make(map[int]int, len(groups))
	for _, g := range groups {
		block[g.ID] = g.Unit()
	}
	out := make(map[int][]int, len(keep))
	ids := make([]int, 0, len(keep))
	for id := range keep {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, cmp.Compare)
	for _, id := range ids {
		out[id] = plan.TopKBlocks(scores[id], keep[id], block[id])
	}
	return out
}
