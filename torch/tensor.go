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

// DType is a tensor element type.
type DType int

// Element types, with the shim's codes.
const (
	Float32  DType = C.GPT_FLOAT32
	Float64  DType = C.GPT_FLOAT64
	Int64    DType = C.GPT_INT64
	Int32    DType = C.GPT_INT32
	Uint8    DType = C.GPT_UINT8
	Bool     DType = C.GPT_BOOL
	Float16  DType = C.GPT_FLOAT16
	BFloat16 DType = C.GPT_BFLOAT16
)

// Size is the element size in bytes.
func (d DType) Size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Float64, Int64:
		return 8
	case Uint8, Bool:
		return 1
	case Float16, BFloat16:
		return 2
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	case Int32:
		return "int32"
	case Uint8:
		return "uint8"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Tensor is an owned libtorch tensor handle.
type Tensor struct {
	h       C.gpt_tensor
	cleanup runtime.Cleanup
}

func newTensor(h C.gpt_tensor) *Tensor {
	if h == nil {
		return nil
	}
	t := &Tensor{h: h}
	t.cleanup = runtime.AddCleanup(t, func(h C.gpt_tensor) {
		if cleanupMayFree(unsafe.Pointer(h)) {
			C.gpt_tensor_free(h)
		}
	}, h)
	return t
}

// Close frees the tensor. It is idempotent and safe on nil.
func (t *Tensor) Close() {
	if t == nil || t.h == nil {
		return
	}
	t.cleanup.Stop()
	C.gpt_tensor_free(t.h)
	t.h = nil
}

func (t *Tensor) handle() (C.gpt_tensor, error) {
	if t == nil || t.h == nil {
		return nil, ErrClosed
	}
	return t.h, nil
}

func cShape(shape []int64) (*C.int64_t, C.int) {
	if len(shape) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0])), C.int(len(shape))
}

func checkCount(n int, shape []int64) error {
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("tensor: negative dimension in shape %v", shape)
		}
		want *= d
	}
	if int64(n) != want {
		return fmt.Errorf("tensor: %d values for shape %v (needs %d)", n, shape, want)
	}
	return nil
}

