//go:build cgo

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/kinds"

	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/pipeline"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// cartProgress shows the search: on a terminal one bar per cart worker
// (candidates it finished this iteration, and what it runs now); otherwise
// log lines. After each iteration it prints the candidate table with the
// winner marked.
type cartProgress struct {
	w     io.Writer
	slots []string
	tty   bool

	mu      sync.Mutex
	p       *mpb.Progress
	bars    []*mpb.Bar
	current []string // what each slot runs now, read by the bars' decorators
	// outs are this iteration's outcomes by group, for the noise and cost
	// columns of the candidate table (the history holds only accuracies).
	outs map[int]netadapt.Outcome
	// latency: the search's cost is predicted latency in ns (target:
	// latency), not MACs.
	latency bool
	// shortlist is the search's shortlist (cfg.Shortlist, auto resolved
	// by OnSettings): an iteration with more candidates runs a screen of
	// each before the shortlist's full evaluations.
	shortlist int
}

// costName and cost label and format the search's cost model.
func (cp *cartProgress) costName() string {
	if cp.latency {
		return "pred. latency"
	}
	return "MACs"
}

func (cp *cartProgress) cost(v int64) string {
	if cp.latency {
		return fmt.Sprintf("%.3f ms", float64(v)/1e6)
	}
	return summary.Human(v)
}

func progressHooks(cfg *config.Config) pipeline.Hooks {
	return newCartProgress(cfg, os.Stderr, isTerminal(os.Stderr)).hooks()
}

func newCartProgress(cfg *config.Config, w io.Writer, tty bool) *cartProgress {
	slots := make([]string, len(cfg.Cart))
	for i, s := range cfg.Cart {
		slots[i] = string(s)
	}
	return &cartProgress{w: w, slots: slots, tty: tty, current: make([]string, len(slots)),
		latency: cfg.Target == kinds.TargetLatency, shortlist: cfg.Shortlist}
}

func (cp *cartProgress) hooks() pipeline.Hooks {
	return pipeline.Hooks{
		OnIterationStart: cp.iterationStart,
		OnCandidateStart: cp.candidateStart,
		OnCandidate:      cp.candidateDone,
		OnIteration:      cp.iterationDone,
		OnSettings: func(shortlist, _ int) {
			cp.mu.Lock()
			cp.shortlist = shortlist
			cp.mu.Unlock()
		},
	}
}

func candName(c netadapt.Candidate) string {
	return fmt.Sprintf("%s %d→%d", strings.Join(c.Layers, ","), c.From, c.To)
}

func (cp *cartProgress) iterationStart(iter int, _ int64, cands []netadapt.Candidate) {
	cp.mu.Lock()
	cp.outs = map[int]netadapt.Outcome{}
	cp.mu.Unlock()
	runs := len(cands)
	if cp.shortlist > 0 && runs > cp.shortlist {
		runs += cp.shortlist
	}
	if !cp.tty {
		if runs > len(cands) {
			fmt.Fprintf(cp.w, "iteration %d: %d candidates on %d slot(s), screened, the best %d fine-tuned\n", iter, len(cands), len(cp.slots), cp.shortlist)
			return
		}
		fmt.Fprintf(cp.w, "iteration %d: %d candidates on %d slot(s)\n", iter, len(cands), len(cp.slots))
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.p = mpb.New(mpb.WithOutput(cp.w), mpb.WithWidth(24))
	cp.bars = cp.bars[:0]
	for i, s := range cp.slots {
		i := i
		cp.current[i] = ""
		cp.bars = append(cp.bars, cp.p.AddBar(int64(runs),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("iter %d slot %d (%s) ", iter, i, s)), decor.CountersNoUnit("%d")),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				cp.mu.Lock()
				defer cp.mu.Unlock()
				return cp.current[i]
			}))))
	}
}

func (cp *cartProgress) candidateStart(slot int, c netadapt.Candidate) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if slot >= 0 && slot < len(cp.current) {
		cp.current[slot] = candName(c)
	}
}

func (cp *cartProgress) candidateDone(o netadapt.Outcome) {
	cp.mu.Lock()
	if cp.outs != nil && o.Err == nil {
		if prev, ok := cp.outs[o.Candidate.Group]; !o.Screen || !ok || prev.Screen {
			cp.outs[o.Candidate.Group] = o
		}
	}
	cp.mu.Unlock()
	if !cp.tty {
		what := ""
		if o.Screen {
			what = "screen "
		}
		if o.Err != nil {
			fmt.Fprintf(cp.w, "  %s: %s%s  FAILED: %v\n", ranOn(o), what, candName(o.Candidate), o.Err)
			return
		}
		fmt.Fprintf(cp.w, "  %s: %s%s  %s %s  acc %.4f%s  %.1fs\n", ranOn(o), what, candName(o.Candidate), cp.costName(),
			cp.cost(o.Candidate.MACs), o.Accuracy, plusMinus(o), o.Duration.Seconds())
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if o.Slot >= 0 && o.Slot < len(cp.bars) {
		cp.bars[o.Slot].Increment()
		cp.current[o.Slot] = ""
	}
}

func (cp *cartProgress) iterationDone(rec netadapt.IterationRecord) {
	cp.mu.Lock()
	if cp.p != nil {
		for _, b := range cp.bars {
			b.SetTotal(-1, true)
		}
		p := cp.p
		cp.p = nil
		cp.mu.Unlock()
		p.Wait()
	} else {
		cp.mu.Unlock()
	}
	cp.mu.Lock()
	outs := cp.outs
	cp.mu.Unlock()
	tw := tabwriter.NewWriter(cp.w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "iteration %d\tlayers\tchannels\t%s\taccuracy\tran on\t\n", rec.Iteration, cp.costName())
	joined := map[int]bool{}
	for _, c := range rec.Joined {
		joined[c.Group] = true
	}
	for _, c := range rec.Candidates {
		mark := ""
		if c.Group == rec.Group {
			mark = "  <- kept"
			if rec.TieBroken {
				mark += " (tie-break: within one SE of the best)"
			}
		}
		if joined[c.Group] {
			mark = "  <- kept with it (commit_top)"
		}
		acc := fmt.Sprintf("%.4f%s", c.Accuracy, plusMinus(outs[c.Group]))
		if c.Failed != "" {
			acc = "failed"
		}
		if c.ScreenedOut {
			mark = "  screened out (accuracy before fine-tuning)"
		}
		where := ""
		if o, ok := outs[c.Group]; ok {
			where = ranOn(o)
		}
		fmt.Fprintf(tw, "  group %d\t%s\t%d -> %d\t%s\t%s\t%s%s\t\n", c.Group, strings.Join(c.Layers, ","), c.From, c.To,
			cp.cost(c.MACs), acc, where, mark)
	}
	if len(rec.Joined) > 0 {
		fmt.Fprintf(tw, "  joint cut of %d groups\t\t\t%s\t%.4f\t\t\n", len(rec.Joined)+1, cp.cost(rec.MACs), rec.Accuracy)
	}
	tw.Flush()
}

// ranOn is where a candidate ran: its broker worker (host:pid/slot) when
// it went through one, else its cart slot.
func ranOn(o netadapt.Outcome) string {
	if o.Worker != "" {
		return "worker " + o.Worker
	}
	return fmt.Sprintf("slot %d (%s)", o.Slot, o.SlotName)
}

// plusMinus is " ±SE" of an outcome's accuracy, or "" when the sample
// count is unknown.
func plusMinus(o netadapt.Outcome) string {
	if se := o.StdErr(); se > 0 {
		return fmt.Sprintf(" ±%.4f", se)
	}
	return ""
}
