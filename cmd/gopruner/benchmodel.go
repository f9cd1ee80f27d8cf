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
			path, _ := cmd.Flags().GetString("model")
			if path == "" {
				return fail.Usagef("--model is required")
			}
			s, _ := cmd.Flags().GetString("input-shape")
			shape, err := parseShape(s)
			if err != nil {
				return err
			}
			d, _ := cmd.Flags().GetString("device")
			dev, err := usableDevice(d)
			if err != nil {
				return err
			}
			if n, _ := cmd.Flags().GetInt("threads"); n > 0 {
				if err := torch.SetNumThreads(n); err != nil {
					return err
				}
			}
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
	cmd.Flags().String("model", "", "TorchScript model (.pt)")
	cmd.Flags().String("input-shape", "", "input shape, e.g. 1,3,224,224 (the first number is the batch)")
	cmd.Flags().String("device", "cpu", "cpu, cuda or cuda:N")
	cmd.Flags().Int("warmup", 5, "untimed runs first")
	cmd.Flags().Int("runs", 30, "timed runs")
	cmd.Flags().Int("threads", 0, "libtorch threads (0: libtorch's default)")
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}
