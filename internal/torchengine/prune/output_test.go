//go:build cgo

package prune

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/surgery"
	"github.com/gopruner/gopruner/torch"
)

// outputModels writes small TorchScript models whose forward returns a
// NamedTuple (with a None field), a dict whose "out" is not its first entry,
// and nested tuples/dicts/lists, scripted and (where the tracer can) traced.
// A conv trunk c1 -> c2 -> c3 feeds every output, so c2's channels are
// prunable while each output's own channels must stay.
const outputModels = `
import sys, torch, torch.nn as nn
from typing import Dict, List, NamedTuple, Optional, Tuple

class Out(NamedTuple):
    logits: torch.Tensor
    feat: torch.Tensor
    extra: Optional[torch.Tensor]

class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Conv2d(32, 8, 1)
        self.fc = nn.Linear(32, 10)

    def trunk(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return y, torch.relu(self.c3(torch.relu(self.b2(self.c2(y)))))

class NT(Base):
    def forward(self, x) -> Out:
        y, z = self.trunk(x)
        return Out(self.fc(z.mean([2, 3])), self.head(z), None)

class D(Base):
    def forward(self, x) -> Dict[str, torch.Tensor]:
        y, z = self.trunk(x)
        return {"aux": self.head(z), "out": self.fc(z.mean([2, 3]))}

class Nested(Base):
    def forward(self, x) -> Tuple[Dict[str, torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        y, z = self.trunk(x)
        return {"logits": self.fc(z.mean([2, 3]))}, (self.head(z), [y, z])

torch.manual_seed(0)
x = torch.randn(1, 3, 12, 12)
for name, cls, trace in [("namedtuple", NT, False), ("dict", D, True), ("nested", Nested, True)]:
    m = cls()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    m.eval()
    torch.jit.script(m).save(f"{sys.argv[1]}/{name}_scripted.pt")
    if trace:
        with torch.no_grad():
            torch.jit.trace(m, x, strict=False).save(f"{sys.argv[1]}/{name}_traced.pt")
`

type outputCase struct {
	name      string
	structure string
	// prediction is the path of the tensor the default rule picks.
	prediction string
	// frozen are producer members whose channels are model outputs.
	frozen []string
}

var outputCases = []outputCase{
	{"namedtuple_scripted", "Out(logits: tensor, feat: tensor, extra: None)", "logits", []string{"fc.weight:0", "head.weight:0"}},
	{"dict_scripted", "dict(aux: tensor, out: tensor)", "out", []string{"fc.weight:0", "head.weight:0"}},
	{"dict_traced", "dict(aux: tensor, out: tensor)", "out", []string{"fc.weight:0", "head.weight:0"}},
	{"nested_scripted", "tuple(dict(logits: tensor), tuple(tensor, list(tensor, tensor)))", "0.logits", []string{"fc.weight:0", "head.weight:0", "c1.weight:0", "c3.weight:0"}},
	{"nested_traced", "tuple(dict(logits: tensor), tuple(tensor, list(tensor, tensor)))", "0.logits", []string{"fc.weight:0", "head.weight:0", "c1.weight:0", "c3.weight:0"}},
}

var outputShape = []int64{1, 3, 12, 12}

// makeOutputModels runs outputModels into a temporary directory.
func makeOutputModels(t *testing.T) string {
	t.Helper()
	return pyModels(t, outputModels)
}

// pyModels runs a Python script that writes TorchScript models into the
// directory it gets as its argument, and returns that directory.
func pyModels(t *testing.T, source string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		fixtures.Missing(t, "no /usr/bin/python3 (make deps)")
	}
	dir := t.TempDir()
	// TorchScript compiles from the classes' source, which python -c lacks.
	script := filepath.Join(dir, "make_models.py")
	if err := os.WriteFile(script, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("making the models: %v\n%s", err, out)
	}
	return dir
}

