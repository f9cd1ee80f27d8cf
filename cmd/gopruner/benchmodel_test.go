//go:build cgo

package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestBenchModelCompare: --compare times every model in one process and
// reports each under its own path, in the order given; one that cannot be
// read is a usage error naming it.
func TestBenchModelCompare(t *testing.T) {
	t.Parallel()
	scripted := fixtures.Path(t, "smallcnn_scripted.pt")
	traced := fixtures.Path(t, "smallcnn_traced.pt")
	r := runCLI(t, "bench-model", "--model", scripted, "--compare", traced+","+scripted, "--input-shape", "1,3,32,32",
		"--runs", "3", "--warmup", "1", "--threads", "1", "--json")
	if r.code != 0 {
		t.Fatalf("bench-model --compare: exit %d: %s", r.code, r.stderr)
	}
	var got []struct {
		Model    string  `json:"model"`
		MedianMs float64 `json:"median_ms"`
		Runs     int     `json:"runs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("bench-model --compare --json: %v: %s", err, r.stdout)
	}
	want := []string{scripted, traced, scripted}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(got), len(want), r.stdout)
	}
	for i, g := range got {
		if g.Model != want[i] || !(g.MedianMs > 0) || g.Runs != 3 {
			t.Errorf("result %d = %+v, want model %s, a positive median over 3 runs", i, g, want[i])
		}
	}
	r = runCLI(t, "bench-model", "--model", scripted, "--compare", traced, "--input-shape", "1,3,32,32", "--runs", "2", "--warmup", "0")
	if r.code != 0 || strings.Count(r.stdout, "median") != 2 || !strings.Contains(r.stdout, traced) {
		t.Errorf("bench-model --compare text: exit %d, want one line per model: %s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "bench-model", "--model", scripted, "--compare", "/nonexistent/other.pt", "--input-shape", "1,3,32,32", "--runs", "1")
	if r.code != 2 || !strings.HasPrefix(r.stderr, "gopruner: ") || !strings.Contains(r.stderr, "/nonexistent/other.pt") {
		t.Errorf("bench-model --compare of a missing file: exit %d: %s, want 2 and a line naming it", r.code, r.stderr)
	}
}

// TestBenchModelTrain: --train times whole training steps of one model
// (--json gives each step), refuses --compare, and amp is refused where
// no GPU is in play.
func TestBenchModelTrain(t *testing.T) {
	t.Parallel()
	demo := filepath.Join(fixtures.RepoRoot(t), "internal/demo/democnn.pt")
	r := runCLI(t, "bench-model", "--model", demo, "--input-shape", "8,1,28,28", "--train", "--runs", "3", "--warmup", "1",
		"--threads", "1", "--json")
	if r.code != 0 {
		t.Fatalf("bench-model --train: exit %d: %s", r.code, r.stderr)
	}
	var got struct {
		Device   string    `json:"device"`
		Batch    int       `json:"batch"`
		AMP      string    `json:"amp"`
		Steps    int       `json:"steps"`
		MedianMs float64   `json:"median_ms"`
		StepsMs  []float64 `json:"steps_ms"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("bench-model --train --json: %v: %s", err, r.stdout)
	}
	if got.Device != "cpu" || got.Batch != 8 || got.AMP != "off" || got.Steps != 3 || len(got.StepsMs) != 3 || !(got.MedianMs > 0) {
		t.Errorf("bench-model --train --json = %+v, want cpu, batch 8, amp off, 3 timed steps", got)
	}
	r = runCLI(t, "bench-model", "--model", demo, "--input-shape", "8,1,28,28", "--train", "--compare", demo)
	if r.code != 2 || !strings.Contains(r.stderr, "--compare") {
		t.Errorf("--train --compare: exit %d: %s, want 2 naming --compare", r.code, r.stderr)
	}
	for _, amp := range []string{"bf16", "fp16"} {
		r = runCLI(t, "bench-model", "--model", demo, "--input-shape", "8,1,28,28", "--train", "--amp", amp)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "gopruner: amp: "+amp) || !strings.Contains(r.stderr, "CUDA") {
			t.Errorf("--amp %s on the CPU: exit %d: %s, want 2 and a line naming amp", amp, r.code, r.stderr)
		}
	}
	r = runCLI(t, "bench-model", "--model", demo, "--input-shape", "8,1,28,28", "--amp", "int8")
	if r.code != 2 || !strings.Contains(r.stderr, "amp") {
		t.Errorf("--amp int8: exit %d: %s, want 2 naming amp", r.code, r.stderr)
	}
}
