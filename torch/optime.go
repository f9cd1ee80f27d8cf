//go:build cgo

package torch

/*
#include <stdlib.h>
#include "gptorch.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// OpSpec is one conv or linear layer to time alone (OpTime).
type OpSpec struct {
	Linear bool    // at::linear; otherwise at::convolution
	X, W   []int64 // input and weight shapes
	Bias   bool
	// Conv only: one entry per spatial dim each.
	Stride, Padding, Dilation, OutPad []int64
	Transposed                        bool
	Groups                            int64
}

// OpTiming bounds one OpTime call: warm-up runs, then at least MinRuns and
// at most MaxRuns timed runs, stopping once Budget nanoseconds are spent.
type OpTiming struct {
	Warmup, MinRuns, MaxRuns int
	BudgetNs                 int64
}

// OpTime times s alone on random inputs on dev with threads intra-op
// threads (0: the current setting) and returns every timed run in
// nanoseconds.
func OpTime(s OpSpec, dev Device, threads int, t OpTiming) ([]float64, error) {
	if t.MinRuns < 1 || t.MaxRuns < t.MinRuns {
		return nil, fmt.Errorf("op_time: runs %d..%d", t.MinRuns, t.MaxRuns)
	}
	if len(s.X) == 0 || len(s.W) == 0 {
		return nil, fmt.Errorf("op_time: empty shape")
	}
	kind, nsp := 0, len(s.Stride)
	if s.Linear {
		kind, nsp = 1, 0
	} else if len(s.Padding) != nsp || len(s.Dilation) != nsp || len(s.OutPad) != nsp || nsp == 0 {
		return nil, fmt.Errorf("op_time: conv needs stride, padding, dilation and output padding per spatial dim")
	}
	// C reads every array through a pointer to its first element: pad the
	// empty ones so the pointers stay valid.
	pad := func(v []int64) []int64 {
		if len(v) == 0 {
			return []int64{0}
		}
		return v
	}
	st, pd, dl, op := pad(s.Stride), pad(s.Padding), pad(s.Dilation), pad(s.OutPad)
	times := make([]float64, t.MaxRuns)
	var n C.int
	cdev := C.CString(dev.String())
	defer C.free(unsafe.Pointer(cdev))
	b2i := func(b bool) C.int {
		if b {
			return 1
		}
		return 0
	}
	xs, xn := cShape(s.X)
	ws, wn := cShape(s.W)
	err := errFrom("op_time", C.gpt_op_time(C.int(kind), xs, xn, ws, wn, b2i(s.Bias),
		(*C.int64_t)(unsafe.Pointer(&st[0])), (*C.int64_t)(unsafe.Pointer(&pd[0])),
		(*C.int64_t)(unsafe.Pointer(&dl[0])), (*C.int64_t)(unsafe.Pointer(&op[0])), C.int(nsp),
		b2i(s.Transposed), C.int64_t(max(s.Groups, 1)), cdev, C.int(threads), C.int(t.Warmup),
		C.int(t.MinRuns), C.int(t.MaxRuns), C.int64_t(t.BudgetNs),
		(*C.double)(unsafe.Pointer(&times[0])), &n))
	if err != nil {
		return nil, err
	}
	return times[:int(n)], nil
}
