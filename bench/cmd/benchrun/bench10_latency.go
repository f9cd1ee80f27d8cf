package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gopruner/gopruner/internal/core/search/lut"
	"github.com/gopruner/gopruner/internal/core/summary"
)

// 10. The latency target, issue 14's third acceptance line: my_pruning
// with `target: latency` on CPU, its lookup table's prediction against the
// final model's measured latency, and its TEST accuracy against L2Norm one
// shot at the same measured latency. L2Norm cuts to a MACs target, and its
// latency does not follow MACs (a uniform cut to channel counts that the
// CPU kernels handle badly can halve the MACs and barely move the time), so
// it is run at a grid of P; every model of a seed is timed side by side in
// one process (`gopruner bench-model --compare`), and L2Norm's accuracy at
// my_pruning's latency is interpolated between the two grid points that
// bracket it. Slow (a search at ~3% of the latency per iteration), so only
// when selected: `make bench-latency`.

// latencyThreads and the batch of 1 are where the latency is measured:
// the table, the search's final check and the side-by-side timing here.
const latencyThreads = 1

// latencyRounds of latencyRuns interleaved runs time each seed's models;
// each model's latency is the lowest of its round medians.
const (
	latencyRounds = 3
	latencyRuns   = 200
)

// latencyPoint is one pruned model of a seed, timed beside the others.
type latencyPoint struct {
	Run     *qualityRun `json:"-"`
	Name    string      `json:"name"`
	P       float64     `json:"p"`
	Ms      float64     `json:"latency_ms"`
	Test10k float64     `json:"test10k_acc"`
	MACs    float64     `json:"macs_ratio"`
}

// MarshalJSON writes the NaNs of a seed that the L2Norm grid does not
// bracket (or whose errors could not be computed) as null: encoding/json
// refuses NaN, and once that failed the whole results.json.
func (s latencySeed) MarshalJSON() ([]byte, error) {
	type plain latencySeed
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		plain
		L2AtMP   *float64 `json:"l2norm_acc_at_my_pruning_latency"`
		PredMs   *float64 `json:"predicted_ms"`
		PredFull *float64 `json:"predicted_before_ms"`
		ErrPct   *float64 `json:"error_pct"`
		SpeedErr *float64 `json:"speedup_error_pct"`
		BenchErr *float64 `json:"bench_speedup_error_pct"`
	}{plain(s), num(s.L2AtMP), num(s.PredMs), num(s.PredFull), num(s.ErrPct), num(s.SpeedErr), num(s.BenchErr)})
}

// latencySeed is one seed's comparison.
type latencySeed struct {
	Seed     int            `json:"seed"`
	OrigMs   float64        `json:"original_ms"`
	MP       latencyPoint   `json:"my_pruning"`
	L2       []latencyPoint `json:"l2norm"`
	L2AtMP   float64        `json:"l2norm_acc_at_my_pruning_latency"` // NaN when not bracketed
	Bracket  [2]float64     `json:"bracket_p"`
	Faster   *latencyPoint  `json:"l2norm_no_slower,omitempty"` // the least-pruned L2Norm model at most as slow as my_pruning's
	PredMs   float64        `json:"predicted_ms"`
	PredFull float64        `json:"predicted_before_ms"`
	ErrPct   float64        `json:"error_pct"`
	SpeedErr float64        `json:"speedup_error_pct"`
	// BenchErr is the speed-up timed here (my_pruning's model against the
	// original, side by side, 3 × 200 runs) against the predicted one: the
	// prediction of the search's table whose machine state the original's
	// time here is of (Table, -1 for none: then the summary's, that of the
	// search's own final check).
	BenchErr  float64 `json:"bench_speedup_error_pct"`
	Table     int     `json:"table"`
	SearchWal float64 `json:"search_wall_s"`
}

