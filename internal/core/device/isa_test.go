package device

import "testing"

func TestAVX2Kernels(t *testing.T) {
	for _, c := range []struct {
		isa  X86ISA
		want bool
	}{
		{X86ISA{AVX2: true}, true},                                    // Zen 3: AVX2, no AVX-512
		{X86ISA{AVX2: true, AVX512: true}, false},                     // AVX-512 kernels
		{X86ISA{AVX2: true, AVX512: true, MaxISA: "avx2"}, true},      // capped at AVX2
		{X86ISA{AVX2: true, AVX512: true, MaxISA: "AVX2_VNNI"}, true}, // an AVX2 variant
		{X86ISA{AVX2: true, MaxISA: "AVX"}, false},                    // capped below AVX2
		{X86ISA{AVX2: true, MaxISA: "SSE41"}, false},
		{X86ISA{AVX2: true, MaxISA: "AVX512_CORE"}, true}, // a cap the CPU cannot reach
		{X86ISA{}, false}, // no AVX2
	} {
		if got := c.isa.AVX2Kernels(); got != c.want {
			t.Errorf("%+v.AVX2Kernels() = %v, want %v", c.isa, got, c.want)
		}
	}
}
