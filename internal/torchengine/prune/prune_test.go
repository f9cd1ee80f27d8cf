//go:build cgo

package prune

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/search/cut"

	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/surgery"
	"github.com/gopruner/gopruner/torch"
)

// TestL2NormEquivalence is issue 3's acceptance on every fixture
// architecture, scripted and traced: prune to P=0.5 with L2Norm, then
//   - MACs ≤ 0.55 of the original by our own count,
//   - every pruned tensor equals the original index_selected by the plan,
//   - the original with the removed channels zeroed computes what the
//     pruned model computes (max relative error ≤ 1e-4),
//   - the plan survives a JSON round trip and `apply` of it,
//   - Python's torch.jit.load runs the saved file.
func TestL2NormEquivalence(t *testing.T) {
	names := fixtures.Names(append(append([]string{}, fixtures.Patterns...), fixtures.Architectures...))
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			checkEquivalence(t, path, meta.InputShape, 0.5, false)
		})
	}
}

// TestRegroupedEquivalence: a grouped transposed conv that changes the
// channel count (tconv_decoder's up2, 24 to 16 channels in 4 groups) loses
// whole conv groups, its input and output blocks together, and the pruned
// model's recount matches the plan's MACs.
func TestRegroupedEquivalence(t *testing.T) {
	for _, name := range fixtures.Names([]string{"tconv_decoder"}) {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			checkEquivalence(t, path, meta.InputShape, 0.5, false)
		})
	}
}

// TestDepthwiseSurgeryAfterForward: a conv's new groups count is an edit of
// the forward graph, which a module that has already run (its executor
// built) must reload to see; a fresh clone takes the edit as it is. The
// equivalence test covers the fresh clone, this one the module that ran.
func TestDepthwiseSurgeryAfterForward(t *testing.T) {
	for _, name := range fixtures.Names([]string{"depthwise", "grouped"}) {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			checkEquivalence(t, path, meta.InputShape, 0.5, true)
		})
	}
}

