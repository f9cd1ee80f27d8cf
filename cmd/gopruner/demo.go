//go:build cgo

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/demo"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/gopruner/gopruner/third_party/mnist"
	"github.com/gopruner/gopruner/torch"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) { root.AddCommand(newDemoCmd()) })
}

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the embedded default end to end: train the bundled CNN on bundled MNIST, my_pruning to P=0.5",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, _ := cmd.Flags().GetString("dir")
			return runDemo(cmd, dir)
		},
	}
	cmd.Flags().String("dir", "exp_save/demo", "working directory of the demo")
	mustRegister(cmd, "log_level", "log_format", "threads", "cart", "resume")
	return cmd
}

func runDemo(cmd *cobra.Command, dir string) error {
	out := cmd.OutOrStdout()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo dir: %w", err)
	}
	dataDir := filepath.Join(dir, "mnist")
	if _, err := os.Stat(filepath.Join(dataDir, "data.csv")); err != nil {
		src, err := data.FromMNIST(mnist.FS(), data.Options{})
		if err != nil {
			return fmt.Errorf("bundled MNIST: %w", err)
		}
		fmt.Fprintf(out, "writing the bundled MNIST sample (%d train, %d val) as PNG + data.csv in %s\n", mnist.TrainCount, mnist.TestCount, dataDir)
		if err := data.WriteImageCSV(dataDir, src, data.ExportPart{Split: data.Train}, data.ExportPart{Split: data.Test, As: data.Val}); err != nil {
			return err
		}
	}
	trained := filepath.Join(dir, "democnn_trained.pt")
	if _, err := os.Stat(trained); err != nil {
		if err := trainDemo(cmd, dir, dataDir, trained); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "using the trained model %s\n", trained)
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
	fmt.Fprintf(out, "pruning %s with my_pruning (TaylorFOWeight, P=%.2f, alf %d, delta_crop %.2f, cart %v)\n", trained, cfg.P, cfg.Alf, cfg.DeltaCrop, cfg.Cart)
	return pruneWith(cmd.Context(), cfg, out)
}

// trainDemo trains the untrained embedded CNN briefly, so there is
// accuracy to keep while pruning.
func trainDemo(cmd *cobra.Command, dir, dataDir, out string) error {
	raw := filepath.Join(dir, "democnn.pt")
	if err := atomicfile.WriteFile(raw, demo.Model, 0o644); err != nil {
		return err
	}
	m, err := model.Load(raw, torch.CPU)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := torch.SetNumThreads(runtime.NumCPU()); err != nil {
		return err
	}
	ds, err := data.Open(dataDir, data.Options{Channels: 1, Height: 28, Width: 28, Seed: 1})
	if err != nil {
		return err
	}
	trainSplit, err := ds.Split(data.Train)
	if err != nil {
		return err
	}
	val, err := ds.Split(data.Val)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "training the bundled CNN for 2 epochs on %d images\n", trainSplit.Len())
	// Cosine decay to zero leaves weights and BatchNorm statistics settled,
	// which a constant high rate after so few steps does not.
	fit, err := train.Fit(cmd.Context(), m, trainSplit, train.Options{Epochs: 2, BatchSize: 64, LR: 0.05, Momentum: 0.9,
		WarmupSteps: 20, Cosine: true, Seed: 1})
	if err != nil {
		return fmt.Errorf("demo training: %w", err)
	}
	ev, err := train.Evaluate(cmd.Context(), m, val, 256)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trained: val accuracy %.4f (%d steps, %.0f images/s)\n", ev.Accuracy, fit.Steps, fit.ImagesPerSec)
	return m.Save(out)
}
