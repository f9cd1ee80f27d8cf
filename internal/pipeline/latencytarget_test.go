package pipeline

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/lut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// TestLatencyTarget runs my_pruning with target: latency on the fake
// engine: the search's cost is the table's prediction (the unpruned
// prediction is the measured model), it reaches the latency target, the
// table is cached in the run directory and reused, a resumed search ends
// as the uninterrupted one, and the report has a prediction error.
func TestLatencyTarget(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	run := func(ctx context.Context, o MyPruningOptions) (*MyPruningResult, error) {
		eng := fake.New(base)
		bm := openSmall(ctx, t, eng)
		defer bm.Close()
		res, err := MyPruning(ctx, eng, bm, tr, val, o)
		if res != nil && res.Module != nil {
			res.Module.Close()
		}
		return res, err
	}
	opts := func(dir string) MyPruningOptions {
		o := myOptions(t, "cpu")
		o.Dir, o.Target = dir, kinds.TargetLatency
		o.Latency = LatencyOptions{Device: "cpu", Threads: 1, Batch: 1}
		return o
	}
	dir := t.TempDir()
	res, err := run(context.Background(), opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	l, st := res.Latency, res.State
	if l == nil {
		t.Fatal("no latency report")
	}
	// The fake's model latency is its parameter count in µs.
	params := paramCount(base)
	if st.MACs0 != params*1000 || l.PredictedBeforeNs != st.MACs0 {
		t.Errorf("unpruned cost %d, prediction %d; want the measured %d ns", st.MACs0, l.PredictedBeforeNs, params*1000)
	}
	// The state's cost is the last commit's measurement; the report's
	// prediction is the one made before it: the last record's.
	last := st.History[len(st.History)-1]
	if !st.Done || st.Reason != netadapt.ReasonTargetReached || st.MACs > st.Target || l.PredictedAfterNs != last.MACs {
		t.Errorf("search ended %q at %d ns measured, target %d, report %d, want the last prediction %d", st.Reason, st.MACs, st.Target,
			l.PredictedAfterNs, last.MACs)
	}
	if l.Anchors != st.Iteration {
		t.Errorf("%d anchoring measurements for %d iterations", l.Anchors, st.Iteration)
	}
	if l.Cached || l.Layers == 0 || l.Timed == 0 || l.MeasuredAfterNs <= 0 || math.IsNaN(l.ErrorPct()) || math.IsNaN(l.SpeedupErrorPct()) {
		t.Errorf("report %+v", l)
	}
	if _, err := os.Stat(filepath.Join(dir, LatencyTableFile)); err != nil {
		t.Fatalf("table not cached: %v", err)
	}

	// A second run with the table in its directory reuses it. (Another
	// directory: a fresh search in a directory whose embedded broker holds
	// a finished run's tasks does not start.)
	dir2 := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, LatencyTableFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir2, LatencyTableFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := run(context.Background(), opts(dir2))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Latency.Cached || !reflect.DeepEqual(again.State.History, st.History) {
		t.Errorf("cached run: cached %v, same history %v", again.Latency.Cached, reflect.DeepEqual(again.State.History, st.History))
	}

	// Interrupted after iteration 1 and resumed, it ends where the
	// uninterrupted search did.
	rdir := t.TempDir()
	o := opts(rdir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Hooks.OnIteration = func(rec netadapt.IterationRecord) {
		if rec.Iteration == 1 {
			cancel()
		}
	}
	if _, err := run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	o = opts(rdir)
	o.Resume = true
	resumed, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(resumed.State, st) {
		t.Errorf("resumed search differs:\n full:    %+v\n resumed: %+v", st, resumed.State)
	}
}

// TestLatencyTableCacheDamaged: a damaged cache is measured again and
// rewritten, not fatal.
func TestLatencyTableCacheDamaged(t *testing.T) {
	base := smallCNN(t)
	eng := fake.New(base)
	bm := openSmall(context.Background(), t, eng)
	defer bm.Close()
	cache := filepath.Join(t.TempDir(), LatencyTableFile)
	if err := os.WriteFile(cache, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	o := LatencyOptions{Device: "cpu", Threads: 1, Batch: 1, Cache: cache}
	p, rep, err := latencyModel(eng, bm, orig, bm.Candidates(nil), 4, o, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Cached || p == nil {
		t.Errorf("damaged cache: cached %v", rep.Cached)
	}
	key := lut.Key{Model: Digest(orig), Device: "cpu", Threads: 1, Batch: 1, InputShape: base.InputShape, Alf: 4,
		MaxPoints: lut.DefaultMaxPoints}
	for _, g := range bm.Candidates(nil) {
		key.Groups = append(key.Groups, g.ID)
	}
	if tab, err := lut.Load(cache, key); err != nil || tab == nil {
		t.Errorf("rewritten cache does not load under the run's key: %v", err)
	}
}

// speedEngine is the fake engine on a machine whose speed can change: once
// shifted, timings of a fixed number of runs (the cached table's check,
// the anchors, the final check) read the first model 40% faster and a
// second 20% faster, as a pruned model gains less than the original from
// a faster clock.
// burst, above 0, shifts only that many more timings: a state the machine
// leaves again.
type speedEngine struct {
	*fake.Engine
	shifted bool
	burst   int
}

func (e *speedEngine) LatencyRuns(ms []engine.Module, shape []int64, runs int) ([]engine.Latency, error) {
	ls, err := e.Engine.LatencyRuns(ms, shape, runs)
	shifted := e.shifted || e.burst > 0
	e.burst = max(0, e.burst-1)
	if err == nil && shifted && len(ls) >= 1 {
		ls[0].MedianMs *= 0.6
		if len(ls) == 2 {
			ls[1].MedianMs *= 0.8
		}
	}
	return ls, err
}

// TestLatencyCacheOtherSpeed: a cached table is used when the original
// times as it did when the table was measured, and measured again (and
// rewritten) when the machine now runs at another speed.
func TestLatencyCacheOtherSpeed(t *testing.T) {
	base := smallCNN(t)
	eng := &speedEngine{Engine: fake.New(base)}
	bm := openSmall(context.Background(), t, eng.Engine)
	defer bm.Close()
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), LatencyTableFile)
	o := LatencyOptions{Device: "cpu", Threads: 1, Batch: 1, Cache: cache}
	model := func() *LatencyReport {
		t.Helper()
		_, rep, err := latencyModel(eng, bm, orig, bm.Candidates(nil), 4, o, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := model(); rep.Cached || rep.TableSeconds <= 0 {
		t.Fatalf("first run: cached %v, table seconds %v", rep.Cached, rep.TableSeconds)
	}
	if rep := model(); !rep.Cached {
		t.Errorf("same speed: the cached table was measured again")
	}
	// Dated back an hour, so that a rewrite shows whatever the file
	// system's timestamp granularity.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(cache, old, old); err != nil {
		t.Fatal(err)
	}
	eng.shifted = true
	if rep := model(); rep.Cached || rep.TableSeconds <= 0 {
		t.Errorf("machine 40%% faster: cached %v, table seconds %v; want the table measured again", rep.Cached, rep.TableSeconds)
	}
	if fi, err := os.Stat(cache); err != nil || !fi.ModTime().After(old) {
		t.Errorf("the table measured again was not written back (%v)", err)
	}
}

// speedSearch runs a latency-target search of the small CNN on a
// speedEngine that onIter may shift after each iteration.
func speedSearch(t *testing.T, onIter func(*speedEngine, netadapt.IterationRecord)) *MyPruningResult {
	t.Helper()
	tr, val := mnistSplits(t)
	eng := &speedEngine{Engine: fake.New(smallCNN(t))}
	bm := openSmall(context.Background(), t, eng.Engine)
	defer bm.Close()
	o := myOptions(t, "cpu")
	o.Target = kinds.TargetLatency
	o.Latency = LatencyOptions{Device: "cpu", Threads: 1, Batch: 1}
	o.Hooks.OnIteration = func(rec netadapt.IterationRecord) { onIter(eng, rec) }
	res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
	if err != nil {
		t.Fatal(err)
	}
	res.Module.Close()
	return res
}

// TestLatencyAnchorOtherSpeed: anchors taken once the machine runs at
// another speed than when the table was measured are not used, so the
// search makes the cuts it makes at the table's speed; the report counts
// them.
func TestLatencyAnchorOtherSpeed(t *testing.T) {
	run := func(shiftAfter int) *MyPruningResult {
		return speedSearch(t, func(eng *speedEngine, rec netadapt.IterationRecord) {
			if shiftAfter > 0 && rec.Iteration == shiftAfter {
				eng.shifted = true
			}
		})
	}
	steady, shifted := run(0), run(1)
	if steady.Latency.AnchorsSkipped != 0 || steady.Latency.StateRetries != 0 {
		t.Errorf("steady machine: %d anchors skipped, %d retried", steady.Latency.AnchorsSkipped, steady.Latency.StateRetries)
	}
	if len(steady.State.History) < 3 {
		t.Fatalf("the search took %d iterations; the test needs anchors after the shift", len(steady.State.History))
	}
	l := shifted.Latency
	if l.AnchorsSkipped == 0 || l.AnchorsSkipped != l.Anchors-1 {
		t.Errorf("machine faster after iteration 1: %d of %d anchors skipped, want all but the first", l.AnchorsSkipped, l.Anchors)
	}
	// Each skipped anchor and the final check were tried stateTries times.
	if want := (l.AnchorsSkipped + 1) * (stateTries - 1); l.StateRetries != want {
		t.Errorf("machine faster after iteration 1: %d measurements retried, want %d", l.StateRetries, want)
	}
	// The costs differ a little (the fake's table is not exact, and the
	// skipped anchors would have corrected it); the cuts must not.
	type step struct{ group, from, to int }
	path := func(r *MyPruningResult) []step {
		var out []step
		for _, h := range r.State.History {
			out = append(out, step{h.Group, h.From, h.To})
		}
		return out
	}
	if !reflect.DeepEqual(path(shifted), path(steady)) || !reflect.DeepEqual(shifted.State.Keep, steady.State.Keep) {
		t.Errorf("the shifted machine's search cut %v to %v, the steady one %v to %v",
			path(shifted), shifted.State.Keep, path(steady), steady.State.Keep)
	}
}

// TestLatencyAnchorRetry: an anchor, or the final check, that finds the
// machine briefly at another speed is measured again, and the retry, back
// in the table's state, is used: no anchor is lost, and the search and its
// final measurement are the steady machine's.
func TestLatencyAnchorRetry(t *testing.T) {
	steady := speedSearch(t, func(*speedEngine, netadapt.IterationRecord) {})
	burst := speedSearch(t, func(eng *speedEngine, _ netadapt.IterationRecord) {
		// One measurement's two rounds: the next anchor, or the final
		// check after the last iteration.
		eng.burst = 2
	})
	l := burst.Latency
	if l.AnchorsSkipped != 0 {
		t.Errorf("brief bursts: %d of %d anchors skipped, want none", l.AnchorsSkipped, l.Anchors)
	}
	if l.StateRetries < 2 {
		t.Errorf("brief bursts after each of %d iterations: %d measurements retried", len(burst.State.History), l.StateRetries)
	}
	if !reflect.DeepEqual(burst.State.Keep, steady.State.Keep) {
		t.Errorf("brief bursts cut to %v, the steady machine to %v", burst.State.Keep, steady.State.Keep)
	}
	if l.MeasuredBeforeNs != steady.Latency.MeasuredBeforeNs || l.MeasuredAfterNs != steady.Latency.MeasuredAfterNs {
		t.Errorf("final check %v/%v ns after a burst, %v/%v ns steady", l.MeasuredBeforeNs, l.MeasuredAfterNs,
			steady.Latency.MeasuredBeforeNs, steady.Latency.MeasuredAfterNs)
	}
}

// burstEngine is the fake engine with every standalone layer timed three
// times slower than inside the model, as a burst of other work during the
// table's layer rounds left them on a loaded CI machine (where the table
// then predicted −2 ms for a 1.2 ms model's final keep vector).
type burstEngine struct{ *fake.Engine }

func (e burstEngine) OpLatency(specs []lut.Spec, dev string, threads int, budget time.Duration) ([]float64, error) {
	ns, err := e.Engine.OpLatency(specs, dev, threads, budget)
	for i := range ns {
		ns[i] *= 3
	}
	return ns, err
}

// TestLatencyTargetSlowLayers: layers timed slower than the whole model
// leave the table at the model's own time with no residue, and the search
// still predicts a positive latency for every model it visits, ending at
// the target with a final error it can report.
func TestLatencyTargetSlowLayers(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	eng := burstEngine{fake.New(base)}
	bm := openSmall(context.Background(), t, eng.Engine)
	defer bm.Close()
	o := myOptions(t, "cpu")
	o.Target = kinds.TargetLatency
	o.Latency = LatencyOptions{Device: "cpu", Threads: 1, Batch: 1}
	res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Module.Close()
	l, st := res.Latency, res.State
	params := paramCount(base)
	if l.PredictedBeforeNs != params*1000 || l.ResidueNs != 0 {
		t.Errorf("unpruned prediction %d ns, residue %v; want the model's %d ns and 0", l.PredictedBeforeNs, l.ResidueNs, params*1000)
	}
	for _, rec := range st.History {
		if rec.MACs <= 0 {
			t.Errorf("iteration %d predicted %d ns", rec.Iteration, rec.MACs)
		}
	}
	if !st.Done || l.PredictedAfterNs <= 0 || math.IsNaN(l.SpeedupErrorPct()) || math.Abs(l.ErrorPct()) > 10 {
		t.Errorf("search done %v (%q); predicted %d ns, measured %.0f ns (error %.1f%%, speed-up error %.1f%%)", st.Done, st.Reason,
			l.PredictedAfterNs, l.MeasuredAfterNs, l.ErrorPct(), l.SpeedupErrorPct())
	}
}

// TestAnchorCostPositive: an anchor measured far below the table (a large
// negative offset) floors the cost at 1 ns instead of predicting below
// zero, and the cost stays non-decreasing.
func TestAnchorCostPositive(t *testing.T) {
	l := lut.Layer{Name: "conv", Axes: []lut.Axis{{Group: 1, Counts: []int{2, 4, 8}}}, NS: []float64{200, 400, 800}}
	p, err := lut.NewPredictor(&lut.Table{Format: lut.Format, Layers: []lut.Layer{l}, FullNS: 1000}, map[int]int{1: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &latencyAnchor{pred: p, offset: -500}
	prev := int64(0)
	for k := 2; k <= 8; k++ {
		got := a.cost(map[int]int{1: k})
		if got < 1 || got < prev {
			t.Errorf("keep %d: cost %d (previous %d)", k, got, prev)
		}
		prev = got
	}
	if got := a.cost(map[int]int{1: 2}); got != 1 {
		t.Errorf("smallest keep: cost %d, want the floor 1", got)
	}
	if got := a.cost(map[int]int{1: 8}); got != 500 {
		t.Errorf("full width: cost %d, want 500", got)
	}
}

// paramCount is base's parameter count: the fake's model latency in µs.
func paramCount(base cut.Base) int64 {
	var params int64
	for _, s := range base.Params {
		params += ir.Numel(s)
	}
	return params
}
