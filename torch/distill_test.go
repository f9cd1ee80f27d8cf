//go:build cgo

package torch

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// logSoftmax is log softmax(v/T) in float64.
func logSoftmax(v []float32, T float64) []float64 {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, float64(x)/T)
	}
	var sum float64
	for _, x := range v {
		sum += math.Exp(float64(x)/T - mx)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)/T - mx - math.Log(sum)
	}
	return out
}

// distillLoss is (1-w)·CE(s, y) + w·T²·KL(softmax(t/T) ‖ softmax(s/T)),
// both terms averaged over the batch, computed in Go from the logits.
func distillLoss(s, tl []float32, y []int64, classes int, T, w float64) float64 {
	n := len(y)
	var ce, kl float64
	for i := range n {
		row := s[i*classes : (i+1)*classes]
		ce -= logSoftmax(row, 1)[y[i]]
		ls, lt := logSoftmax(row, T), logSoftmax(tl[i*classes:(i+1)*classes], T)
		for c := range classes {
			kl += math.Exp(lt[c]) * (lt[c] - ls[c])
		}
	}
	return (1-w)*ce/float64(n) + w*T*T*kl/float64(n)
}

func weightsOf(t *testing.T, m *Module, names ...string) []float32 {
	t.Helper()
	var out []float32
	for _, n := range names {
		w := must[*Tensor](t)(m.Get(n))
		out = append(out, must[[]float32](t)(w.Float32s())...)
		w.Close()
	}
	return out
}

// TestTrainStepDistillLoss: the distilled step's loss is the formula
// computed independently from the student's (training mode) and the
// teacher's (eval mode) logits of the same batch, for several temperatures
// and weights; the teacher's weights and BatchNorm statistics do not move.
func TestTrainStepDistillLoss(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	teacher := must[*Module](t)(Load(path, CPU))
	defer teacher.Close()
	if err := teacher.Train(false); err != nil {
		t.Fatal(err)
	}
	x, y := randomBatch(t, 16, meta.InputShape, 10, 7)
	labels := labelsOf(16, 10)
	teacherState := []string{"conv1.weight", "fc.weight", "bn1.running_mean", "bn3.running_var"}
	before := weightsOf(t, teacher, teacherState...)
	for _, tc := range []struct{ T, w float64 }{{4, 0.5}, {1, 1}, {2.5, 0.3}, {0.5, 0.9}} {
		student := must[*Module](t)(Load(path, CPU))
		// A student that already differs from the teacher, so that the KL
		// term is not zero.
		opt := must[*Optimizer](t)(NewSGD(student, SGDOptions{LR: 0.2}))
		if err := student.Train(true); err != nil {
			t.Fatal(err)
		}
		x0, y0 := randomBatch(t, 16, meta.InputShape, 10, 3)
		for range 3 {
			if _, _, err := TrainStep(student, opt, x0, y0); err != nil {
				t.Fatal(err)
			}
		}
		// The step's logits: training mode (BatchNorm on batch
		// statistics), before its weight update.
		sOut := must[*Tensor](t)(student.Forward(true, x))
		s := must[[]float32](t)(sOut.Float32s())
		sOut.Close()
		tOut := must[*Tensor](t)(teacher.Forward(true, x))
		tl := must[[]float32](t)(tOut.Float32s())
		tOut.Close()
		want := distillLoss(s, tl, labels, 10, tc.T, tc.w)
		got, correct, err := TrainStepDistill(student, teacher, opt, x, y, tc.T, tc.w)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Errorf("T %g w %g: loss %.7f, the formula gives %.7f", tc.T, tc.w, got, want)
		}
		if correct < 0 || correct > 16 {
			t.Errorf("T %g w %g: %d correct of 16", tc.T, tc.w, correct)
		}
		t.Logf("T %g w %g: loss %.6f (formula %.6f)", tc.T, tc.w, got, want)
		opt.Close()
		student.Close()
	}
	if after := weightsOf(t, teacher, teacherState...); !slices.Equal(before, after) {
		t.Error("distillation changed the teacher's weights or BatchNorm statistics")
	}
}

// TestTrainStepDistillWeightZero: with weight 0 the distilled step is the
// plain cross-entropy step: the same loss and the same weights after it.
func TestTrainStepDistillWeightZero(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	teacher := must[*Module](t)(Load(path, CPU))
	defer teacher.Close()
	x, y := randomBatch(t, 16, meta.InputShape, 10, 5)
	run := func(distill bool) (float64, []float32) {
		m := must[*Module](t)(Load(path, CPU))
		defer m.Close()
		opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 0.1, Momentum: 0.9}))
		defer opt.Close()
		if err := m.Train(true); err != nil {
			t.Fatal(err)
		}
		var loss float64
		for range 2 {
			var err error
			if distill {
				loss, _, err = TrainStepDistill(m, teacher, opt, x, y, 4, 0)
			} else {
				loss, _, err = TrainStep(m, opt, x, y)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return loss, weightsOf(t, m, "conv1.weight", "conv3.bias", "fc.weight", "bn2.running_mean")
	}
	pl, pw := run(false)
	dl, dw := run(true)
	if pl != dl || !slices.Equal(pw, dw) {
		t.Errorf("weight 0: loss %v, plain %v; same weights after: %v", dl, pl, slices.Equal(pw, dw))
	}
}

// TestTrainStepDistillErrors: bad settings and a student that is its own
// teacher are errors, not crashes.
func TestTrainStepDistillErrors(t *testing.T) {
	path, meta := fixtures.Model(t, "smallcnn_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	teacher := must[*Module](t)(Load(path, CPU))
	defer teacher.Close()
	opt := must[*Optimizer](t)(NewSGD(m, SGDOptions{LR: 0.1}))
	defer opt.Close()
	x, y := randomBatch(t, 4, meta.InputShape, 10, 1)
	for _, tc := range []struct {
		teacher *Module
		T, w    float64
		want    string
	}{
		{teacher, 0, 0.5, "temperature must be > 0"},
		{teacher, math.NaN(), 0.5, "temperature must be > 0"},
		{teacher, 4, 1.5, "weight must be in [0,1]"},
		{teacher, 4, -0.1, "weight must be in [0,1]"},
		{m, 4, 0.5, "the teacher is the student"},
	} {
		if _, _, err := TrainStepDistill(m, tc.teacher, opt, x, y, tc.T, tc.w); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("T %g w %g: err = %v, want %q", tc.T, tc.w, err, tc.want)
		}
	}
	// A teacher with other classes than the student's: its output is
	// [N, 10], the student's after cutting fc to 4 classes is [N, 4].
	small := must[*Module](t)(Load(path, CPU))
	defer small.Close()
	if err := small.Prune([]Slice{{Tensor: "fc.weight", Keep: map[int][]int{0: {0, 1, 2, 3}}}, {Tensor: "fc.bias", Keep: map[int][]int{0: {0, 1, 2, 3}}}}, nil); err != nil {
		t.Fatal(err)
	}
	sopt := must[*Optimizer](t)(NewSGD(small, SGDOptions{LR: 0.1}))
	defer sopt.Close()
	y4 := must[*Tensor](t)(FromInt64([]int64{0, 1, 2, 3}, []int64{4}, CPU))
	defer y4.Close()
	if _, _, err := TrainStepDistill(small, teacher, sopt, x, y4, 4, 0.5); err == nil || !strings.Contains(err.Error(), "same classes") {
		t.Errorf("other classes: err = %v", err)
	}
}
