//go:build cgo

package prune

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gopruner/gopruner/internal/core/search/cut"

	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
)

// TestSoak is the memory check of a long run: 1,000 training steps and 200
// candidate cycles (clone, prune, forward, discard), after a warm-up. RSS
// may grow by at most 5% and every tensor and module handle must be freed.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	am, err := model.Open(path, meta.InputShape, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	out := l2OneShot(t, am, am.Base().Candidates(nil), cut.OneShotOptions{P: 0.5, Alf: 1})

	cycle := func() {
		c, err := am.Module.Clone()
		if err != nil {
			t.Fatal(err)
		}
		if err := Apply(c, am.Analysis, out.Plan); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	trainer, err := am.Module.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer trainer.Close()
	if err := trainer.Train(true); err != nil {
		t.Fatal(err)
	}
	opt, err := torch.NewSGD(trainer, torch.SGDOptions{LR: 0.01, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	n := int64(16)
	shape := append([]int64{n}, meta.InputShape[1:]...)
	xs := make([]float32, n*shape[1]*shape[2]*shape[3])
	r := rand.New(rand.NewPCG(7, 8))
	for i := range xs {
		xs[i] = float32(r.NormFloat64())
	}
	ys := make([]int64, n)
	for i := range ys {
		ys[i] = int64(i % 10)
	}
	step := func() {
		var s torch.Scope
		defer s.Close()
		x, err := torch.FromFloat32(xs, shape, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		s.Add(x)
		y, err := torch.FromInt64(ys, []int64{n}, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		s.Add(y)
		if _, _, err := torch.TrainStep(trainer, opt, x, y); err != nil {
			t.Fatal(err)
		}
	}

	for i := 0; i < 50; i++ { // warm-up: allocator pools, interpreter caches
		step()
		cycle()
	}
	runtime.GC()
	before := fixtures.RSS(t)
	tb, mb := torch.LiveHandles()
	for i := 0; i < 1000; i++ {
		step()
	}
	for i := 0; i < 200; i++ {
		cycle()
	}
	runtime.GC()
	after := fixtures.RSS(t)
	ta, ma := torch.LiveHandles()
	t.Logf("RSS %d -> %d bytes (%+.2f%%); handles tensors %d -> %d, modules %d -> %d",
		before, after, 100*float64(after-before)/float64(before), tb, ta, mb, ma)
	if ta != tb || ma != mb {
		t.Errorf("handles leaked: tensors %d -> %d, modules %d -> %d", tb, ta, mb, ma)
	}
	if float64(after-before) > 0.05*float64(before) {
		t.Errorf("RSS grew from %d to %d bytes (more than 5%%)", before, after)
	}
}
