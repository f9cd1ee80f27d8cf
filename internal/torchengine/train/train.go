//go:build cgo

// Package train fine-tunes and evaluates TorchScript classifiers on a data
// split through the bridge. It is the one training loop in gopruner: the
// train and eval commands and the pruning algorithms' short- and long-term
// fine-tuning all call it.
package train

import (
	"context"
	"fmt"
	"iter"
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/torch"
)

// Optimizer names.
const (
	SGD  = "sgd"
	Adam = "adam"
)

// Options configure Fit: the engine's training settings.
type Options = engine.TrainOptions

// Progress is the state after one step.
type Progress = engine.TrainProgress

// Result summarises a Fit.
type Result struct {
	Steps        int
	Images       int
	Loss         float64 // mean over the last epoch's steps
	Accuracy     float64 // running train accuracy over the last epoch
	ImagesPerSec float64
	Duration     time.Duration
	// Compute is the time spent in the bridge's training steps (forward,
	// backward, optimizer); Duration minus Compute is the loop's overhead
	// (batch assembly, copies in, progress).
	Compute time.Duration
}

// Fit trains m on the split. m is put in training mode and left in eval
// mode. It stops early, with ctx.Err(), when ctx is cancelled.
func Fit(ctx context.Context, m *torch.Module, split *data.Split, o Options) (Result, error) {
	if o.BatchSize <= 0 {
		return Result{}, fmt.Errorf("train: batch size %d must be positive", o.BatchSize)
	}
	if !(o.LR > 0) {
		return Result{}, fmt.Errorf("train: learning rate %g must be positive", o.LR)
	}
	bo := data.BatchOptions{BatchSize: o.BatchSize, Shuffle: true, Seed: o.Seed, DropLast: split.Len() >= 2*o.BatchSize, Flip: o.Flip, CropPad: o.CropPad,
		// trainStep copies each batch into a tensor before the next is asked for.
		Reuse: true}
	perEpoch := split.NumBatches(bo)
	if perEpoch == 0 {
		return Result{}, fmt.Errorf("train: split %q has no batch of %d", split.Name(), o.BatchSize)
	}
	total := o.Steps
	if total <= 0 {
		if o.Epochs <= 0 {
			return Result{}, fmt.Errorf("train: epochs %d must be positive", o.Epochs)
		}
		total = o.Epochs * perEpoch
	}
	// libtorch's freed buffers go back to the malloc arena of the OS thread
	// that freed them; a goroutine hopping threads between cgo calls makes
	// every step fault in fresh pages (measured: 1.39M page faults an epoch
	// against 0.28M pinned, 24% more images/s).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	teacher, err := teacherOf(m, o)
	if err != nil {
		return Result{}, err
	}
	opt, err := newOptimizer(m, o)
	if err != nil {
		return Result{}, err
	}
	defer opt.Close()
	// The dropout masks come from the run's seed, not from libtorch's
	// process-wide generator that cart slots training at once share.
	if err := m.SetRNG(uint64(o.Seed)); err != nil {
		return Result{}, err
	}
	if err := m.Train(true); err != nil {
		return Result{}, err
	}
	defer m.Train(false)

	opts := split.Dataset().Options()
	shape := []int64{0, int64(opts.Channels), int64(opts.Height), int64(opts.Width)}
	dev := m.Device()
	start := time.Now()
	var res Result
	step := 0
	for epoch := 0; step < total; epoch++ {
		bo.Epoch = epoch
		bo.MaxBatches = min(perEpoch, total-step)
		var lossSum float64
		var correct, seen, n int
		epochStart := time.Now()
		src := func(c context.Context) iter.Seq2[*data.Batch, error] { return split.Batches(c, bo) }
		for b, err := range batchTensors(ctx, src, shape, dev) {
			if err != nil {
				return res, err
			}
			if err := ctx.Err(); err != nil {
				b.close()
				return res, err
			}
			if err := opt.SetLR(lrAt(o, step, total)); err != nil {
				b.close()
				return res, err
			}
			t0 := time.Now()
			loss, c, err := trainStep(m, teacher, o.Distill, opt, b)
			res.Compute += time.Since(t0)
			b.close()
			if err != nil {
				return res, fmt.Errorf("train step %d: %w", step+1, err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return res, fmt.Errorf("train step %d: loss is %v (learning rate %g too high?)", step+1, loss, o.LR)
			}
			step++
			n++
			lossSum += loss
			correct += int(c)
			seen += b.N
			res.Images += b.N
			if o.Progress != nil {
				el := time.Since(epochStart).Seconds()
				o.Progress(Progress{Epoch: epoch, Step: step, TotalSteps: total, Loss: lossSum / float64(n),
					Accuracy: float64(correct) / float64(seen), ImagesPerSec: float64(seen) / math.Max(el, 1e-9),
					EpochDone: n == bo.MaxBatches})
			}
		}
		if n > 0 {
			res.Loss = lossSum / float64(n)
			res.Accuracy = float64(correct) / float64(seen)
		}
		if n == 0 {
			break
		}
	}
	res.Steps = step
	res.Duration = time.Since(start)
	res.ImagesPerSec = float64(res.Images) / math.Max(res.Duration.Seconds(), 1e-9)
	return res, nil
}

// teacherOf is the libtorch module o.Distill learns from (nil without
// distillation), put in eval mode: its outputs are fixed targets.
func teacherOf(m *torch.Module, o Options) (*torch.Module, error) {
	if o.Distill == nil {
		return nil, nil
	}
	if err := o.Distill.Check(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	tm, ok := o.Teacher.(interface{ Torch() *torch.Module })
	if !ok || tm.Torch() == nil {
		return nil, fmt.Errorf("train: distillation needs a libtorch teacher model, got %T", o.Teacher)
	}
	t := tm.Torch()
	if t == m {
		return nil, fmt.Errorf("train: the distillation teacher is the model being trained")
	}
	if t.Device() != m.Device() {
		return nil, fmt.Errorf("train: the distillation teacher is on %s, the model on %s", t.Device(), m.Device())
	}
	if err := t.Train(false); err != nil {
		return nil, err
	}
	return t, nil
}

func trainStep(m, teacher *torch.Module, d *engine.Distill, opt *torch.Optimizer, b stepBatch) (float64, int64, error) {
	if teacher != nil {
		return torch.TrainStepDistill(m, teacher, opt, b.x, b.y, d.Temperature, d.Weight)
	}
	return torch.TrainStep(m, opt, b.x, b.y)
}

// prefetchOnCPU makes the CPU take the CUDA path of batchTensors (a test
// hook: that path is otherwise run only where there is a GPU).
var prefetchOnCPU = false

// stepBatch is a batch as the step's tensors.
type stepBatch struct {
	x, y *torch.Tensor
	N    int
}

func (b stepBatch) close() {
	b.x.Close()
	b.y.Close()
}

// stepTensors copies b into the tensors of a step of a module on dev
// (shape: the batch's, its first entry ignored).
func stepTensors(b *data.Batch, shape []int64, dev torch.Device) (stepBatch, error) {
	sh := slices.Clone(shape)
	sh[0] = int64(b.N)
	x, err := torch.BatchFloat32(b.X, sh, dev)
	if err != nil {
		return stepBatch{}, err
	}
	y, err := torch.BatchInt64(b.Y, []int64{int64(b.N)}, dev)
	if err != nil {
		x.Close()
		return stepBatch{}, err
	}
	return stepBatch{x: x, y: y, N: b.N}, nil
}

// batchTensors yields the batches of src as step tensors. For a module on a
// CUDA device a goroutine makes them one batch ahead, in pinned host
// memory: that copy is the host's share of each step, and it overlaps the
// device's work on the step before (as a PyTorch DataLoader's pinning
// thread does). On the CPU each is made when the loop asks for it, as
// before. The consumer closes what it is given.
func batchTensors(ctx context.Context, src func(context.Context) iter.Seq2[*data.Batch, error], shape []int64, dev torch.Device) iter.Seq2[stepBatch, error] {
	if !dev.IsCUDA() && !prefetchOnCPU {
		return func(yield func(stepBatch, error) bool) {
			for b, err := range src(ctx) {
				if err != nil {
					yield(stepBatch{}, err)
					return
				}
				sb, err := stepTensors(b, shape, dev)
				if !yield(sb, err) || err != nil {
					return
				}
			}
		}
	}
	type item struct {
		b   stepBatch
		err error
	}
	return func(yield func(stepBatch, error) bool) {
		pctx, cancel := context.WithCancel(ctx)
		ch := make(chan item, 1)
		go func() {
			defer close(ch)
			for b, err := range src(pctx) {
				it := item{err: err}
				if err == nil {
					it.b, it.err = stepTensors(b, shape, dev)
				}
				select {
				case ch <- it:
				case <-pctx.Done():
					if it.err == nil {
						it.b.close()
					}
					return
				}
				if it.err != nil {
					return
				}
			}
		}()
		defer func() {
			cancel()
			for it := range ch {
				if it.err == nil {
					it.b.close()
				}
			}
		}()
		for it := range ch {
			if !yield(it.b, it.err) || it.err != nil {
				return
			}
		}
	}
}

func newOptimizer(m *torch.Module, o Options) (*torch.Optimizer, error) {
	switch o.Optimizer {
	case "", SGD:
		return torch.NewSGD(m, torch.SGDOptions{LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay, Nesterov: o.Nesterov && o.Momentum > 0})
	case Adam:
		return torch.NewAdam(m, torch.AdamOptions{LR: o.LR, WeightDecay: o.WeightDecay})
	}
	return nil, fmt.Errorf("train: unknown optimizer %q (sgd or adam)", o.Optimizer)
}

// lrAt is the learning rate for step (0-based) of total: linear warm-up,
// then constant or cosine decay.
func lrAt(o Options, step, total int) float64 {
	if o.WarmupSteps > 0 && step < o.WarmupSteps {
		return o.LR * float64(step+1) / float64(o.WarmupSteps)
	}
	if !o.Cosine {
		return o.LR
	}
	span := total - o.WarmupSteps
	if span <= 0 {
		return o.LR
	}
	t := float64(step-o.WarmupSteps) / float64(span)
	return o.LR * 0.5 * (1 + math.Cos(math.Pi*t))
}

// RecalibrateBN re-estimates m's BatchNorm running statistics as the plain
// average over up to batches shuffled batches of split (seeded), without
// autograd and without changing a weight. A cut changes what every
// BatchNorm after it sees; statistics measured on the cut model make its
// validation (and the start of its fine-tune) less noisy. It returns the
// number of BatchNorm layers (0: nothing was done) and the time spent in
// the forward passes.
func RecalibrateBN(ctx context.Context, m *torch.Module, split *data.Split, batches, batchSize int, seed int64) (int, time.Duration, error) {
	if batches <= 0 {
		return 0, 0, nil
	}
	runtime.LockOSThread() // see Fit
	defer runtime.UnlockOSThread()
	opts := split.Dataset().Options()
	shape := []int64{0, int64(opts.Channels), int64(opts.Height), int64(opts.Width)}
	bo := data.BatchOptions{BatchSize: batchSize, Shuffle: true, Seed: seed, MaxBatches: batches,
		DropLast: split.Len() >= 2*batchSize, Reuse: true}
	// A dropout before a BatchNorm changes its statistics: see Fit.
	if err := m.SetRNG(uint64(seed)); err != nil {
		return 0, 0, err
	}
	step, layers := 0, 0
	var compute time.Duration
	for b, err := range split.Batches(ctx, bo) {
		if err != nil {
			return 0, compute, err
		}
		shape[0] = int64(b.N)
		x, err := torch.BatchFloat32(b.X, shape, m.Device())
		if err != nil {
			return 0, compute, err
		}
		t := time.Now()
		n, err := torch.RecalibrateBNStep(m, x, step)
		compute += time.Since(t)
		x.Close()
		if err != nil {
			return 0, compute, fmt.Errorf("re-estimating BatchNorm statistics: %w", err)
		}
		if n == 0 {
			return 0, compute, nil
		}
		step, layers = step+1, n
	}
	return layers, compute, nil
}

// EvalResult is the accuracy and mean loss on a split.
type EvalResult struct {
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	// LossSE is the standard error of Loss, estimated from the spread of
	// the batches' mean losses (0 with a single batch).
	LossSE   float64       `json:"-"`
	Samples  int           `json:"samples"`
	PerClass []ClassResult `json:"-"`
	// Compute is the time spent in the bridge's forward passes; the rest
	// of the call is batch assembly and copies in.
	Compute time.Duration `json:"-"`
}

// ClassResult is one class's accuracy.
type ClassResult struct {
	Class    string
	Correct  int
	Samples  int
	Accuracy float64
}

// Evaluate runs m in eval mode over the whole split.
func Evaluate(ctx context.Context, m *torch.Module, split *data.Split, batchSize int) (EvalResult, error) {
	if batchSize <= 0 {
		batchSize = 64
	}
	runtime.LockOSThread() // see Fit
	defer runtime.UnlockOSThread()
	if err := m.Train(false); err != nil {
		return EvalResult{}, err
	}
	opts := split.Dataset().Options()
	classes := split.Dataset().Classes
	shape := []int64{0, int64(opts.Channels), int64(opts.Height), int64(opts.Width)}
	dev := m.Device()
	per := make([]ClassResult, len(classes))
	for i, c := range classes {
		per[i].Class = c
	}
	var lossSum float64
	var batchMeans []float64
	var correct, n int
	var compute time.Duration
	preds := make([]int64, batchSize)
	for b, err := range split.Batches(ctx, data.BatchOptions{BatchSize: batchSize, Reuse: true}) {
		if err != nil {
			return EvalResult{}, err
		}
		sb, err := stepTensors(b, shape, dev)
		if err != nil {
			return EvalResult{}, err
		}
		t0 := time.Now()
		l, c, err := torch.EvalBatch(m, sb.x, sb.y, preds[:b.N])
		compute += time.Since(t0)
		sb.close()
		if err != nil {
			return EvalResult{}, fmt.Errorf("eval: %w", err)
		}
		lossSum += l
		batchMeans = append(batchMeans, l/float64(b.N))
		correct += int(c)
		n += b.N
		for i := 0; i < b.N; i++ {
			if lbl := int(b.Y[i]); lbl >= 0 && lbl < len(per) {
				per[lbl].Samples++
				if preds[i] == b.Y[i] {
					per[lbl].Correct++
				}
			}
		}
	}
	if n == 0 {
		return EvalResult{}, fmt.Errorf("eval: split %q is empty", split.Name())
	}
	for i := range per {
		if per[i].Samples > 0 {
			per[i].Accuracy = float64(per[i].Correct) / float64(per[i].Samples)
		}
	}
	return EvalResult{Accuracy: float64(correct) / float64(n), Loss: lossSum / float64(n), LossSE: meanSE(batchMeans),
		Samples: n, PerClass: per, Compute: compute}, nil
}

// meanSE is the standard error of the mean of v, sd(v)/sqrt(len(v)): with
// equal batches, the batch means' spread estimates the whole mean's noise
// without a per-sample loss from the bridge.
func meanSE(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	var mu float64
	for _, x := range v {
		mu += x
	}
	mu /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mu) * (x - mu)
	}
	return math.Sqrt(ss / float64(len(v)-1) / float64(len(v)))
}

