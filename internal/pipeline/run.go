package pipeline

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/report"
)

// Run is one prune run with every input checked: the CLI builds it from the
// config and calls Execute.
type Run struct {
	Cfg    *config.Config
	Engine engine.Engine
	Log    zerolog.Logger
	Device string  // "cpu", "cuda:N"
	Shape  []int64 // the example input
	// RunDir is exp_save/model_name; Out the pruned model; PlanOut an extra
	// copy of plan.json ("" for none).
	RunDir, Out, PlanOut string
	// Data is the data set (nil when the run has none).
	Data *data.Dataset
	// Broker says where my_pruning's candidates run (the data set is filled
	// in from Data and the config).
	Broker BrokerOptions
	// Hooks report my_pruning's progress (the CLI's table).
	Hooks   Hooks
	Started time.Time
	// Latency measures the original and pruned models side by side for the
	// report (it costs a few hundred forwards).
	Latency bool

	phases []phase // for summary.json's timings and the "timings" log line
}

// Outcome is what an algorithm hands back; the outputs are written from it.
type Outcome struct {
	Pruned     engine.Module
	Plan       *plan.Plan
	Kept       map[int][]int
	Target     int64
	Reached    bool
	AccBefore  *float64
	AccAfter   *float64
	Iterations []summary.Iteration
	Points     []report.Point
	// Candidates is my_pruning's candidate time breakdown (nil otherwise).
	Candidates *summary.CandidateTimings
	// Distill is the distillation the fine-tunes used (nil: none ran
	// distilled).
	Distill *summary.Distill
	// Rewound says my_pruning's long-term fine-tune started from the
	// original weights at the searched structure (rewind).
	Rewound bool
	// Latency is my_pruning's target: latency prediction and measurement
	// (nil otherwise).
	Latency *LatencyReport

	// TestAccBefore and TestAccAfter are on the test split (nil without
	// one); Execute fills them for every algorithm.
	TestAccBefore, TestAccAfter *float64
}

// Algorithm is a pruning algorithm: from the opened original model to an
// Outcome. It never modifies base's module, but may Take it when the run
// needs the original no more.
type Algorithm interface {
	Name() string
	Prune(ctx context.Context, r *Run, base *engine.Model) (*Outcome, error)
}

// AlgorithmFor is the algorithm a config names.
func AlgorithmFor(name kinds.Algorithm) (Algorithm, error) {
	switch name {
	case kinds.AlgorithmL2Norm:
		return L2NormAlgorithm{}, nil
	case kinds.AlgorithmMyPruning:
		return MyPruningAlgorithm{}, nil
	}
	return nil, fail.Usagef("algorithm %q: want my_pruning or L2Norm", name)
}

// phase is how long one step of the run took.
type phase struct {
	name string
	d    time.Duration
}

// lap records the phase that began at start and returns now, the start of
// the next one.
func (r *Run) lap(name string, start time.Time) time.Time {
	now := time.Now()
	r.phases = append(r.phases, phase{name, now.Sub(start)})
	return now
}

// logTimings logs one "timings" line: summary.json's timings as they stand
// now (the report phase included).
func (r *Run) logTimings(base *engine.Model) {
	t := r.timings(base)
	ev := r.Log.Info()
	for _, name := range slices.Sorted(maps.Keys(t.PhaseMs)) {
		ev = ev.Float64(name+"_ms", t.PhaseMs[name])
	}
	ev.Float64("total_ms", t.TotalMs).Int("ir_ops", t.IROps).Msg("timings")
}

// FineTunes says whether the run trains the model: my_pruning always
// fine-tunes its candidates, L2Norm only with training on.
func FineTunes(cfg *config.Config) bool {
	return cfg.Finetune || cfg.Algorithm == kinds.AlgorithmMyPruning
}

