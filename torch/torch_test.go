//go:build cgo

package torch

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gopruner/gopruner/internal/fixtures"
)

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// forwardValues is m's forward of x (no grad), as float32s.
func forwardValues(t testing.TB, m *Module, x *Tensor) []float32 {
	t.Helper()
	y := must[*Tensor](t)(m.Forward(true, x))
	defer y.Close()
	return must[[]float32](t)(y.Float32s())
}

func TestLoadAndForwardMatchesPython(t *testing.T) {
	names := fixtures.Names(append(append([]string{}, fixtures.Architectures...), fixtures.Patterns...))
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			m := must[*Module](t)(Load(path, CPU))
			defer m.Close()
			in := fixtures.Float32s(t, name+".in.f32")
			want := fixtures.Float32s(t, name+".out.f32")
			x := must[*Tensor](t)(FromFloat32(in, meta.InputShape, CPU))
			defer x.Close()
			y := must[*Tensor](t)(m.Forward(true, x))
			defer y.Close()
			got := must[[]float32](t)(y.Float32s())
			if len(got) != len(want) {
				t.Fatalf("output has %d values, Python's %d", len(got), len(want))
			}
			var maxDiff, maxAbs float64
			for i := range got {
				maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
				maxAbs = math.Max(maxAbs, math.Abs(float64(want[i])))
			}
			if maxDiff > 1e-5*math.Max(maxAbs, 1e-12) {
				t.Fatalf("max |Go - Python| = %g, relative %g > 1e-5", maxDiff, maxDiff/maxAbs)
			}
		})
	}
}

// TestSurgeryThenPythonLoads removes channels by hand (conv1's filters, bn1's
// tensors and the next conv's input slice), runs, saves, and has Python's
// torch.jit.load run the result.
func TestSurgeryThenPythonLoads(t *testing.T) {
	for _, name := range []string{"resnet18_scripted", "resnet18_traced"} {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			m := must[*Module](t)(Load(path, CPU))
			defer m.Close()
			keep := make([]int64, 0, 32)
			for i := int64(0); i < 64; i += 2 {
				keep = append(keep, i)
			}
			var s Scope
			defer s.Close()
			replace := func(name string, dim int) {
				old := s.Add(must[*Tensor](t)(m.Get(name)))
				small := s.Add(must[*Tensor](t)(old.IndexSelect(dim, keep)))
				if err := m.Set(name, small); err != nil {
					t.Fatal(err)
				}
			}
			replace("conv1.weight", 0)
			for _, b := range []string{"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"} {
				replace(b, 0)
			}
			// After the stem, layer1 runs on 64 channels in a residual
			// chain; slicing its first conv's input is enough only with
			// the maxpool output feeding layer1.0.conv1 and the identity
			// branch. Shrink everything in that space.
			replace("layer1.0.conv1.weight", 1)
			shape := must[[]int64](t)(s.Add(must[*Tensor](t)(m.Get("conv1.weight"))).Shape())
			if shape[0] != 32 {
				t.Fatalf("conv1.weight shape %v after surgery", shape)
			}
			x := s.Add(must[*Tensor](t)(Randn(meta.InputShape, CPU)))
			// The residual add in layer1.0 now mixes 32 and 64 channels,
			// so the forward must fail with an error, not a crash.
			if _, err := m.Forward(true, x); err == nil {
				t.Fatal("forward with a half-pruned residual block succeeded")
			} else if !strings.Contains(err.Error(), "size") {
				t.Logf("error: %v", err)
			}
			// Now finish the space: every consumer and producer of the
			// stem's 64 channels in layer1.
			for _, n := range []string{"layer1.0.conv2.weight", "layer1.1.conv2.weight"} {
				replace(n, 0)
			}
			for _, bn := range []string{"layer1.0.bn2", "layer1.1.bn2"} {
				for _, b := range []string{"weight", "bias", "running_mean", "running_var"} {
					replace(bn+"."+b, 0)
				}
			}
			for _, n := range []string{"layer1.1.conv1.weight", "layer2.0.conv1.weight", "layer2.0.downsample.0.weight"} {
				replace(n, 1)
			}
			y := s.Add(must[*Tensor](t)(m.Forward(true, x)))
			ys := must[[]int64](t)(y.Shape())
			if ys[1] != 1000 {
				t.Fatalf("output shape %v", ys)
			}
			out := filepath.Join(t.TempDir(), "pruned.pt")
			if err := m.Save(out); err != nil {
				t.Fatal(err)
			}
			fixtures.PyLoad(t, out, meta.InputShape)
		})
	}
}

