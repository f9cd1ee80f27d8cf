package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/summary"
)

// 9. Search quality, issue 14's acceptance: my_pruning against L2Norm one
// shot (a uniform cut) and L2Norm --global, each from the same converged
// model and given the same long-term fine-tune, judged on the data set's
// TEST split, which no run selects on, at several P and seeds. It is slow
// (tens of minutes), so `make bench` leaves it out unless selected:
// `make bench-quality` runs it alone.

// qualityRun is one prune of benchmark 9.
type qualityRun struct {
	Model      string           `json:"model"`
	P          float64          `json:"p"`
	Target     float64          `json:"target_p"` // the P it pruned to (my_pruning: the one-shot runs' MACs)
	Seed       int              `json:"seed"`
	Method     string           `json:"method"`
	Args       []string         `json:"args"`
	Out        string           `json:"out"` // the pruned model
	WallS      float64          `json:"wall_s"`
	Reused     bool             `json:"reused,omitempty"` // an earlier run with the same binary (or, under -quality-reuse-args, any binary) and arguments
	Binary     string           `json:"binary"`           // sha256 prefix of the gopruner binary that made it
	Summary    *summary.Summary `json:"summary"`
	TrainSteps int              `json:"train_steps"` // fine-tune batches in all, short- and long-term
	// Test10k is the pruned model's accuracy on all 10,000 test images of
	// the data set (MNIST's or Fashion-MNIST's t10k), which no run trains
	// or selects on: ten times the 1,000-image test split, so a margin's
	// sampling error is a third.
	Test10k float64 `json:"test10k_acc"`
}

func (q *qualityRun) macsRatio() float64 {
	return float64(q.Summary.MACsAfter) / float64(q.Summary.MACsBefore)
}

// testAcc is the accuracy the margins are judged on: the full test set.
func (q *qualityRun) testAcc() float64 { return q.Test10k }

// qualityTest10k is the directory of the full test set, written by
// qualitySetup.
const qualityTest10k = "test10k"

// qualityModel is a converged starting point of benchmark 9.
type qualityModel struct {
	Name              string  `json:"name"`
	Path              string  `json:"path"`
	ValAcc, TestAcc   float64 `json:"-"`
	Test10k           float64 `json:"test10k_acc"`
	Recipe            string  `json:"recipe"`
	ValAccS, TestAccS string  `json:"-"`
}

const (
	qualityMethodMP     = "my_pruning"
	qualityMethodL2     = "L2Norm"
	qualityMethodGlobal = "L2Norm --global"
	// qualityMethodBase is my_pruning as an older gopruner binary
	// (-quality-baseline) runs it with its own defaults: the "today's main"
	// of the search's wall-time goal.
	qualityMethodBase = "my_pruning (baseline binary, its defaults)"
	// qualityMethodLatency is my_pruning with target: latency (benchmark 10).
	qualityMethodLatency = "my_pruning, target latency"
	qualityBatch         = 64
	// qualityStepsPerEpoch is a fine-tune epoch over the demo's 5,000
	// training images.
	qualityStepsPerEpoch = 5000 / qualityBatch
)

// qualityDir is benchmark 9's scratch directory for the chosen data set:
// its data, trained models, runs and caches.
func (b *bench) qualityDir() string {
	if b.o.qualityData == qualityMNIST {
		return filepath.Join(b.o.out, "quality")
	}
	return filepath.Join(b.o.out, "quality-"+b.o.qualityData)
}

// Benchmark 9's data sets.
const (
	qualityMNIST   = "mnist"
	qualityFashion = "fashion-mnist"
)

// qualityDataName is the data set's name as tables print it.
func (b *bench) qualityDataName() string {
	if b.o.qualityData == qualityFashion {
		return "Fashion-MNIST"
	}
	return "MNIST"
}

