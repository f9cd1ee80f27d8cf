//go:build cgo && !race

package pipeline

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine"
)

// TestLatencyTableTorch builds the latency table of the demo CNN with
// libtorch: every tabled layer is measured at every grid point, the
// prediction at full width is the measured model, cutting every group to
// its smallest count predicts less, and a second build reads the cache.
// The cache's speed check is off here (TestLatencyCacheOtherSpeed tests
// it): on a CI machine busy with other tests a table can time the model at
// 11 ms and the check 0.8 ms, and rightly measure again.
func TestLatencyTableTorch(t *testing.T) {
	defer func(v float64) { cacheTolerance = v }(cacheTolerance)
	cacheTolerance = math.Inf(1)
	eng := torchengine.Engine{}
	bm, err := eng.Open(context.Background(), filepath.Join(fixtures.RepoRoot(t), "internal/demo/democnn.pt"), inputShape, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer bm.Close()
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cands := bm.Candidates(nil)
	o := LatencyOptions{Device: "cpu", Threads: 1, Batch: 1, Cache: filepath.Join(t.TempDir(), LatencyTableFile)}
	p, rep, _, err := latencyModel(eng, bm, orig, cands, 4, o, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d layers, %d points, %d timed in %.1f s; full %.3f ms, residue %.3f ms", rep.Layers, rep.Points, rep.Timed,
		rep.TableSeconds, float64(rep.PredictedBeforeNs)/1e6, rep.ResidueNs/1e6)
	if rep.Layers == 0 || rep.Points < rep.Layers || rep.Timed == 0 || rep.Cached {
		t.Errorf("report %+v", rep)
	}
	full, small := map[int]int{}, map[int]int{}
	for _, g := range cands {
		full[g.ID], small[g.ID] = g.Channels, 4
	}
	if got := p.Predict(full); got != rep.PredictedBeforeNs || got <= 0 {
		t.Errorf("prediction at full width %d, table %d", got, rep.PredictedBeforeNs)
	}
	if p.Predict(small) >= p.Predict(full) {
		t.Errorf("every group at 4 channels predicts %d ns, full width %d", p.Predict(small), p.Predict(full))
	}
	_, again, _, err := latencyModel(eng, bm, orig, cands, 4, o, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.PredictedBeforeNs != rep.PredictedBeforeNs {
		t.Errorf("second build: cached %v, full %d (first %d)", again.Cached, again.PredictedBeforeNs, rep.PredictedBeforeNs)
	}
}
