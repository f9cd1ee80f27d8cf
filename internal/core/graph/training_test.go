package graph

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/ir"
)

func TestUnreadParams(t *testing.T) {
	g := &ir.Graph{
		Values: []ir.Value{{ID: 1, Param: "conv.weight"}, {ID: 2, Param: "bn.running_mean"}},
		Params: map[string]ir.Param{
			"conv.weight":        {Shape: []int64{8, 3, 3, 3}},
			"bn.running_mean":    {Shape: []int64{8}, Buffer: true},
			"aux.fc.weight":      {Shape: []int64{10, 8}},
			"aux.conv.weight":    {Shape: []int64{4, 8, 1, 1}},
			"bn.num_batches":     {Shape: []int64{}, Buffer: true}, // unread buffers do not count
			"dead.linear.weight": {Shape: []int64{2, 2}},
		},
	}
	got := UnreadParams(g)
	want := []string{"aux.conv.weight", "aux.fc.weight", "dead.linear.weight"}
	if !slices.Equal(got, want) {
		t.Fatalf("UnreadParams = %v, want %v", got, want)
	}
}

func mem(tensor string, dim, offset int) Member {
	return Member{Tensor: tensor, Dim: dim, Offset: offset, Stride: 1}
}

// analysisOf builds an Analysis from groups alone, as WithTraining and the
// shape queries read it.
func analysisOf(shapes map[string][]int64, groups ...Group) *Analysis {
	a := &Analysis{g: &ir.Graph{Params: map[string]ir.Param{}}, pmembers: map[string][]pmember{}, pshape: map[string][]int64{}}
	for i, g := range groups {
		g.ID = i
		g.Exact = true
		a.Groups = append(a.Groups, g)
		for _, m := range g.Members {
			a.pmembers[m.Tensor] = append(a.pmembers[m.Tensor], pmember{i, m})
			a.pshape[m.Tensor] = shapes[m.Tensor]
		}
	}
	return a
}

func TestWithTraining(t *testing.T) {
	shapes := map[string][]int64{
		"conv1.weight": {8, 3, 3, 3}, "conv2.weight": {4, 8, 3, 3}, "conv3.weight": {6, 4, 1, 1},
		"aux.conv.weight": {5, 8, 1, 1}, "head.weight": {10, 12},
	}
	conv1 := mem("conv1.weight", 0, 0)
	conv2in := mem("conv2.weight", 1, 0)
	aux := mem("aux.conv.weight", 1, 0)
	evalGroups := func() *Analysis {
		return analysisOf(shapes,
			Group{Channels: 8, Members: []Member{conv1, conv2in}, Producers: []Member{conv1}},
			Group{Channels: 4, Members: []Member{mem("conv2.weight", 0, 0), mem("conv3.weight", 1, 0)},
				Producers: []Member{mem("conv2.weight", 0, 0)}})
	}
	cases := []struct {
		name  string
		train *Analysis
		// frozen: the reason's fragment for group 0, "" when it stays prunable.
		frozen string
		want   []Member // group 0's members afterwards, when prunable
	}{
		{"an auxiliary head's input slice joins the group",
			analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1, conv2in, aux}, Producers: []Member{conv1}}),
			"", []Member{conv1, conv2in, aux}},
		{"training reads none of its tensors",
			analysisOf(shapes, Group{Channels: 5, Members: []Member{mem("aux.conv.weight", 0, 0)}}),
			"", []Member{conv1, conv2in}},
		{"a frozen training group freezes it",
			analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1, conv2in, aux}, Producers: []Member{conv1},
				Frozen: true, Reason: "aten::view (op 3) splits or merges the channel dim with another dim"}),
			"in training mode: aten::view", nil},
		{"a training group over another eval group's channels",
			analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1, conv2in, mem("conv3.weight", 1, 0)},
				Producers: []Member{conv1}}),
			"ties its channels to group 1", nil},
		{"split over two training groups",
			analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1}, Producers: []Member{conv1}},
				Group{Channels: 8, Members: []Member{conv2in}}),
			"splits its channels", nil},
		{"a count written into a view only training runs",
			func() *Analysis {
				tr := analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1, conv2in, aux}, Producers: []Member{conv1}})
				tr.vmaps = map[int]valueMap{7: {dim: 1, segs: []rseg{{gid: 0, n: 8, stride: 16}}}}
				tr.SizedOps = []SizedOp{{Site: "aux.py:1-2", Entry: 1, Value: 7, Dim: 1}}
				return tr
			}(),
			"writes its count into a view", nil},
		{"another size",
			analysisOf(shapes, Group{Channels: 4, Members: []Member{conv1, conv2in}, Producers: []Member{conv1}}),
			"as 4 in blocks of 1", nil},
		{"its tensor indexed at other channels",
			analysisOf(shapes, Group{Channels: 8, Members: []Member{conv1, conv2in}, Producers: []Member{conv1}},
				Group{Channels: 4, Members: []Member{mem("conv1.weight", 0, 4)}, Producers: []Member{mem("conv1.weight", 0, 4)}}),
			"indexes its tensors at other channels", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := evalGroups()
			a.WithTraining(c.train)
			g := &a.Groups[0]
			if c.frozen != "" {
				if !g.Frozen || !strings.Contains(g.Reason, c.frozen) {
					t.Fatalf("group 0: frozen %v %q, want frozen with %q", g.Frozen, g.Reason, c.frozen)
				}
				return
			}
			if g.Frozen {
				t.Fatalf("group 0 frozen: %s", g.Reason)
			}
			if !slices.Equal(g.Members, c.want) {
				t.Fatalf("members %v, want %v", g.Members, c.want)
			}
			if a.Groups[1].Frozen {
				t.Fatalf("group 1 frozen: %s", a.Groups[1].Reason)
			}
			// Surgery cuts the folded-in slice with the group.
			keeps := a.TensorKeeps(map[int][]int{0: {0, 2, 5}})
			for _, m := range c.want {
				if got := keeps[m.Tensor][m.Dim]; !slices.Equal(got, []int{0, 2, 5}) {
					t.Errorf("%s: kept %v, want [0 2 5]", m, got)
				}
			}
			if s := a.ParamShape("aux.conv.weight", map[int]int{0: 3}); len(c.want) == 3 && !slices.Equal(s, []int64{5, 3, 1, 1}) {
				t.Errorf("aux.conv.weight shape under the cut %v, want [5 3 1 1]", s)
			}
		})
	}
}
