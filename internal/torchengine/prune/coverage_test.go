//go:build cgo

package prune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/flops"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/search/oneshot"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/surgery"
	"github.com/gopruner/gopruner/torch"
)

// coverageTable, when set, is where TestCoverage writes the README's
// coverage table (markdown) from what it measured:
//
//	go test ./internal/torchengine/prune -run TestCoverage -coverage-table=FILE
var coverageTable = flag.String("coverage-table", "", "write the measured coverage table (markdown) to this file")

// coverageRows is issue 13's table: every architecture, scripted and
// traced. Each must meet the whole acceptance; a new row that does not yet
// fails the test with what it misses (a crash fails it in any case).
var coverageRows = []string{
	"googlenet_scripted",
	"googlenet_traced",
	"googlenet_aux_scripted",
	"googlenet_aux_traced",
	"inception_v3_scripted",
	"inception_v3_traced",
	"resnext14_32x4d_scripted",
	"resnext14_32x4d_traced",
	"regnet_x_400mf_scripted",
	"regnet_x_400mf_traced",
	"convnext_tiny_scripted",
	"convnext_tiny_traced",
	"convnext_mini_scripted",
	"convnext_mini_traced",
	"shufflenet_v2_x1_0_scripted",
	"shufflenet_v2_x1_0_traced",
	"lraspp_mobilenet_v3_large_scripted",
	"lraspp_mobilenet_v3_large_traced",
	"deeplabv3_mobilenet_v3_large_scripted",
	"deeplabv3_mobilenet_v3_large_traced",
	"r3d_small_scripted",
	"r3d_small_traced",
	"signal1d_scripted",
	"signal1d_traced",
	"mlp_scripted",
	"mlp_traced",
	"tconv_decoder_scripted",
	"tconv_decoder_traced",
	"efficientnet_b0_scripted",
	"efficientnet_b0_traced",
	"squeezenet1_0_scripted",
	"squeezenet1_0_traced",
	"mnasnet0_5_scripted",
	"mnasnet0_5_traced",
	"mobilenet_v3_small_scripted",
	"mobilenet_v3_small_traced",
	"siamese_scripted",
	"siamese_traced",
	"cbam_scripted",
	"cbam_traced",
	"tcn_scripted",
	"tcn_traced",
	"vnet_scripted",
	"vnet_traced",
	"ghostnet_scripted",
	"ghostnet_traced",
	"eca_scripted",
	"eca_traced",
	"resnet20a_scripted",
	"resnet20a_traced",
	"yolo_c2f_scripted",
	"yolo_c2f_traced",
	"segnet_scripted",
	"segnet_traced",
	"sknet_scripted",
	"sknet_traced",
	"gated_embed_scripted",
	"gated_embed_traced",
	"subpixel_scripted",
	"subpixel_traced",
	"inception_time_scripted",
	"inception_time_traced",
	"wn_tcn_scripted",
	"wn_tcn_traced",
	"coordconv_scripted",
	"coordconv_traced",
	"bit_resnetv2_scripted",
	"bit_resnetv2_traced",
	"nf_resnet_scripted",
	"nf_resnet_traced",
	"attention_scripted",
	"attention_traced",
	"sized_views_scripted",
	"sized_views_traced",
}

// Issue 13's thresholds.
const (
	covP        = 0.5  // prune --P
	covMaxRatio = 0.5  // MACs after / before
	covMinShare = 0.90 // prunable conv/linear MACs share
	covRelTol   = 1e-4 // pruned vs masked original
)

