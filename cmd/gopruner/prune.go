package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/report"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/latency"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/prune"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/gopruner/gopruner/torch"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) {
		root.AddCommand(newPruneCmd())
		// Plain `gopruner` prunes, as the old tool did.
		mustRegister(root)
		root.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fail.Usagef("unknown command %q for \"gopruner\"", args[0])
			}
			return runPrune(cmd)
		}
	})
}

func mustRegister(cmd *cobra.Command, keys ...string) {
	if err := config.RegisterFlags(cmd.Flags(), keys...); err != nil {
		panic(err) // a key list in the source is wrong: a bug, caught by any test
	}
}

func newPruneCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Prune a model to a MACs target (my_pruning or L2Norm), fine-tune, save",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runPrune(cmd) },
	}
	mustRegister(cmd)
	return cmd
}

// newLogger logs to stderr (console or JSON) at the configured level and,
// when runDir is set, everything from debug up to runDir/log.jsonl, so the
// file keeps every candidate of every iteration.
func newLogger(c *config.Config, runDir string) (zerolog.Logger, func(), error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(c.LogLevel))
	if err != nil || c.LogLevel == "" {
		lvl = zerolog.InfoLevel
	}
	var console io.Writer = os.Stderr
	if c.LogFormat != config.LogFormatJSON {
		console = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05"}
	}
	closeFn := func() {}
	var w io.Writer = levelFilter{w: console, min: lvl}
	base := lvl
	if runDir != "" {
		f, err := os.OpenFile(filepath.Join(runDir, "log.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return zerolog.Nop(), nil, fmt.Errorf("log file: %w", err)
		}
		w = zerolog.MultiLevelWriter(levelFilter{w: console, min: lvl}, levelFilter{w: f, min: zerolog.DebugLevel})
		base = min(lvl, zerolog.DebugLevel)
		closeFn = func() { f.Close() }
	}
	return zerolog.New(w).Level(base).With().Timestamp().Logger(), closeFn, nil
}

// levelFilter passes on the events at or above min.
type levelFilter struct {
	w   io.Writer
	min zerolog.Level
}

func (f levelFilter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f levelFilter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < f.min {
		return len(p), nil
	}
	return f.w.Write(p)
}

// run is everything a pruning run needs, resolved from the config.
type pruneRun struct {
	cfg     *config.Config
	log     zerolog.Logger
	dev     torch.Device
	shape   []int64
	runDir  string
	out     string
	planOut string
	ds      *data.Dataset
	started time.Time
	phases  []phase // for the "timings" log line
}

// phase is how long one step of the run took.
type phase struct {
	name string
	d    time.Duration
}

// lap records the phase that began at start and returns now, the start of
// the next one.
func (r *pruneRun) lap(name string, start time.Time) time.Time {
	now := time.Now()
	r.phases = append(r.phases, phase{name, now.Sub(start)})
	return now
}

// logTimings logs one "timings" line: milliseconds per phase (make bench
// reads it with --log-format json), the IR's op count and the total.
func (r *pruneRun) logTimings(am *model.Analyzed) {
	ev := r.log.Info()
	for _, p := range r.phases {
		ev = ev.Float64(p.name+"_ms", float64(p.d.Microseconds())/1e3)
	}
	ev.Float64("total_ms", float64(time.Since(r.started).Microseconds())/1e3).Int("ir_ops", len(am.Graph.Ops)).Msg("timings")
}

func runPrune(cmd *cobra.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	return pruneWith(cmd.Context(), cfg, cmd.OutOrStdout())
}

