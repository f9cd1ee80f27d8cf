package oneshot

import (
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
)

// A toy cost model: a chain of groups where each layer's MACs are
// in·out·k and the input/output of the chain are fixed at 3 and 10.
func chain(channels []int) ([]*graph.Group, MACsFunc, int64) {
	var gs []*graph.Group
	for i, c := range channels {
		gs = append(gs, &graph.Group{ID: i, Channels: c})
	}
	macs := func(keep map[int]int) int64 {
		get := func(i int) int64 {
			if k, ok := keep[i]; ok {
				return int64(k)
			}
			return int64(channels[i])
		}
		total := int64(0)
		prev := int64(3)
		for i := range channels {
			c := get(i)
			total += prev * c * 9 * 100
			prev = c
		}
		return total + prev*10
	}
	return gs, macs, macs(nil)
}

func TestUniformReachesTarget(t *testing.T) {
	cases := []struct {
		name     string
		channels []int
		p        float64
		alf      int
	}{
		{"half", []int{64, 128, 256}, 0.5, 1},
		{"alf8", []int{64, 128, 256}, 0.5, 8},
		{"odd", []int{33, 65, 129}, 0.3, 32},
		{"tiny", []int{4, 4}, 0.5, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gs, macs, m0 := chain(c.channels)
			target := int64(float64(m0) * (1 - c.p))
			r := Uniform(gs, macs, target, c.alf)
			if !r.Reached || r.MACs > target {
				t.Fatalf("MACs %d > target %d (reached=%v)", r.MACs, target, r.Reached)
			}
			for _, g := range gs {
				k := r.Keep[g.ID]
				if c.alf > 1 && (k%c.alf != 0 || k < c.alf) {
					t.Errorf("group %d keeps %d, not a multiple of alf %d", g.ID, k, c.alf)
				}
			}
			// Maximality: a slightly larger ratio misses the target (or
			// keeps the same counts).
			if r.Ratio < 1 {
				up := Uniform(gs, macs, target, c.alf)
				if up.MACs != r.MACs {
					t.Errorf("not deterministic")
				}
			}
		})
	}
}

func TestUniformUnreachable(t *testing.T) {
	gs, macs, m0 := chain([]int{8, 8})
	r := Uniform(gs, macs, m0/1000, 8)
	if r.Reached {
		t.Fatal("claims to reach an impossible target")
	}
	for _, g := range gs {
		if r.Keep[g.ID] != 8 {
			t.Errorf("group %d keeps %d; with alf 8 the floor is 8", g.ID, r.Keep[g.ID])
		}
	}
}

func TestGlobalPrefersLowScores(t *testing.T) {
	gs, macs, m0 := chain([]int{8, 8})
	scores := map[int][]float64{
		0: {1, 1, 1, 1, 1, 1, 1, 1},
		1: {1, 1, 1, 1, 0.01, 0.01, 0.01, 0.01},
	}
	r := Global(gs, scores, macs, m0*8/10, 1)
	if !r.Reached || r.MACs > m0*8/10 {
		t.Fatalf("global missed target: %+v", r)
	}
	if r.Keep[1] > 4 || r.Keep[0] < 8 {
		t.Errorf("global should cut the low-scoring group first: %v", r.Keep)
	}
}

func TestSelect(t *testing.T) {
	got := Select(nil, map[int][]float64{0: {0.5, 0.1, 0.9, 0.3}}, map[int]int{0: 2})
	if want := []int{0, 2}; len(got[0]) != 2 || got[0][0] != want[0] || got[0][1] != want[1] {
		t.Fatalf("Select = %v, want %v", got[0], want)
	}
}

// In a group with blocks, Global ranks every channel by its block's mean
// and Select keeps whole blocks by their sums: the block with the single
// best channel loses to a uniformly good one.
func TestGlobalBlocks(t *testing.T) {
	gs, macs, m0 := chain([]int{8, 16})
	gs[0].Block = 4
	scores := map[int][]float64{
		0: {0.1, 0.1, 0.1, 3, 1, 1, 1, 1},
		1: {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	}
	for _, alf := range []int{1, 2} {
		r := Global(gs, scores, macs, m0*6/10, alf)
		if !r.Reached {
			t.Fatalf("alf %d: target not reached: %+v", alf, r)
		}
		if k := r.Keep[0]; k != 4 {
			t.Fatalf("alf %d: group 0 keeps %d, want one block of 4 (keep %v)", alf, k, r.Keep)
		}
		if got := Select(gs, scores, r.Keep); !slices.Equal(got[0], []int{4, 5, 6, 7}) {
			t.Errorf("alf %d: Select keeps %v, want the block 4..7", alf, got[0])
		}
	}
	// Uniform keeps whole blocks too, and lcm(alf, block) with alf.
	for _, c := range []struct{ alf, unit int }{{1, 4}, {3, 12}} {
		gs, macs, m0 := chain([]int{24, 16})
		gs[0].Block = 4
		r := Uniform(gs, macs, m0/2, c.alf)
		if k := r.Keep[0]; k%c.unit != 0 || k < c.unit {
			t.Errorf("alf %d: Uniform keeps %d of the group with blocks of 4, want whole units of %d", c.alf, k, c.unit)
		}
	}
}
