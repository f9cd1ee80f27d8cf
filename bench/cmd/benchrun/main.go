// Command benchrun is gopruner's benchmark driver (`make bench` runs it
// through bench/run.sh). It runs the gopruner CLI and the Python references
// as separate processes, side by side in one run, and reports ratios rather
// than absolute times: the numbers move with the machine, the ratios much
// less. It prints a markdown table and writes bench/results.json and
// bench/results.md.
//
// The benchmarks:
//
//  1. pruning speed: wall time, peak RSS and the phase breakdown of a
//     one-shot L2Norm prune, against the floor any Python tool pays
//     (interpreter start + import torch + torch.jit.load);
//  2. MACs accuracy: `gopruner flops` against the fixtures' independent
//     ptflops-formula counts;
//  3. fine-tune throughput: `gopruner train` against scripts/ref_train.py;
//  4. real speed-up: forward latency of pruned models against MACs ratios;
//  5. search: my_pruning (NetAdapt) against L2Norm one-shot with the same
//     fine-tune budget;
//  6. scaling: prune and analysis time against the IR's op count;
//  7. one NetAdapt iteration at 1 and 2 cart slots, with the per-candidate
//     time breakdown, and the machine's own ceiling for two slots (PyTorch
//     training the model as two 1-thread processes against one 2-thread);
//  8. the same iteration through NATS JetStream: direct, embedded broker,
//     1 and 2 worker processes;
//  9. search quality on held-out test data: my_pruning against L2Norm one
//     shot and L2Norm --global from converged models, over P and seeds
//     (slow: only when selected, `make bench-quality`);
//  10. the latency target: my_pruning with target: latency against L2Norm
//     one shot at the same measured latency, and the table's prediction
//     error (slow: only when selected, `make bench-latency`).
//
// Each benchmark lives in its own file, benchN_*.go; prunerun.go holds the
// prune runs several of them share.
//
// No cgo: benchrun needs no libtorch itself. It reads gopruner's outputs
// with the project's own pure types: summary.json as internal/core/summary,
// plan.json as internal/core/plan, `gopruner flops --json` as
// internal/core/flops, the fixture sidecars as internal/fixtures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
)

type options struct {
	bin, fixtures, out, results, python, root string
	budget                                    time.Duration
	only                                      map[int]bool
	verbose                                   bool

	// the search benchmark (5)
	searchP         float64
	searchDelta     float64
	searchStep      string
	searchShort     int
	searchLong      int
	searchAlf       int
	trainN, valN    int
	latRuns1        int
	latWarm1        int
	latRuns32       int
	latWarm32       int
	pythonFloorReps int
	pruneReps       int
	latRounds1      int
	ompWaitPolicy   string

	// the search-quality benchmark (9)
	qualityModels   string
	qualityP        string
	qualitySeeds    int
	qualityLong     int
	qualityMP       string
	qualityL2       string
	qualityPretrain int
	// qualityData is benchmark 9's data set: mnist (the demo's) or
	// fashion-mnist (Debian's dataset-fashion-mnist).
	qualityData string
	// qualityReuseArgs reuses benchmark 9's runs by their arguments alone,
	// whatever binary made them (results.json names it per run).
	qualityReuseArgs bool
	// qualityBaseline is an older gopruner binary whose my_pruning, with
	// its own defaults, benchmark 9 runs once per model and P (seed 1).
	qualityBaseline string
	// the latency-target benchmark (10); it shares benchmark 9's models,
	// runs and -quality-mp / -quality-long-epochs
	latencyModels string
	latencyP      string
	latencyGrid   string
	latencySeeds  int
}