// checkEquivalence prunes the model at path to 1−p of its MACs and proves the
// result equivalent to the original with the removed channels zeroed. With
// ran, the clone that is pruned runs forward first.
func checkEquivalence(t *testing.T, path string, shape []int64, p float64, ran bool) {
	am, err := model.Open(path, shape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	groups := am.Base().Candidates(nil)
	if len(groups) == 0 {
		t.Fatal("no prunable group")
	}
	out := l2OneShot(t, am, groups, cut.OneShotOptions{P: p, Alf: 1})
	pl := out.Plan
	if ratio := float64(pl.MACsAfter) / float64(pl.MACsBefore); ratio > 1-p+0.05 {
		t.Fatalf("MACs %d -> %d (%.3f of the original), want ≤ %.2f", pl.MACsBefore, pl.MACsAfter, ratio, 1-p+0.05)
	}
	// plan.json round trip: what apply reads is what we computed.
	dir := t.TempDir()
	planPath := filepath.Join(dir, "plan.json")
	if err := pl.Write(planPath); err != nil {
		t.Fatal(err)
	}
	pl2, err := plan.Read(planPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl2.Validate(am.Params); err != nil {
		t.Fatal(err)
	}

	pruned, err := am.Module.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer pruned.Close()
	if ran {
		x, err := model.Example(shape, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		y, err := pruned.Forward(true, x)
		x.Close()
		if err != nil {
			t.Fatal(err)
		}
		y.Close()
	}
	if err := Apply(pruned, am.Analysis, pl2); err != nil {
		t.Fatal(err)
	}
	// The pruned model's own analysis counts what the plan promised.
	pam, err := model.Analyze(pruned, shape)
	if err != nil {
		t.Fatalf("re-analysing the pruned model: %v", err)
	}
	after, err := flops.Count(pam.Graph, pam.Analysis, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.MACs != pl.MACsAfter || after.Params != pl.ParamsAfter {
		t.Errorf("pruned model counts MACs %d params %d; plan said %d and %d", after.MACs, after.Params, pl.MACsAfter, pl.ParamsAfter)
	}

	// Every pruned tensor is the original index_selected by the plan.
	for name, tp := range pl.Tensors {
		orig, err := am.Module.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		cur := orig
		dims := make([]int, 0, len(tp.Kept))
		for d := range tp.KeptByDim() {
			dims = append(dims, d)
		}
		slices.Sort(dims)
		for _, d := range dims {
			idx := tp.KeptByDim()[d]
			i64 := make([]int64, len(idx))
			for i, v := range idx {
				i64[i] = int64(v)
			}
			next, err := cur.IndexSelect(d, i64)
			if err != nil {
				t.Fatal(err)
			}
			if cur != orig {
				cur.Close()
			}
			cur = next
		}
		got, err := pruned.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		diff, _, err := cur.MaxAbsDiff(got)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff != 0 {
			t.Errorf("%s differs from the original index_selected by the plan (max diff %g)", name, diff)
		}
		got.Close()
		if cur != orig {
			cur.Close()
		}
		orig.Close()
	}

	// Equivalence: zero the removed channels in a copy of the original.
	zeroed, err := surgery.Masked(am.Module, am.Analysis, out.Kept)
	if err != nil {
		t.Fatal(err)
	}
	defer zeroed.Close()
	x, err := torch.Randn(shape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	want, err := zeroed.Forward(true, x)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	got, err := pruned.Forward(true, x)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	diff, scale, err := got.MaxAbsDiff(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff > 1e-4*scale {
		t.Fatalf("pruned vs zeroed original: max diff %g, relative %g > 1e-4", diff, diff/scale)
	}
	// And pruning really changed the function (the zeroing is not a no-op).
	full, err := am.Module.Forward(true, x)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if d, _, _ := full.MaxAbsDiff(want); d == 0 {
		t.Error("zeroing the removed channels changed nothing: the test proves nothing")
	}

	saved := filepath.Join(dir, "pruned.pt")
	if err := pruned.Save(saved); err != nil {
		t.Fatal(err)
	}
	fixtures.PyLoad(t, saved, shape)
	t.Logf("MACs %d -> %d (%.3f), params %d -> %d, %d groups pruned, rel err %.2g",
		pl.MACsBefore, pl.MACsAfter, float64(pl.MACsAfter)/float64(pl.MACsBefore), pl.ParamsBefore, pl.ParamsAfter, len(pl.Groups), diff/scale)
}

func TestExcludedISKL(t *testing.T) {
	path, meta := fixtures.Model(t, "resnet18_scripted")
	am, err := model.Open(path, meta.InputShape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	ex, err := am.Base().Excluded([]string{"layer1.0.conv1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) == 0 {
		t.Fatal("layer1.0.conv1 excluded no group")
	}
	out := l2OneShot(t, am, am.Base().Candidates(ex), cut.OneShotOptions{P: 0.4, Alf: 8, ISKL: []string{"layer1.0.conv1"}})
	for name := range out.Plan.Tensors {
		if strings.HasPrefix(name, "layer1.0.conv1.") {
			t.Errorf("iskl layer tensor %s is in the plan", name)
		}
	}
	for name, tp := range out.Plan.Tensors {
		for ds, idx := range tp.Kept {
			if d, _ := strconv.Atoi(ds); d <= 1 && len(idx)%8 != 0 && int64(len(idx)) != tp.ShapeBefore[d] {
				// Linear in-features after flatten are multiples of alf times H·W.
				t.Errorf("%s dim %d keeps %d, not a multiple of alf 8", name, d, len(idx))
			}
		}
	}
	if _, err := am.Base().Excluded([]string{"layer9.conv"}); err == nil {
		t.Error("an iskl name matching nothing was accepted")
	} else if !strings.Contains(err.Error(), "layer9.conv") {
		t.Errorf("error does not name the layer: %v", err)
	}
}

// TestApplyToAnalysedModule prunes the very module the IR was exported from,
// as `gopruner apply` does: a depthwise groups edit must work after the
// export's traced run, and give the shapes the plan promises.
func TestApplyToAnalysedModule(t *testing.T) {
	for _, name := range fixtures.Names([]string{"depthwise", "grouped", "mobilenet_v2"}) {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			am, err := model.Open(path, meta.InputShape, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer am.Close()
			out := l2OneShot(t, am, am.Base().Candidates(nil), cut.OneShotOptions{P: 0.5, Alf: 1})
			if err := Apply(am.Module, am.Analysis, out.Plan); err != nil {
				t.Fatal(err)
			}
			got, err := model.Params(am.Module)
			if err != nil {
				t.Fatal(err)
			}
			if err := am.Base().CheckShapes(got, out.Kept); err != nil {
				t.Error(err)
			}
		})
	}
}

// l2OneShot is L2Norm's one-shot cut of am's groups: filter L2 scores, then
// the plan to opt's target.
func l2OneShot(t *testing.T, am *model.Analyzed, groups []*graph.Group, opt cut.OneShotOptions) *cut.Outcome {
	t.Helper()
	scores, err := criteria.L2(am.Module, groups)
	if err != nil {
		t.Fatal(err)
	}
	out, err := am.Base().OneShot(scores, opt)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
