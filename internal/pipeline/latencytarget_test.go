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
	p, rep, _, err := latencyModel(eng, bm, orig, bm.Candidates(nil), 4, o, zerolog.Nop())
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
// a faster clock; the table's timings (Latency, OpLatency) read every
// model and op 40% faster.
// burst, above 0, shifts only that many more timings of a fixed number of
// runs: a state the machine leaves again.
type speedEngine struct {
	*fake.Engine
	shifted bool
	burst   int
	// tableSteady leaves the table's timings unshifted: the machine went
	// back to its first speed while every table was measured.
	tableSteady bool
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

func (e *speedEngine) Latency(ms []engine.Module, shape []int64) ([]engine.Latency, error) {
	ls, err := e.Engine.Latency(ms, shape)
	if err == nil && e.shifted && !e.tableSteady {
		for i := range ls {
			ls[i].MedianMs *= 0.6
		}
	}
	return ls, err
}

func (e *speedEngine) OpLatency(specs []lut.Spec, dev string, threads int, budget time.Duration) ([]float64, error) {
	ns, err := e.Engine.OpLatency(specs, dev, threads, budget)
	if err == nil && e.shifted && !e.tableSteady {
		for i := range ns {
			ns[i] *= 0.6
		}
	}
	return ns, err
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
		_, rep, _, err := latencyModel(eng, bm, orig, bm.Candidates(nil), 4, o, zerolog.Nop())
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

// TestLatencyAnchorOtherSpeed: with one table only, anchors
// taken once the machine runs at another speed than when the table was
// measured are not used, so the search makes the cuts it makes at the
// table's speed; the report counts them.
func TestLatencyAnchorOtherSpeed(t *testing.T) {
	defer func(n int) { maxTables = n }(maxTables)
	maxTables = 1
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

// TestLatencyStateTables: a machine that stays at another speed from
// iteration 1 on gets a table of that state once two anchors in a row
// found it, and every anchor after it is used; the search's costs keep the
// first table's unit (its target does not move), and the final check, in
// the new table's state, is predicted by it and agrees with the predicted
// speed-up. With one table only (maxTables 1) every anchor after the shift
// is left unused and the final check is off by the state change (the
// fake's pruned models gain a third less from it). A machine that goes
// back to the first speed uses the first table again.
func TestLatencyStateTables(t *testing.T) {
	shiftAt := func(on, off int) func(*speedEngine, netadapt.IterationRecord) {
		return func(eng *speedEngine, rec netadapt.IterationRecord) {
			switch rec.Iteration {
			case on:
				eng.shifted = true
			case off:
				eng.shifted = false
			}
		}
	}
	steady := speedSearch(t, func(*speedEngine, netadapt.IterationRecord) {})
	if n := len(steady.State.History); n < 4 {
		t.Fatalf("the search took %d iterations; the test needs 4", n)
	}
	res := speedSearch(t, shiftAt(1, -1))
	l := res.Latency
	if len(l.Tables) != 2 || l.AnchorsSkipped != 1 || l.FinalTable != 1 {
		t.Errorf("machine faster after iteration 1: %d tables, %d of %d anchors skipped, final check in table %d; want 2, 1, table 1",
			len(l.Tables), l.AnchorsSkipped, l.Anchors, l.FinalTable)
	}
	if res.State.MACs0 != steady.State.MACs0 || res.State.Target != steady.State.Target {
		t.Errorf("search unit moved: unpruned cost %d, target %d; steady %d, %d", res.State.MACs0, res.State.Target,
			steady.State.MACs0, steady.State.Target)
	}
	if want := 0.6 * float64(steady.Latency.PredictedBeforeNs); math.Abs(float64(l.PredictedBeforeNs)/want-1) > 0.01 {
		t.Errorf("predicted unpruned latency %d ns by the final check's table, want about %.0f", l.PredictedBeforeNs, want)
	}
	if e := l.SpeedupErrorPct(); !(math.Abs(e) < 10) {
		t.Errorf("speed-up error %.1f%% with a table of the new state", e)
	}

	back := speedSearch(t, shiftAt(1, 3)).Latency
	if len(back.Tables) != 2 || back.FinalTable != 0 || back.Tables[0].Anchors < 2 {
		t.Errorf("machine back at its first speed after iteration 3: %d tables, final check in table %d, first table anchored %d times",
			len(back.Tables), back.FinalTable, back.Tables[0].Anchors)
	}
	if e := back.SpeedupErrorPct(); !(math.Abs(e) < 10) {
		t.Errorf("machine back at its first speed: speed-up error %.1f%%", e)
	}

	// Tables measured while the machine was back at its first speed are
	// not kept: they would be of the first table's state.
	mixed := speedSearch(t, func(eng *speedEngine, rec netadapt.IterationRecord) {
		eng.tableSteady = true
		shiftAt(1, -1)(eng, rec)
	}).Latency
	if len(mixed.Tables) != 1 || mixed.TablesDiscarded == 0 || mixed.AnchorsSkipped != mixed.Anchors-1 {
		t.Errorf("tables measured at the first speed: %d tables, %d discarded, %d of %d anchors skipped",
			len(mixed.Tables), mixed.TablesDiscarded, mixed.AnchorsSkipped, mixed.Anchors)
	}

	defer func(n int) { maxTables = n }(maxTables)
	maxTables = 1
	off := speedSearch(t, shiftAt(1, -1)).Latency
	if len(off.Tables) != 1 || off.FinalTable != -1 || off.AnchorsSkipped == 0 {
		t.Errorf("maxTables 1: %d tables, final check in table %d, %d anchors skipped", len(off.Tables), off.FinalTable, off.AnchorsSkipped)
	}
	if e := off.SpeedupErrorPct(); !(math.Abs(e) > 20) {
		t.Errorf("maxTables 1: speed-up error %.1f%%; the test's state change should show in it", e)
	}
}

// TestLatencyResumeOtherSpeed: a search interrupted on one machine speed
// and resumed at another, whose cached table is then measured again, goes
// on in the checkpoint's cost unit instead of failing on its unpruned cost.
func TestLatencyResumeOtherSpeed(t *testing.T) {
	tr, val := mnistSplits(t)
	base := smallCNN(t)
	eng := &speedEngine{Engine: fake.New(base)}
	run := func(ctx context.Context, o MyPruningOptions) (*MyPruningResult, error) {
		bm := openSmall(ctx, t, eng.Engine)
		defer bm.Close()
		res, err := MyPruning(ctx, eng, bm, tr, val, o)
		if res != nil && res.Module != nil {
			res.Module.Close()
		}
		return res, err
	}
	dir := t.TempDir()
	o := myOptions(t, "cpu")
	o.Dir, o.Target = dir, kinds.TargetLatency
	o.Latency = LatencyOptions{Device: "cpu", Threads: 1, Batch: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Hooks.OnIteration = func(rec netadapt.IterationRecord) {
		if rec.Iteration == 1 {
			cancel()
		}
	}
	first, err := run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	eng.shifted = true
	o.Hooks.OnIteration, o.Resume = nil, true
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatalf("resumed at another speed: %v", err)
	}
	if res.Latency.Cached || res.State.MACs0 != first.State.MACs0 || !res.State.Done || res.State.MACs > res.State.Target {
		t.Errorf("resumed at another speed: cached table %v, unpruned cost %d (was %d), done %v at %d for target %d",
			res.Latency.Cached, res.State.MACs0, first.State.MACs0, res.State.Done, res.State.MACs, res.State.Target)
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
	a := &latencyAnchor{tables: []*stateTable{{pred: p, fullNS: 1000, offset: -500}}, searchNS: 1000}
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
