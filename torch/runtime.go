//go:build cgo

package torch

/*
#include "gptorch.h"
*/
import "C"

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/device"
)

// Version is the version of the libtorch the shim was built against.
func Version() (string, error) {
	var p *C.char
	if err := errFrom("version", C.gpt_version(&p)); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// CUDAAvailable reports whether libtorch sees a usable CUDA device.
func CUDAAvailable() bool {
	var n C.int
	if C.gpt_cuda_available(&n) != nil {
		return false
	}
	return n != 0
}

// CUDADeviceCount is the number of CUDA devices (0 without CUDA).
func CUDADeviceCount() int {
	var n C.int
	if C.gpt_cuda_device_count(&n) != nil {
		return 0
	}
	return int(n)
}

// SetNumThreads sets libtorch's intra-op thread count for the calling OS
// thread and the process default, and OpenBLAS's (see BLASThreads). Calls
// on a module without a budget of its own run at this count on any OS
// thread (until it is set, at libtorch's default).
func SetNumThreads(n int) error {
	return errFrom("set_num_threads", C.gpt_set_num_threads(C.int(n)))
}

// BLASThreads is OpenBLAS's thread count, or -1 where libtorch's BLAS is
// not OpenBLAS. Debian's libtorch multiplies matrices with OpenBLAS, whose
// thread pool ignores libtorch's thread count: SetNumThreads, and every
// call on a module with a thread budget (Module.SetThreads), set it too.
// It is one count for the whole process, so cart slots, which run with
// equal budgets, use one BLAS thread each rather than one pool between
// them.
func BLASThreads() int {
	var n C.int
	if C.gpt_get_blas_threads(&n) != nil {
		return -1
	}
	return int(n)
}

// NumThreads is libtorch's intra-op thread count.
func NumThreads() int {
	var n C.int
	if C.gpt_get_num_threads(&n) != nil {
		return 0
	}
	return int(n)
}

// ManualSeed seeds libtorch's CPU and CUDA generators.
func ManualSeed(seed uint64) error {
	return errFrom("manual_seed", C.gpt_manual_seed(C.uint64_t(seed)))
}

// Synchronize waits for the CUDA device's work to finish (no-op on CPU).
func Synchronize(d Device) error {
	if !d.IsCUDA() {
		return nil
	}
	return errFrom("cuda_synchronize", C.gpt_cuda_synchronize(C.int(d.Index)))
}

// LiveHandles reports the tensor and module handles not yet freed; leak
// tests and the leakcheck build use it.
func LiveHandles() (tensors, modules int64) {
	var t, m C.int64_t
	C.gpt_live_tensors(&t)
	C.gpt_live_modules(&m)
	return int64(t), int64(m)
}

// heapInUse is the C heap's bytes in use (-1: unknown), for the tests of
// what the shim's passes leave behind.
func heapInUse() int64 {
	var n C.int64_t
	_ = errFrom("heap_in_use", C.gpt_heap_in_use(&n))
	return int64(n)
}

// Device is where tensors live: the CPU or CUDA device Index. It is
// internal/core/device's type; device.Parse reads its spellings.
type Device = device.Device

// CPU is the host device.
var CPU = device.CPU

// CheckDevice reports an error when d names a CUDA device that does not exist.
func CheckDevice(d Device) error {
	if !d.CUDA {
		return nil
	}
	if !CUDAAvailable() {
		return fmt.Errorf("device %s: CUDA is not available (libtorch without CUDA, or no GPU)", d)
	}
	if n := CUDADeviceCount(); d.Index >= n {
		return fmt.Errorf("device %s: only %d CUDA device(s)", d, n)
	}
	return nil
}
