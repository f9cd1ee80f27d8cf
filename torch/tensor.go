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
	t.cleanup = runtime.AddCleanup(t, func(h C.gpt_tensor) { C.gpt_tensor_free(h) }, h)
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

func fromData(ptr unsafe.Pointer, n int, dt DType, shape []int64, dev Device) (*Tensor, error) {
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("tensor: negative dimension in shape %v", shape)
		}
		want *= d
	}
	if int64(n) != want {
		return nil, fmt.Errorf("tensor: %d values for shape %v (needs %d)", n, shape, want)
	}
	cs := cstr(dev.String())
	defer freeC(cs)
	sp, nd := cShape(shape)
	var h C.gpt_tensor
	if err := errFrom("tensor_from_data", C.gpt_tensor_from_data(ptr, sp, nd, C.int(dt), cs, &h)); err != nil {
		return nil, err
	}
	return newTensor(h), nil
}

// FromFloat32 copies data into a new float32 tensor of the given shape.
func FromFloat32(data []float32, shape []int64, dev Device) (*Tensor, error) {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	t, err := fromData(p, len(data), Float32, shape, dev)
	runtime.KeepAlive(data)
	return t, err
}

// FromInt64 copies data into a new int64 tensor of the given shape.
func FromInt64(data []int64, shape []int64, dev Device) (*Tensor, error) {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	t, err := fromData(p, len(data), Int64, shape, dev)
	runtime.KeepAlive(data)
	return t, err
}

// Shape is the tensor's sizes.
func (t *Tensor) Shape() ([]int64, error) {
	h, err := t.handle()
	if err != nil {
		return nil, err
	}
	dims := make([]int64, 16)
	var nd C.int
	if err := errFrom("shape", C.gpt_tensor_shape(h, (*C.int64_t)(unsafe.Pointer(&dims[0])), 16, &nd)); err != nil {
		return nil, err
	}
	return dims[:nd], nil
}

// Numel is the number of elements.
func (t *Tensor) Numel() (int64, error) {
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

// DType is the element type.
func (t *Tensor) DType() (DType, error) {
	h, err := t.handle()
	if err != nil {
		return 0, err
	}
	var d C.int
	if err := errFrom("dtype", C.gpt_tensor_dtype(h, &d)); err != nil {
		return 0, err
	}
	return DType(d), nil
}

// Device is where the tensor lives, as libtorch spells it.
func (t *Tensor) Device() (string, error) {
	h, err := t.handle()
	if err != nil {
		return "", err
	}
	var p *C.char
	if err := errFrom("device", C.gpt_tensor_device(h, &p)); err != nil {
		return "", err
	}
	return takeString(p), nil
}

func (t *Tensor) copyOut(dt DType, ptr unsafe.Pointer, n int) error {
	h, err := t.handle()
	if err != nil {
		return err
	}
	return errFrom("copy_data", C.gpt_tensor_copy_data(h, ptr, C.int64_t(n*dt.Size())))
}

// Float32s copies the tensor (converted to float32, on the CPU) into Go memory.
func (t *Tensor) Float32s() ([]float32, error) {
	c, err := t.ToDType(Float32)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := c.Numel()
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
	c, err := t.ToDType(Float64)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := c.Numel()
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

// Int64s copies the tensor (converted to int64) into Go memory.
func (t *Tensor) Int64s() ([]int64, error) {
	c, err := t.ToDType(Int64)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := c.Numel()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, c.copyOut(Int64, p, int(n))
}

func (t *Tensor) unary(op string, f func(C.gpt_tensor, *C.gpt_tensor) C.gpt_err) (*Tensor, error) {
	h, err := t.handle()
	if err != nil {
		return nil, err
	}
	var out C.gpt_tensor
	if err := errFrom(op, f(h, &out)); err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

// To copies the tensor to a device.
func (t *Tensor) To(d Device) (*Tensor, error) {
	cs := cstr(d.String())
	defer freeC(cs)
	return t.unary("to", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_to(h, cs, o) })
}

// ToDType converts the element type.
func (t *Tensor) ToDType(dt DType) (*Tensor, error) {
	return t.unary("to_dtype", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_to_dtype(h, C.int(dt), o) })
}

// Clone is a detached deep copy.
func (t *Tensor) Clone() (*Tensor, error) {
	return t.unary("clone", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_clone(h, o) })
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

// Narrow copies length entries of dimension dim starting at start.
func (t *Tensor) Narrow(dim int, start, length int64) (*Tensor, error) {
	return t.unary("narrow", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_narrow(h, C.int(dim), C.int64_t(start), C.int64_t(length), o)
	})
}

func (t *Tensor) binary(op C.int, name string, u *Tensor) (*Tensor, error) {
	hu, err := u.handle()
	if err != nil {
		return nil, err
	}
	return t.unary(name, func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_binary(op, h, hu, o) })
}

// Add is t + u (broadcasting).
func (t *Tensor) Add(u *Tensor) (*Tensor, error) { return t.binary(C.GPT_ADD, "add", u) }

