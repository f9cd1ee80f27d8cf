//go:build cgo

package train

import (
	"context"
	"errors"
	"iter"
	"path/filepath"
	"testing"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/third_party/mnist"
	"github.com/gopruner/gopruner/torch"
)

func demoSetup(t *testing.T) (*data.Split, string) {
	t.Helper()
	ds, err := data.FromMNIST(mnist.FS(), data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ds.Split("train")
	if err != nil {
		t.Fatal(err)
	}
	return tr, filepath.Join(fixtures.RepoRoot(t), "internal/demo/democnn.pt")
}

// TestPrefetchSameSteps: the path a CUDA run takes (batches made one ahead
// by a goroutine) trains exactly as the CPU's in-turn path does: same
// batches in the same order, so the same losses and weights, bit for bit.
// Run here on the CPU through the test hook, under -race in the race pass.
func TestPrefetchSameSteps(t *testing.T) {
	split, path := demoSetup(t)
	o := Options{Steps: 12, BatchSize: 32, LR: 0.05, Momentum: 0.9, Seed: 3, Flip: true}
	fit := func(prefetch bool) (Result, []float32) {
		prefetchOnCPU = prefetch
		defer func() { prefetchOnCPU = false }()
		m, err := torch.Load(path, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.SetThreads(1); err != nil {
			t.Fatal(err)
		}
		r, err := Fit(context.Background(), m, split, o)
		if err != nil {
			t.Fatalf("prefetch %v: %v", prefetch, err)
		}
		names, err := m.ParameterNames()
		if err != nil {
			t.Fatal(err)
		}
		w, err := m.Get(names[0])
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		v, err := w.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		return r, v
	}
	r0, w0 := fit(false)
	r1, w1 := fit(true)
	if r0.Steps != 12 || r1.Steps != 12 || r0.Loss != r1.Loss || r0.Accuracy != r1.Accuracy {
		t.Errorf("in turn: %d steps, loss %v, accuracy %v; one ahead: %d steps, loss %v, accuracy %v", r0.Steps, r0.Loss, r0.Accuracy, r1.Steps, r1.Loss, r1.Accuracy)
	}
	for i := range w0 {
		if w0[i] != w1[i] {
			t.Fatalf("weight %d differs: %v in turn, %v one ahead", i, w0[i], w1[i])
		}
	}
}

// TestPrefetchStops: a consumer that stops early, a cancelled context and
// a failing source all end the producer and free every tensor it made.
func TestPrefetchStops(t *testing.T) {
	prefetchOnCPU = true
	defer func() { prefetchOnCPU = false }()
	shape := []int64{0, 1, 2, 2}
	batch := &data.Batch{X: make([]float32, 8), Y: []int64{0, 1}, N: 2}
	boom := errors.New("decode failed")
	src := func(n int, failAt int) func(context.Context) iter.Seq2[*data.Batch, error] {
		return func(ctx context.Context) iter.Seq2[*data.Batch, error] {
			return func(yield func(*data.Batch, error) bool) {
				for i := range n {
					if i == failAt {
						yield(nil, boom)
						return
					}
					if ctx.Err() != nil || !yield(batch, nil) {
						return
					}
				}
			}
		}
	}
	live := func() int64 {
		n, _ := torch.LiveHandles()
		return n
	}
	before := live()
	got := 0
	for b, err := range batchTensors(context.Background(), src(100, -1), shape, torch.CPU) {
		if err != nil {
			t.Fatal(err)
		}
		b.close()
		if got++; got == 3 {
			break
		}
	}
	if got != 3 {
		t.Errorf("consumed %d batches, want 3", got)
	}
	var last error
	got = 0
	for b, err := range batchTensors(context.Background(), src(10, 4), shape, torch.CPU) {
		if err != nil {
			last = err
			continue
		}
		got++
		b.close()
	}
	if got != 4 || !errors.Is(last, boom) {
		t.Errorf("failing source: %d batches then %v, want 4 then %v", got, last, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got = 0
	for b, err := range batchTensors(ctx, src(1000, -1), shape, torch.CPU) {
		if err != nil {
			t.Fatal(err)
		}
		b.close()
		if got++; got == 2 {
			cancel()
		}
	}
	if got > 4 {
		t.Errorf("%d batches after a cancel at 2", got)
	}
	if after := live(); after != before {
		t.Errorf("%d tensor handles live after the feeds, %d before", after, before)
	}
}

// TestStepTimes: bench-model --train's loop runs warm+runs steps and
// times runs of them; bad counts are refused.
func TestStepTimes(t *testing.T) {
	_, path := demoSetup(t)
	m, err := torch.Load(path, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	shape := []int64{4, 1, 28, 28}
	x := make([]float32, 4*28*28)
	y := []int64{0, 1, 2, 3}
	o := Options{BatchSize: 4, LR: 0.01, Momentum: 0.9}
	ts, err := StepTimes(context.Background(), m, x, y, shape, o, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 {
		t.Fatalf("%d step times, want 3", len(ts))
	}
	for i, d := range ts {
		if d <= 0 {
			t.Errorf("step %d took %v", i, d)
		}
	}
	if _, err := StepTimes(context.Background(), m, x, y, shape, o, 1, 0); err == nil {
		t.Error("runs 0: no error")
	}
	if _, err := StepTimes(context.Background(), m, x, []int64{0, 1, 2, 99}, shape, o, 0, 1); err == nil {
		t.Error("a label outside the classes: no error")
	}
}