func (b *bench) latencyTarget(s *section) error {
	ds, models, err := b.qualitySetup(b.o.latencyModels)
	if err != nil {
		return err
	}
	pl, err := strconv.ParseFloat(b.o.latencyP, 64)
	if err != nil {
		return fmt.Errorf("-latency-p: %w", err)
	}
	grid, err := parseFloats("-latency-l2-p", b.o.latencyGrid)
	if err != nil {
		return err
	}
	slices.Sort(grid)
	var all []*latencySeed
	s.Data = map[string]any{"seeds": &all, "my_pruning_args": b.o.qualityMP, "p": pl, "l2_grid": grid}
	var summaryParts []string
	allHold := true
	for _, m := range models {
		t := s.addTable(fmt.Sprintf("%s, my_pruning target latency P=%.2f (cpu, %d thread, batch 1) against L2Norm one-shot at P %v; long-term fine-tune %d epoch(s) for every run; my_pruning: %s; latencies timed side by side, %d rounds of %d interleaved runs, lowest round median",
			m.Name, pl, latencyThreads, grid, b.o.qualityLong, orDefault(b.o.qualityMP), latencyRounds, latencyRuns),
			"seed", "original", "my_pruning: latency", "predicted speed-up", "timed speed-up (error)", "search's own check: error, speed-up error", "MACs ratio", "TEST 10k acc", "L2Norm (P: latency, TEST 10k acc)", "L2Norm acc at my_pruning's latency", "margin", "least-pruned L2Norm no slower", "margin vs it")
		var margins, safeMargins, errs, own []float64
		for seed := 1; seed <= b.o.latencySeeds; seed++ {
			mp, err := b.qualityPrune(m, ds, pl, pl, seed, qualityMethodLatency)
			if err != nil {
				return err
			}
			lt := mp.Summary.LatencyTarget
			if lt == nil {
				return fmt.Errorf("%s seed %d: summary.json has no latency_target", m.Name, seed)
			}
			ls := &latencySeed{Seed: seed, PredMs: lt.PredictedAfterMs, PredFull: lt.PredictedBeforeMs, SearchWal: mp.WallS,
				ErrPct: math.NaN(), SpeedErr: math.NaN(), L2AtMP: math.NaN()}
			if lt.ErrorPct != nil {
				ls.ErrPct = *lt.ErrorPct
			}
			if lt.SpeedupErrorPct != nil {
				ls.SpeedErr = *lt.SpeedupErrorPct
			}
			ls.MP = latencyPoint{Run: mp, Name: "my_pruning", P: pl, Test10k: mp.testAcc(), MACs: mp.macsRatio()}
			for _, gp := range grid {
				q, err := b.qualityPrune(m, ds, gp, gp, seed, qualityMethodL2)
				if err != nil {
					return err
				}
				ls.L2 = append(ls.L2, latencyPoint{Run: q, Name: "L2Norm", P: gp, Test10k: q.testAcc(), MACs: q.macsRatio()})
			}
			paths := []string{m.Path, mp.Out}
			for _, p := range ls.L2 {
				paths = append(paths, p.Run.Out)
			}
			ms, err := b.timeSideBySide(paths)
			if err != nil {
				return fmt.Errorf("%s seed %d: %w", m.Name, seed, err)
			}
			ls.OrigMs, ls.MP.Ms = ms[0], ms[1]
			ls.Table = stateTable(lt.Tables, ls.OrigMs)
			if ls.Table >= 0 {
				ls.PredMs, ls.PredFull = lt.Tables[ls.Table].PredictedAfterMs, lt.Tables[ls.Table].OriginalMs
			}
			ls.BenchErr = 100 * ((ls.MP.Ms/ls.OrigMs)/(ls.PredMs/ls.PredFull) - 1)
			for i := range ls.L2 {
				ls.L2[i].Ms = ms[2+i]
			}
			ls.L2AtMP, ls.Bracket = interpolateAt(ls.L2, ls.MP.Ms)
			for i := range ls.L2 { // ascending P: the first no slower is the least pruned
				if ls.L2[i].Ms <= ls.MP.Ms {
					ls.Faster = &ls.L2[i]
					break
				}
			}
			all = append(all, ls)
			var cells []string
			for _, p := range ls.L2 {
				cells = append(cells, fmt.Sprintf("%.2f: %.3f ms, %.2f%%", p.P, p.Ms, 100*p.Test10k))
			}
			interp, margin := "not bracketed by the grid", "-"
			if !math.IsNaN(ls.L2AtMP) {
				interp = fmt.Sprintf("%.2f%% (between P %.2f and %.2f)", 100*ls.L2AtMP, ls.Bracket[0], ls.Bracket[1])
				d := 100 * (ls.MP.Test10k - ls.L2AtMP)
				margins = append(margins, d)
				margin = fmt.Sprintf("%+.2f points", d)
			}
			safe, safeMargin := "none in the grid", "-"
			if ls.Faster != nil {
				safe = fmt.Sprintf("P %.2f: %.3f ms, %.2f%%", ls.Faster.P, ls.Faster.Ms, 100*ls.Faster.Test10k)
				d := 100 * (ls.MP.Test10k - ls.Faster.Test10k)
				safeMargins = append(safeMargins, d)
				safeMargin = fmt.Sprintf("%+.2f points", d)
			}
			errs = append(errs, ls.BenchErr)
			own = append(own, ls.SpeedErr)
			t.add(fmt.Sprint(seed), fmt.Sprintf("%.3f ms", ls.OrigMs), fmt.Sprintf("%.3f ms", ls.MP.Ms),
				fmt.Sprintf("×%.3f (%.3f of %.3f ms; %s)", ls.PredMs/ls.PredFull, ls.PredMs, ls.PredFull, tableName(ls.Table, len(lt.Tables))),
				fmt.Sprintf("×%.3f (%+.1f%%)", ls.MP.Ms/ls.OrigMs, ls.BenchErr),
				fmt.Sprintf("%+.1f%%, %+.1f%%", ls.ErrPct, ls.SpeedErr), fmt.Sprintf("%.3f", ls.MP.MACs),
				fmt.Sprintf("%.2f%%", 100*ls.MP.Test10k), strings.Join(cells, "; "), interp, margin, safe, safeMargin)
		}
		errOK := true
		for _, e := range errs {
			errOK = errOK && math.Abs(e) <= 10
		}
		mu, sd := meanSD(margins)
		smu, ssd := meanSD(safeMargins)
		holds := len(margins) == b.o.latencySeeds && mu > 0
		allHold = allHold && holds && errOK
		verdict := "holds"
		if holds && mu < sd {
			verdict = "holds on average, by less than the seed-to-seed spread"
		}
		if !holds {
			verdict = "does not hold"
			if len(margins) < b.o.latencySeeds {
				verdict += fmt.Sprintf(" (%d of %d seeds bracketed by the L2Norm grid)", len(margins), b.o.latencySeeds)
			}
		}
		s.note("%s P=%.2f latency: my_pruning − L2Norm at the same measured latency (interpolated) on TEST 10k = %+.2f ± %.2f points (mean ± sd over %d seeds); %s", m.Name, pl, mu, sd, len(margins), verdict)
		s.note("%s P=%.2f latency: my_pruning − the least-pruned L2Norm grid model that is no slower = %+.2f ± %.2f points (%d seeds)", m.Name, pl, smu, ssd, len(safeMargins))
		s.note("%s P=%.2f latency: the final model's latency against the prediction, as a speed-up over the original timed side by side here (3 × %d runs each): %s; goal within ±10%%: %s. The search's own final check (2 × 60 runs, summary.json speedup_error_pct): %s",
			m.Name, pl, latencyRuns, pcts(errs), map[bool]string{true: "holds", false: "does not hold"}[errOK], pcts(own))
		summaryParts = append(summaryParts, fmt.Sprintf("%s P=%.1f latency: %+.2f ± %.2f points vs L2Norm at the same latency (%s); prediction error %s",
			m.Name, pl, mu, sd, verdict, pcts(errs)))
	}
	verdict := "every margin > 0, every prediction within 10%"
	if !allHold {
		verdict = "NOT every margin > 0 with the prediction within 10%"
	}
	s.Summary = &summaryRow{
		Gopruner:  "my_pruning target latency: " + strings.Join(summaryParts, " · "),
		Reference: fmt.Sprintf("L2Norm one-shot at P %v, same start model and long-term fine-tune, %d seeds, its accuracy interpolated at my_pruning's measured latency", grid, b.o.latencySeeds),
		Ratio:     verdict,
		Note:      "latency on cpu, 1 thread, batch 1, every model of a seed timed side by side in one process",
	}
	return nil
}

