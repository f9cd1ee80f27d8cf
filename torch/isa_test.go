//go:build cgo

package torch

import "testing"

func TestChannelsLastMode(t *testing.T) {
	zen3 := x86ISA{AVX2: true}
	skx := x86ISA{AVX2: true, AVX512: true}
	for _, c := range []struct {
		on   bool
		isa  x86ISA
		x86  bool
		want int
	}{
		{false, zen3, true, 0},
		{true, zen3, true, 2}, // AVX2 kernels: CPU batches NCHW
		{true, skx, true, 1},  // AVX-512 kernels
		{true, x86ISA{AVX2: true, AVX512: true, MaxISA: "avx2"}, true, 2}, // capped at AVX2
		{true, x86ISA{AVX2: true, MaxISA: "AVX"}, true, 1},                // capped below AVX2
		{true, x86ISA{AVX2: true, MaxISA: "AVX512_CORE"}, true, 2},        // a cap the CPU cannot reach
		{true, x86ISA{}, true, 1},                                         // no AVX2
		{true, zen3, false, 1},                                            // not x86
	} {
		if got := channelsLastMode(c.on, c.isa, c.x86); got != c.want {
			t.Errorf("channelsLastMode(%v, %+v, x86 %v) = %d, want %d", c.on, c.isa, c.x86, got, c.want)
		}
	}
}