func TestTrainStepLowersLoss(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	if err := ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	must[struct{}](t)(struct{}{}, m.Train(true))
	opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 0.05, Momentum: 0.9}))
	defer opt.Close()
	// A fixed batch the model must fit: loss goes down over a few steps.
	x, y := randomBatch(t, 16, meta.InputShape, 10, 1)
	first, _, err := TrainStep(m, opt, x, y)
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	for i := 0; i < 20; i++ {
		if last, _, err = TrainStep(m, opt, x, y); err != nil {
			t.Fatal(err)
		}
	}
	if !(last < first) {
		t.Fatalf("loss did not go down: first %.4f, last %.4f", first, last)
	}
	t.Logf("loss %.4f -> %.4f", first, last)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random.pt")
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(r.IntN(256))
	}
	if err := os.WriteFile(random, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	good := fixtures.Path(t, "smallcnn_scripted.pt")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.pt")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path string }{
		{"missing", filepath.Join(dir, "nope.pt")},
		{"random bytes", random},
		{"truncated", truncated},
		{"state_dict", fixtures.Path(t, "state_dict.pt")},
		{"pickled module", fixtures.Path(t, "pickled_module.pt")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.path, CPU)
			if err == nil {
				m.Close()
				t.Fatalf("loading %s succeeded", c.path)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) < 10 {
				t.Fatalf("unhelpful error %q", err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestForwardWrongShape(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x := must[*Tensor](t)(Randn([]int64{1, 1, 32, 32}, CPU))
	defer x.Close()
	_, err := m.Forward(true, x)
	if err == nil {
		t.Fatal("forward with 1 channel into a 3-channel model succeeded")
	}
	if !strings.Contains(err.Error(), "channels") {
		t.Fatalf("error does not mention channels: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	c := must[*Module](t)(m.Clone())
	defer c.Close()
	w := must[*Tensor](t)(c.Get("conv1.weight"))
	defer w.Close()
	shape := must[[]int64](t)(w.Shape())
	z := must[*Tensor](t)(FromFloat32(make([]float32, len(must[[]float32](t)(w.Float32s()))), shape, CPU))
	defer z.Close()
	if err := c.Set("conv1.weight", z); err != nil {
		t.Fatal(err)
	}
	orig := must[*Tensor](t)(m.Get("conv1.weight"))
	defer orig.Close()
	if !slices.ContainsFunc(must[[]float32](t)(orig.Float32s()), func(v float32) bool { return v != 0 }) {
		t.Fatal("editing the clone changed the original")
	}
}

// TestCloneFreesItsMethods: a clone's methods (and the executors its runs
// made) leave the compilation unit it shares with the original when it is
// closed, also when a clone of it lives on; the survivors still run.
func TestCloneFreesItsMethods(t *testing.T) {
	path, meta := fixtures.Model(t, "resnet18_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	defer x.Close()
	out := func(m *Module) []float32 { return forwardValues(t, m, x) }
	want := out(m)
	n0 := must[int](t)(m.unitFunctions())
	a := must[*Module](t)(m.Clone())
	out(a)
	if n := must[int](t)(m.unitFunctions()); n <= n0 {
		t.Fatalf("a clone added no functions (%d, %d before): the count does not see them", n, n0)
	}
	b := must[*Module](t)(a.Clone())
	a.Close()
	if got := out(b); !slices.Equal(got, want) {
		t.Error("a clone of a closed clone gives other outputs")
	}
	b.Close()
	if n := must[int](t)(m.unitFunctions()); n != n0 {
		t.Errorf("%d functions after the clones were closed, %d before", n, n0)
	}
	if got := out(m); !slices.Equal(got, want) {
		t.Error("the original gives other outputs after its clones were closed")
	}
}

// TestShapePassesLeaveNoMethods: the shape-only passes of the IR export and
// the run check leave nothing behind on the C heap (the executors and plans
// of the methods they ran) and no function in the compilation unit, and
// what they report is what the real pass reports.
func TestShapePassesLeaveNoMethods(t *testing.T) {
	path, meta := fixtures.Model(t, "mobilenet_v2_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	defer x.Close()
	n0 := must[int](t)(m.unitFunctions())
	// What a pass leaves on the C heap: the executors and plans of every
	// method forward calls would be 10 MB of mobilenet_v2's.
	const leftMax = 2 << 20
	leftBy := func(what string, h0 int64) {
		t.Helper()
		if h0 < 0 {
			return
		}
		left := heapInUse() - h0
		if left > leftMax {
			t.Errorf("the meta %s left %.1f MB on the heap", what, float64(left)/(1<<20))
		}
		t.Logf("heap after the %s: %+d bytes", what, left)
	}
	h0 := heapInUse()
	js, usedMeta, err := m.ExportIRPass(PassMeta, x)
	if err != nil || !usedMeta {
		t.Fatalf("meta export: %v (meta %v)", err, usedMeta)
	}
	leftBy("IR export", h0)
	if n := must[int](t)(m.unitFunctions()); n != n0 {
		t.Errorf("%d functions after the IR export, %d before", n, n0)
	}
	if again := must[[]byte](t)(m.ExportIR(x)); !bytes.Equal(again, js) {
		t.Error("a second export gives another IR")
	}

	// On a module of its own: what the export's run left, the check's
	// run would reuse.
	c := must[*Module](t)(Load(path, CPU))
	defer c.Close()
	nc := must[int](t)(c.unitFunctions())
	h0 = heapInUse()
	if usedMeta, err := c.CheckForwardPass(PassMeta, x); err != nil || !usedMeta {
		t.Fatalf("meta run check: %v (meta %v)", err, usedMeta)
	}
	leftBy("run check", h0)
	if n := must[int](t)(c.unitFunctions()); n != nc {
		t.Errorf("%d functions after the run check, %d before", n, nc)
	}
	real, _, err := m.ExportIRPass(PassReal, x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(real, js) {
		t.Error("the shape-only export differs from the real pass")
	}
	// A shape error found in the shape-only pass is the module's.
	bad := must[*Tensor](t)(Randn([]int64{1, 5, 64, 64}, CPU))
	defer bad.Close()
	if _, err := m.CheckForwardPass(PassMeta, bad); err == nil {
		t.Error("the run check accepted 5 input channels")
	}
	if n := must[int](t)(m.unitFunctions()); n != n0 {
		t.Errorf("%d functions after a failed run check, %d before", n, n0)
	}
}

// TestClonesInParallel: cart slots clone from one model and free their
// copies at the same time, and every clone changes the compilation unit they
// share; afterwards the unit holds what it held before.
func TestClonesInParallel(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	n0 := must[int](t)(m.unitFunctions())
	onOSThreads(2, func() {
		x, err := Randn(meta.InputShape, CPU)
		if err != nil {
			t.Error(err)
			return
		}
		defer x.Close()
		for i := 0; i < 20; i++ {
			c, err := m.Clone()
			if err != nil {
				t.Error(err)
				return
			}
			y, err := c.Forward(true, x)
			if err == nil {
				y.Close()
			} else {
				t.Error(err)
			}
			c.Close()
		}
	})
	if n := must[int](t)(m.unitFunctions()); n != n0 {
		t.Errorf("%d functions after the parallel clones were closed, %d before", n, n0)
	}
}

// TestCloneTrains: the in-memory clone's parameters are leaves that train
// (a step moves them) while the original's stay as they were.
func TestCloneTrains(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	c := must[*Module](t)(m.Clone())
	defer c.Close()
	weights := func(m *Module) []float32 {
		t.Helper()
		w := must[*Tensor](t)(m.Get("conv1.weight"))
		defer w.Close()
		return must[[]float32](t)(w.Float32s())
	}
	before := weights(m)
	opt := must[*Optimizer](t)(NewSGD(c, SGDOptions{LR: 0.1}))
	defer opt.Close()
	if err := c.Train(true); err != nil {
		t.Fatal(err)
	}
	x := must[*Tensor](t)(Randn([]int64{4, 3, 32, 32}, CPU))
	defer x.Close()
	y := must[*Tensor](t)(FromInt64([]int64{0, 1, 2, 3}, []int64{4}, CPU))
	defer y.Close()
	if _, _, err := TrainStep(c, opt, x, y); err != nil {
		t.Fatal(err)
	}
	cw, mw := weights(c), weights(m)
	if slices.Equal(cw, before) {
		t.Error("a training step did not change the clone's weights: its parameters do not train")
	}
	if !slices.Equal(mw, before) {
		t.Error("training the clone changed the original")
	}
}

// TestCheckForward: the plain-interpreter check runs a good input and gives
// forward's one-line error for a bad one.
func TestCheckForward(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	good := must[*Tensor](t)(Randn([]int64{1, 3, 32, 32}, CPU))
	defer good.Close()
	if err := m.CheckForward(good); err != nil {
		t.Fatal(err)
	}
	bad := must[*Tensor](t)(Randn([]int64{1, 1, 32, 32}, CPU))
	defer bad.Close()
	err := m.CheckForward(bad)
	if err == nil || !strings.Contains(err.Error(), "channels") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("check with 1 channel into a 3-channel model: %v", err)
	}
}

func TestNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	buf := make([]float32, 1<<18) // 1 MB
	cycle := func() {
		x, err := FromFloat32(buf, []int64{1 << 18}, CPU)
		if err != nil {
			t.Fatal(err)
		}
		x.Close()
	}
	for i := 0; i < 500; i++ {
		cycle()
	}
	runtime.GC()
	before := fixtures.RSS(t)
	tb, _ := LiveHandles()
	for i := 0; i < 10000; i++ {
		cycle()
	}
	runtime.GC()
	after := fixtures.RSS(t)
	ta, _ := LiveHandles()
	if ta != tb {
		t.Errorf("live tensor handles %d -> %d", tb, ta)
	}
	if float64(after-before) > 0.05*float64(before) {
		t.Errorf("RSS grew from %d to %d bytes over 10,000 tensor cycles", before, after)
	}

	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	must[struct{}](t)(struct{}{}, m.Train(true))
	opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 0.01, Momentum: 0.9}))
	defer opt.Close()
	shape := append([]int64{8}, meta.InputShape[1:]...)
	data := make([]float32, 8*shape[1]*shape[2]*shape[3])
	labels := make([]int64, 8)
	step := func() {
		var s Scope
		defer s.Close()
		x := s.Add(must[*Tensor](t)(FromFloat32(data, shape, CPU)))
		y := s.Add(must[*Tensor](t)(FromInt64(labels, []int64{8}, CPU)))
		if _, _, err := TrainStep(m, opt, x, y); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		step()
	}
	runtime.GC()
	before = fixtures.RSS(t)
	tb, _ = LiveHandles()
	for i := 0; i < 200; i++ {
		step()
	}
	runtime.GC()
	after = fixtures.RSS(t)
	ta, _ = LiveHandles()
	if ta != tb {
		t.Errorf("live tensor handles %d -> %d over 200 steps", tb, ta)
	}
	if float64(after-before) > 0.05*float64(before) {
		t.Errorf("RSS grew from %d to %d bytes over 200 train steps", before, after)
	}
}

func TestCheckDevice(t *testing.T) {
	if !CUDAAvailable() {
		if err := CheckDevice(Device{CUDA: true, Index: 0}); err == nil {
			t.Error("Check of cuda:0 without CUDA passed")
		}
	}
}

// TestChannelsLastMatchesForward covers the NHWC layout the train, eval and
// Taylor steps feed CPU batches in: their loss must equal the plain (NCHW)
// forward's, a model that views activations as NCHW (view_flatten) must fall
// back rather than fail, and the one-off layout probe must leave the module
// as it was: still in eval mode, BatchNorm statistics untouched.
func TestChannelsLastMatchesForward(t *testing.T) {
	archs := append(append([]string{}, fixtures.Patterns...), "mnistnet", "view_flatten", "resnet18", "mobilenet_v2")
	for _, name := range fixtures.Names(archs) {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			if len(meta.InputShape) != 4 {
				t.Skip("not an image model")
			}
			m := must[*Module](t)(Load(path, CPU))
			defer m.Close()
			must[struct{}](t)(struct{}{}, m.Train(false))
			n := int64(4)
			x, y := randomBatch(t, n, meta.InputShape, meta.OutputShape[1], 3)
			buffers := func() map[string][]float32 {
				out := map[string][]float32{}
				for _, b := range must[[]string](t)(m.BufferNames()) {
					bt := must[*Tensor](t)(m.Get(b))
					if v, err := bt.Float32s(); err == nil { // num_batches_tracked is int64
						out[b] = v
					}
					bt.Close()
				}
				return out
			}
			before := buffers()

			logits := must[*Tensor](t)(m.Forward(true, x))
			defer logits.Close()
			lv := must[[]float32](t)(logits.Float32s())
			want := crossEntropySum(lv, must[[]int64](t)(y.Shape())[0], labelsOf(n, meta.OutputShape[1]))
			got, _, err := EvalBatch(m, x, y, make([]int64, n))
			if err != nil {
				t.Fatalf("eval batch: %v", err)
			}
			if d := math.Abs(got-want) / math.Max(math.Abs(want), 1e-6); d > 1e-4 {
				t.Errorf("eval loss %.7g, plain forward %.7g: rel. diff %.2g", got, want, d)
			}
			// Still in eval mode: a training-mode forward would normalise
			// with batch statistics and give other logits.
			again := must[*Tensor](t)(m.Forward(true, x))
			defer again.Close()
			if !slices.Equal(must[[]float32](t)(again.Float32s()), lv) {
				t.Error("module left in training mode after the eval step")
			}
			for b, v := range buffers() {
				if !slices.Equal(v, before[b]) {
					t.Errorf("buffer %s changed by an eval step", b)
				}
			}

			must[struct{}](t)(struct{}{}, m.Train(true))
			opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 0.01}))
			defer opt.Close()
			loss, _, err := TrainStep(m, opt, x, y)
			if err != nil || math.IsNaN(loss) {
				t.Fatalf("train step: loss %v, %v", loss, err)
			}
		})
	}
}

