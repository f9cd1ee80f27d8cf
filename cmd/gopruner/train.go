//go:build cgo

package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) {
		root.AddCommand(newTrainCmd(), newEvalCmd())
	})
}

// trainConfigKeys are the configuration keys train offers as flags besides
// dataConfigKeys.
var trainConfigKeys = []string{
	"epochs", "lr", "momentum", "weight_decay", "optimizer", "nesterov",
	"warmup_steps", "cosine", "out",
}

// trainSummary is train's result, printed as text or, with --json, as is.
type trainSummary struct {
	Model         string   `json:"model"`
	Dataset       string   `json:"dataset"`
	Out           string   `json:"out"`
	Classes       string   `json:"classes"`
	Epochs        int      `json:"epochs"`
	Steps         int      `json:"steps"`
	Images        int      `json:"images"`
	TrainLoss     float64  `json:"train_loss"`
	TrainAccuracy float64  `json:"train_accuracy"`
	ValAccuracy   *float64 `json:"val_accuracy"` // null without a val split
	ValLoss       *float64 `json:"val_loss"`
	ValSamples    int      `json:"val_samples"`
	ImagesPerSec  float64  `json:"images_per_s"`
	TrainSeconds  float64  `json:"train_s"`
	WallSeconds   float64  `json:"wall_s"`
	Threads       int      `json:"threads"`
	Device        string   `json:"device"`
}

func newTrainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Fine-tune a TorchScript classifier on a dataset and save it",
		Long: `train fine-tunes --model on the train split of --dataset (data.csv or class
folders), evaluates it on the val split when there is one, and saves the
result to --out (never over the input model), with the class list next to it
as OUT.classes.json (OUT without its extension).

Settings come from flags, GOPRUNER_* variables and Pruning.yaml, in that order.`,
		Example: `  gopruner train --model net.pt --dataset data/ --input-shape 1,3,224,224 \
      --epochs 3 --batch-size 64 --lr 0.05 --out net_ft.pt`,
		Args: cobra.NoArgs,
		RunE: runTrain,
	}
	cmd.Flags().String("classes", "", "class list (JSON) the labels must belong to (default: MODEL.classes.json when present)")
	cmd.Flags().Bool("json", false, "print the summary as JSON")
	// Defined here for its help text (the config key's speaks of pruning);
	// config.Load still reads it as the out key.
	cmd.Flags().String("out", "", "where to save the trained model (required; never the input model) [out, GOPRUNER_OUT]")
	registerConfigFlags(cmd, append(append([]string{}, dataConfigKeys...), trainConfigKeys...)...)
	return cmd
}

func runTrain(cmd *cobra.Command, _ []string) error {
	start := time.Now()
	ctx := cmd.Context()
	c, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	shape, err := requireInput(c)
	if err != nil {
		return err
	}
	if c.Out == "" {
		return fail.Usagef("--out is required: where to save the trained model")
	}
	if c.Train.Epochs < 1 {
		return fail.Usagef("--epochs %d: train needs at least one epoch", c.Train.Epochs)
	}
	// Refuse a bad output before minutes of training are spent.
	if err := checkOut(c.Path.Model, c.Out); err != nil {
		return err
	}
	classesOut := classesFile(c.Out)
	if err := checkOut(c.Path.Model, classesOut); err != nil {
		return err
	}
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
	trainSplit, err := loadSplit(ctx, ds, data.Train, false)
	if err != nil {
		return err
	}
	valSplit, err := loadSplit(ctx, ds, data.Val, true)
	if err != nil {
		return err
	}
	m, err := loadModel(c.Path.Model, dev, threads, shape, c.Path.Dataset, ds.Classes)
	if err != nil {
		return err
	}
	defer m.Close()

	perEpoch := trainSplit.NumBatches(data.BatchOptions{BatchSize: c.Train.BatchSize, DropLast: trainSplit.Len() >= 2*c.Train.BatchSize})
	stderr := cmd.ErrOrStderr()
	if w := frozenBN(m, c.Path.Model); w != "" {
		fmt.Fprintln(stderr, "gopruner: warning: "+w)
	}
	fmt.Fprintf(stderr, "training %s on %s: %d train images, %d classes, epochs %d × %d steps, batch %d, %s, %d threads\n",
		c.Path.Model, c.Path.Dataset, trainSplit.Len(), len(ds.Classes), c.Train.Epochs, perEpoch, c.Train.BatchSize, dev, threads)
	rep := newReporter(stderr, c.Train.Epochs, perEpoch)
	res, err := train.Fit(ctx, m, trainSplit, train.Options{
		Epochs:      c.Train.Epochs,
		BatchSize:   c.Train.BatchSize,
		LR:          c.Train.LR,
		Momentum:    c.Train.Momentum,
		WeightDecay: c.Train.WeightDecay,
		Nesterov:    c.Train.Nesterov,
		Optimizer:   c.Train.Optimizer,
		WarmupSteps: c.Train.WarmupSteps,
		Cosine:      c.Train.Cosine,
		Seed:        c.Seed,
		Progress:    rep.update,
	})
	rep.finish()
	if err != nil {
		return fmt.Errorf("train %s: %w", c.Path.Model, err)
	}

	sum := trainSummary{
		Model: c.Path.Model, Dataset: c.Path.Dataset, Out: c.Out, Classes: classesOut,
		Epochs: c.Train.Epochs, Steps: res.Steps, Images: res.Images,
		TrainLoss: res.Loss, TrainAccuracy: res.Accuracy, ImagesPerSec: res.ImagesPerSec,
		TrainSeconds: res.Duration.Seconds(), Threads: threads, Device: dev.String(),
	}
	if valSplit != nil {
		ev, err := train.Evaluate(ctx, m, valSplit, c.Train.BatchSize)
		if err != nil {
			return fmt.Errorf("evaluate %s on val: %w", c.Path.Model, err)
		}
		sum.ValAccuracy, sum.ValLoss, sum.ValSamples = &ev.Accuracy, &ev.Loss, ev.Samples
	}
	if err := m.Save(c.Out); err != nil {
		return fmt.Errorf("save %s: %w", c.Out, err)
	}
	if err := ds.WriteClasses(classesOut); err != nil {
		return err
	}
	sum.WallSeconds = time.Since(start).Seconds()
	if j, _ := cmd.Flags().GetBool("json"); j {
		return writeJSON(cmd.OutOrStdout(), sum)
	}
	printTrainSummary(cmd.OutOrStdout(), sum)
	return nil
}