// TestCoverage is issue 13's acceptance on every fixture of
// fixtures.Coverage, scripted and traced:
//   - `gopruner prune --algorithm L2Norm --P 0.5 --finetune=false`
//     succeeds, and its model's MACs are ≤ 0.5 of the original's
//     (summary.json);
//   - Python's torch.jit.load runs that model and returns the original's
//     output structure, with the same shapes but for channel dims;
//   - pruning the exact groups (L2, uniform ratio to P=0.5) gives a model
//     equivalent to the original with the removed channels zeroed (≤ 1e-4
//     relative);
//   - at least 90% of the conv/linear MACs are in prunable groups;
//   - our MACs count of the original equals the fixture's independent
//     ptflops-formula count (scripts/flopcount.py) exactly.
//
// A crash (a panic, a signal, a refusal that is not one `gopruner: ` line)
// fails a row like any missed check. With -coverage-table=FILE the measured
// table is written there (the README's Coverage section).
func TestCoverage(t *testing.T) {
	names := fixtures.Names(fixtures.Coverage)
	for _, n := range names {
		if !slices.Contains(coverageRows, n) {
			t.Errorf("fixture %s has no row in coverageRows", n)
		}
	}
	for _, n := range coverageRows {
		if !slices.Contains(names, n) {
			t.Errorf("coverageRows has %s, which is not in fixtures.Coverage", n)
		}
	}
	bin := fixtures.Binary(t)
	var rows []*covRow
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path, meta := fixtures.Model(t, name)
			r := measureCoverage(t, bin, path, meta)
			rows = append(rows, r)
			fails := r.failures()
			if r.Crash != "" {
				t.Errorf("crash: %s", r.Crash)
			}
			for _, f := range fails {
				t.Error(f)
			}
			t.Logf("%s", r.summary())
		})
	}
	if *coverageTable != "" {
		if err := os.WriteFile(*coverageTable, []byte(coverageMarkdown(rows)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// covRow is what TestCoverage measured on one fixture.
type covRow struct {
	Name, Arch, Export, Structure string

	// Channel analysis of the original; inexact groups are those through
	// a LayerNorm over the channels (graph.Group.Exact).
	Groups, Prunable, Exact, Inexact int
	Share                            float64
	AnalysisErr                      string

	// MACs of the original: ours and the fixture's independent count, and
	// per layer kind where they differ.
	MACs, MetaMACs int64
	KindDiff       string

	// Library prune of the exact groups and its equivalence.
	EquivRel float64
	EquivErr string

	// The CLI's prune: exit code, its error line, MACs from summary.json.
	CLICode                        int
	CLIErr                         string
	CLIBefore, CLIAfter            int64
	PyErr                          string
	PyShapes                       [][]int64
	PyStructure, OrigPyStructure   string
	CLIWall, LibWall, PyWall, Wall time.Duration

	Crash string // a panic or a crashed process: fails every row
	Meta  fixtures.Meta
}

// failures lists what the row misses of the acceptance.
func (r *covRow) failures() []string {
	var f []string
	if r.CLICode != 0 {
		f = append(f, fmt.Sprintf("prune exit %d: %s", r.CLICode, r.CLIErr))
	} else {
		if ratio := r.cliRatio(); !(ratio <= covMaxRatio) {
			f = append(f, fmt.Sprintf("MACs %d -> %d (%.3f of the original), want ≤ %.2f", r.CLIBefore, r.CLIAfter, ratio, covMaxRatio))
		}
		if r.PyErr != "" {
			f = append(f, "python: "+r.PyErr)
		}
	}
	if r.AnalysisErr != "" {
		f = append(f, "analysis: "+r.AnalysisErr)
	} else {
		if r.Share < covMinShare {
			f = append(f, fmt.Sprintf("prunable MACs share %.1f%% < %.0f%%", 100*r.Share, 100*covMinShare))
		}
		if r.MACs != r.MetaMACs {
			f = append(f, fmt.Sprintf("MACs %d vs independent count %d (%s)", r.MACs, r.MetaMACs, r.KindDiff))
		}
	}
	if r.EquivErr != "" {
		f = append(f, "equivalence: "+r.EquivErr)
	}
	return f
}

func (r *covRow) cliRatio() float64 {
	if r.CLIBefore <= 0 {
		return math.NaN()
	}
	return float64(r.CLIAfter) / float64(r.CLIBefore)
}

func (r *covRow) summary() string {
	return fmt.Sprintf("share %.3f, groups %d (prunable %d: exact %d, inexact %d), MACs ours %d / formulas %d, "+
		"CLI exit %d ratio %.3f, equivalence rel %.2g, python %q; lib %v cli %v python %v total %v",
		r.Share, r.Groups, r.Prunable, r.Exact, r.Inexact, r.MACs, r.MetaMACs,
		r.CLICode, r.cliRatio(), r.EquivRel, r.PyStructure, r.LibWall.Round(time.Millisecond),
		r.CLIWall.Round(time.Millisecond), r.PyWall.Round(time.Millisecond), r.Wall.Round(time.Millisecond))
}

func measureCoverage(t *testing.T, bin, path string, meta fixtures.Meta) *covRow {
	start := time.Now()
	r := &covRow{Name: meta.Name, Arch: meta.Arch, Export: meta.Export, Structure: meta.OutputStructure,
		MetaMACs: meta.MACs, Meta: meta, EquivRel: math.NaN()}
	if r.Structure == "" {
		r.Structure = "tensor"
		if meta.TupleOutput {
			r.Structure = "tuple"
		}
	}
	input := fixtures.Float32s(t, meta.Name+".in.f32")
	dir := t.TempDir()

	libStart := time.Now()
	if err := guard(func() error { return measureLibrary(r, path, meta.InputShape, input) }); err != nil {
		var p panicked
		if errors.As(err, &p) {
			r.Crash = err.Error()
		} else if r.AnalysisErr == "" && r.EquivErr == "" {
			r.AnalysisErr = err.Error()
		}
	}
	r.LibWall = time.Since(libStart)

	cliStart := time.Now()
	measureCLI(t, r, bin, path, meta.InputShape, dir)
	r.CLIWall = time.Since(cliStart)

	if r.CLICode == 0 {
		pyStart := time.Now()
		measurePython(t, r, filepath.Join(dir, "pruned.pt"), path, meta)
		r.PyWall = time.Since(pyStart)
	}
	r.Wall = time.Since(start)
	return r
}

// panicked is a recovered panic of the library part: a crash, which no row
// may show.
type panicked struct{ msg string }

func (p panicked) Error() string { return p.msg }

// guard runs f, turning a panic into a panicked error so that one row's
// crash is reported as that row's and the other rows still run.
func guard(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicked{msg: fmt.Sprintf("panic: %v\n%s", v, debug.Stack())}
		}
	}()
	return f()
}

// measureLibrary analyses the original (groups, MACs, coverage) and proves
// the L2 prune of its exact groups to P=0.5 equivalent to the masked
// original on the fixture's input.
func measureLibrary(r *covRow, path string, shape []int64, input []float32) error {
	am, err := model.Open(path, shape, torch.CPU)
	if err != nil {
		r.AnalysisErr = oneLine(err)
		return nil
	}
	defer am.Close()
	r.Groups = len(am.Analysis.Groups)
	var exact []*graph.Group
	for _, g := range am.Base().Candidates(nil) {
		r.Prunable++
		if g.Exact {
			r.Exact++
			exact = append(exact, g)
		} else {
			r.Inexact++
		}
	}
	cnt, err := flops.Count(am.Graph, am.Analysis, nil)
	if err != nil {
		r.AnalysisErr = "MACs: " + oneLine(err)
		return nil
	}
	r.MACs = cnt.MACs
	if r.MACs != r.MetaMACs {
		r.KindDiff = kindDiff(cnt.Layers, r.Meta.Layers)
	}
	cov, err := flops.Attribute(am.Graph, am.Analysis)
	if err != nil {
		r.AnalysisErr = "coverage: " + oneLine(err)
		return nil
	}
	r.Share = cov.PrunableShare
	if len(exact) == 0 {
		r.EquivErr = "no exact prunable group"
		return nil
	}
	rel, err := equivalence(am, exact, shape, input)
	if err != nil {
		r.EquivErr = oneLine(err)
		return nil
	}
	r.EquivRel = rel
	if !(rel <= covRelTol) {
		r.EquivErr = fmt.Sprintf("pruned vs zeroed original: relative error %.3g > %g", rel, covRelTol)
	}
	return nil
}

// equivalence prunes groups (uniform keep ratio for P=0.5 of the MACs, L2
// scores, as L2Norm does) in a clone of the original and returns the max
// relative difference of its output from the original with the removed
// channels zeroed. Only the exact groups: an inexact group changes the
// function beyond the zeroed channels.
func equivalence(am *model.Analyzed, groups []*graph.Group, shape []int64, input []float32) (float64, error) {
	scores, err := criteria.L2(am.Module, groups)
	if err != nil {
		return 0, fmt.Errorf("L2 scores: %w", err)
	}
	base := am.Base()
	before, err := flops.Count(am.Graph, am.Analysis, nil)
	if err != nil {
		return 0, err
	}
	res := oneshot.Uniform(groups, base.MACsFunc(), int64(float64(before.MACs)*(1-covP)), 1)
	kept := oneshot.Select(groups, scores, res.Keep)
	pl, err := base.Plan(kept)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	if len(pl.Groups) == 0 {
		return 0, errors.New("the plan prunes nothing")
	}
	pruned, err := am.Module.Clone()
	if err != nil {
		return 0, err
	}
	defer pruned.Close()
	if err := Apply(pruned, am.Analysis, pl); err != nil {
		return 0, fmt.Errorf("surgery: %w", err)
	}
	zeroed, err := surgery.Masked(am.Module, am.Analysis, kept)
	if err != nil {
		return 0, err
	}
	defer zeroed.Close()
	x, err := torch.FromFloat32(input, shape, torch.CPU)
	if err != nil {
		return 0, err
	}
	defer x.Close()
	want, err := zeroed.Forward(true, x)
	if err != nil {
		return 0, fmt.Errorf("zeroed original: %w", err)
	}
	defer want.Close()
	got, err := pruned.Forward(true, x)
	if err != nil {
		return 0, fmt.Errorf("pruned: %w", err)
	}
	defer got.Close()
	diff, scale, err := got.MaxAbsDiff(want)
	if err != nil {
		return 0, err
	}
	full, err := am.Module.Forward(true, x)
	if err != nil {
		return 0, err
	}
	defer full.Close()
	if d, _, _ := full.MaxAbsDiff(want); d == 0 {
		return 0, errors.New("zeroing the removed channels changed nothing: the check proves nothing")
	}
	if scale == 0 {
		scale = 1
	}
	return diff / scale, nil
}

// kindDiff names the layer kinds whose MACs differ between our count and
// the fixture's (module class names there, op kinds here), as
// "ours conv=1 ...; formulas Conv2d=2 ...".
func kindDiff(ours []flops.Layer, theirs []fixtures.MetaLay) string {
	o := map[string]int64{}
	for _, l := range ours {
		o[l.Kind] += l.MACs
	}
	th := map[string]int64{}
	for _, l := range theirs {
		th[l.Kind] += l.MACs
	}
	return "ours " + kindList(o) + "; formulas " + kindList(th)
}

func kindList(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// measureCLI runs the acceptance's command; a refusal must be one clean
// line, anything else is a crash.
func measureCLI(t *testing.T, r *covRow, bin, path string, shape []int64, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "prune", "--model", path, "--algorithm", "L2Norm",
		"--P", strconv.FormatFloat(covP, 'g', -1, 64), "--finetune=false", "--input-shape", dims(shape),
		"--exp-save", "exp", "--out", "pruned.pt")
	cmd.Dir = dir
	cmd.Env = fixtures.CleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.CLICode = ee.ExitCode()
	default:
		t.Fatalf("running %s: %v", bin, err)
	}
	if r.CLICode == 0 {
		sums, _ := filepath.Glob(filepath.Join(dir, "exp", "*", "summary.json"))
		if len(sums) != 1 {
			r.CLICode, r.CLIErr = -1, fmt.Sprintf("exit 0 but %d summary.json files", len(sums))
			return
		}
		var s struct {
			MACsBefore int64 `json:"macs_before"`
			MACsAfter  int64 `json:"macs_after"`
		}
		data, err := os.ReadFile(sums[0])
		if err == nil {
			err = json.Unmarshal(data, &s)
		}
		if err != nil {
			r.CLICode, r.CLIErr = -1, "summary.json: "+err.Error()
			return
		}
		r.CLIBefore, r.CLIAfter = s.MACsBefore, s.MACsAfter
		return
	}
	line, clean := refusal(stderr.String())
	r.CLIErr = line
	if !clean || (r.CLICode != 1 && r.CLICode != 2) {
		r.Crash = fmt.Sprintf("prune exit %d, not one clean `gopruner: ` line; stderr:\n%s", r.CLICode, tail(stderr.String(), 3000))
	}
}