// StepTimes runs warm untimed and then runs timed training steps of m on
// one fixed batch (x, y: shape[0] samples) through the loop's own path
// (the batch copied into a fresh tensor each step, one ahead on CUDA, then
// TrainStep with o's optimizer) and returns each timed step's wall time,
// from asking for its batch to having its loss on the host. It is what
// `bench-model --train` reports.
func StepTimes(ctx context.Context, m *torch.Module, x []float32, y []int64, shape []int64, o Options, warm, runs int) ([]time.Duration, error) {
	if warm < 0 || runs <= 0 {
		return nil, fmt.Errorf("train: want warm ≥ 0 and runs > 0, got %d and %d", warm, runs)
	}
	runtime.LockOSThread() // see Fit
	defer runtime.UnlockOSThread()
	opt, err := newOptimizer(m, o)
	if err != nil {
		return nil, err
	}
	defer opt.Close()
	if err := m.Train(true); err != nil {
		return nil, err
	}
	defer m.Train(false)
	n := int(shape[0])
	src := func(c context.Context) iter.Seq2[*data.Batch, error] {
		return func(yield func(*data.Batch, error) bool) {
			for range warm + runs {
				if c.Err() != nil || !yield(&data.Batch{X: x, Y: y, N: n}, nil) {
					return
				}
			}
		}
	}
	times := make([]time.Duration, 0, runs)
	i := 0
	t0 := time.Now()
	for b, err := range batchTensors(ctx, src, shape, m.Device()) {
		if err != nil {
			return nil, err
		}
		_, _, err := trainStep(m, nil, nil, opt, b)
		b.close()
		if err != nil {
			return nil, fmt.Errorf("train step %d: %w", i+1, err)
		}
		if i >= warm {
			times = append(times, time.Since(t0))
		}
		i++
		t0 = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return times, nil
}
