//go:build cgo

package prune

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
)

// metaRequired are the fixtures whose every op has a Meta kernel (libtorch's
// or meta.cc's): if one falls back to the real pass, a kernel has gone
// missing and the IR export costs a real forward again.
var metaRequired = []string{
	"smallcnn", "resnet18", "resnet50", "mobilenet_v2", "densenet121", "vgg11_bn",
	"depthwise", "concat", "convnext_mini", "shufflenet_v2_x1_0", "signal1d", "r3d_small", "siamese",
	"vnet", "ghostnet", "eca", "segnet", "sknet", "gated_embed", "subpixel", "inception_time", "wn_tcn", "coordconv", "bit_resnetv2", "nf_resnet", "attention", "sized_views",
}

// TestMetaPass: the shape-only (Meta device) trace gives the IR byte for
// byte as the real trace does, for every fixture that it can run, scripted
// and traced, and the run check agrees with the real pass; the model's own
// tensors are untouched afterwards.
func TestMetaPass(t *testing.T) {
	dir := filepath.Dir(fixtures.Path(t, "smallcnn_scripted.pt"))
	files, err := filepath.Glob(filepath.Join(dir, "*.pt"))
	if err != nil || len(files) == 0 {
		fixtures.Missing(t, "no fixtures in %s", dir)
	}
	var usedMeta, fellBack []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pt")
		if _, err := os.Stat(filepath.Join(dir, name+".json")); err != nil {
			continue // not a model fixture (no sidecar)
		}
		t.Run(name, func(t *testing.T) {
			meta := fixtures.ReadMeta(t, name)
			m, err := model.Load(f, torch.CPU)
			if err != nil {
				if name == "no_forward" {
					t.Skip(err) // the fixture of a model without forward
				}
				t.Fatal(err)
			}
			defer m.Close()
			x, err := model.Example(meta.InputShape, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			before, err := model.Params(m)
			if err != nil {
				t.Fatal(err)
			}
			y0, err := m.Forward(true, x)
			if err != nil {
				t.Fatal(err)
			}
			defer y0.Close()
			real, used, err := m.ExportIRPass(torch.PassReal, x)
			if err != nil || used {
				t.Fatalf("real trace: meta %v, %v", used, err)
			}
			auto, used, err := m.ExportIRPass(torch.PassAuto, x)
			if err != nil {
				t.Fatalf("auto trace: %v", err)
			}
			if !bytes.Equal(auto, real) {
				t.Fatalf("the IR differs between the meta (%v) and the real trace:\n%s", used, firstDiff(auto, real))
			}
			checkMeta, err := m.CheckForwardPass(torch.PassAuto, x)
			if err != nil {
				t.Fatalf("run check: %v", err)
			}
			if checkMeta != used {
				t.Errorf("the run check took the meta pass %v, the trace %v", checkMeta, used)
			}
			if used {
				usedMeta = append(usedMeta, name)
			} else {
				fellBack = append(fellBack, name)
			}
			after, err := model.Params(m)
			if err != nil {
				t.Fatal(err)
			}
			for k, s := range before {
				if !slices.Equal(after[k], s) {
					t.Errorf("%s changed shape: %v -> %v", k, s, after[k])
				}
			}
			// The tensors are the real ones again: forward gives what it gave
			// before the meta passes, to the bit.
			y1, err := m.Forward(true, x)
			if err != nil {
				t.Fatalf("forward after the meta passes: %v", err)
			}
			defer y1.Close()
			if d, _, err := y1.MaxAbsDiff(y0); err != nil || d != 0 {
				t.Fatalf("forward after the meta passes differs by %g (%v)", d, err)
			}
		})
	}
	for _, base := range metaRequired {
		for _, exp := range []string{"_scripted", "_traced"} {
			if slices.Contains(fellBack, base+exp) {
				t.Errorf("%s fell back to the real pass; every op it uses should have a Meta kernel", base+exp)
			}
		}
	}
	t.Logf("meta pass: %d fixtures; real pass (fallback): %d %v", len(usedMeta), len(fellBack), fellBack)
}

// TestMetaPassErrors: a shape the model refuses fails the meta pass, and
// the automatic pass reports the real pass's error, which the usage errors
// parse (model.Trace names the layer from it).
func TestMetaPassErrors(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m, err := model.Load(path, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, err := model.Example([]int64{1, 4, 32, 32}, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := m.CheckForwardPass(torch.PassMeta, x); err == nil {
		t.Fatalf("meta pass on 4 channels: %v", err)
	}
	_, err = m.CheckForwardPass(torch.PassAuto, x)
	if err == nil || !strings.Contains(err.Error(), "to have 3 channels, but got 4 channels") {
		t.Fatalf("auto pass on 4 channels: %v", err)
	}
	if _, _, err := m.ExportIRPass(torch.PassAuto, x); err == nil || !strings.Contains(err.Error(), "but got 4 channels") {
		t.Fatalf("auto trace on 4 channels: %v", err)
	}
	if _, err := model.Trace(m, []int64{1, 4, 32, 32}); err == nil || !strings.Contains(err.Error(), "conv") {
		t.Fatalf("Trace on 4 channels: %v", err)
	}
}

func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	lo := max(0, i-200)
	return "meta: " + string(a[lo:min(len(a), i+200)]) + "\nreal: " + string(b[lo:min(len(b), i+200)])
}

// TestTrainingTraceFallback: a model whose eval trace leaves parameters
// unread gets a training-mode trace; where that trace cannot run (its
// training-only head refuses the input size), the analysis is the eval
// trace's and the failure is a warning naming the unread parameters, not
// an error.
func TestTrainingTraceFallback(t *testing.T) {
	path := fixtures.Path(t, "aux_too_small.pt")
	am, err := model.Open(path, []int64{1, 3, 32, 32}, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	if len(am.Warnings) != 1 || !strings.Contains(am.Warnings[0], "aux.weight") ||
		!strings.Contains(am.Warnings[0], "training-mode trace failed") {
		t.Fatalf("warnings %q, want one about the training-mode trace and aux.weight", am.Warnings)
	}
	if n := len(am.Analysis.Prunable()); n != 1 {
		t.Fatalf("%d prunable groups, want the conv's", n)
	}
	for _, m := range am.Analysis.Prunable()[0].Members {
		if strings.HasPrefix(m.Tensor, "aux.") {
			t.Fatalf("member %s from a trace that failed", m)
		}
	}
}
