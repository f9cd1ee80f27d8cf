package lut

import (
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestPlanRealIR plans the table of every exported fixture IR and checks
// every grid point's standalone op: its channels agree with its weight and
// groups (what at::convolution and at::linear demand), the full-width op
// is the traced one, and a depthwise conv has one axis and keeps one
// channel per group.
func TestPlanRealIR(t *testing.T) {
	fixtures.EachIR(t, func(t *testing.T, name string, g *ir.Graph) {
		a, err := graph.Analyze(g)
		if err != nil {
			t.Fatal(err)
		}
		var groups []Group
		for _, grp := range a.Prunable() {
			groups = append(groups, Group{ID: grp.ID, Channels: grp.Channels, Unit: grp.Unit()})
		}
		m := Model{Graph: g, Analysis: a, Batch: 2}
		layers, untabled, err := Plan(m, groups, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d layers tabled, %d untabled %v", len(layers), len(untabled), untabled)
		if len(groups) > 0 && len(layers) == 0 {
			t.Fatalf("%d prunable groups but no tabled layer", len(groups))
		}
		for _, l := range layers {
			op := g.Ops[l.Op]
			full, err := m.Spec(l.Op, nil)
			if err != nil {
				t.Fatal(err)
			}
			x := g.Value(op.Inputs[0]).Shape
			if len(x) != len(full.X) || full.X[0] != 2 || (len(x) > 1 && full.X[1] != x[1]) {
				t.Errorf("%s: full-width input %v, traced %v (batch 2)", l.Name, full.X, x)
			}
			for i := range l.Points() {
				s, err := m.Spec(l.Op, l.Keep(i))
				if err != nil {
					t.Fatalf("%s point %d: %v", l.Name, i, err)
				}
				checkSpec(t, l, s)
			}
		}
		if len(groups) > 0 {
			small := map[int]int{}
			for _, g := range groups {
				small[g.ID] = Reachable(g.Channels, g.Unit)[0]
			}
			if a, b := m.Activations(small), m.Activations(nil); !(a > 0 && a < b) {
				t.Errorf("activations %v at the smallest counts, %v at full width", a, b)
			}
		}
		if strings.HasPrefix(name, "depthwise") {
			found := false
			for _, l := range layers {
				s, _ := m.Spec(l.Op, nil)
				if !s.Linear && s.Groups > 1 && s.Groups == s.X[1] {
					found = true
					if len(l.Axes) != 1 {
						t.Errorf("depthwise %s has %d axes, want 1", l.Name, len(l.Axes))
					}
				}
			}
			if !found {
				t.Error("no depthwise conv tabled")
			}
		}
	})
}

func checkSpec(t *testing.T, l Layer, s Spec) {
	t.Helper()
	if s.Linear {
		if s.X[len(s.X)-1] != s.W[1] {
			t.Errorf("%s: linear input %v, weight %v", l.Name, s.X, s.W)
		}
		return
	}
	cin, cout := s.W[1]*s.Groups, s.W[0]
	if s.Transposed {
		cin, cout = s.W[0], s.W[1]*s.Groups
	}
	if s.X[1] != cin || cout%s.Groups != 0 || len(s.Stride) != len(s.X)-2 || len(s.Padding) != len(s.X)-2 {
		t.Errorf("%s: conv %v", l.Name, s)
	}
}