// Execute opens the model, runs the algorithm and writes the outputs; the
// human summary goes to stdout.
func (r *Run) Execute(ctx context.Context, stdout io.Writer) error {
	cfg := r.Cfg
	if r.Started.IsZero() {
		r.Started = time.Now()
	}
	alg, err := AlgorithmFor(cfg.Algorithm)
	if err != nil {
		return err
	}
	// The model, the input shape and iskl are checked before the first log
	// line, so that a bad input is reported as the one error line alone.
	base, err := r.Engine.Open(ctx, cfg.Path.Model, r.Shape, r.Device)
	if err != nil {
		return err
	}
	defer base.Close()
	// The trace's JSON and the analysis leave the Go heap twice its live
	// size; that memory would sit under the surgery and the save.
	debug.FreeOSMemory()
	r.phases = append(r.phases, phase{"load", base.Timings.Load}, phase{"ir_export", base.Timings.IRExport},
		phase{"analysis", base.Timings.Analysis})
	if _, err := base.Excluded(cfg.Iskl); err != nil {
		return err
	}
	if err := r.checkClasses(base); err != nil {
		return err
	}
	r.Log.Info().Str("model", cfg.Path.Model).Str("algorithm", string(cfg.Algorithm)).Float64("P", cfg.P).Int("alf", cfg.Alf).
		Str("device", r.Device).Msg("prune")
	if FineTunes(cfg) {
		for _, w := range base.Warnings {
			r.Log.Warn().Msg(w)
		}
	}
	t := time.Now()
	res, err := alg.Prune(ctx, r, base)
	if cfg.Algorithm == kinds.AlgorithmMyPruning {
		r.lap("my_pruning", t)
	}
	if err != nil {
		return err
	}
	defer res.Pruned.Close()
	if res.TestAccBefore, res.TestAccAfter, err = r.testAccuracy(ctx, base, res.Pruned); err != nil {
		return err
	}
	return r.finish(base, res, stdout)
}

// checkClasses refuses a data set with more classes than the model's
// prediction has outputs before any work: every label indexes an output
// (through the class list saved beside the model, else as an integer or a
// name in sorted order), and the first batch with a label past the last
// output would otherwise fail mid-search. Outputs that are not [N, classes]
// are left to the steps that need them.
func (r *Run) checkClasses(base *engine.Model) error {
	if r.Data == nil || base.Graph == nil {
		return nil
	}
	g := base.Graph
	sel := 0
	if g.Output != nil {
		sel = g.Output.Selected
	}
	if sel < 0 || sel >= len(g.Outputs) {
		return nil
	}
	v := g.Value(g.Outputs[sel])
	if v == nil || len(v.Shape) != 2 {
		return nil
	}
	return CheckClasses(r.Cfg.Path.Dataset, r.Cfg.Path.Model, r.Data.Classes, v.Shape[1])
}

// CheckClasses refuses a data set whose classes (in label order) outnumber
// a classifier's outputs, naming the class past the last output.
func CheckClasses(dataset, model string, classes []string, outputs int64) error {
	if n := int64(len(classes)); n > outputs {
		return fail.Usagef("dataset %s has %d classes (%s) but model %s has only %d outputs: class %q would be output %d (labels index the outputs: integers from 0, names in sorted order, or the names of the model's .classes.json)",
			dataset, n, classList(classes), model, outputs, classes[n-1], n-1)
	}
	return nil
}

// classList names a few classes for an error message.
func classList(c []string) string {
	if len(c) <= 5 {
		return strings.Join(c, ", ")
	}
	return strings.Join(c[:5], ", ") + fmt.Sprintf(", … %d more", len(c)-5)
}

func (r *Run) split(name string) (*data.Split, error) {
	if r.Data == nil {
		return nil, fail.Usagef("no dataset: give --dataset or path.dataset")
	}
	s, err := r.Data.Split(name)
	if err != nil {
		return nil, fail.Usage(err)
	}
	return s, nil
}

// TrainOptions are the long-term fine-tune's settings from the config.
func TrainOptions(cfg *config.Config) engine.TrainOptions {
	t := cfg.Train
	return engine.TrainOptions{Epochs: cfg.LongTermEpochs, BatchSize: t.BatchSize, LR: t.LR, Momentum: t.Momentum,
		WeightDecay: t.WeightDecay, Nesterov: t.Nesterov, Optimizer: t.Optimizer, WarmupSteps: t.WarmupSteps,
		Cosine: t.Cosine, Seed: cfg.Seed, Distill: distillOf(cfg)}
}