// qualitySetup writes the data set (5,000 train / 1,000 val / 1,000 test,
// the demo's sizes, and the full 10,000-image test set) and the converged
// models. On mnist the data are the demo's (the bundled MNIST sample) and
// the demo CNN starts from its shipped weights; on fashion-mnist both
// models are trained on Fashion-MNIST first.
func (b *bench) qualitySetup(names string) (string, []qualityModel, error) {
	if b.o.qualityData != qualityMNIST && b.o.qualityData != qualityFashion {
		return "", nil, fmt.Errorf("-quality-data %q: want %s or %s", b.o.qualityData, qualityMNIST, qualityFashion)
	}
	dir := b.qualityDir()
	// The demo's directory gives the untrained demo CNN and, on mnist, the
	// data set.
	p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), b.o.bin, "demo", "--dir", dir, "--prepare-only")
	if err == nil {
		err = p.ok()
	}
	if err != nil {
		return "", nil, fmt.Errorf("demo data: %w", err)
	}
	var ds, src string
	switch b.o.qualityData {
	case qualityMNIST:
		ds = filepath.Join(dir, "mnist3")
		if src, err = data.LocateGoMNIST(); err != nil {
			return "", nil, err
		}
	case qualityFashion:
		p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), "bash", filepath.Join(b.o.root, "bench", "fetch_fashion_mnist.sh"))
		if err == nil {
			err = p.ok()
		}
		if err != nil {
			return "", nil, fmt.Errorf("bench/fetch_fashion_mnist.sh: %w", err)
		}
		src = strings.TrimSpace(string(p.Stdout))
		ds = filepath.Join(dir, "fmnist")
		// Val comes from the training set, after the 5,000 training
		// images, so that the 10,000 test images stay unseen.
		if err := writeIDXSet(ds, src, data.ExportPart{Split: data.Train, N: 5000},
			data.ExportPart{Split: data.Train, As: data.Val, Skip: 5000, N: 1000},
			data.ExportPart{Split: data.Test, N: 1000}); err != nil {
			return "", nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "pruned"), 0o755); err != nil {
		return "", nil, err
	}
	if err := writeIDXSet(filepath.Join(dir, qualityTest10k), src, data.ExportPart{Split: data.Test}); err != nil {
		return "", nil, err
	}
	var models []qualityModel
	for _, name := range strings.Split(names, ",") {
		switch name = strings.TrimSpace(name); name {
		case "democnn":
			if b.o.qualityData == qualityMNIST {
				models = append(models, qualityModel{Name: name, Path: filepath.Join(dir, "democnn_trained.pt"),
					Recipe: "the demo's shipped weights (internal/demo/democnn_trained.pt)"})
				continue
			}
			m, err := b.trainQuality(name, "the demo CNN (internal/demo/democnn.pt)", filepath.Join(dir, "democnn.pt"), ds, nil)
			if err != nil {
				return "", nil, err
			}
			models = append(models, m)
		case "":
		default:
			sm, ok := scriptedModels[name]
			if !ok {
				return "", nil, fmt.Errorf("unknown model %q (%s)", name, qualityModelNames)
			}
			script, what := sm.script, sm.what
			raw := filepath.Join(dir, name+".pt")
			mk := func() error {
				p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), b.o.python, filepath.Join(b.o.root, "bench", script), raw)
				if err == nil {
					err = p.ok()
				}
				if err != nil {
					return fmt.Errorf("%s: %w", script, err)
				}
				return nil
			}
			m, err := b.trainQuality(name, fmt.Sprintf("%s (bench/%s)", what, script), raw, ds, mk)
			if err != nil {
				return "", nil, err
			}
			models = append(models, m)
		}
	}
	for i := range models {
		for _, split := range []string{"val", "test"} {
			ev, err := b.evalMNIST(5*time.Minute, models[i].Path, ds, split)
			if err != nil {
				return "", nil, fmt.Errorf("eval %s: %w", models[i].Name, err)
			}
			if split == "val" {
				models[i].ValAcc = ev.Accuracy
			} else {
				models[i].TestAcc = ev.Accuracy
			}
		}
		if models[i].Test10k, err = b.evalTest10k(models[i].Path); err != nil {
			return "", nil, fmt.Errorf("eval %s: %w", models[i].Name, err)
		}
	}
	return ds, models, nil
}

// writeIDXSet writes parts of the IDX data set in src (MNIST's file
// names, as Fashion-MNIST uses them too) as an image directory with
// data.csv, once: a directory with its data.csv is complete.
func writeIDXSet(dir, src string, parts ...data.ExportPart) error {
	if _, err := os.Stat(filepath.Join(dir, "data.csv")); err == nil {
		return nil
	}
	ds, err := data.FromMNIST(os.DirFS(src), data.Options{ValFraction: -1})
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := data.WriteImageCSV(tmp, ds, parts...); err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	return os.Rename(tmp, dir)
}

