package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// 7. my_pruning's per-candidate cost: where a candidate's time goes
// (summary.json timings.candidates) and one iteration's wall time at 1 and
// 2 cpu cart slots, run alternately so that load on the machine falls on
// both alike.

func (b *bench) candidates(s *section) error {
	ds, err := b.mnistData()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.o.out, "search"), 0o755); err != nil {
		return err
	}
	start := b.searchStart()
	// P below one step: the search stops after its first iteration, which
	// is the same at 1 and 2 slots (same candidates, same cuts).
	p := b.o.searchDelta / 2
	reps := max(1, b.o.pruneReps)
	runs := map[string][]*searchRun{}
	for rep := range reps {
		for _, cart := range []string{"cpu", "cpu,cpu"} {
			name := fmt.Sprintf("candidates_%s_%d", strings.ReplaceAll(cart, ",", "_"), rep)
			r, err := b.myPruning(name, start, ds, p, cart, 0)
			if err != nil {
				return fmt.Errorf("cart %s: %w", cart, err)
			}
			runs[cart] = append(runs[cart], r)
		}
	}
	// The same iteration of a model whose matrix products weigh: libtorch
	// runs those on its BLAS (OpenBLAS in Debian's build), with a thread
	// pool of its own.
	mnist := map[string][]*searchRun{}
	for rep := range reps {
		for _, cart := range []string{"cpu", "cpu,cpu"} {
			name := fmt.Sprintf("candidates_mnistnet_%s_%d", strings.ReplaceAll(cart, ",", "_"), rep)
			r, err := b.myPruning(name, b.fixture("mnistnet"), ds, p, cart, 0)
			if err != nil {
				return fmt.Errorf("mnistnet, cart %s: %w", cart, err)
			}
			mnist[cart] = append(mnist[cart], r)
		}
	}
	// The machine's own ceiling for two slots, measured right after.
	ce, err := b.parallelCeiling(start, "1,28,28", 64, 5, 3)
	if err != nil {
		return fmt.Errorf("parallel ceiling: %w", err)
	}
	s.Data = struct {
		Runs     map[string][]*searchRun `json:"runs"`
		Mnistnet map[string][]*searchRun `json:"mnistnet"`
		Ceiling  *ceiling                `json:"ceiling"`
	}{runs, mnist, ce}
	fastest := func(rs []*searchRun) *searchRun {
		best := rs[0]
		for _, r := range rs[1:] {
			if first(r.IterationS) < first(best.IterationS) {
				best = r
			}
		}
		return best
	}
	one, two := fastest(runs["cpu"]), fastest(runs["cpu,cpu"])

	t := s.addTable(fmt.Sprintf("one NetAdapt iteration of the demo CNN (delta_crop %.2f, step %s, %d short-term steps per candidate, %d val images, TaylorFOWeight scores on 10 batches), the fastest of %d alternating runs per cart; summary.json timings.candidates, per candidate run",
		b.o.searchDelta, b.o.searchStep, b.o.searchShort, b.o.valN, reps),
		"cart", "threads per slot", "candidates", "iteration wall", "load", "surgery", "BatchNorm re-estimation compute", "BatchNorm re-estimation other", "fine-tune compute", "fine-tune other", "eval compute", "eval other", "overhead share", "scoring (serial)", "commit (serial)", "speed-up")
	row := func(cart string, threads int, r *searchRun, speedup string) (overhead float64) {
		c := r.Summary.Timings.Candidates
		if c == nil || c.Runs == 0 {
			t.add(cart, fmt.Sprint(threads), "no timings.candidates in summary.json")
			return math.NaN()
		}
		n := float64(c.Runs)
		ms := func(v float64) string { return fmt.Sprintf("%.1f ms", v/n) }
		// The BatchNorm re-estimation batches are forward passes (training
		// mode, no autograd): compute, like the fine-tune's and the
		// validation's; only their batch assembly is overhead.
		compute := c.FineTuneComputeMs + c.EvalComputeMs + c.BNComputeMs
		overhead = (c.TotalMs - compute) / c.TotalMs
		t.add(cart, fmt.Sprint(threads), fmt.Sprint(c.Runs), secStr(first(r.IterationS)),
			ms(c.LoadMs), ms(c.SurgeryMs), ms(c.BNComputeMs), ms(c.BNMs-c.BNComputeMs), ms(c.FineTuneComputeMs), ms(c.FineTuneMs-c.FineTuneComputeMs),
			ms(c.EvalComputeMs), ms(c.EvalMs-c.EvalComputeMs), pct(overhead),
			fmt.Sprintf("%.0f ms", c.ScoringMs), fmt.Sprintf("%.0f ms", c.CommitMs), speedup)
		return overhead
	}
	it1, it2 := first(one.IterationS), first(two.IterationS)
	ov := row("cpu", 2, one, "1.00×")
	row("cpu,cpu", 1, two, ratio(it1/it2))
	s.note("overhead share = everything but forward/backward/optimizer time (load, surgery, batch assembly and copies, validation bookkeeping) over the candidate runs' total; the BatchNorm re-estimation's forward passes (bn_batches) count as compute, its batch assembly as overhead; scoring and commit run once per iteration while the slots wait, outside the candidate runs.")
	s.note("The 1-slot run gives its slot both threads, the 2-slot run one each; the iteration wall time is summary.json's iteration seconds (from the iteration's start to its checkpoint).")
	m1, m2 := fastest(mnist["cpu"]), fastest(mnist["cpu,cpu"])
	mt := s.addTable(fmt.Sprintf("the same iteration of mnistnet (two convolutions and fc1 3136→128, which holds 95%% of its weights: libtorch runs its products on the BLAS), the fastest of %d alternating runs per cart", reps),
		"cart", "threads per slot", "candidates", "iteration wall", "scoring (serial)", "speed-up")
	for _, r := range []struct {
		cart    string
		threads int
		run     *searchRun
	}{{"cpu", 2, m1}, {"cpu,cpu", 1, m2}} {
		scoring, cands := "", ""
		if c := r.run.Summary.Timings.Candidates; c != nil {
			scoring = fmt.Sprintf("%.0f ms", c.ScoringMs)
		}
		if its := r.run.Summary.Iterations; len(its) > 0 {
			cands = fmt.Sprint(its[0].Candidates)
		}
		mt.add(r.cart, fmt.Sprint(r.threads), cands, secStr(first(r.run.IterationS)), scoring, ratio(first(m1.IterationS)/first(r.run.IterationS)))
	}
	ct := s.addTable(fmt.Sprintf("this machine's ceiling for two slots, without gopruner: PyTorch (Python) trains the same model with SGD on one random batch of %d at %s, in %s memory format (gopruner's for CPU batches on this machine), as one process with 2 threads and, right after, as two 1-thread processes started together, %.0f s each; %d pairs",
		ce.Batch, ce.Shape, ce.Layout, ce.Seconds, len(ce.Reps)),
		"pair", "one process, 2 threads", "two processes, 1 thread each", "two / one")
	for i, r := range ce.Reps {
		ct.add(fmt.Sprint(i+1), fmt.Sprintf("%.1f steps/s", r.OneProcess),
			fmt.Sprintf("%.1f + %.1f steps/s", r.TwoProcesses[0], r.TwoProcesses[1]), ratio(r.Ratio))
	}
	s.note("two / one is the most that two candidates side by side can gain over one candidate with both threads on this machine, whoever runs them: it folds in how much a second thread speeds up one training of this model and how much two trainings slow each other down. Median %s (range %s–%s); the latest start past the common start was %.2f s.",
		ratio(ce.Median), ratio(ce.Min), ratio(ce.Max), ce.LatestStartS)
	s.Summary = &summaryRow{
		Gopruner:  fmt.Sprintf("1 iteration: %s at cart cpu, %s at cart cpu,cpu; overhead %s of a candidate", secStr(it1), secStr(it2), pct(ov)),
		Reference: fmt.Sprintf("the same iteration at one slot; this machine's own ceiling (two 1-thread PyTorch trainings of the model against one 2-thread training): %s", ratio(ce.Median)),
		Ratio:     "2-slot speed-up " + ratio(it1/it2) + "; mnistnet " + ratio(first(m1.IterationS)/first(m2.IterationS)),
		Note:      "goal: speed-up ≥ 1.6×, overhead < 10%",
	}
	return nil
}