// distillOf is the distillation the config asks for, nil when off.
func distillOf(cfg *config.Config) *engine.Distill {
	if !cfg.Distill {
		return nil
	}
	return &engine.Distill{Temperature: cfg.DistillTemperature, Weight: cfg.DistillWeight}
}

// distillSummary records d in summary.json (nil, omitted, when off).
func distillSummary(d *engine.Distill) *summary.Distill {
	if d == nil {
		return nil
	}
	return &summary.Distill{Temperature: d.Temperature, Weight: d.Weight}
}

// L2NormAlgorithm is the one-shot cut by filter L2 norm, with an optional
// fine-tune.
type L2NormAlgorithm struct{}

// Name is the config's name.
func (L2NormAlgorithm) Name() string { return string(kinds.AlgorithmL2Norm) }

// Prune scores, cuts a clone of the model to the target and, with data,
// evaluates and fine-tunes it.
func (L2NormAlgorithm) Prune(ctx context.Context, r *Run, base *engine.Model) (*Outcome, error) {
	cfg := r.Cfg
	t := time.Now()
	groups := base.Candidates(nil)
	scores, err := base.Module.Scores(ctx, kinds.L2Norm, groups, nil, engine.ScoreOptions{})
	if err != nil {
		return nil, err
	}
	t = r.lap("scoring", t)
	os, err := base.OneShot(scores, cutOptions(cfg))
	if err != nil {
		return nil, err
	}
	t = r.lap("search", t)
	// The scoring and the plan leave garbage of their own (3–4 MB on a
	// densenet121): it goes back before the surgery's peak.
	debug.FreeOSMemory()
	// Without a latency comparison or an evaluation the original is needed
	// no more: cut it in place rather than copy it (a copy serialises and
	// reloads the whole model).
	var pruned engine.Module
	if !r.Latency && r.Data == nil {
		pruned = base.Take()
	} else if pruned, err = base.Module.Clone(); err != nil {
		return nil, err
	}
	res := &Outcome{Pruned: pruned, Plan: os.Plan, Kept: os.Kept, Target: os.Target, Reached: os.Reached}
	ok := false
	defer func() {
		if !ok {
			pruned.Close()
		}
	}()
	slices, convGroups, err := base.PlanSlices(os.Plan)
	if err != nil {
		return nil, err
	}
	if err := pruned.Cut(slices, convGroups); err != nil {
		return nil, err
	}
	// The cut's garbage (the slices, the spec handed to the shim) goes back
	// before the run check's trace: with the tensors waiting in the model
	// file until the cut, that trace is the run's peak (densenet121: 1.5 MB).
	debug.FreeOSMemory()
	if err := pruned.Runs(os.Plan.InputShape); err != nil {
		return nil, err
	}
	t = r.lap("surgery", t)
	r.Log.Info().Int64("macs_before", os.Plan.MACsBefore).Int64("macs_after", os.Plan.MACsAfter).Int("groups", len(os.Plan.Groups)).Msg("L2Norm one-shot")
	if r.Data != nil {
		val, err := r.split(data.Val)
		if err != nil {
			return nil, err
		}
		before, err := base.Module.Evaluate(ctx, val, cfg.Train.BatchSize)
		if err != nil {
			return nil, err
		}
		res.AccBefore = &before.Accuracy
		if cfg.Finetune && cfg.LongTermEpochs > 0 {
			trainSplit, err := r.split(data.Train)
			if err != nil {
				return nil, err
			}
			to := TrainOptions(cfg)
			// The original is still open here (data means it was cloned,
			// not cut in place): it is the teacher.
			to.Teacher = base.Module
			fit, err := pruned.Fit(ctx, trainSplit, to)
			if err != nil {
				return nil, fmt.Errorf("fine-tune: %w", err)
			}
			res.Distill = distillSummary(to.Distill)
			r.Log.Info().Int("steps", fit.Steps).Float64("loss", fit.Loss).Float64("images_per_s", fit.ImagesPerSec).Msg("fine-tuned")
		}
		after, err := pruned.Evaluate(ctx, val, cfg.Train.BatchSize)
		if err != nil {
			return nil, err
		}
		res.AccAfter = &after.Accuracy
		r.lap("finetune_eval", t)
	}
	ok = true
	return res, nil
}

