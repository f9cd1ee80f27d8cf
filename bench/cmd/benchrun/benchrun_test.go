package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/summary"
)

func TestParseTimeV(t *testing.T) {
	report := `	Command being timed: "gopruner prune"
	User time (seconds): 6.25
	Elapsed (wall clock) time (h:mm:ss or m:ss): 0:10.64
	Maximum resident set size (kbytes): 569560
	Exit status: 1
`
	got := parseTimeV(report)
	if got.maxRSSKB != 569560 || got.exit != 1 {
		t.Fatalf("parseTimeV = %+v, want maxRSS 569560, exit 1", got)
	}
	if got := parseTimeV(""); got.exit != -1 || got.maxRSSKB != 0 {
		t.Fatalf("parseTimeV(\"\") = %+v", got)
	}
}

func TestLogSlope(t *testing.T) {
	x := []float64{100, 200, 400, 800}
	lin, quad := make([]float64, len(x)), make([]float64, len(x))
	for i, v := range x {
		lin[i], quad[i] = 3*v, v*v/7
	}
	if s := logSlope(x, lin); math.Abs(s-1) > 1e-9 || linearity(s) != "linear" {
		t.Errorf("linear: slope %v (%s)", s, linearity(s))
	}
	if s := logSlope(x, quad); math.Abs(s-2) > 1e-9 || linearity(s) != "super-linear" {
		t.Errorf("quadratic: slope %v (%s)", s, linearity(s))
	}
	if s := logSlope([]float64{1}, []float64{1}); !math.IsNaN(s) || linearity(s) != "n/a" {
		t.Errorf("one point: slope %v", s)
	}
}

func TestProcLastErr(t *testing.T) {
	p := &proc{Args: []string{"/bin/gopruner"}, Exit: 2, Lines: []logLine{
		{At: 1, Text: `{"level":"info","message":"prune"}`},
		{At: 2, Text: `iteration 1: 6 candidates on 1 slot(s)`},
		{At: 4, Text: `gopruner: model x.pt: no such file`},
		{At: 5, Text: `{"level":"info","message":"after"}`},
	}}
	if err := p.ok(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ok() = %v, want the gopruner: line", err)
	}
}

