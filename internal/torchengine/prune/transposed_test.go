//go:build cgo

package prune

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
)

// transposedModels are decoders whose transposed convs produce prunable
// channels ([Cin, Cout/groups, k...] weights: the filters lie along dim 1),
// one of them followed by a grouped transposed conv, and a 1-D one.
const transposedModels = `
import sys, torch, torch.nn as nn

class Dec2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 24, 4, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(24)
        self.mix = nn.ConvTranspose2d(24, 16, 3, padding=1)
        self.grouped = nn.ConvTranspose2d(16, 16, 1, groups=2)
        self.head = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.bn(self.up(y)))
        y = torch.relu(self.grouped(torch.relu(self.mix(y))))
        return self.fc(self.head(y).mean([2, 3]))

class Dec1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 16, 3, padding=1)
        self.up = nn.ConvTranspose1d(16, 24, 4, stride=2, padding=1)
        self.head = nn.Conv1d(24, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.up(torch.relu(self.conv1(x))))
        return self.fc(self.head(y).mean([2]))

torch.manual_seed(0)
for name, m, x in [("dec2d", Dec2d(), torch.randn(1, 3, 16, 16)), ("dec1d", Dec1d(), torch.randn(1, 3, 32))]:
    m.bn.running_var.uniform_(0.5, 2.0) if hasattr(m, "bn") else None
    m.eval()
    torch.jit.script(m).save(f"{sys.argv[1]}/{name}_scripted.pt")
    with torch.no_grad():
        torch.jit.trace(m, x).save(f"{sys.argv[1]}/{name}_traced.pt")
`

// TestTransposedConvCriteria: L2Norm and TaylorFOWeight score a transposed
// conv's channels along its weight's dim 1: a channel whose filter (and
// bias) is zero scores exactly 0 and the others do not; and an L2Norm prune
// at P=0.5 is equivalent to zeroing the removed channels.
func TestTransposedConvCriteria(t *testing.T) {
	dir := pyModels(t, transposedModels)
	shapes := map[string][]int64{"dec2d": {1, 3, 16, 16}, "dec1d": {1, 3, 32}}
	for _, name := range []string{"dec2d_scripted", "dec2d_traced", "dec1d_scripted", "dec1d_traced"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".pt")
			shape := shapes[name[:5]]
			am, err := model.Open(path, shape, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer am.Close()
			g := groupWith(am.Analysis, "up.weight:1")
			if g == nil || !g.Prunable() || g.Channels != 24 {
				t.Fatalf("the transposed conv's output channels are not a prunable group of 24: %+v", g)
			}
			if name[:5] == "dec2d" {
				// A grouped transposed conv loses whole conv groups: its
				// input rows (weight dim 0) go in blocks, its groups drops.
				gg := groupWith(am.Analysis, "grouped.weight:0")
				if gg == nil || !gg.Prunable() || !slices.ContainsFunc(gg.GroupedConvs, func(c graph.GroupedConv) bool { return c.Weight == "grouped.weight" }) {
					t.Errorf("the grouped transposed conv is not pruned by whole groups: %+v", gg)
				}
			}
			const dead = 5
			zeroChannel(t, am.Module, "up.weight", 1, dead)
			zeroChannel(t, am.Module, "up.bias", 0, dead)

			l2, err := criteria.L2(am.Module, []*graph.Group{g})
			if err != nil {
				t.Fatal(err)
			}
			checkDead(t, "L2", l2[g.ID], g.Channels, dead)

			scoring, err := am.Module.Clone()
			if err != nil {
				t.Fatal(err)
			}
			defer scoring.Close()
			if err := scoring.Train(true); err != nil {
				t.Fatal(err)
			}
			batch := append([]int64{4}, shape[1:]...)
			var held []*torch.Tensor
			defer func() {
				for _, h := range held {
					h.Close()
				}
			}()
			n := 0
			taylor, err := criteria.Taylor(scoring, []*graph.Group{g}, func() (criteria.Batch, bool, error) {
				if n == 2 {
					return criteria.Batch{}, false, nil
				}
				n++
				x, err := torch.Randn(batch, torch.CPU)
				if err != nil {
					return criteria.Batch{}, false, err
				}
				y, err := torch.FromInt64([]int64{0, 3, 7, 9}, []int64{4}, torch.CPU)
				if err != nil {
					x.Close()
					return criteria.Batch{}, false, err
				}
				held = append(held, x, y)
				return criteria.Batch{X: x, Y: y}, true, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			checkDead(t, "Taylor", taylor[g.ID], g.Channels, dead)
		})
	}
	for _, name := range []string{"dec2d_scripted", "dec2d_traced", "dec1d_scripted", "dec1d_traced"} {
		t.Run(name+"/equivalence", func(t *testing.T) {
			checkEquivalence(t, filepath.Join(dir, name+".pt"), shapes[name[:5]], 0.5, false)
		})
	}
}

// zeroChannel sets index c of dim d of a tensor to zero.
func zeroChannel(t *testing.T, m *torch.Module, name string, d, c int) {
	t.Helper()
	w, err := m.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	shape, err := w.Shape()
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	inner := 1
	for _, s := range shape[d+1:] {
		inner *= int(s)
	}
	for i := range v {
		if (i/inner)%int(shape[d]) == c {
			v[i] = 0
		}
	}
	z, err := torch.FromFloat32(v, shape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if err := m.Set(name, z); err != nil {
		t.Fatal(err)
	}
}

func checkDead(t *testing.T, what string, s []float64, channels, dead int) {
	t.Helper()
	if len(s) != channels {
		t.Fatalf("%s: %d scores for %d channels", what, len(s), channels)
	}
	for c, v := range s {
		if (v == 0) != (c == dead) {
			t.Errorf("%s: channel %d scores %g; only channel %d has a zero filter", what, c, v, dead)
		}
	}
}
