package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) {
		root.AddCommand(newFlopsCmd(), newGraphCmd())
	})
}

// parseShape reads "1,3,224,224".
func parseShape(s string) ([]int64, error) {
	s = strings.Trim(strings.TrimSpace(s), "[]")
	if s == "" {
		return nil, fail.Usagef("--input-shape is required, e.g. --input-shape 1,3,224,224")
	}
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n <= 0 {
			return nil, fail.Usagef("--input-shape %q: want positive integers such as 1,3,224,224", s)
		}
		out = append(out, n)
	}
	if len(out) < 2 {
		return nil, fail.Usagef("--input-shape %q: want at least N,C (e.g. 1,3,224,224)", s)
	}
	return out, nil
}

// openModel loads and analyses --model at --input-shape on the CPU.
func openModel(cmd *cobra.Command) (*model.Analyzed, error) {
	path, _ := cmd.Flags().GetString("model")
	if path == "" {
		return nil, fail.Usagef("--model is required")
	}
	s, _ := cmd.Flags().GetString("input-shape")
	shape, err := parseShape(s)
	if err != nil {
		return nil, err
	}
	dev := torch.CPU
	if d, _ := cmd.Flags().GetString("device"); d != "" {
		if dev, err = usableDevice(d); err != nil {
			return nil, err
		}
	}
	return model.Open(path, shape, dev)
}

func modelFlags(cmd *cobra.Command) {
	cmd.Flags().String("model", "", "TorchScript model (.pt)")
	cmd.Flags().String("input-shape", "", "example input shape, e.g. 1,3,224,224")
	cmd.Flags().String("device", "cpu", "cpu, cuda or cuda:N")
	cmd.Flags().Bool("json", false, "print JSON")
}

func newFlopsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flops",
		Short: "Count MACs and parameters (ptflops semantics), total and per layer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			am, err := openModel(cmd)
			if err != nil {
				return err
			}
			defer am.Close()
			r, err := flops.Count(am.Graph, am.Analysis, nil)
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "layer\tkind\tMACs\tparams\t")
			for _, l := range r.Layers {
				if l.MACs == 0 && l.Params == 0 {
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t\n", l.Name, l.Kind, l.MACs, l.Params)
			}
			fmt.Fprintf(w, "total\t\t%d\t%d\t\n", r.MACs, r.Params)
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "MACs %s, params %s\n", summary.Human(r.MACs), summary.Human(r.Params))
			return nil
		},
	}
	modelFlags(cmd)
	return cmd
}

func newGraphCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Show the channel groups (pruned together) and the frozen spaces with the reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			am, err := openModel(cmd)
			if err != nil {
				return err
			}
			defer am.Close()
			if j, _ := cmd.Flags().GetBool("json"); j {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"groups": am.Analysis.Groups})
			}
			out := cmd.OutOrStdout()
			prunable := 0
			for _, g := range am.Analysis.Groups {
				state := "prunable"
				if !g.Prunable() {
					state = "frozen: " + g.Reason
					if g.Reason == "" {
						state = "frozen: no producer"
					}
				} else {
					prunable++
				}
				fmt.Fprintf(out, "group %d  %d channels  %s\n", g.ID, g.Channels, state)
				if len(g.Layers) > 0 {
					fmt.Fprintf(out, "  layers:  %s\n", strings.Join(g.Layers, ", "))
				}
				ms := make([]string, len(g.Members))
				for i, m := range g.Members {
					ms[i] = m.String()
					if m.Offset != 0 || m.Stride > 1 {
						ms[i] += fmt.Sprintf("[+%d×%d]", m.Offset, max(m.Stride, 1))
					}
				}
				fmt.Fprintf(out, "  members: %s\n", strings.Join(ms, " "))
			}
			fmt.Fprintf(out, "%d groups, %d prunable\n", len(am.Analysis.Groups), prunable)
			return nil
		},
	}
	modelFlags(cmd)
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
