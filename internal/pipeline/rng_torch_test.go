//go:build cgo && !race

package pipeline

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/third_party/mnist"
	"github.com/gopruner/gopruner/torch"
)

// dropoutModel is scripted mobilenet_v2 (dropout before its classifier)
// opened at 1x3x32x32, with MNIST as 3-channel 32x32 splits.
func dropoutModel(t *testing.T) (*engine.Model, *data.Split, *data.Split) {
	t.Helper()
	path, _ := fixtures.Model(t, "mobilenet_v2_scripted")
	m, err := model.Load(path, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	am, err := model.Analyze(m, []int64{1, 3, 32, 32})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(am.Close)
	ds, err := data.FromMNIST(mnist.FS(), data.Options{Channels: 3, Height: 32, Width: 32})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ds.Split(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	val, err := ds.Split(data.Val)
	if err != nil {
		t.Fatal(err)
	}
	return torchengine.FromAnalyzed(am), tr, val
}

// TestDropoutScoresSplitOverSlots: the TaylorFOWeight scores of a model
// with dropout, in training mode, are the same whether one slot scores
// every batch or two slots score theirs at the same time, and the same
// again in a second run: each batch draws its masks from a stream of its
// own. With libtorch's process-wide generator, the two slots took turns
// on it and every run drew other masks.
func TestDropoutScoresSplitOverSlots(t *testing.T) {
	bm, tr, val := dropoutModel(t)
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	scores := func(slots ...string) map[int][]float64 {
		o := smallOptions(t)
		// One thread per slot: a thread count of its own would change the
		// sums in the convolutions' gradients.
		o.Slots, o.TaylorBatches, o.Threads = slots, 6, len(slots)
		return slotScores(t, torchengine.Engine{}, bm, orig, tr, val, o, len(slots))
	}
	one, two, again := scores("cpu"), scores("cpu", "cpu"), scores("cpu", "cpu")
	if len(one) == 0 {
		t.Fatal("no scores")
	}
	if !reflect.DeepEqual(two, again) {
		t.Error("two runs of two slots gave different scores")
	}
	// One slot adds the batches in another order than two slots' parts.
	for id, s := range one {
		for c, v := range s {
			if w := two[id][c]; math.Abs(v-w) > 1e-9*math.Max(math.Abs(v), 1e-30) {
				t.Fatalf("group %d channel %d: one slot scores %g, two slots %g", id, c, v, w)
			}
		}
	}
}

// TestDropoutSearchRepeats: a search on a model with dropout at two cpu
// slots, whose candidates fine-tune at the same time, gives one history.
func TestDropoutSearchRepeats(t *testing.T) {
	var first any
	for run := range 2 {
		bm, tr, val := dropoutModel(t)
		o := smallOptions(t)
		o.P, o.DeltaCrop, o.ShortTermSteps, o.EvalSamples, o.TaylorBatches = 0.04, 0.05, 3, 64, 2
		o.CommitTop = 1
		res, err := MyPruning(context.Background(), torchengine.Engine{}, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		res.Module.Close()
		got := res.State.History
		if run == 0 && len(got) == 0 {
			t.Fatal("no iteration recorded")
		}
		if run == 0 {
			first = got
			continue
		}
		if !reflect.DeepEqual(first, got) {
			t.Errorf("two runs of one seed gave two histories:\n%+v\n%+v", first, got)
		}
	}
}
