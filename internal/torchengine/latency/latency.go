//go:build cgo

// Package latency measures forward latency: warm-up runs, then the median of
// timed runs, so the report and demo show real speed-up and not only MACs.
package latency

import (
	"fmt"
	"slices"
	"time"

	"github.com/gopruner/gopruner/internal/core/stats"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
)

// Result is one model's measurement.
type Result struct {
	Batch    int64   `json:"batch"`
	Device   string  `json:"device"`
	MedianMs float64 `json:"median_ms"`
	MinMs    float64 `json:"min_ms"`
	Runs     int     `json:"runs"`
}

// Measure times forward (eval mode, no grad) of each model on one input of
// shape (its first dimension is the batch): warmup runs, then the median of
// runs timed runs. Runs alternate between the models, so load on the
// machine slows them alike and the ratio holds.
func Measure(models []*torch.Module, shape []int64, warmup, runs int) ([]Result, error) {
	runs = max(runs, 1)
	return Stable(models, shape, warmup, runs, runs, 0)
}

// Stable is Measure with as few runs as the answer needs: after warmup, it
// times rounds (one run of each model) until every model's median over all
// rounds moved by at most tol (relative) in the last two rounds, with at
// least minRuns and at most maxRuns rounds. A quiet machine stops after
// minRuns; a noisy one pays for the runs it needs.
func Stable(models []*torch.Module, shape []int64, warmup, minRuns, maxRuns int, tol float64) ([]Result, error) {
	if len(models) == 0 {
		return nil, nil
	}
	minRuns = max(minRuns, 1)
	maxRuns = max(maxRuns, minRuns)
	for _, m := range models {
		if err := m.Train(false); err != nil {
			return nil, err
		}
	}
	x, err := model.Example(shape, models[0].Device())
	if err != nil {
		return nil, err
	}
	defer x.Close()
	times := make([][]float64, len(models))
	prev := make([][]float64, len(models)) // medians after the last rounds
	for i := 0; i < warmup+maxRuns; i++ {
		for j, m := range models {
			d, err := once(m, x)
			if err != nil {
				return nil, err
			}
			if i >= warmup {
				times[j] = append(times[j], float64(d.Microseconds())/1000)
			}
		}
		if i < warmup {
			continue
		}
		stable := true
		for j := range models {
			med := stats.Median(times[j])
			prev[j] = append(prev[j], med)
			if k := len(prev[j]); k < 3 || !within(prev[j][k-3:], med, tol) {
				stable = false
			}
		}
		if stable && i+1-warmup >= minRuns {
			break
		}
	}
	out := make([]Result, len(models))
	for j, ts := range times {
		out[j] = Result{Batch: shape[0], Device: models[j].Device().String(), MedianMs: stats.Median(ts), MinMs: slices.Min(ts), Runs: len(ts)}
	}
	return out, nil
}

func within(ms []float64, ref, tol float64) bool {
	for _, m := range ms {
		if ref <= 0 || (m-ref)/ref > tol || (ref-m)/ref > tol {
			return false
		}
	}
	return true
}

func once(m *torch.Module, x *torch.Tensor) (time.Duration, error) {
	start := time.Now()
	y, err := m.Forward(true, x)
	if err != nil {
		return 0, fmt.Errorf("forward: %w", err)
	}
	// Asynchronous devices have finished only once synchronised.
	err = torch.Synchronize(m.Device())
	y.Close()
	return time.Since(start), err
}
