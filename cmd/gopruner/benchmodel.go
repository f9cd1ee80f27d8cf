//go:build cgo

package main

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/torchengine/latency"
	"github.com/gopruner/gopruner/internal/torchengine/model"
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
	return cmd
}

// comparedLatency is one model of `bench-model --compare --json`.
type comparedLatency struct {
	Model string `json:"model"`
	latency.Result
}
