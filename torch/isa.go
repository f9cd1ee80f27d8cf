package torch

import "github.com/gopruner/gopruner/internal/core/device"

// channelsLastMode is gpt_set_channels_last's argument for the setting on:
// 1 (CPU and CUDA), or 2 (CUDA only) where the CPU runs oneDNN's AVX2
// kernels, whose strided 1x1 convolution corrupts the heap on channels-last
// input (device.X86ISA says why).
func channelsLastMode(on bool, isa device.X86ISA, x86 bool) int {
	switch {
	case !on:
		return 0
	case x86 && isa.AVX2Kernels():
		return 2
	}
	return 1
}