// evalTest10k is model's accuracy on the full test set. The result
// is cached beside the model, keyed by the model file's sha256, so reused
// runs are not evaluated again.
func (b *bench) evalTest10k(model string) (float64, error) {
	digest, err := fileDigest(model)
	if err != nil {
		return 0, err
	}
	cache := model + ".test10k"
	if old, err := os.ReadFile(cache); err == nil {
		if d, v, ok := strings.Cut(strings.TrimSpace(string(old)), " "); ok && d == digest {
			if acc, err := strconv.ParseFloat(v, 64); err == nil {
				return acc, nil
			}
		}
	}
	ev, err := b.evalMNIST(10*time.Minute, model, filepath.Join(b.qualityDir(), qualityTest10k), "test",
		"--batch-size", "250", "--threads", "2")
	if err != nil {
		return 0, fmt.Errorf("eval on the %s test set: %w", b.qualityDataName(), err)
	}
	if ev.Samples != 10000 {
		return 0, fmt.Errorf("eval on the %s test set: %d samples, want 10000", b.qualityDataName(), ev.Samples)
	}
	if err := os.WriteFile(cache, []byte(fmt.Sprintf("%s %v\n", digest, ev.Accuracy)), 0o644); err != nil {
		return 0, err
	}
	return ev.Accuracy, nil
}

// trainQuality trains raw, an untrained model (written first by mk, if not
// nil), to convergence on the train split, once: the trained model is kept
// in the benchmark's directory and reused while its recipe is unchanged.
func (b *bench) trainQuality(name, what, raw, ds string, mk func() error) (qualityModel, error) {
	epochs := b.o.qualityPretrain
	recipe := fmt.Sprintf("%s trained by gopruner train on %s: %d epochs, batch 64, SGD lr 0.05 (momentum 0.9, weight decay 5e-4, 20 warm-up steps, cosine), seed 1",
		what, b.qualityDataName(), epochs)
	m := qualityModel{Name: name, Path: filepath.Join(b.qualityDir(), fmt.Sprintf("%s_trained_e%d.pt", name, epochs)), Recipe: recipe}
	if _, err := os.Stat(m.Path); err == nil {
		return m, nil
	}
	if mk != nil {
		if err := mk(); err != nil {
			return m, err
		}
	}
	p, err := b.r.run(b.ctx, 2*time.Hour, b.o.bin, "train", "--model", raw, "--dataset", ds, "--input-shape", "1,1,28,28",
		"--mean", "0.5", "--std", "0.5", "--epochs", fmt.Sprint(epochs), "--batch-size", "64", "--lr", "0.05",
		"--momentum", "0.9", "--weight-decay", "5e-4", "--warmup-steps", "20", "--cosine", "--seed", "1", "--out", m.Path)
	if err == nil {
		err = p.ok()
	}
	if err != nil {
		return m, fmt.Errorf("training %s: %w", name, err)
	}
	return m, nil
}

// jsonLast decodes out, a `--json` command's stdout: one JSON object,
// else its last line that is one.
func jsonLast(out []byte, v any) error {
	err := json.Unmarshal(out, v)
	if err == nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), "{") {
			return json.Unmarshal([]byte(lines[i]), v)
		}
	}
	return err
}

// evalOut is what `gopruner eval --json` prints.
type evalOut struct {
	Accuracy float64 `json:"accuracy"`
	Samples  int     `json:"samples"`
}

// evalMNIST runs `gopruner eval --json` on one split of an MNIST data set
// (1×28×28, mean and std 0.5, as every benchmark 9 run reads it).
func (b *bench) evalMNIST(limit time.Duration, model, ds, split string, extra ...string) (evalOut, error) {
	args := append([]string{b.o.bin, "eval", "--model", model, "--dataset", ds, "--input-shape", "1,1,28,28",
		"--mean", "0.5", "--std", "0.5", "--split", split, "--json"}, extra...)
	var ev evalOut
	p, err := b.r.run(b.ctx, b.timeout(limit), args...)
	if err == nil {
		err = p.ok()
	}
	if err == nil {
		err = jsonLast(p.Stdout, &ev)
	}
	return ev, err
}

