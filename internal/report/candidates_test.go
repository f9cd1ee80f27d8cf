package report

import (
	"math"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/summary"
)

// The candidates section lists every candidate of every iteration with
// its standard error, loss, time and slot, marks the kept one (and a
// tie-break), and leaves unknown measurements as a dash.
func TestRenderCandidates(t *testing.T) {
	s := &summary.Summary{Model: "m.pt", MACsBefore: 1000, MACsAfter: 800,
		Iterations: []summary.Iteration{
			{Iteration: 1, MACs: 900, Accuracy: 0.91, TieBroken: true, Results: []summary.Candidate{
				{Group: 0, Layers: []string{"conv1"}, From: 16, To: 12, MACs: 900, Accuracy: 0.91, AccuracySE: 0.0041,
					Samples: 5000, TrainLoss: 0.3125, Seconds: 12.34, Slot: "cuda:0", Kept: true},
				{Group: 3, Layers: []string{"layer1.0.conv2"}, From: 32, To: 28, MACs: 950, Accuracy: 0.912, AccuracySE: 0.004,
					Samples: 5000, TrainLoss: 0.5, Seconds: 9.8, Slot: "cuda:1"},
			}},
			// Inherited by a resumed run: no measurements.
			{Iteration: 2, MACs: 800, Accuracy: 0.9, Results: []summary.Candidate{
				{Group: 7, From: 8, To: 4, MACs: 800, Accuracy: math.NaN(), Kept: true},
			}},
		}}
	points := []Point{{Iteration: 0, MACs: 1000, Accuracy: 0.92, Label: "original"},
		{Iteration: 1, MACs: 900, Accuracy: 0.91}, {Iteration: 2, MACs: 800, Accuracy: 0.9}}
	d := FromSummary(s, points)
	if len(points[1].Candidates) != 0 {
		t.Error("FromSummary changed the caller's points")
	}
	page := render(t, d)
	for _, want := range []string{
		`<summary>Candidates (3)</summary>`,
		`<tr class="kept"><td>1</td><td class="name">conv1 16→12 (tie-break)</td><td>900</td><td>10.00%</td><td>91.00%</td><td>±0.41</td><td>0.3125</td><td>12.3 s</td><td>cuda:0</td></tr>`,
		`<tr><td></td><td class="name">layer1.0.conv2 32→28</td><td>950</td><td>5.00%</td><td>91.20%</td><td>±0.40</td><td>0.5000</td><td>9.8 s</td><td>cuda:1</td></tr>`,
		// Iteration 2 removes from iteration 1's 900 MACs.
		`<tr class="kept"><td>2</td><td class="name">group 7 8→4</td><td>800</td><td>10.00%</td><td>—</td><td>—</td><td>—</td><td>—</td><td>—</td></tr>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// The candidates plot: one error bar per candidate with a standard
	// error (iteration 2's has none), and no plot without any.
	if !strings.Contains(page, `id="plot-candidates"`) || strings.Contains(page, "plot could not be drawn") {
		t.Error("no candidates plot")
	}
	if page := render(t, FromSummary(&summary.Summary{Model: "m.pt"}, nil)); strings.Contains(page, `id="candidates"`) ||
		strings.Contains(page, `id="plot-candidates"`) {
		t.Error("a run without candidates shows the candidates section or plot")
	}
	unmeasured := *s
	unmeasured.Iterations = unmeasured.Iterations[1:]
	if page := render(t, FromSummary(&unmeasured, points)); strings.Contains(page, `id="plot-candidates"`) {
		t.Error("candidates without standard errors get a plot")
	}
}

func TestIterTicks(t *testing.T) {
	var labels []string
	for _, tk := range (iterTicks{}).Ticks(0.5, 3.5) {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, ","); got != "1,2,3" {
		t.Errorf("ticks over 0.5..3.5: %s", got)
	}
	labelled := 0
	ts := (iterTicks{}).Ticks(0.5, 40.5)
	for _, tk := range ts {
		if tk.Label != "" {
			labelled++
		}
	}
	if len(ts) != 40 || labelled > 14 || ts[0].Label != "1" {
		t.Errorf("40 iterations: %d ticks, %d labelled, first %q", len(ts), labelled, ts[0].Label)
	}
}