func main() {
	var o options
	var only string
	flag.StringVar(&o.bin, "bin", "bin/gopruner", "gopruner binary")
	flag.StringVar(&o.fixtures, "fixtures", ".cache/fixtures", "fixture directory (make fixtures)")
	flag.StringVar(&o.out, "out", "bench/out", "scratch directory (gitignored)")
	flag.StringVar(&o.results, "results", "bench", "where results.json and results.md go")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "Python with torch (Debian's python3-torch)")
	flag.DurationVar(&o.budget, "budget", 15*time.Minute, "stop starting benchmarks after this long; later ones are reported as skipped")
	flag.StringVar(&only, "only", "", "comma-separated benchmark numbers to run (default all)")
	flag.BoolVar(&o.verbose, "v", true, "echo every command on stderr")
	flag.IntVar(&o.trainN, "train-images", 12000, "MNIST training images for the fine-tune benchmark")
	flag.IntVar(&o.valN, "val-images", 2000, "MNIST validation images")
	flag.Float64Var(&o.searchP, "search-p", 0.5, "search benchmark: P")
	flag.Float64Var(&o.searchDelta, "search-delta", 0.1, "search benchmark: my_pruning delta_crop")
	flag.StringVar(&o.searchStep, "search-step", "macs", "search benchmark: my_pruning step (channels or macs)")
	flag.IntVar(&o.searchShort, "search-short-steps", 20, "search benchmark: my_pruning short-term fine-tune steps per candidate")
	flag.IntVar(&o.searchLong, "search-long-epochs", 1, "search benchmark: my_pruning long-term fine-tune epochs")
	flag.IntVar(&o.searchAlf, "search-alf", 4, "search benchmark: alf")
	flag.IntVar(&o.latWarm1, "lat-warmup1", 3, "latency benchmark, batch 1: warm-up runs")
	flag.IntVar(&o.latRuns1, "lat-runs1", 20, "latency benchmark, batch 1: timed runs (median)")
	flag.IntVar(&o.latWarm32, "lat-warmup32", 1, "latency benchmark, batch 32: warm-up runs")
	flag.IntVar(&o.latRuns32, "lat-runs32", 3, "latency benchmark, batch 32: timed runs (median)")
	flag.IntVar(&o.pythonFloorReps, "floor-reps", 2, "Python floor runs per model (the fastest counts)")
	flag.IntVar(&o.pruneReps, "prune-reps", 2, "runs of each timed prune (the fastest wall time and each phase's fastest count)")
	flag.IntVar(&o.latRounds1, "lat-rounds1", 2, "latency benchmark, batch 1: rounds over the variants, interleaved (the fastest median counts)")
	flag.StringVar(&o.ompWaitPolicy, "omp-wait-policy", "passive", "OMP_WAIT_POLICY for every child process (\"\" keeps the environment's); "+
		"libgomp's default active spin-wait makes 2-thread runs on a 2-core machine many times slower whenever another process competes")
	flag.StringVar(&o.qualityModels, "quality-models", "democnn,resnet20", "search-quality benchmark: models ("+qualityModelNames+")")
	flag.StringVar(&o.qualityP, "quality-p", "0.5,0.7", "search-quality benchmark: P values")
	flag.IntVar(&o.qualitySeeds, "quality-seeds", 3, "search-quality benchmark: seeds per model and P")
	flag.IntVar(&o.qualityLong, "quality-long-epochs", 1, "search-quality benchmark: long-term fine-tune epochs of every method")
	flag.StringVar(&o.qualityMP, "quality-mp", "", "search-quality benchmark: extra my_pruning flags (default: gopruner's defaults)")
	flag.StringVar(&o.qualityL2, "quality-l2", "", "search-quality and latency benchmarks: extra flags of the L2Norm one-shot runs (e.g. --distill; default: none); they must not change the MACs they prune to, which my_pruning's target comes from")
	flag.IntVar(&o.qualityPretrain, "quality-pretrain-epochs", 8, "search-quality benchmark: epochs that train ResNet-20 (and, on fashion-mnist, the demo CNN) to convergence before pruning")
	flag.StringVar(&o.qualityData, "quality-data", "mnist", "search-quality and latency benchmarks: data set, mnist (the demo's bundled sample; the demo CNN starts from its shipped weights) or fashion-mnist (Debian's dataset-fashion-mnist, fetched by bench/fetch_fashion_mnist.sh; both models are trained on it first); each keeps its own runs under -out")
	flag.StringVar(&o.qualityBaseline, "quality-baseline", "", "search-quality benchmark: an older gopruner binary whose my_pruning (with its own defaults) runs once per model and P, seed 1, for the wall-time comparison (e.g. main before issue 14, built in a git worktree)")
	flag.StringVar(&o.latencyModels, "latency-models", "resnet20", "latency-target benchmark: models (democnn, resnet20)")
	flag.StringVar(&o.latencyP, "latency-p", "0.5", "latency-target benchmark: my_pruning's P (share of the latency to remove)")
	flag.StringVar(&o.latencyGrid, "latency-l2-p", "0.4,0.5,0.6,0.7,0.8", "latency-target benchmark: the L2Norm one-shot runs' P (MACs), a grid that brackets my_pruning's latency")
	flag.IntVar(&o.latencySeeds, "latency-seeds", 3, "latency-target benchmark: seeds")
	flag.BoolVar(&o.qualityReuseArgs, "quality-reuse-args", false, "search-quality benchmark: reuse earlier runs with the same arguments even when another gopruner binary made them (results.json names each run's binary)")
	flag.Parse()
	o.only = map[int]bool{}
	for _, f := range strings.Split(only, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			o.only[n] = true
		}
	}
	var err error
	if o.root, err = os.Getwd(); err != nil {
		fatal(err)
	}
	for _, p := range []*string{&o.bin, &o.fixtures, &o.out, &o.results} {
		if *p, err = filepath.Abs(*p); err != nil {
			fatal(err)
		}
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchrun:", err)
	os.Exit(1)
}

