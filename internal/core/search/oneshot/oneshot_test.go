package oneshot

import (
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