// refusal returns the error line of a failed run's stderr and whether the
// refusal is clean: exactly one line starts with "gopruner: ", it is the
// last, and nothing looks like a Go panic or a fatal signal. Other lines
// are the run's log and libtorch's warnings.
func refusal(stderr string) (string, bool) {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "(no error line)", false
	}
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "gopruner: ") {
			n++
		}
		for _, bad := range []string{"panic:", "goroutine ", "fatal error:", "SIGSEGV", "SIGABRT", "terminate called"} {
			if strings.Contains(l, bad) {
				return l, false
			}
		}
	}
	last := lines[len(lines)-1]
	return last, n == 1 && strings.HasPrefix(last, "gopruner: ")
}

// measurePython has Python's torch.jit.load run the pruned model and
// compares its outputs with the original's: the same number of tensors of
// the same rank and non-channel dims, and the same structure when
// scripts/pyload.py reports one.
func measurePython(t *testing.T, r *covRow, pruned, orig string, meta fixtures.Meta) {
	got, err := pyload(t, pruned, meta.InputShape)
	if err != nil {
		r.PyErr = err.Error()
		return
	}
	r.PyShapes, r.PyStructure = got.Shapes, got.Structure
	want := meta.OutputShapes
	if len(want) == 0 {
		want = [][]int64{meta.OutputShape}
	}
	if len(got.Shapes) != len(want) {
		r.PyErr = fmt.Sprintf("%d output tensors, the original has %d (%v vs %v)", len(got.Shapes), len(want), got.Shapes, want)
		return
	}
	for i := range want {
		a, b := got.Shapes[i], want[i]
		if len(a) != len(b) {
			r.PyErr = fmt.Sprintf("output %d has shape %v, the original %v", i, a, b)
			return
		}
		for d := range a {
			if d != 1 && a[d] != b[d] {
				r.PyErr = fmt.Sprintf("output %d has shape %v, the original %v", i, a, b)
				return
			}
		}
	}
	o, err := pyload(t, orig, meta.InputShape)
	if err != nil {
		r.PyErr = "the original: " + err.Error()
		return
	}
	r.OrigPyStructure = o.Structure
	if got.Structure != "" && o.Structure != got.Structure {
		r.PyErr = fmt.Sprintf("output structure %s, the original's %s", got.Structure, o.Structure)
		return
	}
	// What runs only in training (auxiliary classifiers) must fit the cut
	// too: fine-tuning runs it.
	if o.TrainOK != nil && *o.TrainOK && (got.TrainOK == nil || !*got.TrainOK) {
		r.PyErr = "training mode: " + tail(got.TrainError, 300)
	}
}

