//go:build cgo && !race

package pipeline

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/torchengine"
)

// TestDistillSearch: a distilled my_pruning search on the trained demo CNN
// completes on two slots with the target met, its winners are fine-tuned
// against the original (the final model differs from the undistilled
// search's), and accuracy holds.
func TestDistillSearch(t *testing.T) {
	tr, val, b := setup(t)
	search := func(d *engine.Distill) *MyPruningResult {
		t.Helper()
		am := analyzed(t, b)
		o := smallOptions(t)
		o.P = 0.1
		o.Train.Distill = d
		res, err := MyPruning(context.Background(), torchengine.Engine{}, torchengine.FromAnalyzed(am), tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(res.Module.Close)
		return res
	}
	plain := search(nil)
	kd := search(&engine.Distill{Temperature: 4, Weight: 0.5})
	t.Logf("P 0.1: plain %d iterations acc %.4f → %.4f; distilled %d iterations acc %.4f → %.4f",
		plain.State.Iteration, plain.AccBefore, plain.AccAfter, kd.State.Iteration, kd.AccBefore, kd.AccAfter)
	if !kd.State.Done || kd.Plan.MACsAfter > kd.State.Target {
		t.Errorf("distilled search: done %v, MACs %d, target %d", kd.State.Done, kd.Plan.MACsAfter, kd.State.Target)
	}
	if kd.AccAfter < kd.AccBefore-0.02 {
		t.Errorf("distilled search: accuracy fell from %.4f to %.4f", kd.AccBefore, kd.AccAfter)
	}
	pb, err := plain.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	kb, err := kd.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pb, kb) {
		t.Error("the distilled search's model is the undistilled one's: distillation changed nothing")
	}
}

// TestDistillFit: the libtorch fine-tune refuses distillation without a
// teacher or with the student as its own, and leaves the teacher as it was.
func TestDistillFit(t *testing.T) {
	tr, _, b := setup(t)
	eng := torchengine.Engine{}
	load := func() engine.Module {
		t.Helper()
		m, err := eng.Load(b, "cpu", 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	student, teacher := load(), load()
	o := engine.TrainOptions{Steps: 3, BatchSize: 16, LR: 0.01, Momentum: 0.9, Seed: 1, Distill: &engine.Distill{Temperature: 4, Weight: 0.5}}
	if _, err := student.Fit(context.Background(), tr, o); err == nil || !strings.Contains(err.Error(), "teacher") {
		t.Errorf("no teacher: err = %v", err)
	}
	o.Teacher = student
	if _, err := student.Fit(context.Background(), tr, o); err == nil || !strings.Contains(err.Error(), "teacher is the model being trained") {
		t.Errorf("own teacher: err = %v", err)
	}
	o.Teacher = teacher
	r, err := student.Fit(context.Background(), tr, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Steps != 3 || !(r.Loss > 0) {
		t.Errorf("fit: %+v", r)
	}
	after, err := teacher.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := load().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, orig) {
		t.Error("fitting against the teacher changed it")
	}
}
