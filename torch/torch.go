//go:build cgo

// Package torch is gopruner's Go binding to libtorch, through the C ABI in
// cgo/gptorch.h (built into lib/libgptorch.so by `make shim`). It holds no
// pruning logic.
//
// Ownership: every Tensor, Module and Optimizer owns a libtorch handle and
// must be closed with Close (idempotent and nil-safe). A runtime cleanup
// frees handles that were dropped without Close, but only as a safety net:
// GC timing is no memory policy. Scope collects the temporaries of a step so
// one deferred call frees them all.
//
// Because the cleanup frees the handle once its Go owner is unreachable,
// every call that hands a handle to C keeps the owner reachable until C
// returns: the pattern is `h, err := x.handle()`, the C call, then
// runtime.KeepAlive(x) (or keepAlive for several). Without it the compiler
// may treat x as dead as soon as h is loaded, and a caller that dropped its
// last reference (relying on the safety net) could see the handle freed in
// the middle of the call. TestNoFreeDuringCall checks this under GOGC=1.
//
// Goroutines: a Tensor or Optimizer may be used from any goroutine, but never
// from two at once. A Module must be used by one goroutine at a time; cart
// workers each own their own Module (see Module.Clone). Calls do not depend
// on the OS thread they run on, except NoGrad, which pins its goroutine.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/../cgo
#cgo LDFLAGS: -L${SRCDIR}/../lib -lgptorch -Wl,-rpath,${SRCDIR}/../lib
#include <stdlib.h>
#include "gptorch.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// Error is an error raised by libtorch (any C++ exception in the shim).
type Error struct {
	Op  string // the bridge call, e.g. "load"
	Msg string // libtorch's message, condensed to its core
}

func (e *Error) Error() string { return e.Op + ": " + e.Msg }

// errFrom converts a gpt_err into a Go error and frees it.
func errFrom(op string, e C.gpt_err) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.gpt_free(unsafe.Pointer(e))
	return &Error{Op: op, Msg: condense(msg)}
}

// condense turns libtorch's multi-line messages (TorchScript tracebacks,
// "Exception raised from ..." trailers) into the line that says what went
// wrong, so CLI errors stay on one line; a traceback leaves the exception
// and the layer that raised it.
func condense(msg string) string {
	msg = strings.TrimSpace(fail.TorchScript(msg))
	if i := strings.LastIndex(msg, "RuntimeError: "); i >= 0 {
		msg = msg[i+len("RuntimeError: "):]
	}
	if i := strings.Index(msg, "Exception raised from"); i > 0 {
		msg = msg[:i]
	}
	lines := strings.Split(msg, "\n")
	var keep []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "frame #") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, " ")
}

// ErrClosed is returned by calls on a closed handle.
var ErrClosed = errors.New("torch: use of closed handle")

func cstr(s string) *C.char { return C.CString(s) }

func freeC(p *C.char) { C.free(unsafe.Pointer(p)) }

func takeString(p *C.char) string {
	s := C.GoString(p)
	C.gpt_free(unsafe.Pointer(p))
	return s
}

// cleanupHook is nil outside tests. A test sets it to watch the safety-net
// cleanups: it sees each handle a cleanup is about to free and may veto the
// free (the test then reports the use-after-free it would have been).
var cleanupHook atomic.Pointer[func(h unsafe.Pointer) bool]

func cleanupMayFree(h unsafe.Pointer) bool {
	f := cleanupHook.Load()
	return f == nil || (*f)(h)
}

// keepAlive keeps each handle owner reachable up to this point; call it
// after the C call that used their handles.
func keepAlive(owners ...any) {
	for _, o := range owners {
		runtime.KeepAlive(o)
	}
}
