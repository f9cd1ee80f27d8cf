//go:build cgo

package torch

/*
#include <stdlib.h>
#include "gptorch.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Optimizer updates a module's parameters. It holds the parameter tensors
// the module had when it was made: after surgery, make a new one.
type Optimizer struct {
	h       C.gpt_optim
	cleanup runtime.Cleanup
}

func newOptim(h C.gpt_optim) *Optimizer {
	o := &Optimizer{h: h}
	o.cleanup = runtime.AddCleanup(o, func(h C.gpt_optim) {
		if cleanupMayFree(unsafe.Pointer(h)) {
			C.gpt_optim_free(h)
		}
	}, h)
	return o
}

// SGDOptions are torch.optim.SGD's settings.
type SGDOptions struct {
	LR, Momentum, WeightDecay float64
	Nesterov                  bool
}

// NewSGD makes an SGD optimizer over m's trainable parameters.
func NewSGD(m *Module, o SGDOptions) (*Optimizer, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	if o.Nesterov && o.Momentum <= 0 {
		return nil, fmt.Errorf("sgd: nesterov needs momentum > 0")
	}
	var out C.gpt_optim
	err = errFrom("sgd", C.gpt_optim_sgd(h, C.double(o.LR), C.double(o.Momentum), C.double(o.WeightDecay), cbool(o.Nesterov), &out))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return newOptim(out), nil
}

// AdamOptions are torch.optim.Adam's settings (zero betas/eps take the
// PyTorch defaults).
type AdamOptions struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

// NewAdam makes an Adam optimizer over m's trainable parameters.
func NewAdam(m *Module, o AdamOptions) (*Optimizer, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	var out C.gpt_optim
	err = errFrom("adam", C.gpt_optim_adam(h, C.double(o.LR), C.double(o.Beta1), C.double(o.Beta2), C.double(o.Eps), C.double(o.WeightDecay), &out))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return newOptim(out), nil
}

// Close frees the optimizer. Idempotent and nil-safe.
func (o *Optimizer) Close() {
	if o == nil || o.h == nil {
		return
	}
	o.cleanup.Stop()
	C.gpt_optim_free(o.h)
	o.h = nil
}

func (o *Optimizer) handle() (C.gpt_optim, error) {
	if o == nil || o.h == nil {
		return nil, ErrClosed
	}
	return o.h, nil
}

// SetLR changes the learning rate of every parameter group.
func (o *Optimizer) SetLR(lr float64) error {
	h, err := o.handle()
	if err != nil {
		return err
	}
	err = errFrom("optim_set_lr", C.gpt_optim_set_lr(h, C.double(lr)))
	runtime.KeepAlive(o)
	return err
}

// TrainStep runs one whole step in libtorch: zero_grad, forward,
// cross-entropy, backward, optimizer step. It returns the mean loss and the
// number of correct predictions in the batch.
func TrainStep(m *Module, o *Optimizer, x, y *Tensor) (loss float64, correct int64, err error) {
	return trainStep(m, nil, o, x, y, 0, 0)
}

// TrainStepDistill is TrainStep learning from teacher too: the loss is
// (1-weight)·CE + weight·T²·KL(softmax(teacher/T) ‖ softmax(student/T)),
// the teacher run on x in eval mode without grad (never trained). It returns
// that loss and the student's correct count.
func TrainStepDistill(m, teacher *Module, o *Optimizer, x, y *Tensor, temperature, weight float64) (loss float64, correct int64, err error) {
	return trainStep(m, teacher, o, x, y, temperature, weight)
}

// trainStep is both steps: the plain one when teacher is nil, which calls
// the shim's unchanged gpt_train_step.
func trainStep(m, teacher *Module, o *Optimizer, x, y *Tensor, temperature, weight float64) (float64, int64, error) {
	hm, err := m.handle()
	if err != nil {
		return 0, 0, err
	}
	var ht C.gpt_module
	if teacher != nil {
		if ht, err = teacher.handle(); err != nil {
			return 0, 0, err
		}
	}
	ho, err := o.handle()
	if err != nil {
		return 0, 0, err
	}
	hx, err := x.handle()
	if err != nil {
		return 0, 0, err
	}
	hy, err := y.handle()
	if err != nil {
		return 0, 0, err
	}
	var l C.double
	var c C.int64_t
	if teacher == nil {
		err = errFrom("train_step", C.gpt_train_step(hm, ho, hx, hy, &l, &c))
		keepAlive(m, o, x, y)
	} else {
		err = errFrom("train_step_distill", C.gpt_train_step_distill(hm, ht, ho, hx, hy, C.double(temperature), C.double(weight), &l, &c))
		keepAlive(m, teacher, o, x, y)
	}
	if err != nil {
		return 0, 0, err
	}
	return float64(l), int64(c), nil
}

// RecalibrateBNStep is step (0-based) of re-estimating m's BatchNorm
// running statistics on batch x: forward in training mode without autograd
// with every BatchNorm's momentum at 1/(step+1), so that steps 0..n-1 leave
// the average of the n batches' statistics. It returns how many BatchNorm
// layers there are; flags and momenta are left as they were.
func RecalibrateBNStep(m *Module, x *Tensor, step int) (int, error) {
	hm, err := m.handle()
	if err != nil {
		return 0, err
	}
	hx, err := x.handle()
	if err != nil {
		return 0, err
	}
	var n C.int
	err = errFrom("bn_recalibrate", C.gpt_bn_recalibrate_step(hm, hx, C.int(step), &n))
	keepAlive(m, x)
	return int(n), err
}

// EvalBatch evaluates one batch without grad: summed loss, correct count,
// and the predicted class of each sample when preds is non-nil (len N; an
// error when the model gives more rows than preds holds).
func EvalBatch(m *Module, x, y *Tensor, preds []int64) (lossSum float64, correct int64, err error) {
	hm, err := m.handle()
	if err != nil {
		return 0, 0, err
	}
	hx, err := x.handle()
	if err != nil {
		return 0, 0, err
	}
	hy, err := y.handle()
	if err != nil {
		return 0, 0, err
	}
	var p *C.int64_t
	if len(preds) > 0 {
		p = (*C.int64_t)(unsafe.Pointer(&preds[0]))
	}
	var l C.double
	var c C.int64_t
	err = errFrom("eval_batch", C.gpt_eval_batch(hm, hx, hy, &l, &c, p, C.int64_t(len(preds))))
	keepAlive(m, x, y)
	runtime.KeepAlive(preds)
	if err != nil {
		return 0, 0, err
	}
	return float64(l), int64(c), nil
}

// TaylorAccumulator sums Taylor first-order channel scores over batches.
type TaylorAccumulator struct {
	names []string
	dims  []C.int
	acc   []C.gpt_tensor
}

// TaylorWeight is a weight to score and the dimension that holds its output
// channels (0 for a conv or linear weight, 1 for a transposed conv's).
type TaylorWeight struct {
	Name string
	Dim  int
}

// NewTaylorAccumulator scores the output channels of the given weights.
func NewTaylorAccumulator(weights []TaylorWeight) *TaylorAccumulator {
	a := &TaylorAccumulator{acc: make([]C.gpt_tensor, len(weights))}
	for _, w := range weights {
		a.names = append(a.names, w.Name)
		a.dims = append(a.dims, C.int(w.Dim))
	}
	return a
}

// Add runs forward/backward on one batch, without updating weights, and adds
// Σ (w·∂L/∂w)² per output channel of every weight. It returns the loss.
func (a *TaylorAccumulator) Add(m *Module, x, y *Tensor) (float64, error) {
	hm, err := m.handle()
	if err != nil {
		return 0, err
	}
	hx, err := x.handle()
	if err != nil {
		return 0, err
	}
	hy, err := y.handle()
	if err != nil {
		return 0, err
	}
	if len(a.names) == 0 {
		return 0, nil
	}
	cn := make([]*C.char, len(a.names))
	for i, n := range a.names {
		cn[i] = cstr(n)
	}
	defer func() {
		for _, p := range cn {
			freeC(p)
		}
	}()
	var l C.double
	// C fills in the handles it creates on the first call.
	err = errFrom("taylor", C.gpt_taylor_accumulate(hm, hx, hy, C.int(len(a.names)), cStrings(cn), &a.dims[0], &a.acc[0], &l))
	keepAlive(m, x, y)
	if err != nil {
		return 0, err
	}
	return float64(l), nil
}

// Scores returns the accumulated score of every output channel, one slice
// per weight in the order NewTaylorAccumulator got them, and frees the
// accumulator.
func (a *TaylorAccumulator) Scores() ([][]float64, error) {
	out := make([][]float64, len(a.names))
	defer a.Close()
	for i := range a.names {
		if a.acc[i] == nil {
			return nil, fmt.Errorf("taylor: no batch was scored")
		}
		t := &Tensor{h: a.acc[i]}
		v, err := t.Float64s()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Close frees the accumulator's tensors.
func (a *TaylorAccumulator) Close() {
	for i, h := range a.acc {
		if h != nil {
			C.gpt_tensor_free(h)
			a.acc[i] = nil
		}
	}
}
