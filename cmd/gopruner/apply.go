//go:build cgo

package main

import (
	"fmt"
	"path/filepath"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/prune"
	"github.com/gopruner/gopruner/torch"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) { root.AddCommand(newApplyCmd()) })
}

func newApplyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply a plan.json to a model and save the pruned model",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			path, out := cfg.Path.Model, cfg.Out
			planPath, _ := cmd.Flags().GetString("plan")
			if path == "" || planPath == "" || out == "" {
				return fail.Usagef("apply needs --model, --plan and --out")
			}
			if err := checkOut(path, out); err != nil {
				return err
			}
			p, err := plan.Read(planPath)
			if err != nil {
				return err
			}
			m, err := model.Load(path, torch.CPU)
			if err != nil {
				return err
			}
			defer m.Close()
			params, err := model.Params(m)
			if err != nil {
				return err
			}
			if err := p.Validate(params); err != nil {
				return fmt.Errorf("%s does not fit %s: %w", planPath, path, err)
			}
			am, err := model.Analyze(m, p.InputShape)
			if err != nil {
				return fmt.Errorf("plan %s: %w", planPath, err)
			}
			if err := prune.Apply(m, am.Analysis, p); err != nil {
				return err
			}
			if err := m.Save(out); err != nil {
				return fmt.Errorf("save %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %s: %d tensors changed, MACs %s -> %s; saved %s\n",
				planPath, len(p.Tensors), summary.Human(p.MACsBefore), summary.Human(p.MACsAfter), out)
			return nil
		},
	}
	registerConfigFlags(cmd, "path.model", "out", "output")
	cmd.Flags().String("plan", "", "plan.json written by prune --plan-out")
	return cmd
}

// checkOut refuses an output that would overwrite the input model or land
// in a directory that does not exist.
func checkOut(in, out string) error {
	if err := checkOutPath(in, out); err != nil {
		return err
	}
	return checkWritableDir(filepath.Dir(out), "--out "+out)
}
