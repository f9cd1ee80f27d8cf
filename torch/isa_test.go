//go:build cgo

package torch

import (
	"testing"

	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/fixtures"
)

func TestChannelsLastMode(t *testing.T) {
	zen3 := device.X86ISA{AVX2: true}
	skx := device.X86ISA{AVX2: true, AVX512: true}
	for _, c := range []struct {
		on   bool
		isa  device.X86ISA
		x86  bool
		want int
	}{
		{false, zen3, true, 0},
		{true, zen3, true, 2},  // AVX2 kernels: CPU batches NCHW
		{true, skx, true, 1},   // AVX-512 kernels
		{true, zen3, false, 1}, // not x86
	} {
		if got := channelsLastMode(c.on, c.isa, c.x86); got != c.want {
			t.Errorf("channelsLastMode(%v, %+v, x86 %v) = %d, want %d", c.on, c.isa, c.x86, got, c.want)
		}
	}
}

// TestStrided1x1Gradient trains one step of a strided 1x1 convolution of 5
// input channels, at 2 threads, in the layout the package picks for CPU
// batches, and again in NCHW: the weights must come out the same. Where
// oneDNN runs its AVX2 kernels, a channels-last batch gets this
// convolution's weight gradient wrong (relative error 0.5–1.0; at 1
// thread the heap is corrupted), so the test fails there if the layout
// check lets such a CPU go channels-last.
func TestStrided1x1Gradient(t *testing.T) {
	path := fixtures.Path(t, "strided_1x1.pt")
	orig := CurrentSettings()
	defer func() {
		if err := Configure(orig); err != nil {
			t.Error(err)
		}
	}()
	x, y := randomBatch(t, 8, []int64{1, 5, 16, 16}, 10, 7)
	step := func(channelsLast bool) []float32 {
		s := orig
		s.ChannelsLast = channelsLast
		if err := Configure(s); err != nil {
			t.Fatal(err)
		}
		m := must[*Module](t)(Load(path, CPU))
		defer m.Close()
		if err := m.SetThreads(2); err != nil {
			t.Fatal(err)
		}
		must[struct{}](t)(struct{}{}, m.Train(true))
		opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 1}))
		defer opt.Close()
		weight := func() []float32 {
			w := must[*Tensor](t)(m.Get("conv.weight"))
			defer w.Close()
			return must[[]float32](t)(w.Float32s())
		}
		before := weight()
		if _, _, err := TrainStep(m, opt, x, y); err != nil {
			t.Fatal(err)
		}
		after := weight()
		for i := range after {
			after[i] -= before[i] // the step: −lr × the gradient
		}
		return after
	}
	diff, scale := maxAbsDiff(step(true), step(false))
	if scale == 0 || diff > 1e-4*scale {
		isa, _ := device.HostX86ISA()
		t.Fatalf("conv.weight's step in the default layout differs from NCHW's by %.3g (of %.3g) on %+v", diff, scale, isa)
	}
}
