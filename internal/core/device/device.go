// Package device is gopruner's one notion of where tensors live: the CPU or
// a CUDA device by index, and the one parser of the spellings the config,
// the command-line flags and libtorch exchange ("cpu", "cuda", "cuda:N", and
// the old tool's bare GPU number "N").
//
// It also says which of oneDNN's x86 kernels this CPU runs, and so whether
// CPU batches may go channels-last (isa.go): torch decides its layout with
// it, and the benchmarks train their references the same way.
//
// The package is pure Go; torch uses its Device as torch.Device, and the
// config validates its `device` and `cart` keys with it.
package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Device is the CPU (the zero value) or CUDA device Index.
type Device struct {
	CUDA  bool
	Index int
}

// CPU is the host device.
var CPU = Device{}

// CUDA0 is the first GPU, what libtorch's "cuda" means on one GPU.
var CUDA0 = Device{CUDA: true}

// IsCUDA reports whether d is a CUDA device.
func (d Device) IsCUDA() bool { return d.CUDA }

// String is libtorch's spelling: "cpu" or "cuda:N".
func (d Device) String() string {
	if !d.CUDA {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(d.Index)
}

// Form is one way a device was written.
type Form int

const (
	FormCPU   Form = iota + 1 // "cpu"
	FormCUDA                  // "cuda", no index
	FormIndex                 // "cuda:N"
	FormBare                  // "N", the old tool's GPU slot
	FormEmpty                 // "", taken for the CPU
	FormGPU                   // "gpu", taken for cuda
)

// ErrSyntax is what Scan returns for a string that names no device.
var ErrSyntax = errors.New("not a device")

// Scan reads s, case-insensitively and ignoring surrounding space, as one of
// the forms; "cuda" and "gpu" are device 0. Callers decide which forms they
// accept (Parse, ParseSlot, ParseName).
func Scan(s string) (Device, Form, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "":
		return CPU, FormEmpty, nil
	case "cpu":
		return CPU, FormCPU, nil
	case "cuda":
		return CUDA0, FormCUDA, nil
	case "gpu":
		return CUDA0, FormGPU, nil
	}
	form := FormBare
	if rest, ok := strings.CutPrefix(t, "cuda:"); ok {
		t, form = rest, FormIndex
	}
	if n, err := strconv.Atoi(t); err == nil && n >= 0 {
		return Device{CUDA: true, Index: n}, form, nil
	}
	return Device{}, 0, ErrSyntax
}

// Parse accepts every form: "cpu", "" (the CPU), "cuda" and "gpu" (device
// 0), "cuda:N" and a bare "N". It is how the commands read --device.
func Parse(s string) (Device, error) {
	d, _, err := Scan(s)
	if err != nil {
		return Device{}, fmt.Errorf("device %q: want cpu, cuda or cuda:N", strings.TrimSpace(strings.ToLower(s)))
	}
	return d, nil
}

// ParseSlot accepts what the `cart` key does: "cpu", "cuda" (= cuda:0),
// "cuda:N" and "N" (= cuda:N).
func ParseSlot(s string) (Device, error) {
	d, f, err := Scan(s)
	if err != nil || f == FormEmpty || f == FormGPU {
		return Device{}, ErrSyntax
	}
	return d, nil
}

// ParseName accepts what the `device` key does, "cpu", "cuda" and "cuda:N",
// and returns the canonical spelling. It keeps "cuda" without an index
// because libtorch gives it its own meaning (the current device).
func ParseName(s string) (string, error) {
	d, f, err := Scan(s)
	switch {
	case err != nil:
		return "", err
	case f == FormCUDA:
		return "cuda", nil
	case f == FormCPU || f == FormIndex:
		return d.String(), nil
	}
	return "", ErrSyntax
}
