//go:build cgo

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/graph"
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

// openModel loads and analyses the configured model at the configured input
// shape (flags > GOPRUNER_* > Pruning.yaml, as for every command).
func openModel(cmd *cobra.Command) (*model.Analyzed, error) {
	cfg, shape, dev, err := modelSettings(cmd)
	if err != nil {
		return nil, err
	}
	return model.Open(cfg.Path.Model, shape, dev)
}

// modelSettings loads the configuration of a command that reads one model
// at an example input: the model, the shape and a usable device, with the
// thread count applied when one is set.
func modelSettings(cmd *cobra.Command) (*config.Config, []int64, torch.Device, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, torch.CPU, err
	}
	if cfg.Path.Model == "" {
		return nil, nil, torch.CPU, fail.Usagef("--model is required")
	}
	if err := model.CheckFile(cfg.Path.Model); err != nil {
		return nil, nil, torch.CPU, err
	}
	if len(cfg.InputShape) == 0 {
		return nil, nil, torch.CPU, fail.Usagef("--input-shape is required, e.g. --input-shape 1,3,224,224")
	}
	shape := make([]int64, len(cfg.InputShape))
	for i, d := range cfg.InputShape {
		shape[i] = int64(d)
	}
	dev, err := usableDevice(cfg.Device)
	if err != nil {
		return nil, nil, torch.CPU, err
	}
	if cfg.Threads > 0 {
		if err := torch.SetNumThreads(cfg.Threads); err != nil {
			return nil, nil, torch.CPU, err
		}
	}
	return cfg, shape, dev, nil
}

// modelFlags are the flags of a command that reads one model: the
// configuration keys, so that a Pruning.yaml and GOPRUNER_* apply too.
func modelFlags(cmd *cobra.Command) {
	registerConfigFlags(cmd, "path.model", "input_shape", "device", "threads")
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
			cov, err := flops.Attribute(am.Graph, am.Analysis)
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return writeJSON(cmd.OutOrStdout(), graphJSON(am.Analysis.Groups, cov))
			}
			out := cmd.OutOrStdout()
			prunable, inexact := 0, 0
			for _, g := range am.Analysis.Groups {
				state := "prunable"
				if !g.Prunable() {
					state = "frozen: " + g.Reason
					if g.Reason == "" {
						state = "frozen: no producer"
					}
				} else {
					prunable++
					if !g.Exact {
						inexact++
						state = "prunable, inexact: " + g.Inexact
					} else if g.Block > 1 {
						state = fmt.Sprintf("prunable in blocks of %d", g.Block)
					}
				}
				fmt.Fprintf(out, "group %d  %d channels  %s MACs  %s\n", g.ID, g.Channels, summary.Human(cov.GroupMACs[g.ID]), state)
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
			fmt.Fprintf(out, "%d groups, %d prunable", len(am.Analysis.Groups), prunable)
			if inexact > 0 {
				fmt.Fprintf(out, " (%d inexact: not function-preserving)", inexact)
			}
			fmt.Fprintln(out)
			fmt.Fprintf(out, "prunable: %s of conv/linear MACs (%s of %s)", flops.Percent(cov.PrunableShare),
				summary.Human(cov.PrunableMACs), summary.Human(cov.LayerMACs))
			if f := cov.FrozenText(len(cov.Frozen)); f != "" {
				fmt.Fprintf(out, "; frozen: %s", f)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	modelFlags(cmd)
	return cmd
}

// graphGroup is a group as `graph --json` lists it: the group with the MACs
// of its conv/linear layers (flops.Coverage).
type graphGroup struct {
	graph.Group
	MACs int64 `json:"macs"`
}

// graphJSON is `graph --json`: the groups, and how much of the model's
// conv/linear MACs they can reach, with the reasons that freeze the rest,
// most MACs first.
func graphJSON(groups []graph.Group, cov flops.Coverage) any {
	gs := make([]graphGroup, len(groups))
	for i, g := range groups {
		gs[i] = graphGroup{Group: g, MACs: cov.GroupMACs[i]}
	}
	frozen := cov.Frozen
	if frozen == nil {
		frozen = []flops.FrozenReason{}
	}
	return struct {
		Groups            []graphGroup         `json:"groups"`
		LayerMACs         int64                `json:"conv_linear_macs"`
		PrunableMACs      int64                `json:"prunable_macs"`
		PrunableMACsShare float64              `json:"prunable_macs_share"`
		FrozenReasons     []flops.FrozenReason `json:"frozen_reasons"`
	}{gs, cov.LayerMACs, cov.PrunableMACs, cov.PrunableShare, frozen}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
