//go:build cgo

package latency

import (
	"time"

	"github.com/gopruner/gopruner/internal/core/search/lut"
	"github.com/gopruner/gopruner/internal/core/stats"
	"github.com/gopruner/gopruner/torch"
)

// Op times s alone on dev with threads intra-op threads and returns the
// median run in nanoseconds: 3 warm-up runs, then at least 3 and at most
// 200 timed runs, stopping once budget is spent. A layer of a few
// microseconds gets many runs (its median is then steady against the
// timer's and the scheduler's noise); a slow one costs no more than the
// budget plus three runs.
func Op(s lut.Spec, dev torch.Device, threads int, budget time.Duration) (float64, error) {
	timing := torch.OpTiming{Warmup: 3, MinRuns: 3, MaxRuns: 200, BudgetNs: budget.Nanoseconds()}
	ts, err := torch.OpTime(torch.OpSpec{Linear: s.Linear, X: s.X, W: s.W, Bias: s.Bias, Stride: s.Stride,
		Padding: s.Padding, Dilation: s.Dilation, OutPad: s.OutPad, Transposed: s.Transposed, Groups: s.Groups},
		dev, threads, timing)
	if err != nil {
		return 0, err
	}
	return stats.Median(ts), nil
}
