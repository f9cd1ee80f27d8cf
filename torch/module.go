//go:build cgo

package torch

/*
#include <stdlib.h>
#include "gptorch.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/ir"
)

// Module is a TorchScript module (scripted or traced) loaded in libtorch.
// Use it from one goroutine at a time.
type Module struct {
	h       C.gpt_module
	dev     Device
	cleanup runtime.Cleanup
}

func newModule(h C.gpt_module, dev Device) *Module {
	m := &Module{h: h, dev: dev}
	m.cleanup = runtime.AddCleanup(m, func(h C.gpt_module) {
		if cleanupMayFree(unsafe.Pointer(h)) {
			C.gpt_module_free(h)
		}
	}, h)
	return m
}

// Load reads a TorchScript file onto a device. The file is only read.
func Load(path string, dev Device) (*Module, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	cp := cstr(path)
	defer freeC(cp)
	cd := cstr(dev.String())
	defer freeC(cd)
	var h C.gpt_module
	if err := errFrom("load", C.gpt_module_load(cp, cd, &h)); err != nil {
		return nil, err
	}
	return newModule(h, dev), nil
}

// LoadBytes reads a TorchScript archive from memory.
func LoadBytes(data []byte, dev Device) (*Module, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("load: empty data")
	}
	cd := cstr(dev.String())
	defer freeC(cd)
	var h C.gpt_module
	err := errFrom("load", C.gpt_module_load_bytes(unsafe.Pointer(&data[0]), C.size_t(len(data)), cd, &h))
	runtime.KeepAlive(data)
	if err != nil {
		return nil, err
	}
	return newModule(h, dev), nil
}

// Close frees the module. Idempotent and nil-safe.
func (m *Module) Close() {
	if m == nil || m.h == nil {
		return
	}
	m.cleanup.Stop()
	C.gpt_module_free(m.h)
	m.h = nil
}

func (m *Module) handle() (C.gpt_module, error) {
	if m == nil || m.h == nil {
		return nil, ErrClosed
	}
	return m.h, nil
}

// Device is where the module's tensors live.
func (m *Module) Device() Device { return m.dev }

// Save writes the module atomically (temporary file, then rename).
func (m *Module) Save(path string) error {
	h, err := m.handle()
	if err != nil {
		return err
	}
	err = atomicfile.WritePath(path, 0o644, func(tmp string) error {
		cp := cstr(tmp)
		defer freeC(cp)
		return errFrom("save", C.gpt_module_save(h, cp))
	})
	runtime.KeepAlive(m)
	return err
}

// Bytes serialises the module to a TorchScript archive in memory.
func (m *Module) Bytes() ([]byte, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	var p unsafe.Pointer
	var n C.size_t
	err = errFrom("save", C.gpt_module_save_bytes(h, &p, &n))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	defer C.gpt_free(p)
	return C.GoBytes(p, C.int(n)), nil
}

// Clone is a deep copy that shares nothing with m (tensors, types, method
// graphs), so one copy can be pruned or trained while the other is not.
func (m *Module) Clone() (*Module, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	var out C.gpt_module
	err = errFrom("clone", C.gpt_module_clone(h, &out))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return newModule(out, m.dev), nil
}

// count is what one of the shim's int64 diagnostics says of m.
func (m *Module) count(call string, f func(C.gpt_module, *C.int64_t) C.gpt_err) (int64, error) {
	h, err := m.handle()
	if err != nil {
		return 0, err
	}
	var n C.int64_t
	err = errFrom(call, f(h, &n))
	runtime.KeepAlive(m)
	return int64(n), err
}

// unitFunctions is how many functions the compilation unit that m shares
// with its clones holds: a clone's leave it when the clone is closed.
func (m *Module) unitFunctions() (int, error) {
	n, err := m.count("unit_functions", func(h C.gpt_module, n *C.int64_t) C.gpt_err { return C.gpt_module_unit_functions(h, n) })
	return int(n), err
}

// offloaded is how many bytes of m's tensors have their pages out, waiting
// in m's file since a shape-only pass until a call needs them (see
// cgo/origin.cc).
func (m *Module) offloaded() (int64, error) {
	return m.count("offloaded", func(h C.gpt_module, n *C.int64_t) C.gpt_err { return C.gpt_module_offloaded(h, n) })
}

// HasMethod reports whether the module defines a method.
func (m *Module) HasMethod(name string) (bool, error) {
	h, err := m.handle()
	if err != nil {
		return false, err
	}
	cn := cstr(name)
	defer freeC(cn)
	var v C.int
	err = errFrom("has_method", C.gpt_module_has_method(h, cn, &v))
	runtime.KeepAlive(m)
	if err != nil {
		return false, err
	}
	return v != 0, nil
}

// Train switches training mode (BatchNorm statistics, dropout) on or off.
// Traced models keep the mode they were traced in inside their graph.
func (m *Module) Train(on bool) error {
	h, err := m.handle()
	if err != nil {
		return err
	}
	err = errFrom("train", C.gpt_module_train(h, cbool(on)))
	runtime.KeepAlive(m)
	return err
}

// BatchNormModes counts the BatchNorm calls in forward and, of those, the
// ones whose training flag is fixed in the graph: a model traced in eval mode
// normalises with its running statistics, and never updates them, even in
// training mode.
func (m *Module) BatchNormModes() (fixed, total int, err error) {
	h, err := m.handle()
	if err != nil {
		return 0, 0, err
	}
	var f, n C.int
	err = errFrom("bn_modes", C.gpt_module_bn_modes(h, &f, &n))
	runtime.KeepAlive(m)
	if err != nil {
		return 0, 0, err
	}
	return int(f), int(n), nil
}

// SetThreads sets the libtorch thread count that calls on this module use
// (0: the process setting, SetNumThreads's, on whichever OS thread the call
// runs). Cart workers divide the cores this way.
func (m *Module) SetThreads(n int) error {
	h, err := m.handle()
	if err != nil {
		return err
	}
	err = errFrom("set_threads", C.gpt_module_set_threads(h, C.int(n)))
	runtime.KeepAlive(m)
	return err
}

// SetRNG gives m a random stream of its own, seeded with seed: the
// dropout masks (and other random draws) of m's calls come from it
// instead of libtorch's process-wide generator, which modules running at
// the same time on other threads share. So what m's training computes
// depends on seed and m's own calls, never on what runs beside it.
// Clones start without one.
func (m *Module) SetRNG(seed uint64) error {
	h, err := m.handle()
	if err != nil {
		return err
	}
	err = errFrom("set_rng", C.gpt_module_set_rng(h, 1, C.uint64_t(seed)))
	runtime.KeepAlive(m)
	return err
}

// Forward runs forward on the inputs and gives the tensor that
// Settings.Output selects from its result. With noGrad, autograd records
// nothing.
func (m *Module) Forward(noGrad bool, inputs ...*Tensor) (*Tensor, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	hs, p, err := tensorHandles(inputs)
	if err != nil {
		return nil, err
	}
	var out C.gpt_tensor
	err = errFrom("forward", C.gpt_module_forward(h, p, C.int(len(hs)), cbool(noGrad), &out))
	runtime.KeepAlive(m)
	runtime.KeepAlive(inputs)
	if err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

// Pass says how a call that only needs shapes runs forward.
type Pass int

const (
	// PassAuto runs a shape-only pass on libtorch's Meta device (no
	// arithmetic, no activation memory) and the real pass when that fails:
	// an op without a Meta kernel, code that reads tensor values, or an
	// error, which the real pass then reports in its own words.
	PassAuto Pass = iota
	// PassReal runs only the real pass.
	PassReal
	// PassMeta runs only the shape-only pass; its failure is the error.
	PassMeta
)

// CheckForward runs forward once on the inputs, without autograd and
// without the graph optimizer, and drops the result: the cheap way to check
// that a model runs (an optimising executor's first call profiles and
// compiles, and costs several plain calls). It runs as PassAuto.
func (m *Module) CheckForward(inputs ...*Tensor) error {
	_, err := m.CheckForwardPass(PassAuto, inputs...)
	return err
}

// CheckForwardPass is CheckForward with the pass chosen; meta says whether
// the shape-only pass gave the answer.
func (m *Module) CheckForwardPass(pass Pass, inputs ...*Tensor) (meta bool, err error) {
	h, err := m.handle()
	if err != nil {
		return false, err
	}
	hs, p, err := tensorHandles(inputs)
	if err != nil {
		return false, err
	}
	var used C.int
	err = errFrom("forward", C.gpt_module_check_forward(h, p, C.int(len(hs)), C.int(pass), &used))
	runtime.KeepAlive(m)
	runtime.KeepAlive(inputs)
	return used != 0, err
}

// ForwardAll runs forward on the inputs and gives every tensor of the
// result in path order (see ir.OutputInfo), with the result's structure and
// which tensor Settings.Output selects. The caller closes the tensors.
func (m *Module) ForwardAll(noGrad bool, inputs ...*Tensor) ([]*Tensor, *ir.OutputInfo, error) {
	h, err := m.handle()
	if err != nil {
		return nil, nil, err
	}
	hs, p, err := tensorHandles(inputs)
	if err != nil {
		return nil, nil, err
	}
	var outs *C.gpt_tensor
	var n C.int
	var info *C.char
	err = errFrom("forward", C.gpt_module_forward_all(h, p, C.int(len(hs)), cbool(noGrad), &outs, &n, &info))
	runtime.KeepAlive(m)
	runtime.KeepAlive(inputs)
	if err != nil {
		return nil, nil, err
	}
	ts := make([]*Tensor, int(n))
	for i, th := range unsafe.Slice(outs, int(n)) {
		ts[i] = newTensor(th)
	}
	C.gpt_free(unsafe.Pointer(outs))
	oi, err := ir.ParseOutputInfo([]byte(takeString(info)))
	if err != nil {
		for _, t := range ts {
			t.Close()
		}
		return nil, nil, err
	}
	return ts, oi, nil
}

func (m *Module) names(buffers bool) ([]string, error) {
	return m.lines("names", func(h C.gpt_module, p **C.char) C.gpt_err { return C.gpt_module_names(h, cbool(buffers), p) })
}

// ObjectTypes lists the qualified type names of the objects other than
// modules that the module's attributes hold: custom classes such as
// XNNPACK's prepacked convs (optimize_for_mobile) or quantized packed
// weights, sorted and unique.
func (m *Module) ObjectTypes() ([]string, error) {
	return m.lines("object_types", func(h C.gpt_module, p **C.char) C.gpt_err { return C.gpt_module_object_types(h, p) })
}

// lines runs a bridge call that returns newline-separated names.
func (m *Module) lines(call string, f func(C.gpt_module, **C.char) C.gpt_err) ([]string, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	var p *C.char
	err = errFrom(call, f(h, &p))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	s := strings.TrimRight(takeString(p), "\n")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\n"), nil
}

// ParameterNames lists the dotted names of all parameters.
func (m *Module) ParameterNames() ([]string, error) { return m.names(false) }

// BufferNames lists the dotted names of all buffers.
func (m *Module) BufferNames() ([]string, error) { return m.names(true) }

// EditFloat32s replaces the values of a float32 parameter or buffer by
// what edit makes of a copy of them (shape unchanged), on the module's
// device: a read, change and write back for the few tensors that are
// changed by value rather than cut.
func (m *Module) EditFloat32s(name string, edit func(shape []int64, vals []float32) error) error {
	t, err := m.Get(name)
	if err != nil {
		return err
	}
	defer t.Close()
	shape, err := t.Shape()
	if err != nil {
		return err
	}
	vals, err := t.Float32s()
	if err != nil {
		return err
	}
	if err := edit(shape, vals); err != nil {
		return err
	}
	nt, err := FromFloat32(vals, shape, m.Device())
	if err != nil {
		return err
	}
	defer nt.Close()
	return m.Set(name, nt)
}

// Get returns a parameter or buffer by dotted name. The tensor shares
// storage with the module.
func (m *Module) Get(name string) (*Tensor, error) {
	return m.tensor("get", name, func(h C.gpt_module, n *C.char, out *C.gpt_tensor) C.gpt_err {
		return C.gpt_module_get(h, n, out)
	})
}

// Read is Get for reading only: the tensor's values, which may be a copy
// when its bytes wait in the model file since a shape-only pass (they go on
// waiting, where Get reads them back into the module). Writes to the result
// need not reach the module.
func (m *Module) Read(name string) (*Tensor, error) {
	return m.tensor("read", name, func(h C.gpt_module, n *C.char, out *C.gpt_tensor) C.gpt_err {
		return C.gpt_module_read(h, n, out)
	})
}

// tensor makes the bridge call that looks up a tensor by name.
func (m *Module) tensor(what, name string, call func(C.gpt_module, *C.char, *C.gpt_tensor) C.gpt_err) (*Tensor, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	cn := cstr(name)
	defer freeC(cn)
	var out C.gpt_tensor
	err = errFrom(what+" "+name, call(h, cn, &out))
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return newTensor(out), nil
}

// Set replaces a parameter or buffer with a copy of t, whatever its shape.
func (m *Module) Set(name string, t *Tensor) error {
	h, err := m.handle()
	if err != nil {
		return err
	}
	ht, err := t.handle()
	if err != nil {
		return err
	}
	cn := cstr(name)
	defer freeC(cn)
	err = errFrom("set "+name, C.gpt_module_set(h, cn, ht))
	runtime.KeepAlive(m)
	runtime.KeepAlive(t)
	return err
}

// Slice says which indices of each dimension of one tensor to keep.
type Slice struct {
	Tensor string
	Keep   map[int][]int // dim -> ascending kept indices
}

// Prune applies channel surgery in one call: every tensor is index-selected
// along its dims, in place, then every conv in groups gets its new groups
// count. The module is unchanged when any slice is invalid. An error once
// the cut has begun (memory ran out) leaves it half cut: Prune then closes
// it, so that no later call can run it.
func (m *Module) Prune(edits []Slice, groups map[string]int64) error {
	_, err := m.prune(edits, groups)
	return err
}

// prune is Prune, also saying how many tensors were cut within their own
// storage (the rest were copied: something besides the module held them).
func (m *Module) prune(edits []Slice, groups map[string]int64) (inPlace int, err error) {
	h, err := m.handle()
	if err != nil {
		return 0, err
	}
	names := make([]*C.char, 0, len(edits))
	defer func() {
		for _, p := range names {
			freeC(p)
		}
	}()
	off := make([]int64, 0, len(edits)+1)
	// Sized up front: a resnet50's spec is 0.9 MB, and growing it by appends
	// left as much again behind in Go's heap.
	n := 0
	for _, s := range edits {
		for _, idx := range s.Keep {
			n += 2 + len(idx)
		}
	}
	spec := make([]int64, 0, max(n, 1))
	off = append(off, 0)
	for _, s := range edits {
		names = append(names, cstr(s.Tensor))
		dims := make([]int, 0, len(s.Keep))
		for d := range s.Keep {
			dims = append(dims, d)
		}
		slices.Sort(dims)
		for _, d := range dims {
			idx := s.Keep[d]
			spec = append(spec, int64(d), int64(len(idx)))
			for _, i := range idx {
				spec = append(spec, int64(i))
			}
		}
		off = append(off, int64(len(spec)))
	}
	convNames := make([]*C.char, 0, len(groups))
	defer func() {
		for _, p := range convNames {
			freeC(p)
		}
	}()
	var gv []int64
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		convNames = append(convNames, cstr(k))
		gv = append(gv, groups[k])
	}
	if len(spec) == 0 {
		spec = append(spec, 0)
	}
	if len(gv) == 0 {
		gv = append(gv, 0)
	}
	var changed, inPlaceC C.int
	err = errFrom("prune", C.gpt_module_prune(h, C.int(len(edits)), cStrings(names),
		(*C.int64_t)(unsafe.Pointer(&off[0])), (*C.int64_t)(unsafe.Pointer(&spec[0])),
		C.int(len(keys)), cStrings(convNames), (*C.int64_t)(unsafe.Pointer(&gv[0])), &changed, &inPlaceC))
	runtime.KeepAlive(m)
	runtime.KeepAlive(off)
	runtime.KeepAlive(spec)
	runtime.KeepAlive(gv)
	if err != nil && changed != 0 {
		m.Close()
		return 0, fmt.Errorf("%w (the module was half cut and is closed)", err)
	}
	return int(inPlaceC), err
}

// cStrings passes a Go slice of C strings to C as a char** (nil when
// empty). The slice holds C pointers only, which cgo allows.
func cStrings(ps []*C.char) **C.char {
	if len(ps) == 0 {
		return nil
	}
	return &ps[0]
}

// ExportIR traces forward once on the inputs (eval mode, no grad) and returns
// the executed ops as "gopruner-ir/1" JSON (package internal/core/ir parses it).
// It traces as PassAuto: the shape-only trace records the same graph.
func (m *Module) ExportIR(inputs ...*Tensor) ([]byte, error) {
	js, _, err := m.ExportIRPass(PassAuto, inputs...)
	return js, err
}

// ExportIRPass is ExportIR with the pass chosen; meta says whether the
// shape-only trace made the IR.
func (m *Module) ExportIRPass(pass Pass, inputs ...*Tensor) (js []byte, meta bool, err error) {
	var used C.int
	js, err = m.exportJSON("export_ir", inputs, func(h C.gpt_module, p *C.gpt_tensor, n C.int, out **C.char) C.gpt_err {
		return C.gpt_module_export_ir(h, p, n, C.int(pass), out, &used)
	})
	return js, used != 0, err
}

// ExportIRTrain is ExportIR's trace with the module in training mode, run
// on the Meta device only (no statistic, random stream or tensor of the
// module changes); an error when that pass cannot run.
func (m *Module) ExportIRTrain(inputs ...*Tensor) ([]byte, error) {
	return m.exportJSON("export_ir_train", inputs, func(h C.gpt_module, p *C.gpt_tensor, n C.int, out **C.char) C.gpt_err {
		return C.gpt_module_export_ir_train(h, p, n, out)
	})
}

// exportJSON makes a bridge call that traces m on inputs and returns JSON.
func (m *Module) exportJSON(name string, inputs []*Tensor,
	call func(h C.gpt_module, p *C.gpt_tensor, n C.int, out **C.char) C.gpt_err) ([]byte, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	hs, p, err := tensorHandles(inputs)
	if err != nil {
		return nil, err
	}
	var out *C.char
	err = errFrom(name, call(h, p, C.int(len(hs)), &out))
	runtime.KeepAlive(m)
	runtime.KeepAlive(inputs)
	if err != nil {
		return nil, err
	}
	return []byte(takeString(out)), nil
}

// tensorHandles lists the handles of inputs for a call that takes a C array
// of tensors, with a pointer to its first element (nil when empty).
func tensorHandles(inputs []*Tensor) ([]C.gpt_tensor, *C.gpt_tensor, error) {
	hs := make([]C.gpt_tensor, len(inputs))
	for i, t := range inputs {
		h, err := t.handle()
		if err != nil {
			return nil, nil, err
		}
		hs[i] = h
	}
	if len(hs) == 0 {
		return hs, nil, nil
	}
	return hs, &hs[0], nil
}