// pyRun has Python torch run a model and report its output's structure and
// tensor shapes.
func pyRun(t *testing.T, path string) (string, [][]int64) {
	t.Helper()
	script := filepath.Join(fixtures.RepoRoot(t), "scripts", "pyload.py")
	out, err := exec.Command("/usr/bin/python3", script, path, "--input-shape", "1,3,12,12").Output()
	if err != nil {
		t.Fatalf("pyload %s: %v\n%s", path, err, out)
	}
	var res struct {
		OK        bool      `json:"ok"`
		Structure string    `json:"structure"`
		Shapes    [][]int64 `json:"output_shapes"`
	}
	if err := json.Unmarshal(out, &res); err != nil || !res.OK {
		t.Fatalf("pyload %s: %v %s", path, err, out)
	}
	return res.Structure, res.Shapes
}

// TestOutputStructures: models returning NamedTuples, dicts and nested
// containers analyse (every output's channels frozen), prune with L2Norm at
// P=0.5, keep their output structure in the pruned file (as Python sees
// it), and equal the original with the removed channels zeroed on every
// output tensor.
func TestOutputStructures(t *testing.T) {
	dir := makeOutputModels(t)
	for _, tc := range outputCases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pt")
			am, err := model.Open(path, outputShape, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer am.Close()
			o := am.Graph.Output
			if o == nil || o.Structure != tc.structure {
				t.Fatalf("IR output %+v, want structure %q", o, tc.structure)
			}
			if got := o.Prediction(); got != tc.prediction {
				t.Errorf("prediction %q, want %q (paths %v)", got, tc.prediction, o.Paths)
			}
			var shapes [][]int64
			for _, id := range am.Graph.Outputs {
				shapes = append(shapes, am.Graph.Value(id).Shape)
			}
			for _, member := range tc.frozen {
				g := groupWith(am.Analysis, member)
				if g == nil {
					t.Fatalf("no group has %s", member)
				}
				if !g.Frozen || g.Reason != "model output" {
					t.Errorf("group of %s: frozen %v (%q), want frozen as a model output", member, g.Frozen, g.Reason)
				}
			}
			if g := groupWith(am.Analysis, "c2.weight:0"); g == nil || !g.Prunable() {
				t.Fatalf("c2's channels are not prunable: %+v", g)
			}

			res := l2OneShot(t, am, am.Base().Candidates(nil), cut.OneShotOptions{P: 0.5, Alf: 1})
			if r := float64(res.Plan.MACsAfter) / float64(res.Plan.MACsBefore); r > 0.55 {
				t.Fatalf("MACs %.3f of the original, want ≤ 0.55", r)
			}
			pruned, err := am.Module.Clone()
			if err != nil {
				t.Fatal(err)
			}
			defer pruned.Close()
			if err := Apply(pruned, am.Analysis, res.Plan); err != nil {
				t.Fatal(err)
			}
			zeroed, err := surgery.Masked(am.Module, am.Analysis, res.Kept)
			if err != nil {
				t.Fatal(err)
			}
			defer zeroed.Close()
			compareOutputs(t, pruned, zeroed, am.Module)

			saved := filepath.Join(t.TempDir(), "pruned.pt")
			if err := pruned.Save(saved); err != nil {
				t.Fatal(err)
			}
			// Python sees the original's structure (the shim's spelling
			// matches pyload's) and shapes in the pruned file.
			gotStruct, gotShapes := pyRun(t, saved)
			if gotStruct != tc.structure {
				t.Errorf("pruned model returns %q to python, the original %q", gotStruct, tc.structure)
			}
			if !slices.EqualFunc(gotShapes, shapes, slices.Equal[[]int64]) {
				t.Errorf("pruned output shapes in python %v, original %v", gotShapes, shapes)
			}
		})
	}
}

