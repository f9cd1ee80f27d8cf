package graph

import (
	"slices"
	"testing"
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
