//go:build cgo

package main

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/torchengine/latency"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/gopruner/gopruner/torch"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) { root.AddCommand(newBenchModelCmd()) })
}

func newBenchModelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench-model",
		Short: "Measure a model's forward latency (warm-up, then the median of N runs)",
		Long: `Measure a model's forward latency: warm-up runs, then the median of N timed runs.

With --compare, the other models are timed side by side with --model in one
process, one run of each in turn, so that load on the machine slows them alike:
compare their latencies with each other, not with another process's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, shape, dev, err := modelSettings(cmd)
			if err != nil {
				return err
			}
			others, _ := cmd.Flags().GetStringSlice("compare")
			if tr, _ := cmd.Flags().GetBool("train"); tr {
				if len(others) > 0 {
					return fail.Usagef("--train times one model; --compare is for forward latency")
				}
				return benchTrain(cmd, cfg, shape, dev)
			}
			paths := append([]string{cfg.Path.Model}, others...)
			var ms []*torch.Module
			defer func() {
				for _, m := range ms {
					m.Close()
				}
			}()
			for _, path := range paths {
				m, err := model.Load(path, dev)
				if err != nil {
					return err
				}
				ms = append(ms, m)
			}
			warm, _ := cmd.Flags().GetInt("warmup")
			runs, _ := cmd.Flags().GetInt("runs")
			rs, err := latency.Measure(ms, shape, warm, runs)
			if err != nil {
				// Trace explains a rejected shape in the user's terms
				// (which layer wanted how many channels).
				for i, m := range ms {
					if _, terr := model.Trace(m, shape); terr != nil {
						return fmt.Errorf("%s: %w", paths[i], terr)
					}
				}
				return fail.Usagef("input shape %v: %v", shape, err)
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				if len(others) == 0 {
					return writeJSON(cmd.OutOrStdout(), rs[0])
				}
				out := make([]comparedLatency, len(rs))
				for i, r := range rs {
					out[i] = comparedLatency{Model: paths[i], Result: r}
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			for i, r := range rs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s on %s, batch %d: median %.3f ms, min %.3f ms over %d runs (%d threads)\n",
					paths[i], r.Device, r.Batch, r.MedianMs, r.MinMs, r.Runs, torch.NumThreads())
			}
			return nil
		},
	}
	modelFlags(cmd)
	cmd.Flags().Int("warmup", 5, "untimed runs first")
	cmd.Flags().Int("runs", 30, "timed runs")
	cmd.Flags().StringSlice("compare", nil, "more models to time side by side with --model, in turn (comma-separated)")
	cmd.Flags().Bool("train", false, "time whole training steps instead (random batch of --input-shape, cross-entropy, SGD lr 0.01 momentum 0.9 weight decay 5e-4; amp, cudnn_benchmark and nchw apply)")
	registerConfigFlags(cmd, "amp", "cudnn_benchmark", "nchw")
	return cmd
}

// trainTiming is `bench-model --train --json`.
type trainTiming struct {
	Model    string    `json:"model"`
	Device   string    `json:"device"`
	Batch    int64     `json:"batch"`
	AMP      string    `json:"amp"`
	NCHW     bool      `json:"nchw"`
	Steps    int       `json:"steps"`
	MedianMs float64   `json:"median_ms"`
	MinMs    float64   `json:"min_ms"`
	MeanMs   float64   `json:"mean_ms"`
	StepsMs  []float64 `json:"steps_ms"`
}

// benchTrain times training steps of cfg's model on a fixed batch through
// the training loop's own path (train.StepTimes).
func benchTrain(cmd *cobra.Command, cfg *config.Config, shape []int64, dev torch.Device) error {
	path := cfg.Path.Model
	m, err := model.Load(path, dev)
	if err != nil {
		return err
	}
	defer m.Close()
	// The example input (model.Example) is the batch; one forward pass on
	// it gives the classes the labels are drawn from.
	xt, err := model.Example(shape, dev)
	if err != nil {
		return err
	}
	defer xt.Close()
	x, err := xt.Float32s()
	if err != nil {
		return err
	}
	out, err := m.Forward(true, xt)
	if err != nil {
		// Trace explains a rejected shape in the user's terms.
		if _, terr := model.Trace(m, shape); terr != nil {
			return fmt.Errorf("%s: %w", path, terr)
		}
		return fail.Usagef("input shape %v: %v", shape, err)
	}
	osh, err := out.Shape()
	out.Close()
	if err != nil {
		return err
	}
	if len(osh) != 2 || osh[0] != shape[0] {
		return fail.Usagef("--train needs a classifier: %s returns shape %v for input %v, want [%d, classes]", path, osh, shape, shape[0])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	y := make([]int64, shape[0])
	for i := range y {
		y[i] = rng.Int64N(osh[1])
	}
	warm, _ := cmd.Flags().GetInt("warmup")
	runs, _ := cmd.Flags().GetInt("runs")
	o := train.Options{BatchSize: int(shape[0]), LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4, Optimizer: train.SGD}
	ts, err := train.StepTimes(cmd.Context(), m, x, y, shape, o, warm, runs)
	if err != nil {
		return err
	}
	r := trainTiming{Model: path, Device: dev.String(), Batch: shape[0], AMP: cfg.AMP, NCHW: cfg.NCHW, Steps: len(ts)}
	ms := make([]float64, len(ts))
	for i, t := range ts {
		ms[i] = float64(t.Microseconds()) / 1000
		r.MeanMs += ms[i] / float64(len(ts))
	}
	r.StepsMs = slices.Clone(ms)
	slices.Sort(ms)
	r.MedianMs, r.MinMs = ms[len(ms)/2], ms[0]
	if j, _ := cmd.Flags().GetBool("json"); j {
		return writeJSON(cmd.OutOrStdout(), r)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s on %s, batch %d, amp %s: train step median %.3f ms, min %.3f ms, mean %.3f ms over %d steps\n",
		path, r.Device, r.Batch, r.AMP, r.MedianMs, r.MinMs, r.MeanMs, r.Steps)
	return nil
}

// comparedLatency is one model of `bench-model --compare --json`.
type comparedLatency struct {
	Model string `json:"model"`
	latency.Result
}
