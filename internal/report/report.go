package report

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/summary"
)

// Layer is the channel count of one prunable layer before and after
// pruning: summary.json's layer row.
type Layer = summary.Layer

// Point is the state of the model after one pruning iteration.
type Point struct {
	Iteration int
	MACs      int64
	// Accuracy is a fraction in [0, 1] or a percentage; see [Data].
	Accuracy float64
	// Label says what the iteration did, e.g. the layer it pruned.
	Label string
	// Candidates are the iteration's evaluated candidates (empty when
	// unknown), shown with their noise and cost.
	Candidates []Candidate
	// TieBroken: the kept candidate won a tie-break within the noise of
	// the best score.
	TieBroken bool
}

// Candidate is one evaluated candidate of an iteration: summary.json's
// candidate_results row. Its accuracy and standard error are on the
// report's accuracy scale (see [Data]).
type Candidate = summary.Candidate

// Latency is one latency measurement of the model before and after
// pruning: summary.json's latency row.
type Latency = summary.Latency

// LatencyTarget is summary.json's latency_target.
type LatencyTarget = summary.LatencyTarget

// Data is everything a report shows. Zero values mean "unknown" and hide
// the corresponding cell, row, section or plot: zero MACs/params, nil
// accuracies, a zero Created time, empty slices.
//
// Accuracies (AccBefore, AccAfter, Point.Accuracy) are shown as
// percentages: when every finite accuracy lies in [0, 1] they are taken as
// fractions and multiplied by 100, otherwise as percentages already.
// Non-finite accuracies are treated as absent.
type Data struct {
	// Title defaults to "Pruning report".
	Title string
	// ModelPath is the input model; OutPath the pruned model written.
	ModelPath, OutPath string
	Algorithm          string
	Created            time.Time

	MACsBefore, MACsAfter     int64
	ParamsBefore, ParamsAfter int64
	AccBefore, AccAfter       *float64
	// TestAccBefore and TestAccAfter are on the test split, which the
	// search never selects by (nil: no test split).
	TestAccBefore, TestAccAfter *float64

	// Layers are listed in model order.
	Layers []Layer
	// Iterations are plotted in the order given; empty for one-shot runs.
	Iterations []Point
	Latency    []Latency
	// LatencyTarget is my_pruning's target: latency prediction against the
	// measurement (nil for other runs).
	LatencyTarget *LatencyTarget
	// Notes are free-form lines (warnings, settings) shown as a list.
	Notes []string
}

// FromSummary is the report of a run from its summary.json and the
// accuracy-over-MACs points of its iterations (nil for one-shot runs).
func FromSummary(s *summary.Summary, points []Point) Data {
	byIter := make(map[int]summary.Iteration, len(s.Iterations))
	for _, it := range s.Iterations {
		byIter[it.Iteration] = it
	}
	points = slices.Clone(points)
	for i, p := range points {
		if it, ok := byIter[p.Iteration]; ok && p.Iteration > 0 {
			points[i].Candidates, points[i].TieBroken = it.Results, it.TieBroken
		}
	}
	return Data{
		Title: "gopruner: " + filepath.Base(s.Model), ModelPath: s.Model, OutPath: s.ModelOut, Algorithm: s.Algorithm,
		Created: time.Now(), MACsBefore: s.MACsBefore, MACsAfter: s.MACsAfter, ParamsBefore: s.ParamsBefore,
		ParamsAfter: s.ParamsAfter, AccBefore: s.AccBefore, AccAfter: s.AccAfter, Iterations: points,
		TestAccBefore: s.TestAccBefore, TestAccAfter: s.TestAccAfter,
		Layers: s.Layers, Latency: s.Latency, LatencyTarget: s.LatencyTarget,
		Notes: latencyNotes(s),
	}
}

// latencyNotes says what the cost columns hold under target: latency.
func latencyNotes(s *summary.Summary) []string {
	if s.Resource != "latency" {
		return nil
	}
	return []string{"target: latency — the search's MACs columns and points hold the lookup table's predicted latency in nanoseconds, not MACs (the MACs rows of the summary are real MACs)."}
}

// Render writes the HTML report for d to w.
//
// The page is built completely in memory first, so w receives either the
// whole page or nothing (short of w's own write errors). A plot that cannot
// be drawn does not fail the call: the page shows the error in its place
// and its load check reports "fail:<id>", because a report with one broken
// plot is still more useful than no report at the end of a long run.
func Render(w io.Writer, d Data) error {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, buildPage(d)); err != nil {
		return fmt.Errorf("report: execute template: %w", err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("report: write page: %w", err)
	}
	return nil
}

// Write renders d and stores it at path. The file is replaced atomically
// (temporary file in the same directory, fsync, rename), so readers never
// see a partial report and on error nothing is left behind. The directory
// must exist.
func Write(path string, d Data) error {
	var buf bytes.Buffer
	if err := Render(&buf, d); err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	// A report is meant to be shared: 0644.
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