// bench holds what the benchmarks share: the runner, the options, and
// the pruned models and measurements later benchmarks reuse.
type bench struct {
	o          options
	r          *runner
	ctx        context.Context
	start      time.Time
	prunes     map[string]*pruneRun // by key, see prune()
	trained    string               // the fine-tuned demo CNN from benchmark 3 ("" if none)
	binDigest  map[string]string    // sha256 of each gopruner binary (benchmark 9's reuse key)
	shortSteps map[string]int       // each binary's default short_term_steps (benchmark 9), once read
	mnist      string               // the exported MNIST subset
}

// results is results.json.
type results struct {
	Date    string  `json:"date"`
	Machine machine `json:"machine"`
	Method  string  `json:"measured_with"`
	// OMPWaitPolicy is what every child ran with ("" = libgomp's default).
	OMPWaitPolicy string     `json:"omp_wait_policy"`
	WallS         float64    `json:"bench_wall_s"`
	Sections      []*section `json:"benchmarks"`
}

type machine struct {
	CPU          string    `json:"cpu"`
	Cores        int       `json:"cores"`
	MemGiB       float64   `json:"mem_gib"`
	Kernel       string    `json:"kernel,omitempty"`
	GoVersion    string    `json:"go"`
	Gopruner     string    `json:"gopruner"`
	Libtorch     string    `json:"libtorch"`
	PythonTorch  string    `json:"python_torch"`
	LoadAvgStart []float64 `json:"loadavg_start"`
	LoadAvgEnd   []float64 `json:"loadavg_end"`
}