// Sub is t - u.
func (t *Tensor) Sub(u *Tensor) (*Tensor, error) { return t.binary(C.GPT_SUB, "sub", u) }

// Mul is t * u.
func (t *Tensor) Mul(u *Tensor) (*Tensor, error) { return t.binary(C.GPT_MUL, "mul", u) }

// Div is t / u.
func (t *Tensor) Div(u *Tensor) (*Tensor, error) { return t.binary(C.GPT_DIV, "div", u) }

// MulScalar is t * s.
func (t *Tensor) MulScalar(s float64) (*Tensor, error) {
	return t.unary("mul_scalar", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_scalar(C.GPT_MUL, h, C.double(s), o)
	})
}

// AddScalar is t + s.
func (t *Tensor) AddScalar(s float64) (*Tensor, error) {
	return t.unary("add_scalar", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_scalar(C.GPT_ADD, h, C.double(s), o)
	})
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

func (t *Tensor) reduce(op C.int, name string, dims []int64, keepdim bool) (*Tensor, error) {
	dp, nd := cShape(dims)
	r, err := t.unary(name, func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_reduce(op, h, dp, nd, cbool(keepdim), o)
	})
	runtime.KeepAlive(dims)
	return r, err
}

// Sum over dims (all when empty).
func (t *Tensor) Sum(dims []int64, keepdim bool) (*Tensor, error) {
	return t.reduce(C.GPT_SUM, "sum", dims, keepdim)
}

// Mean over dims (all when empty).
func (t *Tensor) Mean(dims []int64, keepdim bool) (*Tensor, error) {
	return t.reduce(C.GPT_MEAN, "mean", dims, keepdim)
}

// Max over one dim (all when empty).
func (t *Tensor) Max(dims []int64, keepdim bool) (*Tensor, error) {
	return t.reduce(C.GPT_MAX, "max", dims, keepdim)
}

// Argmax along dim.
func (t *Tensor) Argmax(dim int, keepdim bool) (*Tensor, error) {
	return t.unary("argmax", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err {
		return C.gpt_tensor_argmax(h, C.int(dim), cbool(keepdim), o)
	})
}

// Item is the value of a one-element tensor.
func (t *Tensor) Item() (float64, error) {
	h, err := t.handle()
	if err != nil {
		return 0, err
	}
	var v C.double
	if err := errFrom("item", C.gpt_tensor_item(h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
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
	if err := errFrom("max_abs_diff", C.gpt_tensor_max_abs_diff(h, hu, &d, &s)); err != nil {
		return 0, 0, err
	}
	return float64(d), float64(s), nil
}

// SetRequiresGrad marks the tensor as an autograd leaf (or not).
func (t *Tensor) SetRequiresGrad(on bool) error {
	h, err := t.handle()
	if err != nil {
		return err
	}
	return errFrom("set_requires_grad", C.gpt_tensor_set_requires_grad(h, cbool(on)))
}

// RequiresGrad reports whether autograd tracks the tensor.
func (t *Tensor) RequiresGrad() (bool, error) {
	h, err := t.handle()
	if err != nil {
		return false, err
	}
	var v C.int
	if err := errFrom("requires_grad", C.gpt_tensor_requires_grad(h, &v)); err != nil {
		return false, err
	}
	return v != 0, nil
}

// Grad is the accumulated gradient, or nil when there is none.
func (t *Tensor) Grad() (*Tensor, error) {
	return t.unary("grad", func(h C.gpt_tensor, o *C.gpt_tensor) C.gpt_err { return C.gpt_tensor_grad(h, o) })
}

// Backward runs autograd from this scalar.
func (t *Tensor) Backward() error {
	h, err := t.handle()
	if err != nil {
		return err
	}
	return errFrom("backward", C.gpt_tensor_backward(h))
}

// Cat concatenates tensors along dim.
func Cat(ts []*Tensor, dim int) (*Tensor, error) {
	if len(ts) == 0 {
		return nil, fmt.Errorf("cat: no tensors")
	}
	hs, p, err := tensorHandles(ts)
	if err != nil {
		return nil, err
	}
	var out C.gpt_tensor
	if err := errFrom("cat", C.gpt_tensor_cat(p, C.int(len(hs)), C.int(dim), &out)); err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

// Zeros makes a zero tensor.
func Zeros(shape []int64, dt DType, d Device) (*Tensor, error) {
	cs := cstr(d.String())
	defer freeC(cs)
	sp, nd := cShape(shape)
	var out C.gpt_tensor
	err := errFrom("zeros", C.gpt_tensor_zeros(sp, nd, C.int(dt), cs, &out))
	runtime.KeepAlive(shape)
	if err != nil {
		return nil, err
	}
	return newTensor(out), nil
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

// Keep removes t from the scope, so it survives Close.
func (s *Scope) Keep(t *Tensor) *Tensor {
	for i, u := range s.ts {
		if u == t {
			s.ts = append(s.ts[:i], s.ts[i+1:]...)
			break
		}
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