// fileDigest is the hex sha256 of a file's contents.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// binaryDigest identifies a gopruner build, so that a run is reused only
// when the same binary would repeat it; each binary is hashed once.
func (b *bench) binaryDigest(bin string) (string, error) {
	if d, ok := b.binDigest[bin]; ok {
		return d, nil
	}
	d, err := fileDigest(bin)
	if err != nil {
		return "", err
	}
	if b.binDigest == nil {
		b.binDigest = map[string]string{}
	}
	b.binDigest[bin] = d
	return d, nil
}

// qualityPrune runs (or reuses) one prune of benchmark 9.
// pv names the run; target is the P it prunes to.
func (b *bench) qualityPrune(m qualityModel, ds string, pv, target float64, seed int, method string) (*qualityRun, error) {
	tag := map[string]string{qualityMethodMP: "mp", qualityMethodL2: "l2", qualityMethodGlobal: "l2g", qualityMethodBase: "base",
		qualityMethodLatency: "mplat"}[method]
	bin := b.o.bin
	if method == qualityMethodBase {
		bin = b.o.qualityBaseline
	}
	name := fmt.Sprintf("%s_p%02d_s%d_%s", m.Name, int(math.Round(pv*100)), seed, tag)
	// Runs with another long-term fine-tune keep their own directories, so
	// that they do not overwrite the default's (1 epoch) stored runs.
	if b.o.qualityLong != 1 {
		name += fmt.Sprintf("_e%d", b.o.qualityLong)
	}
	// Each configuration of extra flags keeps its own run directory.
	switch method {
	case qualityMethodMP, qualityMethodLatency:
		name += argsTag(b.o.qualityMP)
	case qualityMethodL2, qualityMethodGlobal:
		name += argsTag(b.o.qualityL2)
	}
	dir := b.qualityDir()
	out := filepath.Join(dir, "pruned", name+".pt")
	args := []string{bin, "prune", "--model", m.Path, "--dataset", ds, "--input-shape", "1,1,28,28",
		"--mean", "0.5", "--std", "0.5", "--batch-size", fmt.Sprint(qualityBatch), "--lr", "0.02", "--cosine", "--momentum", "0.9",
		"--alf", "4", "--seed", fmt.Sprint(seed), "--threads", "2", "--P", strconv.FormatFloat(target, 'f', 6, 64),
		"--long-epochs", fmt.Sprint(b.o.qualityLong), "--log-format", "json",
		"--exp-save", filepath.Join(dir, "exp"), "--model-name", name, "--out", out}
	switch method {
	case qualityMethodMP:
		args = append(args, "--algorithm", "my_pruning")
		args = append(args, strings.Fields(b.o.qualityMP)...)
	case qualityMethodL2:
		args = append(args, "--algorithm", "L2Norm", "--finetune")
		args = append(args, strings.Fields(b.o.qualityL2)...)
	case qualityMethodGlobal:
		args = append(args, "--algorithm", "L2Norm", "--finetune", "--global")
		args = append(args, strings.Fields(b.o.qualityL2)...)
	case qualityMethodBase:
		args = append(args, "--algorithm", "my_pruning")
	case qualityMethodLatency:
		args = append(args, "--algorithm", "my_pruning", "--target", "latency", "--latency-device", "cpu",
			"--latency-threads", fmt.Sprint(latencyThreads), "--latency-batch", "1")
		args = append(args, strings.Fields(b.o.qualityMP)...)
	}
	digest, err := b.binaryDigest(bin)
	if err != nil {
		return nil, err
	}
	key := digest + "\n" + strings.Join(args[1:], "\x00")
	keyFile := filepath.Join(dir, "exp", name+".key")
	// The process's wall time, as a fresh run measures it, is kept beside
	// the key so that a reused run reports the same measure; runs from
	// before it was kept fall back to summary.json's in-process seconds,
	// which leave out process start.
	wallFile := filepath.Join(dir, "exp", name+".wall")
	sumPath := filepath.Join(dir, "exp", name, "summary.json")
	q := &qualityRun{Model: m.Name, P: pv, Target: target, Seed: seed, Method: method, Args: args[1:], Out: out, Binary: digest[:16]}
	if old, err := os.ReadFile(keyFile); err == nil {
		oldDigest, oldArgs, _ := strings.Cut(string(old), "\n")
		same := string(old) == key
		if b.o.qualityReuseArgs {
			same = oldArgs == strings.Join(args[1:], "\x00")
		}
		if same {
			if q.Summary, err = readJSON[summary.Summary](sumPath); err == nil {
				q.Reused, q.WallS, q.Binary = true, q.Summary.Seconds, oldDigest[:min(16, len(oldDigest))]
				if w, err := os.ReadFile(wallFile); err == nil {
					if v, err := strconv.ParseFloat(strings.TrimSpace(string(w)), 64); err == nil {
						q.WallS = v
					}
				}
			}
		}
	}
	if q.Summary == nil {
		os.Remove(keyFile)
		os.Remove(wallFile)
		p, err := b.r.run(b.ctx, 3*time.Hour, args...)
		if err == nil {
			err = p.ok()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if q.Summary, err = readJSON[summary.Summary](sumPath); err != nil {
			return nil, err
		}
		q.WallS = p.WallS
		if err := os.WriteFile(wallFile, []byte(strconv.FormatFloat(p.WallS, 'g', -1, 64)+"\n"), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyFile, []byte(key), 0o644); err != nil {
			return nil, err
		}
	}
	if q.Summary.TestAccAfter == nil && method != qualityMethodBase { // older binaries did not evaluate test
		return nil, fmt.Errorf("%s: summary.json has no test_acc_after (the data set's test split is missing?)", name)
	}
	if q.Test10k, err = b.evalTest10k(out); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	q.TrainSteps = b.o.qualityLong * qualityStepsPerEpoch
	if method == qualityMethodMP || method == qualityMethodBase || method == qualityMethodLatency {
		short, err := b.defaultShortSteps(bin)
		if err != nil {
			return nil, err
		}
		for i, a := range q.Args {
			if a == "--short-steps" && i+1 < len(q.Args) {
				short, _ = strconv.Atoi(q.Args[i+1])
			}
		}
		for _, it := range q.Summary.Iterations {
			q.TrainSteps += it.Candidates * short
		}
	}
	return q, nil
}

// defaultShortSteps is short_term_steps as the binary defaults it, for
// counting the fine-tune steps of runs that do not set it.
func (b *bench) defaultShortSteps(bin string) (int, error) {
	if n, ok := b.shortSteps[bin]; ok {
		return n, nil
	}
	out, err := exec.Command(bin, "config", "--print").Output()
	if err != nil {
		return 0, fmt.Errorf("%s config --print: %w", bin, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "short_term_steps" && f[1] == "=" {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				return 0, err
			}
			if b.shortSteps == nil {
				b.shortSteps = map[string]int{}
			}
			b.shortSteps[bin] = n
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s config --print names no short_term_steps", bin)
}

func (b *bench) quality(s *section) error {
	ds, models, err := b.qualitySetup(b.o.qualityModels)
	if err != nil {
		return err
	}
	ps, err := parseFloats("-quality-p", b.o.qualityP)
	if err != nil {
		return err
	}
	methods := []string{qualityMethodMP, qualityMethodL2, qualityMethodGlobal}
	var runs []*qualityRun
	s.Data = map[string]any{"models": models, "runs": &runs, "my_pruning_args": b.o.qualityMP, "l2norm_args": b.o.qualityL2, "data": b.o.qualityData}
	split := "the bundled MNIST sample: 5,000 train / 1,000 val (the search selects on it) / 1,000 test (never selected on)"
	if b.o.qualityData == qualityFashion {
		split = "Fashion-MNIST: its first 5,000 training images as train / the next 1,000 as val (the search selects on it) / its first 1,000 test images as test (never selected on)"
	}
	mt := s.addTable(fmt.Sprintf("Starting points (converged), on %s; TEST 10k: all 10,000 %s test images, which the margins below are judged on", split, b.qualityDataName()),
		"model", "how trained", "val acc", "test acc (1k)", "TEST 10k acc")
	for _, m := range models {
		mt.add(m.Name, m.Recipe, fmt.Sprintf("%.2f%%", 100*m.ValAcc), fmt.Sprintf("%.2f%%", 100*m.TestAcc), fmt.Sprintf("%.2f%%", 100*m.Test10k))
	}
	var summaryParts []string
	allHold := true
	for _, m := range models {
		for _, pv := range ps {
			byMethod := map[string][]*qualityRun{}
			for seed := 1; seed <= b.o.qualitySeeds; seed++ {
				// The one-shot cuts land below the target (kept counts are
				// multiples of alf); my_pruning's last step stops at its
				// target, so it is given the lower of theirs: "at MACs no
				// higher than theirs".
				mpTarget := pv
				for _, method := range []string{qualityMethodL2, qualityMethodGlobal, qualityMethodMP} {
					target := pv
					if method == qualityMethodMP {
						target = mpTarget
					}
					q, err := b.qualityPrune(m, ds, pv, target, seed, method)
					if err != nil {
						return err
					}
					runs = append(runs, q)
					byMethod[method] = append(byMethod[method], q)
					if method != qualityMethodMP {
						mpTarget = max(mpTarget, 1-q.macsRatio())
					}
				}
			}
			var base *qualityRun
			if b.o.qualityBaseline != "" {
				// Seed 1 only: the baseline is slow, and it is there for its
				// wall time; it prunes to seed 1's my_pruning target.
				q, err := b.qualityPrune(m, ds, pv, byMethod[qualityMethodMP][0].Target, 1, qualityMethodBase)
				if err != nil {
					return err
				}
				runs = append(runs, q)
				base = q
			}
			l2 := ""
			if b.o.qualityL2 != "" {
				l2 = "; L2Norm and L2Norm --global: " + b.o.qualityL2
			}
			t := s.addTable(fmt.Sprintf("%s, P=%.2f (my_pruning: to the lower MACs of the two one-shot runs), %d seeds, long-term fine-tune %d epoch(s) for every method; my_pruning: %s%s",
				m.Name, pv, b.o.qualitySeeds, b.o.qualityLong, orDefault(b.o.qualityMP), l2),
				"method", "MACs ratio (worst seed)", "TEST 10k acc (mean ± sd)", "test acc 1k (mean)", "val acc (mean)", "fine-tune steps (mean)", "wall (mean)", "per seed: TEST 10k acc")
			for _, method := range methods {
				rs := byMethod[method]
				var test, test1k, val, steps, wall, macs []float64
				var per []string
				for _, q := range rs {
					test = append(test, q.testAcc())
					test1k = append(test1k, deref(q.Summary.TestAccAfter))
					val = append(val, deref(q.Summary.AccAfter))
					steps = append(steps, float64(q.TrainSteps))
					wall = append(wall, q.WallS)
					macs = append(macs, q.macsRatio())
					per = append(per, fmt.Sprintf("%.2f", 100*q.testAcc()))
				}
				mu, sd := meanSD(test)
				t.add(method, fmt.Sprintf("%.3f", slices.Max(macs)), fmt.Sprintf("%.2f%% ± %.2f", 100*mu, 100*sd),
					fmt.Sprintf("%.2f%%", 100*mean(test1k)), fmt.Sprintf("%.2f%%", 100*mean(val)), fmt.Sprintf("%.0f", mean(steps)), secs(mean(wall)), strings.Join(per, ", "))
			}
			if base != nil {
				t1k := "-"
				if base.Summary.TestAccAfter != nil {
					t1k = fmt.Sprintf("%.2f%%", 100*deref(base.Summary.TestAccAfter))
				}
				t.add(qualityMethodBase+" "+base.Binary[:8], fmt.Sprintf("%.3f", base.macsRatio()), fmt.Sprintf("%.2f%% (seed 1)", 100*base.testAcc()),
					t1k, fmt.Sprintf("%.2f%%", 100*deref(base.Summary.AccAfter)), fmt.Sprint(base.TrainSteps), secs(base.WallS), fmt.Sprintf("%.2f", 100*base.testAcc()))
				mp1 := byMethod[qualityMethodMP][0]
				s.note("%s P=%.2f: my_pruning wall / the baseline binary's my_pruning wall (%s, its defaults), seed 1 = %.2f× (goal ≤ 0.5×); TEST 10k %+.2f points",
					m.Name, pv, base.Binary[:8], mp1.WallS/base.WallS, 100*(mp1.testAcc()-base.testAcc()))
			}
			// Paired by seed: the same seed drives each method's fine-tune order.
			mp := byMethod[qualityMethodMP]
			var cells []string
			for _, ref := range []string{qualityMethodL2, qualityMethodGlobal} {
				var diff []float64
				macsOK := true
				for i, q := range mp {
					r := byMethod[ref][i]
					diff = append(diff, 100*(q.testAcc()-r.testAcc()))
					macsOK = macsOK && q.Summary.MACsAfter <= r.Summary.MACsAfter
				}
				mu, sd := meanSD(diff)
				holds := mu > 0 && macsOK
				allHold = allHold && holds
				verdict := "holds"
				if holds && mu < sd {
					verdict = "holds on average, by less than the seed-to-seed spread"
				}
				if !holds {
					verdict = "does not hold"
					if !macsOK {
						verdict += " (my_pruning's MACs are higher on some seed)"
					}
				}
				cells = append(cells, fmt.Sprintf("vs %s %+.2f ± %.2f points (%s)", ref, mu, sd, verdict))
				s.note("%s P=%.2f: my_pruning − %s on TEST 10k = %+.2f ± %.2f points (mean ± sd of the per-seed differences, %d seeds); %s",
					m.Name, pv, ref, mu, sd, len(diff), verdict)
			}
			wmp, wl2 := 0.0, 0.0
			for i := range mp {
				wmp += mp[i].WallS
				wl2 += byMethod[qualityMethodL2][i].WallS
			}
			s.note("%s P=%.2f: my_pruning wall / L2Norm one-shot wall (with its fine-tune) = %.1f× (goal ≤ 8×)", m.Name, pv, wmp/wl2)
			summaryParts = append(summaryParts, fmt.Sprintf("%s P=%.1f: %s", m.Name, pv, strings.Join(cells, "; ")))
		}
	}
	verdict := "every margin > 0 at no more MACs"
	if !allHold {
		verdict = "NOT every margin is > 0 at no more MACs"
	}
	s.Summary = &summaryRow{
		Gopruner:  "my_pruning: " + strings.Join(summaryParts, " · "),
		Reference: fmt.Sprintf("L2Norm one-shot and L2Norm --global, same start model and long-term fine-tune (%d epoch(s)), %d seeds", b.o.qualityLong, b.o.qualitySeeds),
		Ratio:     verdict,
		Note:      fmt.Sprintf("accuracy difference (points) on all 10,000 %s test images = my_pruning − reference, mean ± sd over seeds", b.qualityDataName()),
	}
	return nil
}

// parseFloats reads a flag's comma-separated list of numbers.
func parseFloats(flag, list string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(list, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// argsTag is "" for no extra flags, else "_" and a short hash of them.
func argsTag(args string) string {
	if args == "" {
		return ""
	}
	h := sha256.Sum256([]byte(args))
	return "_" + hex.EncodeToString(h[:4])
}

func orDefault(args string) string {
	if args == "" {
		return "gopruner's defaults"
	}
	return args
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// meanSD is the mean and the sample standard deviation (0 for one value).
func meanSD(v []float64) (float64, float64) {
	mu := mean(v)
	if len(v) < 2 {
		return mu, 0
	}
	ss := 0.0
	for _, x := range v {
		ss += (x - mu) * (x - mu)
	}
	return mu, math.Sqrt(ss / float64(len(v)-1))
}

// scriptedModels are benchmark 9's models written by a bench/mk*.py script
// and trained by `gopruner train`: the script and how the report names it.
// A model added here is accepted by -quality-models; name it in
// qualityModelNames too.
var scriptedModels = map[string]struct{ script, what string }{
	"resnet20":    {"mkresnet20.py", "ResNet-20"},
	"vgg11":       {"mkvgg11.py", "VGG-11 (BN, a quarter of the width)"},
	"mobilenetv2": {"mkmobilenetv2.py", "MobileNetV2 (torchvision's, width 0.5)"},
	"mnasnet":     {"mkmnasnet.py", "MNASNet (torchvision's mnasnet0_5)"},
}

// qualityModelNames lists every model -quality-models accepts.
const qualityModelNames = "democnn, resnet20, vgg11, mobilenetv2, mnasnet"