func cutOptions(cfg *config.Config) cut.OneShotOptions {
	return cut.OneShotOptions{P: cfg.P, Alf: cfg.Alf, ISKL: cfg.Iskl, Global: cfg.Global}
}

// MyPruningAlgorithm is the NetAdapt search over the cart slots.
type MyPruningAlgorithm struct{}

// Name is the config's name.
func (MyPruningAlgorithm) Name() string { return string(kinds.AlgorithmMyPruning) }

// Prune runs the search.
func (MyPruningAlgorithm) Prune(ctx context.Context, r *Run, base *engine.Model) (*Outcome, error) {
	cfg := r.Cfg
	trainSplit, err := r.split(data.Train)
	if err != nil {
		return nil, err
	}
	val, err := r.split(data.Val)
	if err != nil {
		return nil, err
	}
	slots := make([]string, len(cfg.Cart))
	for i, s := range cfg.Cart {
		slots[i] = string(s)
	}
	var clock iterationClock
	var cands candidateLog
	res, err := MyPruning(ctx, r.Engine, base, trainSplit, val, MyPruningOptions{
		P: cfg.P, DeltaCrop: cfg.DeltaCrop, Alf: cfg.Alf, Select: cfg.Select, Step: cfg.Step, ResizeAlf: cfg.ResizeAlf,
		Schedule: cfg.DeltaSchedule, DeltaDecay: cfg.DeltaDecay, MaxGroupCut: cfg.MaxGroupCut, TieBreak: cfg.TieBreak, Shortlist: cfg.Shortlist, CommitTop: cfg.CommitTop, CommonBatches: cfg.CommonBatches, BNBatches: cfg.BNBatches,
		BNBatchesAuto: cfg.Origin("bn_batches").Source == config.SourceDefault,
		Target:        cfg.Target, Latency: LatencyOptions{Device: cfg.LatencyDevice, Threads: cfg.LatencyThreads, Batch: int64(cfg.LatencyBatch)},
		Slots: slots, Criterion: cfg.Criterion, TaylorBatches: cfg.TaylorBatches,
		ShortTermSteps: cfg.ShortTermSteps, LongTermEpochs: cfg.LongTermEpochs, Rewind: cfg.Rewind, Train: TrainOptions(cfg), EvalBatch: cfg.Train.BatchSize, EvalSamples: cfg.EvalSamples,
		ISKL: cfg.Iskl, Seed: cfg.Seed, Threads: cfg.Threads, Dir: r.RunDir, Resume: cfg.Resume,
		Fingerprint: cfg.Fingerprint(), Log: r.Log, Hooks: cands.wrap(clock.wrap(r.Hooks)), Broker: r.brokerOptions(),
	})
	if err != nil {
		return nil, err
	}
	out := &Outcome{Pruned: res.Module, Plan: res.Plan, Kept: res.Kept, Target: res.State.Target,
		Reached: res.State.MACs <= res.State.Target, Candidates: res.Timing.Summary(res.Runs, res.Scoring, res.Commit),
		Latency: res.Latency}
	out.Candidates.Screens = res.Screens
	if cfg.ShortTermSteps > 0 || cfg.LongTermEpochs > 0 {
		out.Distill = distillSummary(distillOf(cfg))
	}
	out.Rewound = cfg.Rewind && res.State.FineTuned
	ab, aa := res.AccBefore, res.AccAfter
	out.AccBefore, out.AccAfter = &ab, &aa
	out.Points = append(out.Points, report.Point{Iteration: 0, MACs: res.State.MACs0, Accuracy: res.AccBefore, Label: "original"})
	for _, it := range res.State.History {
		si := iterationOf(it)
		si.Seconds = clock.of(it.Iteration)
		si.TieBroken, si.Results = it.TieBroken, cands.results(it)
		si.Worker = res.Workers[[2]int{it.Iteration, it.Group}]
		for i := range si.Results {
			si.Results[i].Worker = res.Workers[[2]int{it.Iteration, si.Results[i].Group}]
		}
		out.Iterations = append(out.Iterations, si)
		out.Points = append(out.Points, report.Point{Iteration: it.Iteration, MACs: it.MACs, Accuracy: it.Accuracy,
			Label: iterationLabel(it)})
	}
	return out, nil
}

