//go:build cgo

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
)

// TestCartProgressSettings: the log lines follow the shortlist the search
// resolved (auto is -1 in the config), and an iteration with runners-up
// marks them and prints the joint model's line.
func TestCartProgressSettings(t *testing.T) {
	cfg := config.Default()
	cfg.Cart = []config.Slot{"cpu"}
	var buf bytes.Buffer
	h := newCartProgress(cfg, &buf, false).hooks()
	cands := make([]netadapt.Candidate, 10)
	h.OnIterationStart(1, 0, cands)
	if got := buf.String(); strings.Contains(got, "screened") {
		t.Errorf("before OnSettings (shortlist auto, unresolved): %q", got)
	}
	buf.Reset()
	h.OnSettings(4, 3)
	h.OnIterationStart(2, 0, cands)
	if got := buf.String(); !strings.Contains(got, "10 candidates on 1 slot(s), screened, the best 4 fine-tuned") {
		t.Errorf("after OnSettings(4, 3): %q", got)
	}
	buf.Reset()
	rec := netadapt.IterationRecord{Iteration: 2, Group: 0, From: 16, To: 12, MACs: 1000, Accuracy: 0.9,
		Joined:     []netadapt.Cut{{Group: 2, From: 8, To: 4}},
		Candidates: []netadapt.CandidateRecord{{Group: 0, From: 16, To: 12}, {Group: 1, From: 8, To: 4}, {Group: 2, From: 8, To: 4}}}
	h.OnIteration(rec)
	out := buf.String()
	for _, want := range []string{"<- kept", "<- kept with it (commit_top)", "joint cut of 2 groups"} {
		if !strings.Contains(out, want) {
			t.Errorf("iteration table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "kept with it"); n != 1 {
		t.Errorf("%d runners-up marked, want 1:\n%s", n, out)
	}
}