func run(o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", o.bin, err)
	}
	b := &bench{o: o, r: newRunner(o.out, o.verbose), ctx: context.Background(), start: time.Now(),
		prunes: map[string]*pruneRun{}}
	b.r.root = o.root
	if o.ompWaitPolicy != "" {
		b.r.setenv("OMP_WAIT_POLICY", o.ompWaitPolicy)
	}
	res := &results{Date: time.Now().Format(time.RFC3339), Method: b.r.method(), OMPWaitPolicy: b.r.getenv("OMP_WAIT_POLICY")}
	res.Machine = b.machine()
	fmt.Fprintf(os.Stderr, "benchrun: %s, %d cores, load %v; measuring with %s, OMP_WAIT_POLICY=%q\n",
		res.Machine.CPU, res.Machine.Cores, res.Machine.LoadAvgStart, res.Method, res.OMPWaitPolicy)

	benches := []struct {
		id    int
		title string
		fn    func(*section) error
		optIn bool // slow: runs only when -only selects it
	}{
		{1, "Pruning speed (L2Norm, P=0.5, no fine-tune)", b.pruneSpeed, false},
		{2, "MACs accuracy (gopruner flops vs formula count)", b.macsAccuracy, false},
		{3, "Fine-tune throughput and accuracy (MNIST, 1 epoch)", b.finetune, false},
		{4, "Real speed-up (forward latency vs MACs)", b.speedup, false},
		{5, "Search: my_pruning vs L2Norm one-shot", b.search, false},
		{6, "Scaling of cost with model size", b.scaling, false},
		{7, "my_pruning per-candidate cost and 2-slot speed-up", b.candidates, false},
		{8, "my_pruning through NATS JetStream: broker cost and worker processes", b.broker, false},
		{9, "Search quality on held-out TEST data: my_pruning vs L2Norm and L2Norm --global", b.quality, true},
		{10, "Latency target: my_pruning target latency vs L2Norm one-shot at the same measured latency", b.latencyTarget, true},
	}
	for _, bb := range benches {
		s := &section{ID: bb.id, Title: bb.title}
		res.Sections = append(res.Sections, s)
		if len(o.only) > 0 && !o.only[bb.id] {
			s.Skipped = "not selected (-only)"
			continue
		}
		if bb.optIn && !o.only[bb.id] {
			s.Skipped = fmt.Sprintf("slow, runs only when selected: make bench-quality / bench-latency (-only %d)", bb.id)
			continue
		}
		if el := time.Since(b.start); el > o.budget {
			s.Skipped = fmt.Sprintf("time budget %s spent (%s elapsed)", o.budget, el.Round(time.Second))
			continue
		}
		fmt.Fprintf(os.Stderr, "\n== %d. %s (t=%s)\n", bb.id, bb.title, time.Since(b.start).Round(time.Second))
		t := time.Now()
		if err := bb.fn(s); err != nil {
			s.Error = err.Error()
			fmt.Fprintf(os.Stderr, "benchrun: %d. %s: %v\n", bb.id, bb.title, err)
		}
		s.WallS = round(time.Since(t).Seconds(), 1)
	}
	res.Machine.LoadAvgEnd = loadavg()
	res.WallS = round(time.Since(b.start).Seconds(), 1)

	md := res.markdown()
	fmt.Println(md)
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.results, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.results, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchrun: wrote %s and %s in %s\n", filepath.Join(o.results, "results.json"),
		filepath.Join(o.results, "results.md"), time.Since(b.start).Round(time.Second))
	return nil
}

func (b *bench) machine() machine {
	m := machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgStart: loadavg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = round(kb/(1<<20), 1)
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if out, err := exec.Command(b.o.bin, "version").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "gopruner" {
				m.Gopruner = f[1]
			}
			if len(f) >= 2 && f[0] == "libtorch" {
				m.Libtorch = f[1]
			}
		}
	}
	if out, err := exec.Command(b.o.python, "-c", "import torch; print(torch.__version__)").Output(); err == nil {
		m.PythonTorch = strings.TrimSpace(string(out))
	}
	return m
}

func loadavg() []float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	var out []float64
	for _, f := range strings.Fields(string(raw))[:3] {
		v, _ := strconv.ParseFloat(f, 64)
		out = append(out, v)
	}
	return out
}

// remaining is how long a command may still run before the budget ends,
// with a floor so that a late benchmark's last command is not cut short.
func (b *bench) timeout(want time.Duration) time.Duration {
	left := b.o.budget + time.Minute - time.Since(b.start)
	if left < 30*time.Second {
		left = 30 * time.Second
	}
	return min(want, left)
}