// labelsOf is randomBatch's labels: i mod classes.
func labelsOf(n, classes int64) []int64 {
	labels := make([]int64, n)
	for i := range labels {
		labels[i] = int64(i) % classes
	}
	return labels
}

// crossEntropySum is the summed cross-entropy of n rows of logits.
func crossEntropySum(logits []float32, n int64, labels []int64) float64 {
	c := int64(len(logits)) / n
	var sum float64
	for i := int64(0); i < n; i++ {
		row := logits[i*c : (i+1)*c]
		hi := math.Inf(-1)
		for _, v := range row {
			hi = math.Max(hi, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - hi)
		}
		sum += hi + math.Log(z) - float64(row[labels[i]])
	}
	return sum
}

// randomBatch is n normal-random images of inShape's C×H×W with labels
// cycling through the classes; both tensors close with the test.
func randomBatch(t *testing.T, n int64, inShape []int64, classes int64, seed uint64) (x, y *Tensor) {
	t.Helper()
	shape := append([]int64{n}, inShape[1:]...)
	r := rand.New(rand.NewPCG(seed, seed+1))
	data := make([]float32, n*shape[1]*shape[2]*shape[3])
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	labels := labelsOf(n, classes)
	x = must[*Tensor](t)(FromFloat32(data, shape, CPU))
	t.Cleanup(x.Close)
	y = must[*Tensor](t)(FromInt64(labels, []int64{n}, CPU))
	t.Cleanup(y.Close)
	return x, y
}

