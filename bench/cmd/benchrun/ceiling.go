package main

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/core/stats"
)

// What two cart slots can gain on this machine, measured without gopruner:
// PyTorch trains the same TorchScript model with SGD, once as one process
// with two threads, and once as two one-thread processes at the same time.
// The ratio of their throughputs is the most that running two candidates
// side by side can give over one candidate with both threads, whatever
// runs them: it folds in how well libtorch's kernels use a second thread
// on this model and how much two processes slow each other down (shared
// caches, memory bandwidth, or vCPUs that are siblings on one core).

// ceilingScript trains argv[1] (input shape argv[2] as C,H,W, batch
// argv[3]) on one random batch with argv[4] threads, from the wall-clock
// time argv[5] for argv[6] seconds, in memory format argv[7]
// (channels_last or contiguous), and prints its steps per second and how
// late it started.
const ceilingScript = `import sys, time, json
import torch
model, shape, batch, threads, start, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
layout = getattr(torch, sys.argv[7] + "_format")
torch.set_num_threads(threads)
torch.manual_seed(0)
# Near gopruner's training: graph optimiser off, tensors in the layout
# gopruner gives CPU batches here (channels-last, except where oneDNN runs
# its AVX2 kernels; with the weights in it too, this model ran as fast).
torch._C._set_graph_executor_optimize(False)
m = torch.jit.load(model).to(memory_format=layout)
m.train()
x = torch.randn(batch, *[int(v) for v in shape.split(",")]).contiguous(memory_format=layout)
with torch.no_grad():
    classes = m(x).shape[1]
y = torch.randint(0, classes, (batch,))
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
for _ in range(3):
    step()
late = time.time() - start
while time.time() < start:
    time.sleep(0.002)
t = time.perf_counter()
n = 0
while time.perf_counter() - t < secs:
    step()
    n += 1
print(json.dumps({"steps_per_s": n / (time.perf_counter() - t), "late_s": max(late, 0.0)}))
`

// ceilingRep is one back-to-back pair of measurements.
type ceilingRep struct {
	OneProcess   float64    `json:"one_process_2_threads_steps_per_s"`
	TwoProcesses [2]float64 `json:"two_processes_1_thread_steps_per_s"`
	Ratio        float64    `json:"ratio"`
	LateS        float64    `json:"late_s"` // the latest start past its common start of the pair's three runs
}

// ceiling is the measurement's outcome: Median of the reps' ratios, and
// their range.
type ceiling struct {
	Reps          []ceilingRep `json:"reps"`
	Median        float64      `json:"median"`
	Min           float64      `json:"min"`
	Max           float64      `json:"max"`
	Seconds       float64      `json:"seconds_per_run"`
	Batch         int          `json:"batch"`
	Shape         string       `json:"shape"`
	LatestStartS  float64      `json:"latest_start_s"`
	ThreadsPerRun string       `json:"threads"`
	Layout        string       `json:"memory_format"` // gopruner's for CPU batches on this machine
}

// parallelCeiling measures reps pairs, each a one-process run then a
// two-process run, so that a change in the machine's speed falls on both
// halves of a pair alike.
func (b *bench) parallelCeiling(model, shape string, batch int, secs float64, reps int) (*ceiling, error) {
	// Long enough for both children to import torch and load the model
	// before the common start; a late start is recorded.
	const lead = 6 * time.Second
	c := &ceiling{Seconds: secs, Batch: batch, Shape: shape, ThreadsPerRun: "2 (one process), 1 each (two processes)", Layout: "contiguous"}
	if device.CPUChannelsLast() {
		c.Layout = "channels_last"
	}
	run := func(threads int, start time.Time) (float64, float64, error) {
		// With gopruner's malloc settings, as benchmark 3's tuned
		// reference: plain glibc unmaps and re-faults the step's buffers.
		args := append(slices.Clone(tunedMalloc), b.o.python, "-c", ceilingScript, model, shape, strconv.Itoa(batch),
			strconv.Itoa(threads), fmt.Sprintf("%.3f", float64(start.UnixMilli())/1000), fmt.Sprint(secs), c.Layout)
		var out struct {
			StepsPerS float64 `json:"steps_per_s"`
			LateS     float64 `json:"late_s"`
		}
		if _, err := b.r.runJSON(b.ctx, b.timeout(2*time.Minute), &out, args...); err != nil {
			return 0, 0, err
		}
		return out.StepsPerS, out.LateS, nil
	}
	var ratios []float64
	for range max(1, reps) {
		var r ceilingRep
		one, late, err := run(2, time.Now().Add(lead))
		if err != nil {
			return nil, err
		}
		r.OneProcess, r.LateS = one, late
		start := time.Now().Add(lead)
		var wg sync.WaitGroup
		var errs [2]error
		var lates [2]float64
		for k := range 2 {
			wg.Go(func() { r.TwoProcesses[k], lates[k], errs[k] = run(1, start) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		r.LateS = max(r.LateS, lates[0], lates[1])
		r.Ratio = (r.TwoProcesses[0] + r.TwoProcesses[1]) / r.OneProcess
		c.LatestStartS = max(c.LatestStartS, r.LateS)
		c.Reps = append(c.Reps, r)
		ratios = append(ratios, r.Ratio)
	}
	c.Median, c.Min, c.Max = stats.Median(ratios), slices.Min(ratios), slices.Max(ratios)
	return c, nil
}
