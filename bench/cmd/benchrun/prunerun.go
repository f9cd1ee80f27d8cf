package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/summary"
)

// The prune runs several benchmarks share, the Python floor, JSON files.

// phaseOrder is the order of the phases in summary.json's timings
// (summary.Timings), as the prune command runs them.
var phaseOrder = []string{"load", "ir_export", "analysis", "scoring", "search", "surgery", "save", "latency", "report"}

// workPhases are the phases that pruning itself needs (the rest is the
// prune command's built-in before/after latency check and its report).
var workPhases = []string{"load", "ir_export", "analysis", "scoring", "search", "surgery", "save"}

// pruneRun is one `gopruner prune --algorithm L2Norm --finetune=false` run.
type pruneRun struct {
	Model   string             `json:"model"`
	Alf     int                `json:"alf"`
	Out     string             `json:"out"`
	Proc    *proc              `json:"process"`
	PhaseMs map[string]float64 `json:"phase_ms"`
	TotalMs float64            `json:"total_ms"` // gopruner's own, from prepare to the end
	IROps   int                `json:"ir_ops"`
	Plan    planInfo           `json:"plan"`
	WallsS  []float64          `json:"walls_s"` // every repetition
	// LatencyCheck is the prune command's own before/after latency
	// (batch 1, the two models interleaved in one process).
	LatencyCheck *latencyCheck `json:"latency_check,omitempty"`
}

type latencyCheck struct {
	Batch    int64   `json:"batch"`
	BeforeMs float64 `json:"before_ms"`
	AfterMs  float64 `json:"after_ms"`
}

// workMs is the time of the phases pruning needs.
func (p *pruneRun) workMs() float64 {
	t := 0.0
	for _, k := range workPhases {
		t += p.PhaseMs[k]
	}
	return t
}

// planInfo is what results.json keeps of the run's plan.json.
type planInfo struct {
	MACsBefore   int64 `json:"macs_before"`
	MACsAfter    int64 `json:"macs_after"`
	ParamsBefore int64 `json:"params_before"`
	ParamsAfter  int64 `json:"params_after"`
}

// readJSON decodes the JSON file at path (a plan.json, a summary.json).
func readJSON[T any](path string) (*T, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &v, nil
}

func (b *bench) fixture(name string) string {
	return filepath.Join(b.o.fixtures, name+"_scripted.pt")
}

// prune runs (once per name and alf) the pruning command the benchmarks
// time: L2Norm to P=0.5, no fine-tune, at 1,3,224,224.
func (b *bench) prune(name, modelPath string, alf int) (*pruneRun, error) {
	key := fmt.Sprintf("%s/alf%d", name, alf)
	if pr, ok := b.prunes[key]; ok {
		return pr, nil
	}
	run := fmt.Sprintf("prune_%s_alf%d", name, alf)
	dir := filepath.Join(b.o.out, "pruned")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, run+".pt")
	planPath := filepath.Join(dir, run+".plan.json")
	args := []string{b.o.bin, "prune", "--model", modelPath, "--algorithm", "L2Norm", "--P", "0.5",
		"--finetune=false", "--input-shape", "1,3,224,224"}
	if alf > 1 {
		args = append(args, "--alf", fmt.Sprint(alf))
	}
	args = append(args, "--log-format", "json", "--exp-save", filepath.Join(b.o.out, "exp"), "--model-name", run,
		"--out", out, "--plan-out", planPath)
	var pr *pruneRun
	for range max(1, b.o.pruneReps) {
		p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), args...)
		if err != nil {
			return nil, err
		}
		if err := p.ok(); err != nil {
			return nil, err
		}
		sum, err := readJSON[summary.Summary](filepath.Join(b.o.out, "exp", run, "summary.json"))
		if err != nil {
			return nil, err
		}
		tm := sum.Timings
		if tm == nil {
			return nil, fmt.Errorf("prune %s: summary.json has no timings (is bin/gopruner older than cmd/gopruner/timings.go?)", name)
		}
		if pr == nil {
			pr = &pruneRun{Model: name, Alf: alf, Out: out, Proc: p, PhaseMs: map[string]float64{}}
		} else if p.WallS < pr.Proc.WallS {
			pr.Proc = p
		}
		pr.WallsS = append(pr.WallsS, round(p.WallS, 3))
		// Each phase's fastest count: load on the machine only ever adds.
		for k, f := range tm.PhaseMs {
			if old, seen := pr.PhaseMs[k]; !seen || f < old {
				pr.PhaseMs[k] = f
			}
		}
		if pr.TotalMs == 0 || tm.TotalMs < pr.TotalMs {
			pr.TotalMs = tm.TotalMs
		}
		pr.IROps = tm.IROps
		if len(sum.Latency) > 0 {
			l := sum.Latency[0]
			if pr.LatencyCheck == nil || l.AfterMs+l.BeforeMs < pr.LatencyCheck.AfterMs+pr.LatencyCheck.BeforeMs {
				pr.LatencyCheck = &latencyCheck{l.Batch, l.BeforeMs, l.AfterMs}
			}
		}
	}
	pl, err := plan.Read(planPath)
	if err != nil {
		return nil, err
	}
	pr.Plan = planInfo{pl.MACsBefore, pl.MACsAfter, pl.ParamsBefore, pl.ParamsAfter}
	b.prunes[key] = pr
	return pr, nil
}

// pythonFloor is what any Python pruning tool pays before its first line
// of pruning: interpreter start, import torch, torch.jit.load.
type pythonFloor struct {
	WallS    float64 `json:"wall_s"`
	MaxRSSKB int64   `json:"max_rss_kb"`
	ImportS  float64 `json:"import_s"`
	LoadS    float64 `json:"load_s"`
	// The same plus one forward on the example input (what a tool that
	// traces the model, as Torch-Pruning's DepGraph does, pays at least).
	WithForwardS        float64 `json:"with_forward_wall_s"`
	WithForwardMaxRSSKB int64   `json:"with_forward_max_rss_kb"`
	ForwardS            float64 `json:"forward_s"`
}

// floorScript loads argv[1]; with argv[2] (a shape) it also runs forward
// once on a random input of that shape.
const floorScript = `import sys, time, json
t0 = time.time()
import torch
t1 = time.time()
m = torch.jit.load(sys.argv[1])
t2 = time.time()
out = {"import_s": t1 - t0, "load_s": t2 - t1}
if len(sys.argv) > 2:
    m.eval()
    with torch.no_grad():
        m(torch.randn(*[int(v) for v in sys.argv[2].split(",")]))
    out["forward_s"] = time.time() - t2
print(json.dumps(out))
`

func (b *bench) pythonFloor(model, shape string) (*pythonFloor, error) {
	run := func(args ...string) (*proc, map[string]float64, error) {
		var m map[string]float64
		p, err := b.r.runJSON(b.ctx, b.timeout(2*time.Minute), &m, append([]string{b.o.python, "-c", floorScript, model}, args...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("python floor: %w", err)
		}
		return p, m, nil
	}
	var best *pythonFloor
	for range max(1, b.o.pythonFloorReps) {
		p, m, err := run()
		if err != nil {
			return nil, err
		}
		if best == nil || p.WallS < best.WallS {
			best = &pythonFloor{WallS: p.WallS, MaxRSSKB: p.MaxRSSKB, ImportS: m["import_s"], LoadS: m["load_s"]}
		}
	}
	p, m, err := run(shape)
	if err != nil {
		return nil, err
	}
	best.WithForwardS, best.WithForwardMaxRSSKB, best.ForwardS = p.WallS, p.MaxRSSKB, m["forward_s"]
	return best, nil
}