func TestBatchNormModes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fixed, all int
	}{
		{"smallcnn_scripted", 0, 3}, {"smallcnn_traced", 3, 3},
		{"resnet18_scripted", 0, 20}, {"resnet18_traced", 20, 20},
		{"linear_linear_traced", 0, 0},
	} {
		path, _ := fixtures.Model(t, tc.name)
		m := must[*Module](t)(Load(path, CPU))
		fixed, all, err := m.BatchNormModes()
		m.Close()
		if err != nil || fixed != tc.fixed || all != tc.all {
			t.Errorf("%s: %d of %d BatchNorm calls fixed (%v), want %d of %d", tc.name, fixed, all, err, tc.fixed, tc.all)
		}
	}
}

// TestNoFreeDuringCall drops every Go reference to a tensor (or module) as
// soon as the C call that uses it starts, and collects garbage as hard as it
// can (GOGC=1 and a goroutine looping runtime.GC) while the call runs. The
// safety-net cleanup must not free the handle before the call returns, and
// the call's result must be right. Without the runtime.KeepAlive after each C
// call this fails: the cleanup fires mid-call.
func TestNoFreeDuringCall(t *testing.T) {
	path, meta := fixtures.Model(t, "resnet18_scripted")
	shape := append([]int64{2}, meta.InputShape[1:]...)
	data := make([]float32, 2*shape[1]*shape[2]*shape[3])
	r := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	keep := must[*Module](t)(Load(path, CPU))
	defer keep.Close()
	x0 := must[*Tensor](t)(FromFloat32(data, shape, CPU))
	defer x0.Close()
	ref := must[*Tensor](t)(keep.Forward(true, x0))
	defer ref.Close()

	defer debug.SetGCPercent(debug.SetGCPercent(1))
	// inCall is the handle a C call is using right now (nil between calls).
	var inCall atomic.Pointer[byte]
	var freedMidCall atomic.Int64
	// The handle's owner becomes collectable at the callee's last
	// KeepAlive, a moment before the call returns and the test clears
	// inCall; a cleanup that runs in that window is no fault. So a match
	// counts only if the call is still running a while later: a missing
	// KeepAlive frees at the start of the call, which runs for tens of
	// milliseconds.
	hook := func(h unsafe.Pointer) bool {
		if h != nil && (*byte)(h) == inCall.Load() {
			time.Sleep(20 * time.Millisecond)
			if (*byte)(h) == inCall.Load() {
				freedMidCall.Add(1)
			}
			return false // leak it rather than crash the test
		}
		return true
	}
	cleanupHook.Store(&hook)
	defer cleanupHook.Store(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	check := func(what string, out *Tensor, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer out.Close()
		if d, s, err := out.MaxAbsDiff(ref); err != nil || d > 1e-5*math.Max(s, 1) {
			t.Fatalf("%s: result differs from the reference by %g (%v)", what, d, err)
		}
	}
	for i := 0; i < 8; i++ {
		// An input tensor: its only reference goes into Forward's
		// variadic slice.
		x := must[*Tensor](t)(FromFloat32(data, shape, CPU))
		inCall.Store((*byte)(unsafe.Pointer(x.h)))
		out, err := keep.Forward(true, x)
		inCall.Store(nil)
		check("forward, dropped input", out, err)

		// A module whose only reference is the receiver.
		m := must[*Module](t)(Load(path, CPU))
		inCall.Store((*byte)(unsafe.Pointer(m.h)))
		out, err = m.Forward(true, x0)
		inCall.Store(nil)
		check("forward, dropped module", out, err)

		// A tensor whose only reference is the receiver.
		y := must[*Tensor](t)(keep.Forward(true, x0))
		inCall.Store((*byte)(unsafe.Pointer(y.h)))
		d, _, err := y.MaxAbsDiff(ref)
		inCall.Store(nil)
		if err != nil || d > 1e-4 {
			t.Fatalf("max_abs_diff, dropped receiver: %g, %v", d, err)
		}
		if n := freedMidCall.Load(); n > 0 {
			t.Fatalf("round %d: %d handle(s) freed by their cleanup while a C call was using them", i, n)
		}
	}
}

// TestEvalBatchPredsCapacity: the shim is told the predictions buffer's
// length and refuses to write past it.
func TestEvalBatchPredsCapacity(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x, y := randomBatch(t, 4, meta.InputShape, meta.OutputShape[1], 7)
	preds := []int64{-1, -1, -1, -1}
	if _, _, err := EvalBatch(m, x, y, preds[:3:3]); err == nil || !strings.Contains(err.Error(), "buffer") {
		t.Fatalf("eval batch into a 3-slot buffer for 4 rows: %v", err)
	}
	if !slices.Equal(preds, []int64{-1, -1, -1, -1}) {
		t.Fatalf("a refused eval batch wrote predictions: %v", preds)
	}
	if _, _, err := EvalBatch(m, x, y, preds); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(preds, -1) {
		t.Fatalf("predictions not written: %v", preds)
	}
}

// TestPruneIsTransactional: a Prune with one good and one bad entry fails and
// leaves the module exactly as it was (every parameter and buffer, and the
// forward output, bit for bit), whether or not forward has run before, and
// whichever check fails: a bad slice, or a groups entry for a conv that
// forward does not have (found only after every tensor was computed).
func TestPruneIsTransactional(t *testing.T) {
	half := func(n int) []int {
		out := make([]int, 0, n/2)
		for i := 0; i < n; i += 2 {
			out = append(out, i)
		}
		return out
	}
	good := []Slice{
		{Tensor: "conv1.weight", Keep: map[int][]int{0: half(16)}},
		{Tensor: "bn1.weight", Keep: map[int][]int{0: half(16)}},
		{Tensor: "bn1.bias", Keep: map[int][]int{0: half(16)}},
		{Tensor: "bn1.running_mean", Keep: map[int][]int{0: half(16)}},
		{Tensor: "bn1.running_var", Keep: map[int][]int{0: half(16)}},
		{Tensor: "conv2.weight", Keep: map[int][]int{1: half(16)}},
	}
	cases := []struct {
		name   string
		edits  []Slice
		groups map[string]int64
		want   string
	}{
		{"index out of range", append(slices.Clone(good), Slice{Tensor: "conv3.bias", Keep: map[int][]int{0: {0, 32}}}), nil, "out of range"},
		{"unsorted indices", append(slices.Clone(good), Slice{Tensor: "conv3.bias", Keep: map[int][]int{0: {3, 1}}}), nil, "ascending"},
		{"no such tensor", append(slices.Clone(good), Slice{Tensor: "conv9.weight", Keep: map[int][]int{0: {0}}}), nil, "conv9"},
		{"tensor twice", append(slices.Clone(good), good[0]), nil, "twice"},
		{"no such conv", good, map[string]int64{"conv2.weight": 1, "fc.weight": 1}, "no convolution"},
		{"bad groups", good, map[string]int64{"conv2.weight": 0}, "positive"},
	}
	for _, fixture := range []string{"smallcnn_scripted", "smallcnn_traced"} {
		path, meta := fixtures.Model(t, fixture)
		ref := must[*Module](t)(Load(path, CPU))
		x, _ := randomBatch(t, 2, meta.InputShape, meta.OutputShape[1], 11)
		want := must[[]float32](t)(s1(t, must[*Tensor](t)(ref.Forward(true, x))))
		ref.Close()
		for _, ran := range []bool{false, true} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/ran=%v/%s", fixture, ran, c.name), func(t *testing.T) {
					m := must[*Module](t)(Load(path, CPU))
					defer m.Close()
					if ran {
						must[*Tensor](t)(m.Forward(true, x)).Close()
					}
					before := moduleState(t, m)
					err := m.Prune(c.edits, c.groups)
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("prune: error %v, want one that says %q", err, c.want)
					}
					after := moduleState(t, m)
					if len(after) != len(before) {
						t.Fatalf("%d tensors before, %d after", len(before), len(after))
					}
					for n, v := range before {
						if !slices.Equal(math32bits(v), math32bits(after[n])) {
							t.Errorf("%s changed by a failed prune", n)
						}
					}
					got := must[[]float32](t)(s1(t, must[*Tensor](t)(m.Forward(true, x))))
					if !slices.Equal(math32bits(got), math32bits(want)) {
						t.Error("forward output changed by a failed prune")
					}
				})
			}
		}
	}
}

