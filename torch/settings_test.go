//go:build cgo

package torch

import (
	"os"
	"os/exec"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestMallocThresholdsWaitForSteps: the malloc thresholds, which keep freed
// memory in the heap, are applied by the first step and not before, so that
// loading, tracing, checking and cutting a model (a one-shot prune) hand
// freed tensors back. Other tests in this process have run steps already,
// so the check runs in a child process of its own.
func TestMallocThresholdsWaitForSteps(t *testing.T) {
	if os.Getenv("GOPRUNER_MALLOC_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMallocThresholdsWaitForSteps$", "-test.v")
		cmd.Env = append(os.Environ(), "GOPRUNER_MALLOC_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		t.Logf("child:\n%s", out)
		return
	}
	if userTunedMalloc() {
		t.Skip("the environment tunes malloc itself")
	}
	settled := func() bool {
		settingsMu.Lock()
		defer settingsMu.Unlock()
		return mallocSettled
	}
	if !CurrentSettings().MallocTuning {
		t.Fatal("malloc tuning is off by default")
	}
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	defer x.Close()
	if _, err := m.ExportIR(x); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckForward(x); err != nil {
		t.Fatal(err)
	}
	if settled() {
		t.Fatal("the thresholds were applied before any step")
	}
	y := must[*Tensor](t)(m.Forward(true, x))
	y.Close()
	if !settled() || !CurrentSettings().MallocTuning {
		t.Fatalf("after a forward: applied %v, tuning %v", settled(), CurrentSettings().MallocTuning)
	}
}