// brokerOptions is r.Broker with the data set remote workers open.
func (r *Run) brokerOptions() BrokerOptions {
	b := r.Broker
	if r.Data != nil {
		b.Dataset = DatasetRef{Dir: r.Cfg.Path.Dataset, Options: r.Data.Options()}
	}
	return b
}

func iterationOf(it netadapt.IterationRecord) summary.Iteration {
	si := summary.Iteration{Iteration: it.Iteration, Layers: it.Layers, Group: it.Group, From: it.From, To: it.To,
		MACs: it.MACs, Accuracy: it.Accuracy, Candidates: len(it.Candidates), Budget: it.Budget, Delta: it.Delta}
	for _, c := range it.Joined {
		si.Joined = append(si.Joined, summary.Cut{Group: c.Group, Layers: c.Layers, From: c.From, To: c.To})
	}
	return si
}

// iterationLabel names an iteration's cuts for the report's points.
func iterationLabel(it netadapt.IterationRecord) string {
	l := fmt.Sprintf("%s %d→%d", strings.Join(it.Layers, ","), it.From, it.To)
	for _, c := range it.Joined {
		l += fmt.Sprintf(" + %s %d→%d", strings.Join(c.Layers, ","), c.From, c.To)
	}
	return l
}

// finish saves the model, plan, summary and report, and prints the table.
func (r *Run) finish(base *engine.Model, res *Outcome, stdout io.Writer) error {
	cfg := r.Cfg
	t := time.Now()
	if err := res.Pruned.Save(r.Out); err != nil {
		return fmt.Errorf("save %s: %w", r.Out, err)
	}
	s := &summary.Summary{
		Algorithm: string(cfg.Algorithm), Model: cfg.Path.Model,
		MACsBefore: res.Plan.MACsBefore, MACsAfter: res.Plan.MACsAfter,
		ParamsBefore: res.Plan.ParamsBefore, ParamsAfter: res.Plan.ParamsAfter,
		AccBefore: res.AccBefore, AccAfter: res.AccAfter, Iterations: res.Iterations,
		ModelOut: r.Out, PlanOut: r.PlanOut, Target: res.Target, Reached: res.Reached,
		Started: r.Started, Layers: layerTable(base, res.Kept),
	}
	s.TestAccBefore, s.TestAccAfter = res.TestAccBefore, res.TestAccAfter
	s.Distill = res.Distill
	s.Rewound = res.Rewound
	if cfg.Algorithm == kinds.AlgorithmMyPruning {
		s.Criterion = string(cfg.Criterion)
		s.Resource = string(kinds.Or(cfg.Target, kinds.TargetMACs))
	}
	if l := res.Latency; l != nil {
		s.LatencyTarget = &summary.LatencyTarget{Device: l.Device, Threads: l.Threads, Batch: l.Batch,
			PredictedBeforeMs: float64(l.PredictedBeforeNs) / 1e6, PredictedAfterMs: float64(l.PredictedAfterNs) / 1e6,
			MeasuredBeforeMs: l.MeasuredBeforeNs / 1e6, MeasuredAfterMs: l.MeasuredAfterNs / 1e6,
			ResidueMs: l.ResidueNs / 1e6, Layers: l.Layers, Points: l.Points, Timed: l.Timed, Untabled: l.Untabled,
			Cached: l.Cached, TableSeconds: l.TableSeconds, Anchors: l.Anchors, AnchorsSkipped: l.AnchorsSkipped, StateRetries: l.StateRetries,
			FinalTable: l.FinalTable, TablesDiscarded: l.TablesDiscarded}
		for _, t := range l.Tables {
			s.LatencyTarget.Tables = append(s.LatencyTarget.Tables, summary.StateTable{OriginalMs: float64(t.FullNs) / 1e6,
				PredictedAfterMs: float64(t.PredictedAfterNs) / 1e6, Anchors: t.Anchors})
		}
		if e := l.ErrorPct(); !math.IsNaN(e) {
			s.LatencyTarget.ErrorPct = &e
		}
		if e := l.SpeedupErrorPct(); !math.IsNaN(e) {
			s.LatencyTarget.SpeedupErrorPct = &e
		}
	}
	t = r.lap("save", t)
	if r.Latency {
		if ls, err := r.Engine.Latency([]engine.Module{base.Module, res.Pruned}, r.Shape); err == nil {
			s.Latency = []summary.Latency{{Device: ls[0].Device, Batch: ls[0].Batch, BeforeMs: ls[0].MedianMs, AfterMs: ls[1].MedianMs}}
		} else {
			r.Log.Warn().Err(err).Msg("latency not measured")
		}
		t = r.lap("latency", t)
	}
	// The models are saved and measured: their memory goes back before the
	// report, whose Go heap (5 MB) used to land on top of it, the peak of a
	// one-shot prune of a mobilenet_v2 or a densenet121.
	res.Pruned.Close()
	base.Close()
	if m, ok := r.Engine.(engine.MemoryReleaser); ok {
		m.ReleaseMemory()
	}
	// The plan is written once the models are gone: its encoding (1.8 MB
	// for a densenet121) used to be the save phase's largest transient.
	plans := []string{filepath.Join(r.RunDir, "plan.json")}
	if r.PlanOut != "" {
		plans = append(plans, r.PlanOut)
	}
	if err := res.Plan.Write(plans...); err != nil {
		return err
	}
	t = r.lap("save", t)
	s.Report = filepath.Join(r.RunDir, "report.html")
	if err := report.Write(s.Report, report.FromSummary(s, res.Points)); err != nil {
		r.Log.Warn().Err(err).Msg("report not written")
		s.Report = ""
	}
	r.lap("report", t)
	s.Seconds = time.Since(r.Started).Seconds()
	s.Timings = r.timings(base)
	s.Timings.Candidates = res.Candidates
	if err := s.WriteJSON(filepath.Join(r.RunDir, "summary.json")); err != nil {
		return err
	}
	txt := filepath.Join(cfg.Path.ExpSave, cfg.Path.ModelName+".txt")
	if err := s.WriteText(txt); err != nil {
		return err
	}
	r.logTimings(base)
	s.Text(stdout)
	fmt.Fprintf(stdout, "summary:      %s\n", txt)
	if !res.Reached {
		return fmt.Errorf("target not reached: MACs %d of %d (%.1f%% removed, P=%.2f asked)%s; the best model found is saved at %s",
			res.Plan.MACsAfter, res.Plan.MACsBefore, 100*(1-float64(res.Plan.MACsAfter)/float64(res.Plan.MACsBefore)), cfg.P,
			frozenNote(base), r.Out)
	}
	return nil
}

// frozenNote says, for a run that missed its target, which reasons freeze
// the most conv/linear MACs (up to three, as `gopruner graph` ranks them):
// "; frozen conv/linear MACs: 34.0% aten::view splits ...". It is empty when no
// MACs are frozen or the coverage cannot be computed.
func frozenNote(base *engine.Model) string {
	cov, err := flops.Attribute(base.Graph, base.Analysis)
	if err != nil {
		return ""
	}
	if f := cov.FrozenText(3); f != "" {
		return "; frozen conv/linear MACs: " + f
	}
	return ""
}

// layerTable lists each producing layer's output channels before and after.
func layerTable(base *engine.Model, kept map[int][]int) []summary.Layer {
	var out []summary.Layer
	for _, g := range base.Analysis.Groups {
		if len(g.Layers) == 0 {
			continue
		}
		after := g.Channels
		if k, ok := kept[g.ID]; ok {
			after = len(k)
		}
		for _, l := range g.Layers {
			out = append(out, summary.Layer{Name: l, Before: g.Channels, After: after})
		}
	}
	return out
}
