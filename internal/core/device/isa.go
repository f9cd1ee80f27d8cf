package device

import (
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/cpu"
)

// oneDNN's AVX2 1x1 convolution (jit_1x1:avx2), which libtorch runs on an
// x86 CPU with AVX2 and without AVX-512, computes the weight gradient of a
// strided 1x1 convolution of a channels-last input with fewer than 8 input
// channels in a workspace it writes past (oneDNN issue #6035, open). A
// pruned ResNet's downsample is such a convolution: the demo search died of
// heap corruption ("corrupted size vs. prev_size", in convolution_backward)
// on an AMD EPYC (Zen 3, AVX2) at `--threads 1`; at 2 threads it ran to
// the end, and the issue reports hangs and wrong gradients there. NCHW
// batches take oneDNN's blocked path, which is right (and on that CPU the
// faster: the demo search 15.2 s against 19.8 s channels-last at 2
// threads, 22.6 s at 1 thread where channels-last crashed), so on such a
// CPU the steps feed NCHW: only CUDA gets channels-last.

// X86ISA is what decides which of oneDNN's x86 kernels run.
type X86ISA struct {
	AVX2, AVX512 bool // AVX-512: F, BW, VL and DQ, oneDNN's avx512_core
	// MaxISA is ONEDNN_MAX_CPU_ISA (or the older DNNL_MAX_CPU_ISA), which
	// caps the kernels oneDNN picks: "AVX2" makes an AVX-512 CPU run the
	// AVX2 ones.
	MaxISA string
}

// HostX86ISA is this machine's, and false off x86.
func HostX86ISA() (X86ISA, bool) {
	if runtime.GOARCH != "amd64" {
		return X86ISA{}, false
	}
	max := os.Getenv("ONEDNN_MAX_CPU_ISA")
	if max == "" {
		max = os.Getenv("DNNL_MAX_CPU_ISA")
	}
	return X86ISA{AVX2: cpu.X86.HasAVX2,
		AVX512: cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ,
		MaxISA: max}, true
}

// AVX2Kernels says whether oneDNN runs its AVX2 kernels on an x86 CPU
// with isa: the best it has, or a cap at AVX2.
func (isa X86ISA) AVX2Kernels() bool {
	max := strings.ToUpper(isa.MaxISA)
	switch {
	case !isa.AVX2:
		return false
	case strings.HasPrefix(max, "AVX2"):
		return true
	case max == "SSE41" || max == "AVX":
		return false
	}
	return !isa.AVX512 // no cap, or one above what the CPU has
}

// CPUChannelsLast says whether CPU batches go channels-last on this
// machine when the setting is on: everywhere but where oneDNN runs its
// AVX2 kernels. The benchmarks ask it, to train their references the way
// gopruner trains.
func CPUChannelsLast() bool {
	isa, x86 := HostX86ISA()
	return !(x86 && isa.AVX2Kernels())
}