// TestGroupsEditInlinesTheWayOnly: a groups edit of one depthwise conv of
// mobilenet_v2 inlines into forward the calls that lead to that conv and
// leaves the rest calls (the whole model inlined was most of a one-shot
// prune's memory); the module computes what it did.
func TestGroupsEditInlinesTheWayOnly(t *testing.T) {
	path, meta := fixtures.Model(t, "mobilenet_v2_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x, _ := randomBatch(t, 1, meta.InputShape, meta.OutputShape[1], 5)
	want := must[[]float32](t)(s1(t, must[*Tensor](t)(m.Forward(true, x))))
	// The same groups count: the edit, without a change of function.
	if err := m.Prune(nil, map[string]int64{"features.1.conv.0.0.weight": 32}); err != nil {
		t.Fatal(err)
	}
	got := must[[]float32](t)(s1(t, must[*Tensor](t)(m.Forward(true, x))))
	if !slices.Equal(math32bits(got), math32bits(want)) {
		md, mx := maxAbsDiff(got, want)
		t.Errorf("the edited forward computes another output: max diff %g of %g, threads %d", md, mx, NumThreads())
	}
	archive := must[[]byte](t)(m.Bytes())
	zr := must[*zip.Reader](t)(zip.NewReader(bytes.NewReader(archive), int64(len(archive))))
	var code string
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/code/__torch__/torchvision/models/mobilenetv2.py") {
			r := must[io.ReadCloser](t)(f.Open())
			code = string(must[[]byte](t)(io.ReadAll(r)))
			r.Close()
		}
	}
	at := strings.Index(code, "  def forward(")
	if at < 0 {
		t.Fatalf("no forward in the saved code:\n%s", code)
	}
	forward := code[at:]
	// The edited conv, once in each branch of its block's forward (with
	// and without the residual); the model has 52.
	if n := strings.Count(forward, "torch.conv2d("); n < 1 || n > 2 {
		t.Errorf("forward holds %d convolutions, want the edited one alone", n)
	}
	if !strings.Contains(forward, ").forward(") {
		t.Error("forward calls no module: the whole model was inlined")
	}
}

