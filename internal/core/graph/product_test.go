package graph

import (
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
)

func TestEinsumSpec(t *testing.T) {
	l := func(s string) []int {
		out := []int{}
		for _, c := range s {
			out = append(out, int(c))
		}
		return out
	}
	cases := []struct {
		eq    string
		ranks []int
		ins   [][]int
		out   []int
		bad   bool
	}{
		{eq: "bchw,bc->bchw", ranks: []int{4, 2}, ins: [][]int{l("bchw"), l("bc")}, out: l("bchw")},
		{eq: "b c h w , b c -> b h w", ranks: []int{4, 2}, ins: [][]int{l("bchw"), l("bc")}, out: l("bhw")},
		// Implicit output: the letters used once, in alphabetical order
		// (capitals first, as torch orders them).
		{eq: "ij,jk", ranks: []int{2, 2}, ins: [][]int{l("ij"), l("jk")}, out: l("ik")},
		{eq: "ba,Ab", ranks: []int{2, 2}, ins: [][]int{l("ba"), l("Ab")}, out: l("Aa")},
		// Ellipses line up from the right; the output's stands for the
		// longest.
		{eq: "...ij,...jk->...ik", ranks: []int{4, 3}, ins: [][]int{{-2, -1, 'i', 'j'}, {-1, 'j', 'k'}},
			out: []int{-2, -1, 'i', 'k'}},
		{eq: "i...,i", ranks: []int{3, 1}, ins: [][]int{{'i', -2, -1}, l("i")}, out: []int{-2, -1}},
		{eq: "bchw,bc", ranks: []int{4, 3}, bad: true},                                         // rank
		{eq: "bchw->bchw", ranks: []int{4, 2}, bad: true},                                      // operand count
		{eq: "bc,bc->bz", ranks: []int{2, 2}, bad: true},                                       // unknown output label
		{eq: "bc,bc->bb", ranks: []int{2, 2}, bad: true},                                       // output label twice
		{eq: "b1,b1", ranks: []int{2, 2}, bad: true},                                           // not a letter
		{eq: "......,b", ranks: []int{2, 1}, bad: true},                                        // two ellipses
		{eq: "bc..,b", ranks: []int{2, 1}, bad: true},                                          // broken ellipsis
		{eq: "...bc->bc", ranks: []int{1}, bad: true},                                          // rank below the letters
		{eq: "bc,bc->...bc", ranks: []int{2, 2}, out: l("bc"), ins: [][]int{l("bc"), l("bc")}}, // empty ellipsis
	}
	for _, tc := range cases {
		spec, err := einsumSpec(tc.eq, tc.ranks)
		if tc.bad {
			if err == nil {
				t.Errorf("%q %v: no error, spec %+v", tc.eq, tc.ranks, spec)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %v: %v", tc.eq, tc.ranks, err)
			continue
		}
		if !slices.EqualFunc(spec.ins, tc.ins, slices.Equal) || !slices.Equal(spec.out, tc.out) {
			t.Errorf("%q %v: got %v -> %v, want %v -> %v", tc.eq, tc.ranks, spec.ins, spec.out, tc.ins, tc.out)
		}
	}
}

func TestMatmulSpec(t *testing.T) {
	cases := []struct {
		ra, rb int
		ins    [][]int
		out    []int
	}{
		{2, 2, [][]int{{'n', 'k'}, {'k', 'm'}}, []int{'n', 'm'}},
		{3, 3, [][]int{{-1, 'n', 'k'}, {-1, 'k', 'm'}}, []int{-1, 'n', 'm'}},
		{4, 2, [][]int{{-2, -1, 'n', 'k'}, {'k', 'm'}}, []int{-2, -1, 'n', 'm'}},
		{1, 3, [][]int{{'k'}, {-1, 'k', 'm'}}, []int{-1, 'm'}},
		{3, 1, [][]int{{-1, 'n', 'k'}, {'k'}}, []int{-1, 'n'}},
		{1, 1, [][]int{{'k'}, {'k'}}, nil},
	}
	for _, tc := range cases {
		spec, ok := matmulSpec(tc.ra, tc.rb)
		if !ok || !slices.EqualFunc(spec.ins, tc.ins, slices.Equal) || !slices.Equal(spec.out, tc.out) {
			t.Errorf("matmulSpec(%d, %d) = %v -> %v (%v), want %v -> %v", tc.ra, tc.rb, spec.ins, spec.out, ok, tc.ins, tc.out)
		}
	}
	if _, ok := matmulSpec(0, 2); ok {
		t.Error("matmulSpec(0, 2) accepted a scalar")
	}
}

// FuzzEinsumSpec: any equation either fails or labels every dim of every
// operand, and the output only with labels the operands have.
func FuzzEinsumSpec(f *testing.F) {
	f.Add("bchw,bc->bchw", uint8(4), uint8(2))
	f.Add("...ij,...jk", uint8(4), uint8(3))
	f.Add("i...,i->...", uint8(3), uint8(1))
	f.Fuzz(func(t *testing.T, eq string, r0, r1 uint8) {
		ranks := []int{int(r0 % 8), int(r1 % 8)}
		spec, err := einsumSpec(eq, ranks)
		if err != nil {
			return
		}
		have := map[int]bool{}
		for i, l := range spec.ins {
			if len(l) != ranks[i] {
				t.Fatalf("%q %v: operand %d labelled %v", eq, ranks, i, l)
			}
			for _, x := range l {
				have[x] = true
			}
		}
		for _, x := range spec.out {
			if !have[x] {
				t.Fatalf("%q %v: output label %d is no operand's", eq, ranks, x)
			}
			if twice(spec.out, x) {
				t.Fatalf("%q %v: output label %d twice", eq, ranks, x)
			}
		}
	})
}

// A non-local block's x.view(b, self.inter, -1): the sized reshape says
// which entry of which list surgery rewrites, and ValueShape gives its new
// value; without a site the view freezes its channels as before.
func TestSizedOps(t *testing.T) {
	for _, site := range []string{"nl.py:5-9", ""} {
		b := irtest.New()
		x := b.Input(1, 3, 4, 4)
		y := b.Relu(b.Conv(x, "g", 6, 1, irtest.ConvOpts{}))
		v := b.View(y, 1, 6, -1)
		if site != "" {
			b.Sited(v, site)
		}
		b.Output(b.Conv(b.View(v, 1, -1, 4, 4), "w", 2, 1, irtest.ConvOpts{}))
		g := mustBuild(t, b)
		a, err := Analyze(g)
		if err != nil {
			t.Fatal(err)
		}
		grp := groupWith(a, "g.weight:0")
		if site == "" {
			if grp.Prunable() || len(a.SizedOps) != 0 {
				t.Errorf("no site: prunable %v, sized %v", grp.Prunable(), a.SizedOps)
			}
			continue
		}
		if !grp.Prunable() || len(a.SizedOps) != 1 {
			t.Fatalf("site: prunable %v (%s), sized %v", grp.Prunable(), grp.Reason, a.SizedOps)
		}
		r := a.SizedOps[0]
		if r.Site != site || r.Entry != 1 || r.Dim != 1 || r.Value != v {
			t.Errorf("sized %+v, want entry 1 of %s, dim 1 of value %d", r, site, v)
		}
		if s := a.ValueShape(r.Value, map[int]int{grp.ID: 4}); !slices.Equal(s, []int64{1, 4, 16}) {
			t.Errorf("pruned shape %v, want [1 4 16]", s)
		}
		checkAnalysis(t, g, a)
	}
}
