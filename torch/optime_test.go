//go:build cgo

package torch

import (
	"strings"
	"testing"
)

func TestOpTime(t *testing.T) {
	conv := OpSpec{X: []int64{1, 8, 16, 16}, W: []int64{16, 8, 3, 3}, Bias: true, Stride: []int64{1, 1},
		Padding: []int64{1, 1}, Dilation: []int64{1, 1}, OutPad: []int64{0, 0}, Groups: 1}
	dw := OpSpec{X: []int64{1, 8, 16, 16}, W: []int64{8, 1, 3, 3}, Stride: []int64{2, 2},
		Padding: []int64{1, 1}, Dilation: []int64{1, 1}, OutPad: []int64{0, 0}, Groups: 8}
	tconv := OpSpec{X: []int64{1, 8, 8, 8}, W: []int64{8, 4, 2, 2}, Bias: true, Stride: []int64{2, 2},
		Padding: []int64{0, 0}, Dilation: []int64{1, 1}, OutPad: []int64{0, 0}, Transposed: true, Groups: 1}
	lin := OpSpec{Linear: true, X: []int64{2, 64}, W: []int64{10, 64}, Bias: true}
	timing := OpTiming{Warmup: 1, MinRuns: 3, MaxRuns: 50, BudgetNs: 1e6}
	for name, s := range map[string]OpSpec{"conv": conv, "depthwise": dw, "transposed": tconv, "linear": lin} {
		ts, err := OpTime(s, CPU, 1, timing)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(ts) < 3 || len(ts) > 50 {
			t.Errorf("%s: %d runs, want 3..50", name, len(ts))
		}
		for _, v := range ts {
			if !(v > 0) {
				t.Errorf("%s: run took %v ns", name, v)
			}
		}
	}
	bad := conv
	bad.W = []int64{16, 4, 3, 3} // 8 input channels, groups 1: libtorch refuses
	if _, err := OpTime(bad, CPU, 1, timing); err == nil || !strings.Contains(err.Error(), "op_time") {
		t.Errorf("mismatched weight: err %v", err)
	}
	short := conv
	short.Padding = []int64{1}
	if _, err := OpTime(short, CPU, 1, timing); err == nil {
		t.Error("padding of the wrong rank accepted")
	}
	if _, err := OpTime(conv, CPU, 1, OpTiming{MinRuns: 5, MaxRuns: 2}); err == nil {
		t.Error("max runs below min runs accepted")
	}
	if n := NumThreads(); n < 1 {
		t.Errorf("thread count %d after OpTime", n)
	}
}
