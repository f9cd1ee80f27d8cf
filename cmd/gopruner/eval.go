//go:build cgo

package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/spf13/cobra"
)

// evalJSON is `eval --json`: exactly these three fields, which scripts and
// tests rely on.
type evalJSON struct {
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Samples  int     `json:"samples"`
}

func newEvalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure a classifier's accuracy and loss on a dataset split",
		Long: `eval runs --model in eval mode over one split of --dataset (val by default)
and prints accuracy, mean cross-entropy loss, the number of samples and the
accuracy of each class. Labels map to outputs through MODEL.classes.json (saved
by train) when present, else as the data defines them.`,
		Example: `  gopruner eval --model net_ft.pt --dataset data/ --input-shape 1,3,224,224 --json`,
		Args:    cobra.NoArgs,
		RunE:    runEval,
	}
	cmd.Flags().String("split", "val", "split to evaluate: train, val or test")
	cmd.Flags().String("classes", "", "class list (JSON) the labels must belong to (default: MODEL.classes.json when present)")
	cmd.Flags().Bool("json", false, `print {"accuracy", "loss", "samples"} as JSON`)
	registerConfigFlags(cmd, dataConfigKeys...)
	return cmd
}

func runEval(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	c, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	shape, err := requireInput(c)
	if err != nil {
		return err
	}
	splitName, _ := cmd.Flags().GetString("split")
	classFlag, _ := cmd.Flags().GetString("classes")
	classes, _, err := modelClasses(c.Path.Model, classFlag)
	if err != nil {
		return err
	}
	dev, threads, err := setupTorch(c)
	if err != nil {
		return err
	}
	ds, err := openDataset(c.Path.Dataset, dataOptions(c, shape, classes))
	if err != nil {
		return err
	}
	sp, err := loadSplit(ctx, ds, splitName, false)
	if err != nil {
		return err
	}
	m, err := loadModel(c.Path.Model, dev, threads, shape, c.Path.Dataset, ds.Classes)
	if err != nil {
		return err
	}
	defer m.Close()
	r, err := train.Evaluate(ctx, m, sp, c.Train.BatchSize)
	if err != nil {
		return fmt.Errorf("evaluate %s on %s: %w", c.Path.Model, sp.Name(), err)
	}
	out := cmd.OutOrStdout()
	if j, _ := cmd.Flags().GetBool("json"); j {
		return writeJSON(out, evalJSON{Accuracy: r.Accuracy, Loss: r.Loss, Samples: r.Samples})
	}
	fmt.Fprintf(out, "%s on %s (%s split)\n", c.Path.Model, c.Path.Dataset, sp.Name())
	fmt.Fprintf(out, "accuracy %.2f%%  loss %.4f  samples %d\n", 100*r.Accuracy, r.Loss, r.Samples)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "class\taccuracy\tcorrect\tsamples")
	for _, pc := range r.PerClass {
		if pc.Samples == 0 {
			continue // classes of the class list absent from this split
		}
		fmt.Fprintf(w, "%s\t%.2f%%\t%d\t%d\n", pc.Class, 100*pc.Accuracy, pc.Correct, pc.Samples)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