func printTrainSummary(w io.Writer, s trainSummary) {
	fmt.Fprintf(w, "trained %s: epochs %d, steps %d, images %d\n", filepath.Base(s.Model), s.Epochs, s.Steps, s.Images)
	fmt.Fprintf(w, "  train loss %.4f, train accuracy %.2f%% (last epoch, running)\n", s.TrainLoss, 100*s.TrainAccuracy)
	if s.ValAccuracy != nil {
		fmt.Fprintf(w, "  val accuracy %.2f%%, val loss %.4f (%d images)\n", 100**s.ValAccuracy, *s.ValLoss, s.ValSamples)
	} else {
		fmt.Fprintln(w, "  no val split (val_fraction 0 and no val rows)")
	}
	fmt.Fprintf(w, "  %.0f images/s, training %s, wall time %s\n", s.ImagesPerSec,
		time.Duration(s.TrainSeconds*float64(time.Second)).Round(10*time.Millisecond),
		time.Duration(s.WallSeconds*float64(time.Second)).Round(10*time.Millisecond))
	fmt.Fprintf(w, "saved %s (classes %s)\n", s.Out, s.Classes)
}

// reporter shows training progress: bars on a terminal, log lines otherwise
// (CI logs and redirected output would fill with bar redraws).
type reporter interface {
	update(train.Progress)
	finish()
}

func newReporter(w io.Writer, epochs, perEpoch int) reporter {
	if isTerminal(w) {
		return &barReporter{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(32)), epochs: epochs, perEpoch: perEpoch}
	}
	return &logReporter{w: w, epochs: epochs, perEpoch: perEpoch, every: max(1, perEpoch/10)}
}

// logReporter writes one line about every 10% of an epoch and one per epoch.
type logReporter struct {
	w                       io.Writer
	epochs, perEpoch, every int
	epochStart              int // global step count when the current epoch began
	epoch                   int
}

func (r *logReporter) update(p train.Progress) {
	if p.Epoch != r.epoch {
		r.epoch, r.epochStart = p.Epoch, p.Step-1
	}
	k := p.Step - r.epochStart
	switch {
	case p.EpochDone:
		fmt.Fprintf(r.w, "epoch %d/%d done: %d steps, loss %.4f, accuracy %.2f%%, %.0f images/s\n",
			p.Epoch+1, r.epochs, k, p.Loss, 100*p.Accuracy, p.ImagesPerSec)
		r.epochStart = p.Step
		r.epoch = p.Epoch + 1
	case k%r.every == 0:
		fmt.Fprintf(r.w, "epoch %d/%d step %d/%d: loss %.4f, accuracy %.2f%%, %.0f images/s\n",
			p.Epoch+1, r.epochs, k, r.perEpoch, p.Loss, 100*p.Accuracy, p.ImagesPerSec)
	}
}

func (r *logReporter) finish() {}

// barReporter draws one mpb bar per epoch.
type barReporter struct {
	p                *mpb.Progress
	epochs, perEpoch int
	bar              *mpb.Bar
	stats            *epochStats // of the current bar
	epoch            int
	epochStart       int
}

// epochStats is one bar's trailing text. Each bar has its own, so that a
// finished epoch keeps showing its final figures; Fit calls update from the
// training goroutine while mpb renders from its own, hence the mutex.
type epochStats struct {
	mu   sync.Mutex
	last train.Progress
}

func (s *epochStats) set(p train.Progress) {
	s.mu.Lock()
	s.last = p
	s.mu.Unlock()
}

func (s *epochStats) text(decor.Statistics) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("loss %.4f  acc %.2f%%  %.0f img/s", s.last.Loss, 100*s.last.Accuracy, s.last.ImagesPerSec)
}

func (r *barReporter) update(p train.Progress) {
	if r.bar == nil || p.Epoch != r.epoch {
		r.complete()
		r.epoch, r.epochStart = p.Epoch, p.Step-1
		r.stats = &epochStats{}
		r.bar = r.p.AddBar(int64(r.perEpoch),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("epoch %d/%d ", p.Epoch+1, r.epochs)), decor.CountersNoUnit("%d/%d")),
			mpb.AppendDecorators(decor.Any(r.stats.text)))
	}
	r.stats.set(p)
	r.bar.SetCurrent(int64(p.Step - r.epochStart))
	if p.EpochDone {
		r.complete()
	}
}

// complete ends the current bar at whatever step it reached, so that Wait
// never blocks on a bar whose total was a step off.
func (r *barReporter) complete() {
	if r.bar != nil && !r.bar.Completed() {
		r.bar.SetTotal(-1, true)
	}
}

func (r *barReporter) finish() {
	if r.bar != nil && !r.bar.Completed() {
		r.bar.Abort(false) // Fit failed or was interrupted mid-epoch
	}
	r.p.Wait()
}