// s1 is y's values; y is closed.
func s1(t *testing.T, y *Tensor) ([]float32, error) {
	defer y.Close()
	return y.Float32s()
}

// moduleState is every parameter and buffer of m, as float32 values.
func moduleState(t *testing.T, m *Module) map[string][]float32 {
	out := map[string][]float32{}
	names := append(must[[]string](t)(m.ParameterNames()), must[[]string](t)(m.BufferNames())...)
	for _, n := range names {
		v := must[*Tensor](t)(m.Get(n))
		out[n] = must[[]float32](t)(v.Float32s())
		v.Close()
	}
	return out
}

// maxAbsDiff is Tensor.MaxAbsDiff for Go slices, scaled by want: max|got−want|
// and max|want|.
func maxAbsDiff(got, want []float32) (diff, scale float64) {
	for i := range got {
		diff = max(diff, math.Abs(float64(got[i]-want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return diff, scale
}

func math32bits(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, f := range v {
		out[i] = math.Float32bits(f)
	}
	return out
}

// TestSettings: the defaults follow the environment (a malloc the user
// tunes is left alone; channels-last is on, the program's configuration
// turns it off), and with channels-last off the steps still give the plain
// forward's loss.
func TestSettings(t *testing.T) {
	t.Setenv("MALLOC_ARENA_MAX", "4")
	if s := DefaultSettings(); !s.ChannelsLast || s.MallocTuning {
		t.Errorf("defaults with MALLOC_ARENA_MAX set: %+v", s)
	}
	os.Unsetenv("MALLOC_ARENA_MAX")
	if s := DefaultSettings(); !s.ChannelsLast {
		t.Errorf("defaults: %+v", s)
	}
	old := CurrentSettings()
	defer func() {
		if err := Configure(old); err != nil {
			t.Error(err)
		}
	}()
	if err := Configure(Settings{ChannelsLast: false, MallocTuning: old.MallocTuning}); err != nil {
		t.Fatal(err)
	}
	if CurrentSettings().ChannelsLast {
		t.Fatal("channels-last still on after Configure")
	}
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	x, y := randomBatch(t, 4, meta.InputShape, meta.OutputShape[1], 13)
	lv := must[[]float32](t)(s1(t, must[*Tensor](t)(m.Forward(true, x))))
	want := crossEntropySum(lv, 4, labelsOf(4, meta.OutputShape[1]))
	got, _, err := EvalBatch(m, x, y, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(got-want) / math.Max(math.Abs(want), 1e-6); d > 1e-4 {
		t.Errorf("NCHW eval loss %.7g, plain forward %.7g", got, want)
	}
}

// TestRecalibrateBN: step 0 replaces the BatchNorm statistics by one
// batch's, two steps leave the average of two batches' (whatever momentum
// the model has), and no weight, flag or momentum changes.
func TestRecalibrateBN(t *testing.T) {
	path, _ := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	a := must[*Tensor](t)(Randn([]int64{8, 3, 32, 32}, CPU))
	defer a.Close()
	b := must[*Tensor](t)(Randn([]int64{8, 3, 32, 32}, CPU))
	defer b.Close()
	get := func(name string) []float32 {
		t.Helper()
		x := must[*Tensor](t)(m.Get(name))
		defer x.Close()
		return must[[]float32](t)(x.Float32s())
	}
	w0 := get("conv1.weight")
	step := func(x *Tensor, k int) {
		t.Helper()
		n, err := RecalibrateBNStep(m, x, k)
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("%d BatchNorm layers, the model has 3", n)
		}
	}
	step(a, 0)
	ma := get("bn2.running_mean")
	step(b, 0)
	mb := get("bn2.running_mean")
	step(a, 0)
	step(b, 1)
	avg := get("bn2.running_mean")
	for i := range avg {
		want := (ma[i] + mb[i]) / 2
		if d := math.Abs(float64(avg[i] - want)); d > 1e-5*(1+math.Abs(float64(want))) {
			t.Fatalf("bn2.running_mean[%d] after two steps = %v, want the mean of %v and %v", i, avg[i], ma[i], mb[i])
		}
	}
	if slices.Equal(ma, mb) {
		t.Fatal("two random batches gave the same statistics: nothing was re-estimated")
	}
	if !slices.Equal(get("conv1.weight"), w0) {
		t.Error("re-estimation changed a weight")
	}
	// Loaded models are in eval mode, and re-estimation leaves them so: an
	// eval-mode forward then leaves the statistics alone.
	if y, err := m.Forward(true, a); err != nil {
		t.Fatal(err)
	} else {
		y.Close()
	}
	if !slices.Equal(get("bn2.running_mean"), avg) {
		t.Error("eval-mode forward after re-estimation changed the statistics: the training flag was not restored")
	}
}

// onOSThreads runs f on n goroutines at once, each locked to an OS thread
// of its own (each calls into libtorch from its own thread, as cart slots
// do), and returns when all are done.
func onOSThreads(n int, f func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			f()
		}()
	}
	wg.Wait()
}

// TestOneMallocArena: with malloc untuned by the environment, every OS
// thread that calls into libtorch allocates from the one arena that the
// load-time constructor set, so that memory one thread frees is reused by
// the next allocation on any other (a one-shot cut loads on one thread and
// cuts on another). A Go init sets the limit too late: glibc fixes it when
// the runtime's first threads start.
func TestOneMallocArena(t *testing.T) {
	if userTunedMalloc() {
		t.Skip("the environment tunes malloc itself")
	}
	if !arenasLimited() {
		t.Fatal("the load-time constructor did not limit glibc to one arena")
	}
	onOSThreads(4, func() {
		x, err := Randn([]int64{256, 1024}, CPU)
		if err != nil {
			t.Error(err)
			return
		}
		x.Close()
	})
	if n := mallocArenas(); n != 1 {
		t.Errorf("%d malloc arenas in use, want 1", n)
	}
}

// TestBatchTensors: a batch for a CPU module is an ordinary tensor on the
// CPU; the host copy a CUDA step uploads (pinned where CUDA is, plain
// here) holds the same values, and a count that does not fit the shape is
// refused before any copy.
func TestBatchTensors(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6}
	for name, mk := range map[string]func() (*Tensor, error){
		"BatchFloat32 cpu": func() (*Tensor, error) { return BatchFloat32(x, []int64{2, 3}, CPU) },
		"pinned host copy": func() (*Tensor, error) { return fromSlice(x, Float32, []int64{2, 3}, CPU, true) },
	} {
		tt, err := mk()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := tt.Float32s()
		tt.Close()
		if err != nil || !reflect.DeepEqual(got, x) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, x)
		}
	}
	y, err := fromSlice([]int64{7, 8}, Int64, []int64{2}, CPU, true)
	if err != nil {
		t.Fatal(err)
	}
	y.Close()
	if _, err := fromSlice(x, Float32, []int64{4, 2}, CPU, true); err == nil || !strings.Contains(err.Error(), "needs 8") {
		t.Errorf("6 values for [4 2]: %v, want a count error", err)
	}
	if _, err := BatchInt64([]int64{1}, []int64{-1}, Device{CUDA: true}); err == nil {
		t.Error("a negative dimension for a CUDA batch: no error")
	}
}

