package pipeline

import (
	"slices"
	"sync"

	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
)

// candidateLog keeps each my_pruning candidate's measured outcome (standard
// error, training loss, time, slot) for summary.json. They stay out of the
// search history, which holds only what decides the search, so that the
// history of a seed is what it was before they were measured.
type candidateLog struct {
	mu      sync.Mutex
	out     map[[2]int]netadapt.Outcome // (iteration, group) → outcome
	screens map[[2]int]netadapt.Outcome // the same, of the shortlist's screens
}

// wrap returns h with the log's recording added.
func (l *candidateLog) wrap(h Hooks) Hooks {
	l.out, l.screens = map[[2]int]netadapt.Outcome{}, map[[2]int]netadapt.Outcome{}
	onDone := h.OnCandidate
	h.OnCandidate = func(o netadapt.Outcome) {
		if o.Err == nil {
			l.mu.Lock()
			m := l.out
			if o.Screen {
				m = l.screens
			}
			m[[2]int{o.Candidate.Iteration, o.Candidate.Group}] = o
			l.mu.Unlock()
		}
		if onDone != nil {
			onDone(o)
		}
	}
	return h
}

// results are rec's candidates for summary.json, with what this process
// measured of them.
func (l *candidateLog) results(rec netadapt.IterationRecord) []summary.Candidate {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]summary.Candidate, 0, len(rec.Candidates))
	for _, c := range rec.Candidates {
		sc := summary.Candidate{Group: c.Group, Layers: slices.Clone(c.Layers), From: c.From, To: c.To, MACs: c.MACs,
			Accuracy: c.Accuracy, Kept: c.Group == rec.Group, Failed: c.Failed,
			ScreenAccuracy: c.ScreenAccuracy, ScreenedOut: c.ScreenedOut}
		key := [2]int{rec.Iteration, c.Group}
		if o, ok := l.screens[key]; ok {
			sc.ScreenSeconds = o.Duration.Seconds()
			if c.ScreenedOut {
				validated(&sc, o)
			}
		}
		if o, ok := l.out[key]; ok {
			validated(&sc, o)
			sc.TrainLoss, sc.Seconds = o.TrainLoss, o.Duration.Seconds()
		}
		out = append(out, sc)
	}
	return out
}

// validated copies what o measured of the validation behind sc's accuracy,
// and where it ran.
func validated(sc *summary.Candidate, o netadapt.Outcome) {
	sc.AccuracySE, sc.Samples, sc.ValLoss, sc.ValLossSE, sc.Slot = o.StdErr(), o.Samples, o.ValLoss, o.ValLossSE, o.SlotName
}
