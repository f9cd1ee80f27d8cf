//go:build cgo

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
	"github.com/gopruner/gopruner/internal/pipeline"
	"github.com/gopruner/gopruner/internal/torchengine"
	"github.com/gopruner/gopruner/internal/torchengine/model"
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
		// Colour codes only for a person at a terminal: in files and CI
		// logs they are noise.
		console = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05", NoColor: !isTerminal(os.Stderr)}
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
	return r.Execute(ctx, out)
}

// prepare checks every input before any work, so a bad flag never costs a
// long run: the model, the shape, the devices, the outputs.
func prepare(ctx context.Context, cfg *config.Config) (*pipeline.Run, func(), error) {
	if cfg.Path.Model == "" {
		return nil, nil, fail.Usagef("no model: give --model or path.model in Pruning.yaml")
	}
	if err := model.CheckFile(cfg.Path.Model); err != nil {
		return nil, nil, err
	}
	if len(cfg.InputShape) == 0 {
		return nil, nil, fail.Usagef("no input shape: give --input-shape (e.g. 1,3,224,224) or input_shape in Pruning.yaml")
	}
	if err := imageShape(cfg); err != nil {
		return nil, nil, err
	}
	r := &pipeline.Run{Cfg: cfg, Engine: torchengine.Engine{}, Started: time.Now(), Hooks: progressHooks(cfg),
		Latency: cfg.Latency}
	for _, d := range cfg.InputShape {
		r.Shape = append(r.Shape, int64(d))
	}
	dev, _, err := setupTorch(cfg)
	if err != nil {
		return nil, nil, err
	}
	r.Device = dev.String()
	for _, s := range cfg.Cart {
		if _, err := usableDevice(string(s)); err != nil {
			return nil, nil, fmt.Errorf("cart: %w", err)
		}
	}
	if cfg.Target == kinds.TargetLatency {
		if cfg.Algorithm != kinds.AlgorithmMyPruning {
			return nil, nil, fail.Usagef("target: latency is a my_pruning target; %s cuts a share of the MACs (set target: macs or algorithm: my_pruning)", cfg.Algorithm)
		}
		if _, err := usableDevice(cfg.LatencyDevice); err != nil {
			return nil, nil, fmt.Errorf("latency_device: %w", err)
		}
	}
	if cfg.Algorithm == kinds.AlgorithmMyPruning && cfg.Path.Dataset == "" {
		return nil, nil, fail.Usagef("my_pruning evaluates candidates on data: give --dataset or path.dataset")
	}
	if cfg.Algorithm == kinds.AlgorithmL2Norm && cfg.Finetune && cfg.Path.Dataset == "" {
		return nil, nil, fail.Usagef("training is on but there is no dataset: give --dataset or set training: false (--finetune=false)")
	}
	if cfg.Algorithm == kinds.AlgorithmMyPruning {
		if err := checkBroker(ctx, cfg); err != nil {
			return nil, nil, err
		}
		r.Broker = brokerOptions(cfg)
	}
	r.RunDir = filepath.Join(cfg.Path.ExpSave, cfg.Path.ModelName)
	r.Out = cfg.Out
	if r.Out == "" {
		r.Out = filepath.Join(r.RunDir, cfg.Path.ModelName+"_pruned.pt")
	}
	if err := checkOutPath(cfg.Path.Model, r.Out); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(r.RunDir, 0o755); err != nil {
		return nil, nil, fail.Usagef("exp_save %s: %v", cfg.Path.ExpSave, err)
	}
	if err := checkWritableDir(r.RunDir, "exp_save"); err != nil {
		return nil, nil, err
	}
	if err := checkWritableDir(filepath.Dir(r.Out), "--out "+r.Out); err != nil {
		return nil, nil, err
	}
	r.PlanOut = cfg.PlanOut
	if r.PlanOut != "" {
		if err := checkWritableDir(filepath.Dir(r.PlanOut), "--plan-out "+r.PlanOut); err != nil {
			return nil, nil, err
		}
	}
	log, closeLog, err := newLogger(cfg, r.RunDir)
	if err != nil {
		return nil, nil, err
	}
	r.Log = log
	if cfg.Path.Dataset != "" {
		// The class list saved next to a model by `gopruner train` keeps
		// labels matching the model's outputs here too.
		classes, _, err := modelClasses(cfg.Path.Model, "")
		if err != nil {
			closeLog()
			return nil, nil, err
		}
		r.Data, err = data.Open(cfg.Path.Dataset, dataOptions(cfg, r.Shape, classes))
		if err != nil {
			closeLog()
			return nil, nil, fail.Usage(err)
		}
		// Decode the splits the run reads now (they are cached for it), so
		// that an empty split or a bad image is a usage error naming the
		// file and row before any work, not a failure in the middle of it.
		names := []string{data.Val}
		if pipeline.FineTunes(cfg) {
			names = append(names, data.Train)
		}
		for _, name := range names {
			sp, err := r.Data.Split(name)
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

// checkOutPath refuses to overwrite the input model.
func checkOutPath(in, out string) error {
	ai, err1 := filepath.Abs(in)
	ao, err2 := filepath.Abs(out)
	if err1 == nil && err2 == nil && ai == ao {
		return fail.Usagef("--out %s is the input model; gopruner never modifies its input", out)
	}
	return nil
}
