package graph

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// TestGroupNorm: a GroupNorm prunes its channels in whole groups (a block
// of C/G, the norm listed for its num_groups) where it can, and otherwise
// freezes them saying which case it is; its weight and bias stay members.
func TestGroupNorm(t *testing.T) {
	param := func(name string) func(b *irtest.Builder) int {
		return func(b *irtest.Builder) int { return b.Param(name, 8) }
	}
	none := func(b *irtest.Builder) int { return b.None() }
	for _, tc := range []struct {
		name         string
		groups       func(b *irtest.Builder) int
		weight, bias func(b *irtest.Builder) int
		block        int    // 0: frozen
		want         string // reason, when frozen
	}{
		{"two groups", func(b *irtest.Builder) int { return b.Int(2) }, param("gn.weight"), param("gn.bias"), 4, ""},
		{"four groups", func(b *irtest.Builder) int { return b.Int(4) }, param("gn.weight"), param("gn.bias"), 2, ""},
		{"one group", func(b *irtest.Builder) int { return b.Int(1) }, param("gn.weight"), param("gn.bias"), 0, "all the channels as one group"},
		{"one channel per group", func(b *irtest.Builder) int { return b.Int(8) }, param("gn.weight"), param("gn.bias"), 0, "one channel per group"},
		{"not affine", func(b *irtest.Builder) int { return b.Int(2) }, none, none, 0, "without affine weight"},
		{"indivisible", func(b *irtest.Builder) int { return b.Int(3) }, param("gn.weight"), param("gn.bias"), 0, "do not split into 3 groups"},
		{"computed num_groups", func(b *irtest.Builder) int {
			return b.OpValues("aten::size", "", []int{b.Input(2, 3), b.Int(0)}, ir.Value{Kind: ir.KindInt})[0]
		}, param("gn.weight"), param("gn.bias"), 0, "num_groups is not a constant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := irtest.New()
			x := b.Input(1, 3, 16)
			w := b.Param("a.weight", 8, 3, 1)
			y := b.Op1("aten::conv1d", "a", []int{x, w, b.None(), b.IntList(1), b.IntList(0), b.IntList(1), b.Int(1)}, []int64{1, 8, 16})
			y = b.Op1("aten::group_norm", "gn", []int{y, tc.groups(b), tc.weight(b), tc.bias(b),
				b.Float(1e-5), b.Bool(true)}, []int64{1, 8, 16})
			y = b.Relu(y)
			w2 := b.Param("c.weight", 4, 8, 1)
			b.Output(b.Op1("aten::conv1d", "c", []int{y, w2, b.None(), b.IntList(1), b.IntList(0), b.IntList(1), b.Int(1)}, []int64{1, 4, 16}))
			g, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			a, err := Analyze(g)
			if err != nil {
				t.Fatal(err)
			}
			var grp *Group
			for i := range a.Groups {
				for _, m := range a.Groups[i].Members {
					if m.String() == "a.weight:0" {
						grp = &a.Groups[i]
					}
				}
			}
			if grp == nil {
				t.Fatal("no group for a.weight:0")
			}
			var members []string
			for _, m := range grp.Members {
				members = append(members, m.String())
			}
			want := []string{"a.weight:0", "gn.weight:0", "gn.bias:0", "c.weight:1"}
			if tc.name == "not affine" {
				want = []string{"a.weight:0", "c.weight:1"}
			}
			if !slices.Equal(members, want) {
				t.Errorf("members %v, want %v", members, want)
			}
			if tc.block == 0 {
				if grp.Prunable() || !strings.Contains(grp.Reason, "aten::group_norm in gn") || !strings.Contains(grp.Reason, tc.want) {
					t.Errorf("group %+v: want frozen by aten::group_norm in gn, %q", grp, tc.want)
				}
				return
			}
			wantConvs := []GroupedConv{{Weight: "gn.weight", PerGroup: tc.block}}
			if !grp.Prunable() || grp.Block != tc.block || !slices.Equal(grp.GroupedConvs, wantConvs) || len(grp.DepthwiseConvs) != 0 {
				t.Errorf("group %+v: want prunable in blocks of %d with %v", grp, tc.block, wantConvs)
			}
		})
	}
}
