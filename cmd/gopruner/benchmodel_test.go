//go:build cgo

package main

import (
	"encoding/json"
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
