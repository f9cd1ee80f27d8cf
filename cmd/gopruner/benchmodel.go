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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, shape, dev, err := modelSettings(cmd)
			if err != nil {
				return err
			}
			path := cfg.Path.Model
			m, err := model.Load(path, dev)
			if err != nil {
				return err
			}
			defer m.Close()
			warm, _ := cmd.Flags().GetInt("warmup")
			runs, _ := cmd.Flags().GetInt("runs")
			rs, err := latency.Measure([]*torch.Module{m}, shape, warm, runs)
			if err != nil {
				// Trace explains a rejected shape in the user's terms
				// (which layer wanted how many channels).
				if _, terr := model.Trace(m, shape); terr != nil {
					return terr
				}
				return fail.Usagef("input shape %v: %v", shape, err)
			}
			r := rs[0]
			if j, _ := cmd.Flags().GetBool("json"); j {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s on %s, batch %d: median %.3f ms, min %.3f ms over %d runs (%d threads)\n",
				path, r.Device, r.Batch, r.MedianMs, r.MinMs, r.Runs, torch.NumThreads())
			return nil
		},
	}
	modelFlags(cmd)
	cmd.Flags().Int("warmup", 5, "untimed runs first")
	cmd.Flags().Int("runs", 30, "timed runs")
	return cmd
}