// TestPruneInPlace: surgery moves the kept slices within each tensor's own
// storage when nothing else holds the tensor, and copies it when something
// does (here a handle from Get), so the holder keeps seeing the original.
// Either way every tensor holds exactly the kept slices, forward runs, and
// the saved archive is byte for byte the same; in place, the blocks' ends
// the cut dropped go back to malloc.
func TestPruneInPlace(t *testing.T) {
	btoi := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	keep := func(n, step int) []int {
		var out []int
		for i := 0; i < n; i += step {
			out = append(out, i)
		}
		return out
	}
	out16 := []int{1, 2, 5, 6, 7, 11, 15}
	out32 := keep(32, 3)
	edits := []Slice{
		{Tensor: "conv1.weight", Keep: map[int][]int{0: out16}},
		{Tensor: "bn1.weight", Keep: map[int][]int{0: out16}},
		{Tensor: "bn1.bias", Keep: map[int][]int{0: out16}},
		{Tensor: "bn1.running_mean", Keep: map[int][]int{0: out16}},
		{Tensor: "bn1.running_var", Keep: map[int][]int{0: out16}},
		// Both dims: the second compaction works on the first's result.
		{Tensor: "conv2.weight", Keep: map[int][]int{0: out32, 1: out16}},
		{Tensor: "bn2.weight", Keep: map[int][]int{0: out32}},
		{Tensor: "bn2.bias", Keep: map[int][]int{0: out32}},
		{Tensor: "bn2.running_mean", Keep: map[int][]int{0: out32}},
		{Tensor: "bn2.running_var", Keep: map[int][]int{0: out32}},
		{Tensor: "conv3.weight", Keep: map[int][]int{1: out32}},
	}
	x, _ := randomBatch(t, 2, meta.InputShape, meta.OutputShape[1], 5)
	// want: each cut tensor as IndexSelect gives it, from a fresh load.
	orig := must[*Module](t)(Load(path, CPU))
	want := map[string][]float32{}
	for _, e := range edits {
		v := must[*Tensor](t)(orig.Get(e.Tensor))
		for _, d := range []int{0, 1} {
			if idx, ok := e.Keep[d]; ok {
				i64 := make([]int64, len(idx))
				for k, c := range idx {
					i64[k] = int64(c)
				}
				nv := must[*Tensor](t)(v.IndexSelect(d, i64))
				v.Close()
				v = nv
			}
		}
		want[e.Tensor] = must[[]float32](t)(v.Float32s())
		v.Close()
	}
	held0 := must[[]float32](t)(s1(t, must[*Tensor](t)(orig.Get("conv2.weight"))))
	orig.Close()

	var archives [][]byte
	for _, hold := range []bool{false, true} {
		m := must[*Module](t)(Load(path, CPU))
		var held *Tensor
		if hold {
			held = must[*Tensor](t)(m.Get("conv2.weight"))
		}
		// The bytes the cut drops, which go back to malloc where the cut
		// is in place (shrink_block).
		bytesOf := func() int64 {
			var b int64
			for _, e := range edits {
				v := must[*Tensor](t)(m.Get(e.Tensor))
				b += 4 * must[int64](t)(v.numel())
				v.Close()
			}
			return b
		}
		b0, h0 := bytesOf(), heapInUse()
		n, err := m.prune(edits, nil)
		if err != nil {
			t.Fatalf("hold=%v: %v", hold, err)
		}
		if cut, freed := b0-bytesOf(), h0-heapInUse(); !hold && h0 >= 0 && freed < cut/2 {
			t.Errorf("the cut dropped %d bytes and the heap gave back %d", cut, freed)
		}
		if wantN := len(edits) - btoi(hold); n != wantN {
			t.Errorf("hold=%v: %d tensors cut in place, want %d", hold, n, wantN)
		}
		for name, w := range want {
			got := must[[]float32](t)(s1(t, must[*Tensor](t)(m.Get(name))))
			if !slices.Equal(math32bits(got), math32bits(w)) {
				t.Errorf("hold=%v: %s holds other values than the kept slices", hold, name)
			}
		}
		if hold {
			got := must[[]float32](t)(s1(t, held))
			if !slices.Equal(math32bits(got), math32bits(held0)) {
				t.Error("a tensor held outside the module changed under it")
			}
		}
		must[*Tensor](t)(m.Forward(true, x)).Close()
		archives = append(archives, must[[]byte](t)(m.Bytes()))
		m.Close()
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("the archive cut in place differs from the one cut by copies")
	}
	// The archive holds the kept bytes only, and loads with the cut shapes.
	m := must[*Module](t)(LoadBytes(archives[0], CPU))
	defer m.Close()
	w := must[*Tensor](t)(m.Get("conv2.weight"))
	defer w.Close()
	if s := must[[]int64](t)(w.Shape()); s[0] != 11 || s[1] != 7 {
		t.Fatalf("reloaded conv2.weight has shape %v, want [11 7 ...]", s)
	}
}