// fromSlice copies data into a new tensor of the given shape: on dev, or,
// with pinned, in pinned host memory (see BatchFloat32).
func fromSlice[T float32 | int64](data []T, dt DType, shape []int64, dev Device, pinned bool) (*Tensor, error) {
	if err := checkCount(len(data), shape); err != nil {
		return nil, err
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	sp, nd := cShape(shape)
	var h C.gpt_tensor
	var err error
	if pinned {
		err = errFrom("tensor_from_data_pinned", C.gpt_tensor_from_data_pinned(p, sp, nd, C.int(dt), &h))
	} else {
		cs := cstr(dev.String())
		err = errFrom("tensor_from_data", C.gpt_tensor_from_data(p, sp, nd, C.int(dt), cs, &h))
		freeC(cs)
	}
	runtime.KeepAlive(data)
	if err != nil {
		return nil, err
	}
	return newTensor(h), nil
}

// FromFloat32 copies data into a new float32 tensor of the given shape.
func FromFloat32(data []float32, shape []int64, dev Device) (*Tensor, error) {
	return fromSlice(data, Float32, shape, dev, false)
}

// FromInt64 copies data into a new int64 tensor of the given shape.
func FromInt64(data []int64, shape []int64, dev Device) (*Tensor, error) {
	return fromSlice(data, Int64, shape, dev, false)
}

// BatchFloat32 copies a batch for a step of a module on dev (TrainStep,
// EvalBatch, RecalibrateBNStep, TaylorAccumulate): on the CPU it is
// FromFloat32; for a CUDA device the tensor stays on the host, in pinned
// memory, and the step uploads it on the module's stream without waiting.
func BatchFloat32(data []float32, shape []int64, dev Device) (*Tensor, error) {
	return fromSlice(data, Float32, shape, dev, dev.IsCUDA())
}

// BatchInt64 is BatchFloat32 for labels.
func BatchInt64(data []int64, shape []int64, dev Device) (*Tensor, error) {
	return fromSlice(data, Int64, shape, dev, dev.IsCUDA())
}

// Shape is the tensor's sizes.
func (t *Tensor) Shape() ([]int64, error) {
	h, err := t.handle()
	if err != nil {
		return nil, err
	}
	dims := make([]int64, 16)
	var nd C.int
	err = errFrom("shape", C.gpt_tensor_shape(h, (*C.int64_t)(unsafe.Pointer(&dims[0])), 16, &nd))
	runtime.KeepAlive(t)
	if err != nil {
		return nil, err
	}
	return dims[:nd], nil
}

// numel is the number of elements.
func (t *Tensor) numel() (int64, error) {
	s, err := t.Shape()
	if err != nil {
		return 0, err
	}
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n, nil
}

func (t *Tensor) copyOut(dt DType, ptr unsafe.Pointer, n int) error {
	h, err := t.handle()
	if err != nil {
		return err
	}
	err = errFrom("copy_data", C.gpt_tensor_copy_data(h, ptr, C.int64_t(n*dt.Size())))
	runtime.KeepAlive(t)
	return err
}

// Float32s copies the tensor (converted to float32, on the CPU) into Go memory.
func (t *Tensor) Float32s() ([]float32, error) {
	c, err := t.toDType(Float32)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := c.numel()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, c.copyOut(Float32, p, int(n))
}

// Float64s copies the tensor (converted to float64) into Go memory.
func (t *Tensor) Float64s() ([]float64, error) {
	c, err := t.toDType(Float64)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := c.numel()
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, c.copyOut(Float64, p, int(n))
}

func (t *Tensor) unary(op string, f func(C.gpt_tensor, *C.gpt_tensor) C.gpt_err) (*Tensor, error) {
	h, err := t.handle()
	if err != nil {
		return nil, err
	}
	var out C.gpt_tensor
	err = errFrom(op, f(h, &out))
	runtime.KeepAlive(t)
	if err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

// toDType converts the element type.
func (t *Tensor) toDType(dt DType) (*Tensor, error) {
	return t.unary("to_dtype", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_to_dtype(h, C.int(dt), o) })
}

// IndexSelect keeps the given indices of dimension dim.
func (t *Tensor) IndexSelect(dim int, idx []int64) (*Tensor, error) {
	var p *C.int64_t
	if len(idx) > 0 {
		p = (*C.int64_t)(unsafe.Pointer(&idx[0]))
	}
	r, err := t.unary("index_select", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_index_select(h, C.int(dim), p, C.int64_t(len(idx)), o)
	})
	runtime.KeepAlive(idx)
	return r, err
}

// Norm is the p-norm over dims (all dims when empty).
func (t *Tensor) Norm(p float64, dims []int64, keepdim bool) (*Tensor, error) {
	dp, nd := cShape(dims)
	r, err := t.unary("norm", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_norm(h, C.double(p), dp, nd, cbool(keepdim), o)
	})
	runtime.KeepAlive(dims)
	return r, err
}

// MaxAbsDiff returns max|t-u| and max|t|, for equivalence checks.
func (t *Tensor) MaxAbsDiff(u *Tensor) (diff, scale float64, err error) {
	h, err := t.handle()
	if err != nil {
		return 0, 0, err
	}
	hu, err := u.handle()
	if err != nil {
		return 0, 0, err
	}
	var d, s C.double
	err = errFrom("max_abs_diff", C.gpt_tensor_max_abs_diff(h, hu, &d, &s))
	runtime.KeepAlive(t)
	runtime.KeepAlive(u)
	if err != nil {
		return 0, 0, err
	}
	return float64(d), float64(s), nil
}

// Randn makes a standard-normal float32 tensor from libtorch's generator.
func Randn(shape []int64, d Device) (*Tensor, error) {
	cs := cstr(d.String())
	defer freeC(cs)
	sp, nd := cShape(shape)
	var out C.gpt_tensor
	err := errFrom("randn", C.gpt_tensor_randn(sp, nd, cs, &out))
	runtime.KeepAlive(shape)
	if err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Scope frees every tensor added to it when closed: one defer per step
// instead of one per temporary.
type Scope struct {
	ts []*Tensor
}

// Add registers t with the scope and returns it.
func (s *Scope) Add(t *Tensor) *Tensor {
	if t != nil {
		s.ts = append(s.ts, t)
	}
	return t
}

// Close frees every tensor still in the scope.
func (s *Scope) Close() {
	for _, t := range s.ts {
		t.Close()
	}
	s.ts = s.ts[:0]
}
