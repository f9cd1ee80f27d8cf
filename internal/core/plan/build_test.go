package plan

import (
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
)

// TestBuildSplitGroup: a GhostNet block adds cat(p, depthwise(p)) to the
// output of conv d, so d's rows 0..3 and 4..7 are both group p's channels.
// The plan keeps the same rows in both halves and lists each member once.
func TestBuildSplitGroup(t *testing.T) {
	b := irtest.New()
	x := b.Input(1, 3, 8, 8)
	d := b.Conv(x, "d", 8, 1, irtest.ConvOpts{})
	p := b.Conv(d, "p", 4, 1, irtest.ConvOpts{})
	c := b.Cat(1, p, b.Conv(p, "q", 4, 3, irtest.ConvOpts{Pad: 1, Groups: 4}))
	b.Output(b.Conv(b.Add(c, d), "e", 2, 1, irtest.ConvOpts{}))
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	a, err := graph.Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	gid := -1
	for _, grp := range a.Groups {
		if grp.Prunable() && slices.ContainsFunc(grp.Members, func(m graph.Member) bool { return m.Tensor == "d.weight" }) {
			gid = grp.ID
		}
	}
	if gid < 0 {
		t.Fatalf("no prunable group holds d.weight: %+v", a.Groups)
	}
	params := map[string][]int64{"d.weight": {8, 3, 1, 1}, "p.weight": {4, 8, 1, 1}, "q.weight": {4, 1, 3, 3}, "e.weight": {2, 8, 1, 1}}
	pl, err := Build(a, params, map[int][]int{gid: {1, 3}}, []int64{1, 3, 8, 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Groups) != 1 {
		t.Fatalf("groups %+v, want 1", pl.Groups)
	}
	ms := pl.Groups[0].Members
	for i, m := range ms {
		if slices.Contains(ms[:i], m) {
			t.Errorf("member %s listed twice: %v", m, ms)
		}
	}
	for _, want := range []string{"d.weight:0", "p.weight:0", "p.weight:1", "q.weight:0", "e.weight:1"} {
		if !slices.Contains(ms, want) {
			t.Errorf("members %v lack %s", ms, want)
		}
	}
	wantKept := map[string]map[string][]int{
		"d.weight": {"0": {1, 3, 5, 7}},
		"p.weight": {"0": {1, 3}, "1": {1, 3, 5, 7}},
		"q.weight": {"0": {1, 3}},
		"e.weight": {"1": {1, 3, 5, 7}},
	}
	for name, dims := range wantKept {
		tn, ok := pl.Tensors[name]
		if !ok {
			t.Errorf("plan lacks tensor %s", name)
			continue
		}
		for d, idx := range dims {
			if !slices.Equal(tn.Kept[d], idx) {
				t.Errorf("%s dim %s keeps %v, want %v", name, d, tn.Kept[d], idx)
			}
		}
	}
}