// TestBLASThreads: where libtorch's BLAS is OpenBLAS (Debian's libtorch),
// its thread count follows the process setting and a module's budget (ATen
// passes its count to MKL only), and a layer timing borrows it and gives it
// back; the linear layers of cart slots then neither share one pool nor
// run beyond --threads.
func TestBLASThreads(t *testing.T) {
	// OpenMP keeps libtorch's count per OS thread: stay on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	was := NumThreads()
	defer func() {
		if err := SetNumThreads(was); err != nil {
			t.Error(err)
		}
	}()
	// Modules run before may have left OpenBLAS at 1 (libtorch's default
	// count here is one per physical core: 1 on 2 vCPUs); 2 threads asked
	// tell a threaded OpenBLAS from a serial one.
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	start := BLASThreads()
	if start < 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("libtorch's BLAS is not OpenBLAS: Debian's libtorch-dev links OpenBLAS")
		}
		t.Skip("libtorch's BLAS is not OpenBLAS: nothing to set")
	}
	// A serial OpenBLAS always reports 1.
	threaded := func(n int) int {
		if start == 1 && n > 1 {
			return 1
		}
		return n
	}
	for _, n := range []int{1, 2, 1} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		if got := BLASThreads(); got != threaded(n) {
			t.Errorf("after SetNumThreads(%d): OpenBLAS has %d threads", n, got)
		}
	}
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	if err := m.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	x := must[*Tensor](t)(FromFloat32(make([]float32, numel(meta.InputShape)), meta.InputShape, CPU))
	defer x.Close()
	y := must[*Tensor](t)(m.Forward(true, x))
	y.Close()
	if got := BLASThreads(); got != 1 {
		t.Errorf("after a forward on a module with 1 thread: OpenBLAS has %d threads", got)
	}
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	lin := OpSpec{Linear: true, X: []int64{2, 64}, W: []int64{10, 64}, Bias: true}
	if _, err := OpTime(lin, CPU, 1, OpTiming{Warmup: 1, MinRuns: 1, MaxRuns: 1}); err != nil {
		t.Fatal(err)
	}
	if got := BLASThreads(); got != threaded(2) {
		t.Errorf("after timing a layer on 1 thread: OpenBLAS has %d threads, want the %d it had", got, threaded(2))
	}
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// The trace gives every view and reshape of sized_views a site (the blocks
// that run twice, from two call sites, give two), and its split one, and Prune finds a view
// again by its site: a size it rewrites reaches forward, a site or an entry
// that names nothing is an error that leaves the module as it was.
func TestSitedViews(t *testing.T) {
	for _, name := range []string{"sized_views_scripted", "sized_views_traced"} {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			m := must[*Module](t)(Load(path, CPU))
			defer m.Close()
			x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
			defer x.Close()
			js := must[[]byte](t)(m.ExportIR(x))
			var g struct {
				Values []struct {
					ID    int     `json:"id"`
					Shape []int64 `json:"shape"`
				} `json:"values"`
				Ops []struct {
					Kind    string `json:"kind"`
					Outputs []int  `json:"outputs"`
					Site    string `json:"site"`
				} `json:"ops"`
			}
			if err := json.Unmarshal(js, &g); err != nil {
				t.Fatal(err)
			}
			shapes := map[int][]int64{}
			for _, v := range g.Values {
				shapes[v.ID] = v.Shape
			}
			sites := map[string]bool{}
			views, flatten := 0, ""
			splits := 0
			for _, op := range g.Ops {
				if op.Kind == "aten::split" && op.Site != "" {
					splits++ // Res2Net's torch.split(out, self.width, 1)
				}
				if op.Kind != "aten::view" && op.Kind != "aten::reshape" {
					continue
				}
				views++
				if op.Site == "" || sites[op.Site] {
					t.Errorf("view %d: site %q (missing or repeated)", views, op.Site)
				}
				sites[op.Site] = true
				if slices.Equal(shapes[op.Outputs[0]], []int64{1, 48 * 8 * 8}) {
					flatten = op.Site
				}
			}
			if views != 17 || flatten == "" || splits != 1 {
				t.Fatalf("%d views, flatten site %q, %d sited splits; want 17, LeNet's flatten and 1", views, flatten, splits)
			}
			for key, want := range map[string]string{
				"@1@no such site": "0 views, reshapes or splits at no such site",
				"@9@" + flatten:   "has no entry 9",
			} {
				err := m.Prune(nil, map[string]int64{key: 5})
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Prune %s: %v, want %q", key, err, want)
				}
			}
			must[struct{}](t)(struct{}{}, m.CheckForward(x))
			// The flatten told to make 6 features a row where there are
			// 3072: forward must now refuse the view's shape.
			must[struct{}](t)(struct{}{}, m.Prune(nil, map[string]int64{"@1@" + flatten: 6}))
			if err := m.CheckForward(x); err == nil || !strings.Contains(err.Error(), "6") {
				t.Errorf("forward after the flatten's size went to 6: %v", err)
			}
		})
	}
}

// TestUnbudgetedModuleThreads: a module without a thread budget of its own
// runs at the process's count on any OS thread, also on one that a
// 1-thread module ran on last (OpenMP keeps the count per thread, and a
// depthwise convolution computes other bits at 1 thread than at 2: two
// forwards of one mobilenet_v2 batch differed when Go ran them on two OS
// threads).
func TestUnbudgetedModuleThreads(t *testing.T) {
	path, meta := fixtures.Model(t, "depthwise_scripted")
	free := must[*Module](t)(Load(path, CPU))
	defer free.Close()
	one := must[*Module](t)(Load(path, CPU))
	defer one.Close()
	if err := one.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	x, _ := randomBatch(t, 4, meta.InputShape, meta.OutputShape[1], 3)
	forward := func(m *Module) []uint32 {
		y := must[*Tensor](t)(m.Forward(true, x))
		defer y.Close()
		return math32bits(must[[]float32](t)(y.Float32s()))
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	want := forward(free)
	if slices.Equal(forward(one), want) {
		t.Fatal("the fixture computes the same bits at 1 thread as at 2: it cannot tell the counts apart")
	}
	if !slices.Equal(forward(free), want) {
		t.Errorf("a module without a budget, on the OS thread a 1-thread module ran on, computed other bits (at %d threads)", NumThreads())
	}
}
