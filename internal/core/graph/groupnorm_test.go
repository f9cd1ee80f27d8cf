package graph

import (
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// TestGroupNormReasons: a GroupNorm freezes the channels it normalizes and
// says which of its cases it is; its weight and bias stay members, and the
// channels on either side of the layers around it are unaffected.
func TestGroupNormReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups func(b *irtest.Builder) int
		want   string
	}{
		{"blocks", func(b *irtest.Builder) int { return b.Int(2) }, "only whole groups could go"},
		{"one group", func(b *irtest.Builder) int { return b.Int(1) }, "all the channels as one group"},
		{"one channel per group", func(b *irtest.Builder) int { return b.Int(8) }, "one channel per group"},
		{"computed num_groups", func(b *irtest.Builder) int {
			return b.OpValues("aten::size", "", []int{b.Input(2, 3), b.Int(0)}, ir.Value{Kind: ir.KindInt})[0]
		}, "num_groups is not a constant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := irtest.New()
			x := b.Input(1, 3, 16)
			w := b.Param("a.weight", 8, 3, 1)
			y := b.Op1("aten::conv1d", "a", []int{x, w, b.None(), b.IntList(1), b.IntList(0), b.IntList(1), b.Int(1)}, []int64{1, 8, 16})
			y = b.Op1("aten::group_norm", "gn", []int{y, tc.groups(b), b.Param("gn.weight", 8), b.Param("gn.bias", 8),
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
			if grp.Prunable() || !strings.Contains(grp.Reason, "aten::group_norm in gn") || !strings.Contains(grp.Reason, tc.want) {
				t.Errorf("group %+v: want frozen by aten::group_norm in gn, %q", grp, tc.want)
			}
			var members []string
			for _, m := range grp.Members {
				members = append(members, m.String())
			}
			for _, want := range []string{"gn.weight:0", "gn.bias:0", "c.weight:1"} {
				if !strings.Contains(strings.Join(members, " "), want) {
					t.Errorf("members %v lack %s", members, want)
				}
			}
		})
	}
}