// compareOutputs checks every output tensor of pruned against zeroed (to
// 1e-4 relative), and that zeroing changed the function at all.
func compareOutputs(t *testing.T, pruned, zeroed, orig *torch.Module) {
	t.Helper()
	x, err := torch.Randn(outputShape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	run := func(m *torch.Module) []*torch.Tensor {
		ts, _, err := m.ForwardAll(true, x)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, y := range ts {
				y.Close()
			}
		})
		return ts
	}
	got, want, full := run(pruned), run(zeroed), run(orig)
	if len(got) != len(want) {
		t.Fatalf("pruned model returns %d tensors, the original %d", len(got), len(want))
	}
	changed := false
	for i := range got {
		diff, scale, err := got[i].MaxAbsDiff(want[i])
		if err != nil {
			t.Fatalf("output %d: %v", i, err)
		}
		if diff > 1e-4*scale {
			t.Errorf("output %d: pruned vs zeroed original max diff %g, relative %g > 1e-4", i, diff, diff/scale)
		}
		if d, _, _ := full[i].MaxAbsDiff(want[i]); d != 0 {
			changed = true
		}
	}
	if !changed {
		t.Error("zeroing the removed channels changed no output: the test proves nothing")
	}
}

func groupWith(a *graph.Analysis, member string) *graph.Group {
	for i := range a.Groups {
		for _, m := range a.Groups[i].Producers {
			if m.String() == member {
				return &a.Groups[i]
			}
		}
	}
	return nil
}

// TestOutputSetting: the output setting picks the prediction by key, field
// name, index or dotted path, and one the model's output lacks is a usage
// error at analysis naming the paths there are.
func TestOutputSetting(t *testing.T) {
	dir := makeOutputModels(t)
	saved := torch.CurrentSettings()
	t.Cleanup(func() {
		if err := torch.Configure(saved); err != nil {
			t.Error(err)
		}
	})
	tests := []struct {
		model, output string
		want          []int64 // the prediction's shape
		err           string
	}{
		{"dict_scripted", "", []int64{1, 10}, ""},
		{"dict_scripted", "aux", []int64{1, 8, 12, 12}, ""},
		{"dict_traced", "aux", []int64{1, 8, 12, 12}, ""},
		{"namedtuple_scripted", "feat", []int64{1, 8, 12, 12}, ""},
		{"namedtuple_scripted", "1", []int64{1, 8, 12, 12}, ""},
		{"nested_traced", "1", []int64{1, 8, 12, 12}, ""},
		{"nested_scripted", "1.1.0", []int64{1, 16, 12, 12}, ""},
		{"nested_traced", "1.1", []int64{1, 16, 12, 12}, ""},
		{"dict_scripted", "logits", nil, `output "logits": no "logits" in the model's output dict(aux: tensor, out: tensor); its tensors are: aux, out`},
		{"dict_scripted", "0", nil, `no "0"`},
		{"namedtuple_scripted", "extra", nil, `no tensor at "extra"`},
		{"nested_scripted", "1.1.2", nil, `its tensors are: 0.logits, 1.0, 1.1.0, 1.1.1`},
		{"nested_scripted", "0.logits.0", nil, `no "0.logits.0"`},
	}
	for _, tc := range tests {
		t.Run(tc.model+"/"+tc.output, func(t *testing.T) {
			s := saved
			s.Output = tc.output
			if err := torch.Configure(s); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.model+".pt")
			am, err := model.Open(path, outputShape, torch.CPU)
			if tc.err != "" {
				if err == nil {
					am.Close()
					t.Fatalf("output %q accepted", tc.output)
				}
				if !fail.IsUsage(err) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %q (usage %v), want a usage error with %q", err, fail.IsUsage(err), tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer am.Close()
			x, err := model.Example(outputShape, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			y, err := am.Module.Forward(true, x)
			if err != nil {
				t.Fatal(err)
			}
			defer y.Close()
			shape, err := y.Shape()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(shape, tc.want) {
				t.Errorf("prediction has shape %v, want %v", shape, tc.want)
			}
		})
	}
}
