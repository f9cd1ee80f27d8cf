//go:build cgo

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/demo"
	"github.com/gopruner/gopruner/third_party/mnist"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) { root.AddCommand(newDemoCmd()) })
}

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the embedded default end to end: my_pruning of the bundled, trained CNN on bundled MNIST to P=0.5",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, _ := cmd.Flags().GetString("dir")
			prep, _ := cmd.Flags().GetBool("prepare-only")
			return runDemo(cmd, dir, prep)
		},
	}
	cmd.Flags().String("dir", "exp_save/demo", "working directory of the demo")
	cmd.Flags().Bool("prepare-only", false, "write the data set and the models, then stop (make demo-model trains the shipped weights from them)")
	mustRegister(cmd, "log_level", "log_format", "threads", "cart", "resume")
	return cmd
}

func runDemo(cmd *cobra.Command, dir string, prepareOnly bool) error {
	out := cmd.OutOrStdout()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo dir: %w", err)
	}
	// Three splits: the search selects on val, and test (MNIST's own t10k
	// sample) is what the report's held-out accuracy is measured on.
	dataDir := filepath.Join(dir, "mnist3")
	if _, err := os.Stat(filepath.Join(dataDir, "data.csv")); err != nil {
		src, err := data.FromMNIST(mnist.FS(), data.Options{ValFraction: demoValFraction, Seed: 1})
		if err != nil {
			return fmt.Errorf("bundled MNIST: %w", err)
		}
		var n [3]int
		for i, name := range []string{data.Train, data.Val, data.Test} {
			sp, err := src.Split(name)
			if err != nil {
				return fmt.Errorf("bundled MNIST: %w", err)
			}
			n[i] = sp.Len()
		}
		fmt.Fprintf(out, "writing the bundled MNIST sample (%d train, %d val, %d test) as PNG + data.csv in %s\n", n[0], n[1], n[2], dataDir)
		if err := data.WriteImageCSV(dataDir, src, data.ExportPart{Split: data.Train}, data.ExportPart{Split: data.Val}, data.ExportPart{Split: data.Test}); err != nil {
			return err
		}
	}
	trained := filepath.Join(dir, "democnn_trained.pt")
	if _, err := os.Stat(trained); err != nil {
		if err := atomicfile.WriteFile(trained, demo.Trained, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "the bundled CNN, trained to convergence on the train split (%s), is %s\n", demo.TrainRecipe, trained)
	} else {
		fmt.Fprintf(out, "using the model %s\n", trained)
	}
	if prepareOnly {
		// For `make demo-model`: the data set the shipped weights are
		// trained on, and the untrained CNN to train.
		return atomicfile.WriteFile(filepath.Join(dir, "democnn.pt"), demo.Model, 0o644)
	}
	// The embedded Pruning.yaml with the paths filled in, then flags.
	yaml := append(bytes.Clone(demo.Config), []byte(fmt.Sprintf("\npath:\n  model: %q\n  dataset: %q\n  exp_save: %q\n  model_name: democnn\n", trained, dataDir, dir))...)
	cfg, err := config.Load(config.Sources{File: "demo/Pruning.yaml", Content: yaml, Flags: cmd.Flags(), Env: os.Environ()})
	if err != nil {
		return err
	}
	if err := configureBridge(cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "pruning %s with my_pruning (TaylorFOWeight, P=%.2f, alf %d, delta_crop %.2f (step %s), cart %v)\n", trained, cfg.P, cfg.Alf, cfg.DeltaCrop, cfg.Step, cfg.Cart)
	return pruneWith(cmd.Context(), cfg, out)
}

// demoValFraction carves 1,000 of the bundled 6,000 training images out as
// val, the split the search selects on: on fewer, a candidate's standard
// error would swamp the differences between candidates.
const demoValFraction = 1.0 / 6