func TestMarkdownEscapesPipes(t *testing.T) {
	var b strings.Builder
	(&table{Header: []string{"a", "b"}, Rows: [][]string{{"x|y"}}}).markdown(&b)
	if !strings.Contains(b.String(), `x\|y`) || !strings.Contains(b.String(), "| x\\|y |  |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}

func TestInterpolateAt(t *testing.T) {
	// Ascending P; latency not monotone (a uniform cut can be slower at a
	// higher P), so the first bracketing pair in P order is used.
	pts := []latencyPoint{
		{P: 0.4, Ms: 2.0, Test10k: 0.98},
		{P: 0.5, Ms: 1.8, Test10k: 0.97},
		{P: 0.6, Ms: 1.2, Test10k: 0.95},
		{P: 0.7, Ms: 1.0, Test10k: 0.90},
	}
	cases := []struct {
		ms      float64
		want    float64
		bracket [2]float64
	}{
		{1.9, 0.975, [2]float64{0.4, 0.5}},
		{1.5, 0.96, [2]float64{0.5, 0.6}},
		{1.0, 0.90, [2]float64{0.6, 0.7}},
		{2.0, 0.98, [2]float64{0.4, 0.5}},
	}
	for _, c := range cases {
		got, br := interpolateAt(pts, c.ms)
		if math.Abs(got-c.want) > 1e-12 || br != c.bracket {
			t.Errorf("interpolateAt(%v) = %v %v, want %v %v", c.ms, got, br, c.want, c.bracket)
		}
	}
	for _, ms := range []float64{0.9, 2.1} {
		if got, _ := interpolateAt(pts, ms); !math.IsNaN(got) {
			t.Errorf("interpolateAt(%v) = %v outside the grid, want NaN", ms, got)
		}
	}
}

// Each data set keeps its own runs, so a Fashion-MNIST run never reuses
// (or overwrites) an MNIST one; an unknown data set is refused before
// anything runs.
func TestQualityData(t *testing.T) {
	for _, tc := range []struct{ data, dir, name string }{
		{qualityMNIST, "out/quality", "MNIST"},
		{qualityFashion, "out/quality-fashion-mnist", "Fashion-MNIST"},
	} {
		b := &bench{o: options{out: "out", qualityData: tc.data}}
		if got := b.qualityDir(); got != tc.dir {
			t.Errorf("%s: qualityDir %q, want %q", tc.data, got, tc.dir)
		}
		if got := b.qualityDataName(); got != tc.name {
			t.Errorf("%s: name %q, want %q", tc.data, got, tc.name)
		}
	}
	b := &bench{o: options{out: t.TempDir(), qualityData: "cifar10"}}
	if _, _, err := b.qualitySetup("resnet20"); err == nil || !strings.Contains(err.Error(), "cifar10") {
		t.Errorf("qualitySetup with -quality-data cifar10: err %v, want one naming it", err)
	}
}

// TestLatencySeedJSON: a seed the L2Norm grid does not bracket (NaN) is
// written with null there, not refused: one such seed used to lose the
// whole run's results.json.
func TestLatencySeedJSON(t *testing.T) {
	s := latencySeed{Seed: 2, OrigMs: 1.5, L2AtMP: math.NaN(), ErrPct: math.Inf(1), BenchErr: -4.2,
		MP: latencyPoint{Ms: 0.7}}
	b, err := json.Marshal(map[string]any{"seeds": []latencySeed{s}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{`"l2norm_acc_at_my_pruning_latency":null`, `"error_pct":null`, `"bench_speedup_error_pct":-4.2`, `"original_ms":1.5`, `"seed":2`, `"latency_ms":0.7`} {
		if !strings.Contains(got, want) {
			t.Errorf("%s: no %s", got, want)
		}
	}
}

// TestStateTable: the benchmark's timing is compared with the prediction
// of the table of its machine speed, the nearest within 20%, none beyond.
func TestStateTable(t *testing.T) {
	tables := []summary.StateTable{{OriginalMs: 2.5}, {OriginalMs: 1.4}, {OriginalMs: 3.5}}
	for _, c := range []struct {
		ms   float64
		want int
	}{{2.45, 0}, {1.43, 1}, {3.2, 2}, {1.9, -1}, {2.9, 0}, {3.05, 2}, {5, -1}} {
		if got := stateTable(tables, c.ms); got != c.want {
			t.Errorf("original at %.2f ms: table %d, want %d", c.ms, got, c.want)
		}
	}
	if got := stateTable(nil, 2.5); got != -1 {
		t.Errorf("no tables: %d", got)
	}
}

// TestRunJSON: a child's JSON stdout is decoded; output that is not JSON
// and a failed exit are errors naming the program.
func TestRunJSON(t *testing.T) {
	r := newRunner(t.TempDir(), false)
	ctx := context.Background()
	var v struct{ A int }
	p, err := r.runJSON(ctx, time.Minute, &v, "/bin/sh", "-c", `printf '{"A": 7}\n'`)
	if err != nil || v.A != 7 || p.Exit != 0 {
		t.Fatalf("decoded %+v, err %v", v, err)
	}
	if _, err := r.runJSON(ctx, time.Minute, &v, "/bin/sh", "-c", "echo not json"); err == nil || !strings.Contains(err.Error(), "sh's output") {
		t.Errorf("non-JSON output: %v", err)
	}
	if _, err := r.runJSON(ctx, time.Minute, &v, "/bin/sh", "-c", `echo '{"A": 1}'; exit 3`); err == nil || !strings.Contains(err.Error(), "exited 3") {
		t.Errorf("failed exit: %v", err)
	}
}