type pyResult struct {
	OK        bool      `json:"ok"`
	Error     string    `json:"error"`
	Shapes    [][]int64 `json:"output_shapes"`
	Structure string    `json:"structure"`
	// TrainOK is whether forward and backward ran in training mode (nil
	// without --train).
	TrainOK    *bool  `json:"train_ok"`
	TrainError string `json:"train_error"`
}

// pyload runs scripts/pyload.py on model; the test skips (fails in CI)
// without Debian's Python torch.
func pyload(t *testing.T, model string, shape []int64) (pyResult, error) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		fixtures.Missing(t, "no /usr/bin/python3 (make deps)")
	}
	script := filepath.Join(fixtures.RepoRoot(t), "scripts", "pyload.py")
	out, _ := exec.Command("/usr/bin/python3", script, model, "--input-shape", dims(shape), "--train").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res pyResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return res, fmt.Errorf("pyload printed %q", tail(string(out), 500))
	}
	if !res.OK {
		return res, errors.New(tail(res.Error, 300))
	}
	return res, nil
}

func dims(shape []int64) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(s, ",")
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// coverageMarkdown is the README's coverage table.
func coverageMarkdown(rows []*covRow) string {
	var b strings.Builder
	b.WriteString("| architecture | export | output | prunable MACs | groups exact / inexact | prune | MACs after | equivalence | python load | MACs = formulas | acceptance |\n")
	b.WriteString("|---|---|---|---:|---|---|---:|---|---|---|---|\n")
	for _, r := range rows {
		share, groups := "—", "—"
		if r.AnalysisErr == "" {
			share = flops.Percent(r.Share)
			groups = fmt.Sprintf("%d / %d", r.Exact, r.Inexact)
		}
		prune, after, py := "✗ "+r.cliReason(), "—", "—"
		if r.CLICode == 0 {
			prune = "✓"
			after = fmt.Sprintf("%.3f", r.cliRatio())
			if r.cliRatio() > covMaxRatio {
				after += " ✗"
			}
			py = "✓"
			if r.PyErr != "" {
				py = "✗"
			}
		}
		equiv := "✗"
		if r.EquivErr == "" && !math.IsNaN(r.EquivRel) {
			equiv = fmt.Sprintf("✓ %.1e", r.EquivRel)
		}
		macs := "—"
		if r.AnalysisErr == "" {
			macs = "✓"
			if r.MACs != r.MetaMACs {
				macs = fmt.Sprintf("✗ %+.1f%%", 100*float64(r.MACs-r.MetaMACs)/float64(r.MetaMACs))
			}
		}
		status := "✓"
		if len(r.failures()) > 0 {
			status = "gap"
		}
		if r.Crash != "" {
			prune, status = "CRASH", "CRASH"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Arch, r.Export, r.Structure, share, groups, prune, after, equiv, py, macs, status)
	}
	return b.String()
}

// cliReason shortens a refusal for the table.
func (r *covRow) cliReason() string {
	s := strings.TrimPrefix(r.CLIErr, "gopruner: ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return fmt.Sprintf("(exit %d: %s)", r.CLICode, s)
}

// TestRefusal: what TestCoverage takes for a clean refusal and for a crash.
func TestRefusal(t *testing.T) {
	for _, c := range []struct {
		stderr string
		clean  bool
	}{
		{"gopruner: flag --input-shape: bad\n", true},
		{"13:19:05 INF prune P=0.5\nW20261201 warning from libtorch\ngopruner: the pruned model does not run: x\n", true},
		{"", false},
		{"gopruner: a\ngopruner: b\n", false},
		{"gopruner: a\nmore after it\n", false},
		{"panic: runtime error: index out of range\n\ngoroutine 1 [running]:\n", false},
		{"gopruner: x\nfatal error: unexpected signal\n", false},
		{"terminate called after throwing an instance of 'c10::Error'\n", false},
		{"SIGSEGV: segmentation violation\ngopruner: x\n", false},
	} {
		if _, clean := refusal(c.stderr); clean != c.clean {
			t.Errorf("refusal(%q) clean = %v, want %v", c.stderr, clean, c.clean)
		}
	}
}
