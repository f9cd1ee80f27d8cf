//go:build cgo

package torch

import (
	"testing"

	"github.com/gopruner/gopruner/internal/core/device"
)

func TestChannelsLastMode(t *testing.T) {
	zen3 := device.X86ISA{AVX2: true}
	skx := device.X86ISA{AVX2: true, AVX512: true}
	for _, c := range []struct {
		on   bool
		isa  device.X86ISA
		x86  bool
		want int
	}{
		{false, zen3, true, 0},
		{true, zen3, true, 2},  // AVX2 kernels: CPU batches NCHW
		{true, skx, true, 1},   // AVX-512 kernels
		{true, zen3, false, 1}, // not x86
	} {
		if got := channelsLastMode(c.on, c.isa, c.x86); got != c.want {
			t.Errorf("channelsLastMode(%v, %+v, x86 %v) = %d, want %d", c.on, c.isa, c.x86, got, c.want)
		}
	}
}
