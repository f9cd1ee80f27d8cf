//go:build cgo

package torch

import (
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// runRandomOps runs the random_ops fixture (dropout, dropout2d, the fused
// dropout, bernoulli, randn_like, rand_like of a 2x3x8x8 batch of ones,
// stacked) once and gives its output.
func runRandomOps(m *Module) ([]float32, error) {
	x, err := FromFloat32(slices.Repeat([]float32{1}, 2*3*8*8), []int64{2, 3, 8, 8}, CPU)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	y, err := m.Forward(true, x)
	if err != nil {
		return nil, err
	}
	defer y.Close()
	return y.Float32s()
}

// randomOps is runRandomOps' output as its six parts.
func randomOps(t *testing.T, m *Module) [][]float32 {
	t.Helper()
	v := must[[]float32](t)(runRandomOps(m))
	n := len(v) / 6
	parts := make([][]float32, 6)
	for i := range parts {
		parts[i] = v[i*n : (i+1)*n]
	}
	return parts
}

var randomOpNames = []string{"dropout", "dropout2d", "native_dropout", "bernoulli", "randn_like", "rand_like"}

func loadRandomOps(t *testing.T) *Module {
	t.Helper()
	m := must[*Module](t)(Load(fixtures.Path(t, "random_ops.pt"), CPU))
	t.Cleanup(m.Close)
	if err := m.Train(true); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestModuleRNG: a module with a stream of its own draws every random op
// of training from it: one seed gives the same draws again whatever the
// process-wide generator did meanwhile, another seed other draws, and the
// process-wide generator's sequence is left as it was. The dropouts keep
// their semantics (x/(1-p) or 0).
func TestModuleRNG(t *testing.T) {
	m := loadRandomOps(t)
	plain := loadRandomOps(t)

	must[struct{}](t)(struct{}{}, ManualSeed(5))
	want := randomOps(t, plain)

	must[struct{}](t)(struct{}{}, m.SetRNG(11))
	a := randomOps(t, m)
	randomOps(t, plain) // moves the process-wide generator on
	must[struct{}](t)(struct{}{}, m.SetRNG(11))
	b := randomOps(t, m)
	must[struct{}](t)(struct{}{}, m.SetRNG(12))
	c := randomOps(t, m)
	for i, name := range randomOpNames {
		if !slices.Equal(a[i], b[i]) {
			t.Errorf("%s: seed 11 drew differently the second time: the op draws from the process-wide generator", name)
		}
		if slices.Equal(a[i], c[i]) {
			t.Errorf("%s: seeds 11 and 12 drew the same", name)
		}
	}
	for i := range 3 { // the dropouts of p = 0.5 of ones: 0 or 2
		for _, v := range a[i] {
			if v != 0 && v != 2 {
				t.Fatalf("%s gave %g; want 0 or 2", randomOpNames[i], v)
			}
		}
		if !slices.Contains(a[i], 2) || !slices.Contains(a[i], 0) {
			t.Errorf("%s dropped all or nothing: %v", randomOpNames[i], a[i])
		}
	}

	// The process-wide sequence: what plain draws after a reseed does not
	// depend on m's draws in between.
	must[struct{}](t)(struct{}{}, ManualSeed(5))
	randomOps(t, m)
	got := randomOps(t, plain)
	for i, name := range randomOpNames {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%s: a module's own stream moved the process-wide generator on", name)
		}
	}
}

// TestModuleRNGConcurrent: modules running at once on other threads, one
// drawing from the process-wide generator, do not change a module's
// draws: each gives the sequence it gives alone.
func TestModuleRNGConcurrent(t *testing.T) {
	const runs = 30
	seq := func(m *Module) ([][]float32, error) {
		var out [][]float32
		for range runs {
			v, err := runRandomOps(m)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	mods := []*Module{loadRandomOps(t), loadRandomOps(t), loadRandomOps(t)}
	seeds := []uint64{3, 4}
	alone := make([][][]float32, 2)
	for i, s := range seeds {
		must[struct{}](t)(struct{}{}, mods[i].SetRNG(s))
		alone[i] = must[[][]float32](t)(seq(mods[i]))
		must[struct{}](t)(struct{}{}, mods[i].SetRNG(s))
	}
	together := make([][][]float32, 3)
	errs := make([]error, 3)
	next := make(chan int, 3)
	for i := range 3 {
		next <- i
	}
	onOSThreads(3, func() {
		i := <-next
		together[i], errs[i] = seq(mods[i])
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
	}
	for i := range seeds {
		for r := range runs {
			if !slices.Equal(alone[i][r], together[i][r]) {
				t.Fatalf("module %d (seed %d), run %d: draws differ with other modules running beside it", i, seeds[i], r)
			}
		}
	}
	t.Logf("%d runs each on 3 threads", runs)
}
