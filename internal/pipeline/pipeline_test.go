package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph/irtest"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/engine/fake"
	"github.com/gopruner/gopruner/third_party/mnist"
)

// smallCNN is a four-conv MNIST-shaped classifier with a residual add, so
// that groups merge across layers.
// openSmall opens eng's model as "small.pt" on the CPU, failing the test
// when it cannot; the caller closes it.
func openSmall(ctx context.Context, t *testing.T, eng *fake.Engine) *engine.Model {
	t.Helper()
	bm, err := eng.Open(ctx, "small.pt", eng.Base.InputShape, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	return bm
}

func smallCNN(t *testing.T) cut.Base {
	t.Helper()
	b := irtest.New()
	x := b.Input(1, 1, 28, 28)
	c1 := b.Relu(b.BN(b.Conv(x, "conv1", 16, 3, irtest.ConvOpts{Pad: 1}), "bn1"))
	c2 := b.Relu(b.BN(b.Conv(c1, "conv2", 16, 3, irtest.ConvOpts{Pad: 1}), "bn2"))
	r := b.Add(c2, c1)
	p := b.MaxPool(r, 2, 2)
	c3 := b.Relu(b.BN(b.Conv(p, "conv3", 32, 3, irtest.ConvOpts{Pad: 1}), "bn3"))
	c4 := b.Relu(b.BN(b.Conv(c3, "conv4", 24, 3, irtest.ConvOpts{Pad: 1}), "bn4"))
	flat := b.Flatten(b.AdaptiveAvgPool(c4, 1, 1), 1)
	b.Output(b.Linear(flat, "fc", 10, true))
	return mnistBase(t, b)
}

var mnistOnce struct {
	sync.Once
	ds  *data.Dataset
	err error
}

func mnistData(t *testing.T) *data.Dataset {
	t.Helper()
	mnistOnce.Do(func() {
		mnistOnce.ds, mnistOnce.err = data.FromMNIST(mnist.FS(), data.Options{Channels: 1, Height: 28, Width: 28})
	})
	if mnistOnce.err != nil {
		t.Fatal(mnistOnce.err)
	}
	return mnistOnce.ds
}

func testConfig(t *testing.T, alg kinds.Algorithm) *config.Config {
	cfg := config.Default()
	cfg.Algorithm = alg
	cfg.Path.Model = "small.pt"
	cfg.Path.ExpSave = t.TempDir()
	cfg.Path.ModelName = "small"
	cfg.InputShape = []int{1, 1, 28, 28}
	cfg.P, cfg.Alf, cfg.DeltaCrop = 0.5, 4, 0.25
	cfg.Cart = []config.Slot{"cpu", "cpu"}
	cfg.ShortTermSteps, cfg.LongTermEpochs, cfg.Seed = 5, 1, 3
	return cfg
}

func newRun(t *testing.T, cfg *config.Config, eng *fake.Engine, ds *data.Dataset) *Run {
	runDir := filepath.Join(cfg.Path.ExpSave, cfg.Path.ModelName)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Run{Cfg: cfg, Engine: eng, Log: zerolog.Nop(), Device: "cpu", Shape: []int64{1, 1, 28, 28},
		RunDir: runDir, Out: filepath.Join(runDir, "small_pruned.pt"), Data: ds, Latency: true}
}

func readSummary(t *testing.T, path string) summary.Summary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s summary.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBothAlgorithms drives L2Norm and my_pruning through Execute on the
// fake engine: the target is met, every output is written, the saved model
// has the shapes plan.json gives, and no module is left open.
func TestBothAlgorithms(t *testing.T) {
	base := smallCNN(t)
	for _, tc := range []struct {
		alg  kinds.Algorithm
		data bool
	}{{kinds.AlgorithmL2Norm, false}, {kinds.AlgorithmL2Norm, true}, {kinds.AlgorithmMyPruning, true}} {
		t.Run(string(tc.alg), func(t *testing.T) {
			eng := fake.New(base)
			cfg := testConfig(t, tc.alg)
			var ds *data.Dataset
			if tc.data {
				ds = mnistData(t)
			}
			r := newRun(t, cfg, eng, ds)
			var iters int
			r.Hooks.OnIteration = func(netadapt.IterationRecord) { iters++ }
			var out bytes.Buffer
			if err := r.Execute(context.Background(), &out); err != nil {
				t.Fatal(err)
			}
			if eng.Live() != 0 {
				t.Errorf("%d modules left open", eng.Live())
			}
			s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
			if s.Algorithm != string(tc.alg) || !s.Reached || s.MACsAfter > s.Target || s.Target > s.MACsBefore/2 {
				t.Errorf("summary: %+v", s)
			}
			if tc.data != (s.AccBefore != nil && s.AccAfter != nil) {
				t.Errorf("accuracy reported %v/%v with data %v", s.AccBefore, s.AccAfter, tc.data)
			}
			if len(s.Latency) != 1 || !(s.Latency[0].AfterMs < s.Latency[0].BeforeMs) {
				t.Errorf("latency %+v", s.Latency)
			}
			for _, f := range []string{"plan.json", "report.html", "small_pruned.pt"} {
				if _, err := os.Stat(filepath.Join(r.RunDir, f)); err != nil {
					t.Error(err)
				}
			}
			if _, err := os.Stat(filepath.Join(cfg.Path.ExpSave, "small.txt")); err != nil {
				t.Error(err)
			}
			// make bench reads the phases and each iteration's time here.
			if tm := s.Timings; tm == nil || tm.IROps == 0 || tm.TotalMs <= 0 || len(tm.PhaseMs) == 0 {
				t.Errorf("summary.json timings %+v", tm)
			} else if _, ok := tm.PhaseMs["report"]; !ok {
				t.Errorf("summary.json timings lack the report phase: %v", tm.PhaseMs)
			}
			if tc.alg == kinds.AlgorithmMyPruning {
				if len(s.Iterations) == 0 || len(s.Iterations) != iters {
					t.Errorf("%d iterations in summary.json, %d hooks", len(s.Iterations), iters)
				}
				for _, it := range s.Iterations {
					if it.Seconds <= 0 {
						t.Errorf("iteration %d: %v seconds", it.Iteration, it.Seconds)
					}
				}
				if _, err := os.Stat(filepath.Join(r.RunDir, CheckpointFile)); err != nil {
					t.Error(err)
				}
			}
			// The saved model's shapes are what the plan's kept indices give.
			b, err := os.ReadFile(r.Out)
			if err != nil {
				t.Fatal(err)
			}
			m, err := eng.Load(b, "cpu", 0)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got, _ := m.Shapes()
			for name, tp := range readPlan(t, filepath.Join(r.RunDir, "plan.json")) {
				if !reflect.DeepEqual(got[name], tp) {
					t.Errorf("%s: saved %v, plan says %v", name, got[name], tp)
				}
			}
		})
	}
}

func readPlan(t *testing.T, path string) map[string][]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Tensors map[string]struct {
			After []int64 `json:"shape_after"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	out := map[string][]int64{}
	for n, tp := range p.Tensors {
		out[n] = tp.After
	}
	return out
}

// mnistSplits is the train and val splits of mnistData.
func mnistSplits(t *testing.T) (train, val *data.Split) {
	t.Helper()
	ds := mnistData(t)
	train, err := ds.Split(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	if val, err = ds.Split(data.Val); err != nil {
		t.Fatal(err)
	}
	return train, val
}

func myOptions(t *testing.T, slots ...string) MyPruningOptions {
	cfg := testConfig(t, kinds.AlgorithmMyPruning)
	o := MyPruningOptions{P: cfg.P, DeltaCrop: cfg.DeltaCrop, Alf: cfg.Alf, Slots: slots, ShortTermSteps: 5,
		LongTermEpochs: 1, Train: engine0(cfg), Seed: 3, Dir: t.TempDir(), Fingerprint: map[string]string{"P": "0.5"},
		Log: zerolog.Nop()}
	return o
}

func engine0(cfg *config.Config) (o engine.TrainOptions) {
	o = TrainOptions(cfg)
	o.BatchSize = 32
	return o
}

// TestMyPruningSlotsAndResume: two slots give the one-slot history, and a
// search cancelled after iteration 2 resumes to the same end.
func TestMyPruningSlotsAndResume(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	run := func(ctx context.Context, o MyPruningOptions) (*MyPruningResult, error) {
		eng := fake.New(base)
		bm := openSmall(ctx, t, eng)
		res, err := MyPruning(ctx, eng, bm, tr, val, o)
		if res != nil && res.Module != nil {
			res.Module.Close()
		}
		bm.Close()
		if eng.Live() != 0 {
			t.Errorf("%d modules left open", eng.Live())
		}
		return res, err
	}
	one, err := run(context.Background(), myOptions(t, "cpu"))
	if err != nil {
		t.Fatal(err)
	}
	if one.State.Iteration < 3 {
		t.Fatalf("want at least 3 iterations, got %d", one.State.Iteration)
	}
	two, err := run(context.Background(), myOptions(t, "cpu", "cpu"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one.State.History, two.State.History) || !reflect.DeepEqual(one.Kept, two.Kept) {
		t.Errorf("two slots chose differently from one")
	}

	o := myOptions(t, "cpu", "cpu")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Hooks.OnIteration = func(rec netadapt.IterationRecord) {
		if rec.Iteration == 2 {
			cancel()
		}
	}
	if _, err := run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	o.Hooks, o.Resume = Hooks{}, true
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one.State, res.State) || !reflect.DeepEqual(one.Kept, res.Kept) {
		t.Errorf("resumed run differs:\n full:    %+v\n resumed: %+v", one.State, res.State)
	}
}

// TestCandidateRequestIsData: a request survives a JSON round trip and
// gives the same result as the original.
func TestCandidateRequestIsData(t *testing.T) {
	base := smallCNN(t)
	eng := fake.New(base)
	bm := openSmall(context.Background(), t, eng)
	defer bm.Close()
	archive, _ := bm.Module.Bytes()
	g := base.Candidates(nil)[0]
	kept := cut.All(base.Candidates(nil))
	next := cut.All(base.Candidates(nil))
	next[g.ID] = next[g.ID][:g.Channels/2]
	sl, cg, err := base.Edits(kept, next)
	if err != nil {
		t.Fatal(err)
	}
	req := CandidateRequest{BaseDigest: Digest(archive), Iteration: 1, Group: g.ID, From: g.Channels, To: g.Channels / 2,
		Kept: kept, Next: next, Slices: sl, ConvGroups: cg, Device: "cpu", Validate: true, EvalBatch: 64}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back CandidateRequest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
		t.Fatalf("request changed in a JSON round trip:\n%s\n%s", b, b2)
	}
	val, _ := mnistData(t).Split(data.Val)
	r1, m1, err := RunCandidate(context.Background(), eng, archive, req, nil, val)
	if err != nil {
		t.Fatal(err)
	}
	m1.Close()
	r2, m2, err := RunCandidate(context.Background(), eng, archive, back, nil, val)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if r1.Accuracy != r2.Accuracy || r1.BaseDigest != req.BaseDigest {
		t.Errorf("results differ: %+v vs %+v", r1, r2)
	}
}

// TestTargetNotReachedSaysWhy: when channel shuffles freeze most of the
// MACs, the run cannot reach P and its error names the reason with the
// share of the MACs it freezes, as `gopruner graph` ranks them.
func TestTargetNotReachedSaysWhy(t *testing.T) {
	b := irtest.New()
	shuffle := func(y int) int {
		y = b.View(y, 1, 2, 8, 28, 28)
		y = b.Act("aten::contiguous", b.Transpose(y, 1, 2), b.Int(0))
		return b.View(y, 1, 16, 28, 28)
	}
	x := b.Input(1, 1, 28, 28)
	y := shuffle(b.Relu(b.Conv(x, "conv1", 16, 3, irtest.ConvOpts{Pad: 1})))
	y = shuffle(b.Relu(b.Conv(y, "conv2", 16, 3, irtest.ConvOpts{Pad: 1})))
	y = b.Relu(b.Conv(y, "conv3", 8, 1, irtest.ConvOpts{}))
	b.Output(b.Linear(b.Flatten(b.AdaptiveAvgPool(y, 1, 1), 1), "fc", 10, true))
	eng := fake.New(mnistBase(t, b))
	r := newRun(t, testConfig(t, kinds.AlgorithmL2Norm), eng, nil)
	err := r.Execute(context.Background(), io.Discard)
	t.Log(err)
	// conv1 and conv2 are frozen: 784·16·9 + 784·16·16·9 of those plus
	// conv3's 784·16·8 and fc's 90.
	frozen := float64(784*16*9+784*16*16*9) / float64(784*16*9+784*16*16*9+784*16*8+90)
	want := fmt.Sprintf("; frozen conv/linear MACs: %.1f%% aten::view splits or merges the channel dim with another dim; ", 100*frozen)
	if err == nil || !strings.Contains(err.Error(), "target not reached") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}
}

// TestCommitAdoptsHeldCandidate: holding the evaluated candidates lets
// Commit adopt the winner without re-running it, and gives the history a
// re-run gives (heldBudget 0 holds nothing).
func TestCommitAdoptsHeldCandidate(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	run := func(budget int, slots ...string) *MyPruningResult {
		t.Helper()
		old := heldBudget
		heldBudget = budget
		defer func() { heldBudget = old }()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		res, err := MyPruning(context.Background(), eng, bm, tr, val, myOptions(t, slots...))
		if err != nil {
			t.Fatal(err)
		}
		res.Module.Close()
		if eng.Live() != 1 { // bm's module
			t.Errorf("budget %d: %d modules left open besides the original", budget, eng.Live()-1)
		}
		return res
	}
	cands := func(r *MyPruningResult) (n int) {
		for _, it := range r.State.History {
			n += len(it.Candidates)
		}
		return n
	}
	for _, slots := range [][]string{{"cpu"}, {"cpu", "cpu"}} {
		held, rerun := run(1<<30, slots...), run(0, slots...)
		if !reflect.DeepEqual(held.State, rerun.State) || !reflect.DeepEqual(held.Kept, rerun.Kept) {
			t.Errorf("%d slot(s): adopting the held winner gives another search than re-running it", len(slots))
		}
		if n := cands(held); held.Runs != n {
			t.Errorf("%d slot(s), held: %d candidate runs for %d candidates (a commit re-ran)", len(slots), held.Runs, n)
		}
		if n, it := cands(rerun), rerun.State.Iteration; rerun.Runs != n+it {
			t.Errorf("%d slot(s), nothing held: %d runs, want %d candidates + %d commits", len(slots), rerun.Runs, n, it)
		}
	}
}

// TestScoresSplitOverSlots: with several slots every slot scores its share
// of the batches, and the parts add up to what one slot scores alone.
func TestScoresSplitOverSlots(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	eng := fake.New(base)
	bm := openSmall(context.Background(), t, eng)
	defer bm.Close()
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	scores := func(slots ...string) map[int][]float64 {
		o := myOptions(t, slots...)
		o.Criterion, o.TaylorBatches = kinds.TaylorFOWeight, 4
		return slotScores(t, eng, bm, orig, tr, val, o, 2)
	}
	one, two := scores("cpu"), scores("cpu", "cpu")
	if len(one) == 0 || !reflect.DeepEqual(one, two) {
		t.Errorf("two slots' summed parts differ from one slot's scores:\n one: %v\n two: %v", one, two)
	}
	if eng.Live() != 1 {
		t.Errorf("%d scoring copies left open", eng.Live()-1)
	}
}

// slotScores is what the evaluator of bm's model (archive orig) with o
// scores it by, with seed 9, on o.Slots sharing threads CPU threads.
func slotScores(t *testing.T, eng engine.Engine, bm *engine.Model, orig []byte, tr, val *data.Split, o MyPruningOptions, threads int) map[int][]float64 {
	t.Helper()
	devs, per, err := slotDevices(o.Slots, threads)
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvaluator(eng, &bm.Base, tr, val, o, devs, per, bm.Candidates(nil), orig)
	defer ev.Close()
	s, err := ev.computeScores(context.Background(), 9)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadCounter counts Load calls (archive reads) of the engine it wraps.
type loadCounter struct {
	*fake.Engine
	loads atomic.Int32
}

func (c *loadCounter) Load(archive []byte, dev string, threads int) (engine.Module, error) {
	c.loads.Add(1)
	return c.Engine.Load(archive, dev, threads)
}

// TestScoringLoadsTheSlotsBase: the iteration's scores are computed on
// copies of each slot's base, so that the current model is read from its
// archive once per slot and an iteration, not again by every candidate
// slot after the scoring did; a slot whose thread count differs from the
// scoring's (L2Norm scores on all the threads) is left alone.
func TestScoringLoadsTheSlotsBase(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	eng := &loadCounter{Engine: fake.New(base)}
	bm := openSmall(context.Background(), t, eng.Engine)
	defer bm.Close()
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cands := bm.Candidates(nil)
	for _, tc := range []struct {
		slots     []string
		criterion kinds.Criterion
		loads     int32 // by the scoring
		held      bool  // the slots hold the base afterwards
	}{
		{[]string{"cpu"}, kinds.TaylorFOWeight, 1, true},
		{[]string{"cpu", "cpu"}, kinds.TaylorFOWeight, 2, true},
		{[]string{"cpu", "cpu"}, kinds.L2Norm, 1, false},
	} {
		o := myOptions(t, tc.slots...)
		o.Criterion, o.TaylorBatches, o.Threads = tc.criterion, 4, 2
		devs, threads, err := slotDevices(tc.slots, o.Threads)
		if err != nil {
			t.Fatal(err)
		}
		ev := newEvaluator(eng, &bm.Base, tr, val, o, devs, threads, cands, orig)
		eng.loads.Store(0)
		if _, err := ev.scoresFor(1); err != nil {
			t.Fatal(err)
		}
		if got := eng.loads.Load(); got != tc.loads {
			t.Errorf("%v %s: the scoring read the archive %d times, want %d", tc.slots, tc.criterion, got, tc.loads)
		}
		eng.loads.Store(0)
		g := cands[0]
		for k := range ev.slots {
			req, err := ev.request(k, netadapt.Candidate{Iteration: 1, Group: g.ID, From: g.Channels, To: g.Channels - 4}, true)
			if err != nil {
				t.Fatal(err)
			}
			res, m, err := ev.runOn(context.Background(), k, req)
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
			if loaded := res.Timing.Load > 0; loaded == tc.held {
				t.Errorf("%v %s: slot %d's candidate loaded its base: %v, want %v", tc.slots, tc.criterion, k, loaded, !tc.held)
			}
		}
		if got, want := eng.loads.Load(), int32(len(tc.slots)); tc.held && got != 0 || !tc.held && got != want {
			t.Errorf("%v %s: the candidates read the archive %d times after the scoring", tc.slots, tc.criterion, got)
		}
		ev.Close()
	}
	if eng.Live() != 1 {
		t.Errorf("%d copies left open", eng.Live()-1)
	}
}

// TestBNBatches: with bn_batches every cut model has its BatchNorm
// statistics re-estimated before it is fine-tuned and validated (the fake
// counts them in the model it adopts), and without it none is.
func TestBNBatches(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	recalibrated := func(bn int) (int, int) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		o := myOptions(t, "cpu", "cpu")
		o.BNBatches, o.LongTermEpochs = bn, 0
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Module.Close()
		return recalibrations(t, res), res.State.Iteration
	}
	if n, _ := recalibrated(0); n != 0 {
		t.Errorf("bn_batches 0: the final model was re-estimated %d times", n)
	}
	if n, iters := recalibrated(3); n != iters || iters == 0 {
		t.Errorf("bn_batches 3: the final model was re-estimated %d times in %d iterations, want once per iteration", n, iters)
	}
}

// recalibrations is how often the fake engine's final model had its
// BatchNorm statistics re-estimated (it records that in its bytes).
func recalibrations(t *testing.T, res *MyPruningResult) int {
	t.Helper()
	b, err := res.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Recalibrated int `json:"recalibrated"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Recalibrated
}

// mnistBase is the cut base of the graph b built, for 1×28×28 inputs.
func mnistBase(t *testing.T, b *irtest.Builder) cut.Base {
	t.Helper()
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	base, err := cut.FromGraph(g, []int64{1, 1, 28, 28})
	if err != nil {
		t.Fatal(err)
	}
	return *base
}
