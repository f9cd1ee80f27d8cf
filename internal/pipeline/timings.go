package pipeline

import (
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/engine"
)

// timings is summary.json's record of the run's phases so far (see
// summary.Timings); `make bench` reads it there rather than from a log line.
func (r *Run) timings(base *engine.Model) *summary.Timings {
	t := &summary.Timings{PhaseMs: map[string]float64{},
		TotalMs: float64(time.Since(r.Started).Microseconds()) / 1e3, IROps: len(base.Graph.Ops)}
	for _, p := range r.phases {
		t.PhaseMs[p.name] += float64(p.d.Microseconds()) / 1e3
	}
	return t
}

// iterationClock records each my_pruning iteration's wall time, from its
// start to its checkpoint, for summary.json.
type iterationClock struct {
	mu      sync.Mutex
	start   time.Time
	seconds map[int]float64
}

// wrap returns h with the clock's recording added.
func (c *iterationClock) wrap(h Hooks) Hooks {
	c.seconds = map[int]float64{}
	onStart, onDone := h.OnIterationStart, h.OnIteration
	h.OnIterationStart = func(iter int, budget int64, cands []netadapt.Candidate) {
		c.mu.Lock()
		c.start = time.Now()
		c.mu.Unlock()
		if onStart != nil {
			onStart(iter, budget, cands)
		}
	}
	h.OnIteration = func(rec netadapt.IterationRecord) {
		c.mu.Lock()
		if !c.start.IsZero() {
			c.seconds[rec.Iteration] = time.Since(c.start).Seconds()
		}
		c.mu.Unlock()
		if onDone != nil {
			onDone(rec)
		}
	}
	return h
}

// of is iteration's seconds (0 for one a resumed run inherited).
func (c *iterationClock) of(iteration int) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seconds[iteration]
}