// timeSideBySide times models in one process, their runs interleaved,
// latencyRounds times, and returns each one's lowest round median (ms).
func (b *bench) timeSideBySide(paths []string) ([]float64, error) {
	best := make([]float64, len(paths))
	for i := range best {
		best[i] = math.Inf(1)
	}
	for range latencyRounds {
		rs, err := b.latencySideBySide(paths, "1,1,28,28", latencyThreads, 20, latencyRuns)
		if err != nil {
			return nil, err
		}
		for i, r := range rs {
			best[i] = min(best[i], r.MedianMs)
		}
	}
	return best, nil
}

// interpolateAt is the accuracy of the L2Norm curve (accuracy against
// measured latency) at latency ms, linear between the two grid points whose
// latencies bracket it (the pair nearest in P when several do), and the
// pair's P; NaN when no pair brackets it.
func interpolateAt(pts []latencyPoint, ms float64) (float64, [2]float64) {
	for i := range len(pts) - 1 {
		a, c := pts[i], pts[i+1] // ascending P: latency mostly descending
		lo, hi := min(a.Ms, c.Ms), max(a.Ms, c.Ms)
		if ms < lo || ms > hi {
			continue
		}
		if hi == lo {
			return (a.Test10k + c.Test10k) / 2, [2]float64{a.P, c.P}
		}
		w := (ms - a.Ms) / (c.Ms - a.Ms)
		return a.Test10k + w*(c.Test10k-a.Test10k), [2]float64{a.P, c.P}
	}
	return math.NaN(), [2]float64{}
}

func pcts(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%+.1f%%", x))
	}
	return strings.Join(s, ", ")
}

// stateTable is the index of the table (summary.json latency_target.tables)
// whose machine state origMs, the original's time here, is of (lut.State,
// as the search decides it). A speed-up holds for one machine state (the
// benchmark machine's differ by up to a fifth), so the benchmark's timing
// is compared with the prediction for the state it ran in, made before the
// search's final check, as the search's own check is.
func stateTable(tables []summary.StateTable, origMs float64) int {
	refs := make([]float64, len(tables))
	for i, t := range tables {
		refs[i] = t.OriginalMs
	}
	return lut.State(refs, origMs)
}

// tableName names the prediction's table in the benchmark's table.
func tableName(i, n int) string {
	switch {
	case i < 0:
		return "no table of this machine speed: the search's final check's"
	case n == 1:
		return "the search's table"
	}
	return fmt.Sprintf("table %d of %d, of this machine speed", i+1, n)
}