// pruneWith checks the inputs of cfg, then prunes.
func pruneWith(ctx context.Context, cfg *config.Config, out io.Writer) error {
	r, closeLog, err := prepare(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeLog()
	return r.execute(ctx, out)
}

// prepare checks every input before any work, so a bad flag never costs a
// long run: the model, the shape, the devices, the outputs.
func prepare(ctx context.Context, cfg *config.Config) (*pruneRun, func(), error) {
	if cfg.Path.Model == "" {
		return nil, nil, fail.Usagef("no model: give --model or path.model in Pruning.yaml")
	}
	if len(cfg.InputShape) == 0 {
		return nil, nil, fail.Usagef("no input shape: give --input-shape (e.g. 1,3,224,224) or input_shape in Pruning.yaml")
	}
	r := &pruneRun{cfg: cfg, started: time.Now()}
	for _, d := range cfg.InputShape {
		r.shape = append(r.shape, int64(d))
	}
	var err error
	if r.dev, _, err = setupTorch(cfg); err != nil {
		return nil, nil, err
	}
	for _, s := range cfg.Cart {
		if _, err := usableDevice(string(s)); err != nil {
			return nil, nil, fmt.Errorf("cart: %w", err)
		}
	}
	if cfg.Algorithm == kinds.AlgorithmMyPruning && cfg.Path.Dataset == "" {
		return nil, nil, fail.Usagef("my_pruning evaluates candidates on data: give --dataset or path.dataset")
	}
	if cfg.Algorithm == kinds.AlgorithmL2Norm && cfg.Finetune && cfg.Path.Dataset == "" {
		return nil, nil, fail.Usagef("training is on but there is no dataset: give --dataset or set training: false (--finetune=false)")
	}
	r.runDir = filepath.Join(cfg.Path.ExpSave, cfg.Path.ModelName)
	r.out = cfg.Out
	if r.out == "" {
		r.out = filepath.Join(r.runDir, cfg.Path.ModelName+"_pruned.pt")
	}
	if err := checkOutPath(cfg.Path.Model, r.out); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(r.runDir, 0o755); err != nil {
		return nil, nil, fail.Usagef("exp_save %s: %v", cfg.Path.ExpSave, err)
	}
	if err := checkWritableDir(r.runDir, "exp_save"); err != nil {
		return nil, nil, err
	}
	if err := checkWritableDir(filepath.Dir(r.out), "--out "+r.out); err != nil {
		return nil, nil, err
	}
	r.planOut = cfg.PlanOut
	if r.planOut != "" {
		if err := checkWritableDir(filepath.Dir(r.planOut), "--plan-out "+r.planOut); err != nil {
			return nil, nil, err
		}
	}
	log, closeLog, err := newLogger(cfg, r.runDir)
	if err != nil {
		return nil, nil, err
	}
	r.log = log
	if cfg.Path.Dataset != "" {
		// The class list saved next to a model by `gopruner train` keeps
		// labels matching the model's outputs here too.
		classes, _, err := modelClasses(cfg.Path.Model, "")
		if err != nil {
			closeLog()
			return nil, nil, err
		}
		r.ds, err = data.Open(cfg.Path.Dataset, dataOptions(cfg, r.shape, classes))
		if err != nil {
			closeLog()
			return nil, nil, fail.Usage(err)
		}
		// Decode the splits the run reads now (they are cached for it), so
		// that an empty split or a bad image is a usage error naming the
		// file and row before any work, not a failure in the middle of it.
		names := []string{data.Val}
		if fineTunes(cfg) {
			names = append(names, data.Train)
		}
		for _, name := range names {
			sp, err := r.ds.Split(name)
			if err == nil {
				err = sp.Preload(ctx)
			}
			if err != nil {
				closeLog()
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				return nil, nil, fail.Usage(err)
			}
		}
	}
	return r, closeLog, nil
}

// fineTunes says whether the run trains the model: my_pruning always
// fine-tunes its candidates, L2Norm only with training on.
func fineTunes(cfg *config.Config) bool {
	return cfg.Finetune || cfg.Algorithm == kinds.AlgorithmMyPruning
}

// checkOutPath refuses to overwrite the input model.
func checkOutPath(in, out string) error {
	ai, err1 := filepath.Abs(in)
	ao, err2 := filepath.Abs(out)
	if err1 == nil && err2 == nil && ai == ao {
		return fail.Usagef("--out %s is the input model; gopruner never modifies its input", out)
	}
	return nil
}

func (r *pruneRun) split(name string) (*data.Split, error) {
	s, err := r.ds.Split(name)
	if err != nil {
		return nil, fail.Usage(err)
	}
	return s, nil
}

func (r *pruneRun) trainOptions() train.Options {
	t := r.cfg.Train
	return train.Options{Epochs: r.cfg.LongTermEpochs, BatchSize: t.BatchSize, LR: t.LR, Momentum: t.Momentum,
		WeightDecay: t.WeightDecay, Nesterov: t.Nesterov, Optimizer: t.Optimizer, WarmupSteps: t.WarmupSteps,
		Cosine: t.Cosine, Seed: r.cfg.Seed}
}

func (r *pruneRun) execute(ctx context.Context, stdout io.Writer) error {
	cfg := r.cfg
	// The model, the input shape and iskl are checked before the first log
	// line, so that a bad input is reported as the one error line alone.
	am, err := model.Open(cfg.Path.Model, r.shape, r.dev)
	if err != nil {
		return err
	}
	defer am.Close()
	r.phases = append(r.phases, phase{"load", am.Timings.Load}, phase{"ir_export", am.Timings.IRExport},
		phase{"analysis", am.Timings.Analysis})
	if _, err := prune.Excluded(am.Analysis, am.Params, cfg.Iskl); err != nil {
		return err
	}
	r.log.Info().Str("model", cfg.Path.Model).Str("algorithm", string(cfg.Algorithm)).Float64("P", cfg.P).Int("alf", cfg.Alf).
		Str("device", r.dev.String()).Msg("prune")
	if fineTunes(cfg) {
		if w := frozenBN(am.Module, cfg.Path.Model); w != "" {
			r.log.Warn().Msg(w)
		}
	}
	var res *outcome
	switch cfg.Algorithm {
	case kinds.AlgorithmL2Norm:
		res, err = r.l2norm(ctx, am)
	case kinds.AlgorithmMyPruning:
		t := time.Now()
		res, err = r.myPruning(ctx, am)
		r.lap("my_pruning", t)
	default:
		return fail.Usagef("algorithm %q: want my_pruning or L2Norm", cfg.Algorithm)
	}
	if err != nil {
		return err
	}
	defer res.pruned.Close()
	return r.finish(ctx, am, res, stdout)
}

// outcome is what an algorithm hands back.
type outcome struct {
	pruned     *torch.Module
	plan       *plan.Plan
	kept       map[int][]int
	target     int64
	reached    bool
	accBefore  *float64
	accAfter   *float64
	iterations []summary.Iteration
	points     []report.Point
}

func (r *pruneRun) l2norm(ctx context.Context, am *model.Analyzed) (*outcome, error) {
	cfg := r.cfg
	t := time.Now()
	groups := prune.Candidates(am.Analysis, nil)
	scores, err := criteria.L2(am.Module, groups)
	if err != nil {
		return nil, err
	}
	t = r.lap("scoring", t)
	os, err := prune.OneShot(am, scores, prune.OneShotOptions{P: cfg.P, Alf: cfg.Alf, ISKL: cfg.Iskl, Global: cfg.Global})
	if err != nil {
		return nil, err
	}
	t = r.lap("search", t)
	pruned, err := am.Module.Clone()
	if err != nil {
		return nil, err
	}
	if err := prune.Apply(pruned, am.Analysis, os.Plan); err != nil {
		pruned.Close()
		return nil, err
	}
	t = r.lap("surgery", t)
	res := &outcome{pruned: pruned, plan: os.Plan, kept: os.Kept, target: os.Target, reached: os.Reached}
	r.log.Info().Int64("macs_before", os.Plan.MACsBefore).Int64("macs_after", os.Plan.MACsAfter).Int("groups", len(os.Plan.Groups)).Msg("L2Norm one-shot")
	if r.ds != nil {
		val, err := r.split(data.Val)
		if err != nil {
			pruned.Close()
			return nil, err
		}
		before, err := train.Evaluate(ctx, am.Module, val, cfg.Train.BatchSize)
		if err != nil {
			pruned.Close()
			return nil, err
		}
		res.accBefore = &before.Accuracy
		if cfg.Finetune && cfg.LongTermEpochs > 0 {
			trainSplit, err := r.split(data.Train)
			if err != nil {
				pruned.Close()
				return nil, err
			}
			fit, err := train.Fit(ctx, pruned, trainSplit, r.trainOptions())
			if err != nil {
				pruned.Close()
				return nil, fmt.Errorf("fine-tune: %w", err)
			}
			r.log.Info().Int("steps", fit.Steps).Float64("loss", fit.Loss).Float64("images_per_s", fit.ImagesPerSec).Msg("fine-tuned")
		}
		after, err := train.Evaluate(ctx, pruned, val, cfg.Train.BatchSize)
		if err != nil {
			pruned.Close()
			return nil, err
		}
		res.accAfter = &after.Accuracy
		r.lap("finetune_eval", t)
	}
	return res, nil
}

// finish saves the model, plan, summary and report, and prints the table.
func (r *pruneRun) finish(ctx context.Context, am *model.Analyzed, res *outcome, stdout io.Writer) error {
	cfg := r.cfg
	t := time.Now()
	if err := res.pruned.Save(r.out); err != nil {
		return fmt.Errorf("save %s: %w", r.out, err)
	}
	planPath := filepath.Join(r.runDir, "plan.json")
	if err := res.plan.Write(planPath); err != nil {
		return err
	}
	if r.planOut != "" {
		if err := res.plan.Write(r.planOut); err != nil {
			return err
		}
	}
	s := &summary.Summary{
		Algorithm: string(cfg.Algorithm), Model: cfg.Path.Model,
		MACsBefore: res.plan.MACsBefore, MACsAfter: res.plan.MACsAfter,
		ParamsBefore: res.plan.ParamsBefore, ParamsAfter: res.plan.ParamsAfter,
		AccBefore: res.accBefore, AccAfter: res.accAfter, Iterations: res.iterations,
		ModelOut: r.out, PlanOut: r.planOut, Target: res.target, Reached: res.reached,
		Started: r.started, Layers: layerTable(am, res.kept),
	}
	if cfg.Algorithm == kinds.AlgorithmMyPruning {
		s.Criterion = string(cfg.Criterion)
	}
	t = r.lap("save", t)
	if lat, err := measurePair(am.Module, res.pruned, r.shape); err == nil {
		s.Latency = []summary.Latency{lat}
	} else {
		r.log.Warn().Err(err).Msg("latency not measured")
	}
	t = r.lap("latency", t)
	s.Report = filepath.Join(r.runDir, "report.html")
	if err := report.Write(s.Report, report.FromSummary(s, res.points)); err != nil {
		r.log.Warn().Err(err).Msg("report not written")
		s.Report = ""
	}
	s.Seconds = time.Since(r.started).Seconds()
	if err := s.WriteJSON(filepath.Join(r.runDir, "summary.json")); err != nil {
		return err
	}
	txt := filepath.Join(cfg.Path.ExpSave, cfg.Path.ModelName+".txt")
	if err := s.WriteText(txt); err != nil {
		return err
	}
	r.lap("report", t)
	r.logTimings(am)
	s.Text(stdout)
	fmt.Fprintf(stdout, "summary:      %s\n", txt)
	if !res.reached {
		return fmt.Errorf("target not reached: MACs %d of %d (%.1f%% removed, P=%.2f asked); the best model found is saved at %s",
			res.plan.MACsAfter, res.plan.MACsBefore, 100*(1-float64(res.plan.MACsAfter)/float64(res.plan.MACsBefore)), cfg.P, r.out)
	}
	return nil
}

func measurePair(before, after *torch.Module, shape []int64) (summary.Latency, error) {
	rs, err := latency.Measure([]*torch.Module{before, after}, shape, 2, 7)
	if err != nil {
		return summary.Latency{}, err
	}
	return summary.Latency{Device: rs[0].Device, Batch: rs[0].Batch, BeforeMs: rs[0].MedianMs, AfterMs: rs[1].MedianMs}, nil
}

// layerTable lists each producing layer's output channels before and after.
func layerTable(am *model.Analyzed, kept map[int][]int) []summary.Layer {
	var out []summary.Layer
	for _, g := range am.Analysis.Groups {
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
