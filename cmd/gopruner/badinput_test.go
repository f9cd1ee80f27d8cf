//go:build cgo

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// The bad-input suite (issue "Reliability"): every way a user can hand the
// CLI something wrong ends in exit 2 (usage/config/input) or 1 (runtime),
// with exactly one "gopruner: " line on stderr that names the file, key or
// layer at fault, never a crash, and never a partial output file.

// crashMarks must never appear on stderr: Go panics, C++ terminations,
// signals, libtorch backtraces, TorchScript tracebacks (the error line
// keeps their exception and layer).
var crashMarks = []string{"panic", "goroutine ", "terminate called", "SIGSEGV", "Exception raised from", "<--- HERE"}

// badCase is one bad input: the command line (run in a fresh directory
// holding whatever setup made), extra environment, and the expected exit
// code and error-line fragments.
type badCase struct {
	name  string
	args  []string
	env   []string
	code  int
	wants []string
	skip  string // why the case cannot be checked here, if it cannot
}

// runEnv is runIn with extra GOPRUNER_* settings.
func runEnv(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	return execCLI(t, dir, env, args...)
}

// checkErrLine asserts the exit code and that stderr is one "gopruner: "
// line containing every want and no crash marker.
func checkErrLine(t *testing.T, r cliResult, code int, wants ...string) {
	t.Helper()
	t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstderr: %s", r.code, code, r.stderr)
	}
	for _, m := range crashMarks {
		if strings.Contains(r.stderr, m) {
			t.Errorf("stderr contains %q:\n%s", m, r.stderr)
		}
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "gopruner: ") {
		t.Errorf("stderr is not one \"gopruner: \" line:\n%s", r.stderr)
		return
	}
	for _, w := range wants {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error %q does not mention %q", lines[0], w)
		}
	}
}

// listFiles lists the regular files under dir (relative paths).
func listFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoOutputs fails when a failed run left a file in dir that was not
// there before, other than a run's log (log.jsonl, which records the
// failure).
func checkNoOutputs(t *testing.T, dir string, before map[string]bool) {
	t.Helper()
	for f := range listFiles(t, dir) {
		if !before[f] && filepath.Base(f) != "log.jsonl" {
			t.Errorf("a failed run left %s behind", f)
		}
	}
}

// runBadCases runs each case in its own copy of setup's directory.
func runBadCases(t *testing.T, setup func(t *testing.T, dir string), cases []badCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			dir := t.TempDir()
			if setup != nil {
				setup(t, dir)
			}
			before := listFiles(t, dir)
			r := runEnv(t, dir, c.env, c.args...)
			checkErrLine(t, r, c.code, c.wants...)
			checkNoOutputs(t, dir, before)
		})
	}
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func copyTestFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputModel(t *testing.T) {
	t.Parallel() // each case is its own process
	small := fixtures.Path(t, "smallcnn_scripted.pt")
	stateDict := fixtures.Path(t, "state_dict.pt")
	pickled := fixtures.Path(t, "pickled_module.pt")
	noForward := fixtures.Path(t, "no_forward.pt")
	twoInputs := fixtures.Path(t, "two_inputs.pt")
	half := fixtures.Path(t, "half.pt")
	frozen := fixtures.Path(t, "frozen.pt")
	mobile := fixtures.Path(t, "mobile.pt")
	quantized := fixtures.Path(t, "quantized.pt")
	setup := func(t *testing.T, dir string) {
		rnd := make([]byte, 4096) // fixed pseudo-random bytes, not a zip
		for i := range rnd {
			rnd[i] = byte(i*7919 + i/13)
		}
		if err := os.WriteFile(filepath.Join(dir, "random.pt"), rnd, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(small)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "truncated.pt"), b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "badentry.pt"), breakEntry(t, b, "/data.pkl"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "empty.pt"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "adir.pt"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	models := []struct {
		name, path string
		wants      []string
	}{
		{"missing file", "nosuch.pt", []string{"nosuch.pt", "no such file"}},
		{"random bytes", "random.pt", []string{"random.pt", "not a TorchScript file", "torch.jit.script"}},
		{"truncated", "truncated.pt", []string{"truncated.pt", "truncated or corrupt"}},
		{"corrupt entry", "badentry.pt", []string{"badentry.pt", "cannot load as TorchScript", "data.pkl"}},
		{"empty file", "empty.pt", []string{"empty.pt", "empty file"}},
		{"directory", "adir.pt", []string{"adir.pt", "directory"}},
		{"state_dict", stateDict, []string{stateDict, "not TorchScript", "torch.jit.script"}},
		{"pickled module", pickled, []string{pickled, "not TorchScript", "torch.jit.script"}},
		{"no forward", noForward, []string{noForward, "no forward method"}},
		{"two inputs", twoInputs, []string{"forward(x, meta) takes 2 inputs", "one tensor", "[1 3 32 32]"}},
		{"float16 weights", half, []string{"weights are float16 (layer conv1)", "float32 inputs", ".float()"}},
		{"frozen", frozen, []string{frozen, "has no parameters", "torch.jit.freeze", "from before that step"}},
		{"optimised for mobile", mobile, []string{mobile, "has no parameters", "optimize_for_mobile"}},
		{"quantized", quantized, []string{quantized, "is quantized", "quantized.Conv2dPackedParamsBase", "prune before quantizing"}},
	}
	var cases []badCase
	for _, m := range models {
		cases = append(cases, badCase{name: "flops/" + m.name, code: 2, wants: m.wants,
			args: []string{"flops", "--model", m.path, "--input-shape", "1,3,32,32"}})
		// prune goes through the same model.Load; a few cases show it.
		if m.name == "missing file" || m.name == "truncated" || m.name == "state_dict" || m.name == "no forward" ||
			m.name == "two inputs" || m.name == "float16 weights" || m.name == "frozen" || m.name == "quantized" {
			cases = append(cases, badCase{name: "prune/" + m.name, code: 2, wants: m.wants,
				args: []string{"prune", "--model", m.path, "--input-shape", "1,3,32,32", "--algorithm", "L2Norm",
					"--finetune=false", "--exp-save", "exp", "--out", "out.pt"}})
		}
	}
	// apply reads the plan first: give it a valid one to reach the model.
	cases = append(cases, badCase{name: "apply/state_dict", code: 2, wants: []string{stateDict, "torch.jit.script"},
		args: []string{"apply", "--model", stateDict, "--plan", writeTinyPlan(t), "--out", "out.pt"}})
	// A mistyped path is the error, before the settings a model would need
	// next (the input shape, the data set).
	for _, cmd := range []string{"prune", "flops", "train"} {
		cases = append(cases, badCase{name: cmd + "/missing file, no other settings", code: 2, wants: []string{"nosuch.pt", "no such file"},
			args: []string{cmd, "--model", "nosuch.pt"}})
	}
	runBadCases(t, setup, cases)
}

// breakEntry returns a copy of the zip archive b whose local header of the
// entry ending in suffix is destroyed, while the central directory (all
// that a zip listing reads) stays intact.
func breakEntry(t *testing.T, b []byte, suffix string) []byte {
	t.Helper()
	out := bytes.Clone(b)
	sig := []byte("PK\x03\x04")
	for i := 0; ; i += len(sig) {
		j := bytes.Index(out[i:], sig)
		if j < 0 {
			t.Fatalf("no zip entry ending in %s", suffix)
		}
		i += j
		if i+30 > len(out) {
			continue
		}
		n := int(binary.LittleEndian.Uint16(out[i+26:]))
		if i+30+n <= len(out) && strings.HasSuffix(string(out[i+30:i+30+n]), suffix) {
			copy(out[i:], "\x00\x00\x00\x00")
			return out
		}
	}
}

// writeTinyPlan writes a well-formed plan that changes nothing.
func writeTinyPlan(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plan.json")
	js := `{"format": "gopruner-plan/1", "input_shape": [1,3,32,32], "groups": [], "tensors": {}}`
	if err := os.WriteFile(p, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInputTupleOutput: a model whose forward returns a tuple (logits,
// features) is analysed and pruned; the channels any output exposes are
// frozen, so the pruned model keeps both output shapes.
func TestBadInputTupleOutput(t *testing.T) {
	t.Parallel() // each case is its own process
	for _, name := range []string{"tuple_out_scripted", "tuple_out_traced"} {
		t.Run(name, func(t *testing.T) {
			model, meta := fixtures.Model(t, name)
			if !meta.TupleOutput {
				t.Fatalf("%s is not a tuple-output fixture", name)
			}
			dir := t.TempDir()
			for _, cmd := range []string{"flops", "graph"} {
				r := runIn(t, dir, cmd, "--model", model, "--input-shape", "1,3,32,32", "--json")
				if r.code != 0 {
					t.Fatalf("%s: exit %d: %s", cmd, r.code, r.stderr)
				}
			}
			before := fileSHA(t, model)
			r := runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
				"--input-shape", "1,3,32,32", "--exp-save", "exp", "--out", "pruned.pt")
			if r.code != 0 {
				t.Fatalf("prune: exit %d: %s", r.code, r.stderr)
			}
			if fileSHA(t, model) != before {
				t.Error("the input model changed")
			}
			r = runIn(t, dir, "graph", "--model", "pruned.pt", "--input-shape", "1,3,32,32", "--json")
			if r.code != 0 {
				t.Fatalf("graph of the pruned model: exit %d: %s", r.code, r.stderr)
			}
			var g struct {
				Groups []struct {
					Channels int    `json:"channels"`
					Reason   string `json:"reason"`
					MACs     *int64 `json:"macs"`
				} `json:"groups"`
				Share  *float64 `json:"prunable_macs_share"`
				Frozen []struct {
					Reason string  `json:"reason"`
					MACs   int64   `json:"macs"`
					Share  float64 `json:"share"`
					Groups int     `json:"groups"`
				} `json:"frozen_reasons"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
				t.Fatal(err)
			}
			// Why: the classifier reads the features the model also
			// returns, so both its groups are model outputs and its MACs
			// (only those) are frozen.
			for i, gr := range g.Groups {
				if gr.MACs == nil || *gr.MACs < 0 {
					t.Errorf("group %d: macs missing or negative", i)
				}
			}
			if g.Share == nil || *g.Share <= 0.99 || *g.Share >= 1 {
				t.Errorf("prunable_macs_share %v, want in (0.99, 1)", g.Share)
			}
			if len(g.Frozen) == 0 || g.Frozen[0].Reason != "model output" || g.Frozen[0].MACs <= 0 ||
				g.Frozen[0].Groups != 2 || g.Share != nil && math.Abs(*g.Share+g.Frozen[0].Share-1) > 1e-9 {
				t.Errorf("frozen_reasons %+v, want model output first with the rest of the MACs", g.Frozen)
			}
			for i := 1; i < len(g.Frozen); i++ {
				if g.Frozen[i].MACs > g.Frozen[i-1].MACs {
					t.Errorf("frozen_reasons not ranked: %+v", g.Frozen)
				}
			}
			var outs []int
			for _, gr := range g.Groups {
				if gr.Reason == "model output" {
					outs = append(outs, gr.Channels)
				}
			}
			// output_shapes [[1,10],[1,32]]: both outputs keep their width.
			if fmt.Sprint(outs) != "[32 10]" && fmt.Sprint(outs) != "[10 32]" {
				t.Errorf("pruned model's output groups have %v channels, want 10 and 32", outs)
			}
		})
	}
}

func TestBadInputShape(t *testing.T) {
	t.Parallel() // each case is its own process
	scripted := fixtures.Path(t, "smallcnn_scripted.pt")
	traced := fixtures.Path(t, "smallcnn_traced.pt")
	residual := fixtures.Path(t, "residual_scripted.pt")
	prune := func(model, shape string) []string {
		return []string{"prune", "--model", model, "--input-shape", shape, "--algorithm", "L2Norm",
			"--finetune=false", "--exp-save", "exp", "--out", "out.pt"}
	}
	// Every command reads --input-shape through the configuration, which
	// checks its rank before any model is loaded.
	rank := []string{"input_shape", "6 dimensions", "want 2 to 5"}
	// Ranks 2 to 5 pass the configuration; a 2-D conv model refuses them
	// naming the rank it wants.
	fits := []string{"does not fit the model", "4-dimensional input (N,C,H,W)"}
	channels := []string{"layer conv1", "3 input channels", "gives 1"}
	runBadCases(t, nil, []badCase{
		{name: "rank/flops scripted", code: 2, wants: rank, args: []string{"flops", "--model", scripted, "--input-shape", "1,3,2,2,32,32"}},
		{name: "rank/graph traced", code: 2, wants: rank, args: []string{"graph", "--model", traced, "--input-shape", "1,3,2,2,32,32"}},
		{name: "rank/prune", code: 2, wants: rank, args: prune(scripted, "1,3,2,2,32,32")},
		{name: "fits/flops scripted 3", code: 2, wants: append(fits, "3 dimensions"), args: []string{"flops", "--model", scripted, "--input-shape", "1,3,32"}},
		{name: "fits/flops scripted 5", code: 2, wants: append(fits, "5 dimensions"), args: []string{"flops", "--model", scripted, "--input-shape", "1,3,4,32,32"}},
		{name: "fits/graph traced 2", code: 2, wants: append(fits, "2 dimensions"), args: []string{"graph", "--model", traced, "--input-shape", "1,3"}},
		{name: "fits/prune scripted 2", code: 2, wants: append(fits, "2 dimensions"), args: prune(scripted, "1,3")},
		{name: "fits/bench-model 5", code: 2, wants: append(fits, "5 dimensions"),
			args: []string{"bench-model", "--model", scripted, "--input-shape", "1,3,4,32,32", "--runs", "1", "--warmup", "0"}},
		{name: "rank/not a number", code: 2, wants: []string{"--input-shape", `"x"`, "not an integer"},
			args: []string{"flops", "--model", scripted, "--input-shape", "1,3,x,32"}},
		{name: "channels/flops scripted", code: 2, wants: channels, args: []string{"flops", "--model", scripted, "--input-shape", "1,1,32,32"}},
		{name: "channels/flops traced", code: 2, wants: channels, args: []string{"flops", "--model", traced, "--input-shape", "1,1,32,32"}},
		{name: "channels/prune", code: 2, wants: channels, args: prune(scripted, "1,1,32,32")},
		{name: "channels/prune residual", code: 2, wants: channels, args: prune(residual, "1,1,32,32")},
		{name: "channels/bench-model", code: 2, wants: channels,
			args: []string{"bench-model", "--model", scripted, "--input-shape", "1,1,32,32", "--runs", "1", "--warmup", "0"}},
		// The demo CNN's conv takes the 3-D input as unbatched; its
		// BatchNorm2d raises, through a TorchScript traceback that the error
		// line shortens to the exception and the layer.
		{name: "fits/prune traceback", code: 2, wants: []string{"does not fit the model", "ValueError: expected 4D input (got 3D input)",
			"(raised in layer bn1)"}, args: prune(demoModel(t), "1,1,28")},
	})
}

// cudaAvailable asks the binary (libtorch) whether there is a GPU.
func cudaAvailable(t *testing.T) bool {
	r := runIn(t, t.TempDir(), "version")
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "cuda" {
			return f[1] != "no"
		}
	}
	return true // unknown: do not assert what depends on it
}

func TestBadInputKnobs(t *testing.T) {
	t.Parallel() // each case is its own process
	model := fixtures.Path(t, "smallcnn_scripted.pt")
	prune := func(extra ...string) []string {
		return append([]string{"prune", "--model", model, "--input-shape", "1,3,32,32", "--algorithm", "L2Norm",
			"--finetune=false", "--exp-save", "exp", "--out", "out.pt"}, extra...)
	}
	var cases []badCase
	for _, p := range []string{"0", "1", "1.5", "-0.2"} {
		cases = append(cases, badCase{name: "P=" + p, code: 2, wants: []string{"--P", "P: " + p, "(0,1)"}, args: prune("--P=" + p)})
	}
	for _, a := range []string{"0", "-8"} {
		cases = append(cases, badCase{name: "alf=" + a, code: 2, wants: []string{"alf", a, ">= 1"}, args: prune("--alf=" + a)})
	}
	for _, d := range []string{"0", "1", "1.5", "-0.1"} {
		cases = append(cases, badCase{name: "delta_crop=" + d, code: 2, wants: []string{"delta_crop", d, "(0,1)"},
			args: prune("--delta-crop=" + d)})
	}
	for _, w := range []string{"1.5", "-0.1"} {
		cases = append(cases, badCase{name: "distill_weight=" + w, code: 2, wants: []string{"--distill-weight", "distill_weight: " + w, "[0,1]"},
			args: prune("--distill", "--distill-weight="+w)})
	}
	cases = append(cases, badCase{name: "distill_temperature=0", code: 2, wants: []string{"GOPRUNER_DISTILL_TEMPERATURE", "distill_temperature: 0", "> 0"},
		env: []string{"GOPRUNER_DISTILL_TEMPERATURE=0"}, args: prune("--distill")})
	cases = append(cases,
		badCase{name: "iskl matches nothing", code: 2, wants: []string{"iskl", `"nosuchlayer"`, "matches no layer"},
			args: prune("--iskl", "conv1,nosuchlayer")},
		badCase{name: "cart cuda:99", code: 2, wants: []string{"cart", "cuda:99"}, args: prune("--cart", "cuda:99")},
		badCase{name: "cart not a device", code: 2, wants: []string{"cart", "tpu"}, args: prune("--cart", "tpu")},
		badCase{name: "device cuda:99", code: 2, wants: []string{"cuda:99"}, args: prune("--device", "cuda:99")},
		badCase{name: "target foo", code: 2, wants: []string{"target", "foo"}, args: prune("--target", "foo")},
		badCase{name: "target latency with L2Norm", code: 2, wants: []string{"target: latency", "L2Norm", "target: macs"},
			args: prune("--target", "latency")},
		badCase{name: "latency_threads 0", code: 2, wants: []string{"latency_threads", "0"}, args: prune("--latency-threads", "0")},
		badCase{name: "latency_batch 0", code: 2, wants: []string{"latency_batch", "0"}, args: prune("--latency-batch", "0")},
	)
	if !cudaAvailable(t) {
		cases = append(cases,
			badCase{name: "cart 0 without GPU", code: 2, wants: []string{"cart", "cuda:0", "CUDA is not available"}, args: prune("--cart", "0")},
			badCase{name: "cart cuda:3 without GPU", code: 2, wants: []string{"cart", "cuda:3"}, args: prune("--cart", "cuda:3")},
			badCase{name: "latency_device cuda:0 without GPU", code: 2, wants: []string{"latency_device", "cuda:0", "CUDA is not available"},
				args: prune("--algorithm", "my_pruning", "--target", "latency", "--latency-device", "cuda:0")},
			badCase{name: "flops on cuda:0 without GPU", code: 2, wants: []string{"cuda:0"},
				args: []string{"flops", "--model", model, "--input-shape", "1,3,32,32", "--device", "cuda:0"}},
		)
	}
	runBadCases(t, nil, cases)
}

// TestBadInputOutputs: outputs that would overwrite the input or cannot be
// written are refused up front; the input stays as it was and nothing is
// left behind.
func TestBadInputOutputs(t *testing.T) {
	t.Parallel() // each case is its own process
	src := fixtures.Path(t, "smallcnn_scripted.pt")
	setup := func(t *testing.T, dir string) {
		copyTestFile(t, src, filepath.Join(dir, "m.pt"))
		if err := os.WriteFile(filepath.Join(dir, "afile"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "ro"), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	prune := func(extra ...string) []string {
		return append([]string{"prune", "--model", "m.pt", "--input-shape", "1,3,32,32", "--algorithm", "L2Norm",
			"--finetune=false", "--exp-save", "exp"}, extra...)
	}
	plan := writeTinyPlan(t)
	cases := []badCase{
		{name: "prune --out is the model", code: 2, wants: []string{"--out m.pt", "input model"}, args: prune("--out", "m.pt")},
		{name: "prune --out is the model via ./", code: 2, wants: []string{"--out ./m.pt", "input model"}, args: prune("--out", "./m.pt")},
		{name: "apply --out is the model", code: 2, wants: []string{"--out m.pt", "input model"},
			args: []string{"apply", "--model", "m.pt", "--plan", plan, "--out", "m.pt"}},
		{name: "prune --out in a missing dir", code: 2, wants: []string{"--out no/such/x.pt", "no/such", "does not exist"},
			args: prune("--out", "no/such/x.pt")},
		{name: "apply --out in a missing dir", code: 2, wants: []string{"--out no/x.pt", "does not exist"},
			args: []string{"apply", "--model", "m.pt", "--plan", plan, "--out", "no/x.pt"}},
		{name: "prune --plan-out in a missing dir", code: 2, wants: []string{"--plan-out no/p.json", "does not exist"},
			args: prune("--out", "x.pt", "--plan-out", "no/p.json")},
		{name: "prune --out under a file", code: 2, wants: []string{"--out afile/x.pt", "not a directory"},
			args: prune("--out", "afile/x.pt")},
		{name: "prune --exp-save is a file", code: 2, wants: []string{"exp_save", "afile"},
			args: []string{"prune", "--model", "m.pt", "--input-shape", "1,3,32,32", "--algorithm", "L2Norm",
				"--finetune=false", "--exp-save", "afile", "--out", "x.pt"}},
	}
	roSkip := ""
	if probe, err := os.CreateTemp(mkROProbe(t), "probe"); err == nil {
		probe.Close()
		roSkip = "this user (root?) can write into a 0555 directory anyway"
	}
	cases = append(cases,
		badCase{name: "prune --out in a read-only dir", code: 2, wants: []string{"--out ro/x.pt", "not writable"},
			args: prune("--out", "ro/x.pt"), skip: roSkip},
		badCase{name: "apply --out in a read-only dir", code: 2, wants: []string{"--out ro/x.pt", "not writable"},
			args: []string{"apply", "--model", "m.pt", "--plan", plan, "--out", "ro/x.pt"}, skip: roSkip},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			dir := t.TempDir()
			setup(t, dir)
			before := listFiles(t, dir)
			sum := fileSHA(t, filepath.Join(dir, "m.pt"))
			r := runEnv(t, dir, c.env, c.args...)
			checkErrLine(t, r, c.code, c.wants...)
			checkNoOutputs(t, dir, before)
			if fileSHA(t, filepath.Join(dir, "m.pt")) != sum {
				t.Error("the input model changed")
			}
		})
	}
}

// mkROProbe makes a 0555 directory to find out whether this user can write
// into one anyway (root can).
func mkROProbe(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(d, 0o555); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBadInputDataset covers what TestTrainBadData (train) does not: the
// same kinds of bad data through eval and prune, labels the model's outputs
// cannot hold, an empty val split, missing columns and directories.
func TestBadInputDataset(t *testing.T) {
	t.Parallel() // each case is its own process
	demo := demoModel(t)
	type dsCase struct {
		name  string
		edit  func(t *testing.T, dir string)
		cmd   string // eval, prune, prune --finetune or my_pruning
		code  int
		wants []string
	}
	remove := func(name string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	corrupt := func(name string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("\x89PNG but not really"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	csv := func(f func(string) string) func(*testing.T, string) {
		return func(t *testing.T, dir string) { rewriteCSV(t, dir, f) }
	}
	allSplit := func(split string) func(string) string {
		return func(s string) string {
			for _, from := range []string{",train\n", ",val\n"} {
				s = strings.ReplaceAll(s, from, ","+split+"\n")
			}
			return s
		}
	}
	// tinyDataset(t, 16): data.csv rows 1..16 (after the header) are
	// img/000..015.png; 012..015 (rows 13..16) are the val split.
	cases := []dsCase{
		{"corrupt val image", corrupt("img/013.png"), "eval", 2, []string{"data.csv row 14", "img/013.png"}},
		{"corrupt val image", corrupt("img/013.png"), "prune", 2, []string{"data.csv row 14", "img/013.png"}},
		{"corrupt train image", corrupt("img/001.png"), "prune --finetune", 2, []string{"data.csv row 2", "img/001.png"}},
		{"corrupt train image", corrupt("img/001.png"), "my_pruning", 2, []string{"data.csv row 2", "img/001.png"}},
		{"missing val image", remove("img/012.png"), "eval", 2, []string{"data.csv row 13", "img/012.png", "not found"}},
		{"missing image", remove("img/002.png"), "prune", 2, []string{"data.csv row 3", "img/002.png", "not found"}},
		{"no path column", csv(func(s string) string { return strings.Replace(s, "path,label,split", "picture,label,split", 1) }),
			"eval", 2, []string{"data.csv", "no path column"}},
		{"no label column", csv(func(s string) string { return strings.Replace(s, "path,label,split", "path,kind,split", 1) }),
			"eval", 2, []string{"data.csv", "label"}},
		{"empty val split", csv(allSplit("test")), "eval", 2, []string{"data.csv", `split "val" is empty`}},
		{"empty val split", csv(allSplit("test")), "prune", 2, []string{"data.csv", `split "val" is empty`}},
		{"empty train split", csv(allSplit("val")), "prune --finetune", 2, []string{"data.csv", `split "train" is empty`}},
		{"label 50 for a 10-class model", csv(func(s string) string { return strings.Replace(s, "img/013.png,1,", "img/013.png,50,", 1) }),
			"eval", 2, []string{demo, "51 classes", "10 outputs"}},
		{"label 50 for a 10-class model", csv(func(s string) string { return strings.Replace(s, "img/013.png,1,", "img/013.png,50,", 1) }),
			"my_pruning", 2, []string{demo, "51 classes", "10 outputs", `class "50" would be output 50`}},
		{"16 class names for 10 outputs", csv(func(s string) string {
			for i := range 16 {
				for _, l := range []string{",0,", ",1,"} {
					s = strings.Replace(s, fmt.Sprintf("img/%03d.png%s", i, l), fmt.Sprintf("img/%03d.png,c%02d,", i, i), 1)
				}
			}
			return s
		}), "prune --finetune", 2, []string{demo, "16 classes", "10 outputs", `class "c15" would be output 15`}},
		{"negative label", csv(func(s string) string { return strings.Replace(s, "img/013.png,1,", "img/013.png,-1,", 1) }),
			"eval", 2, []string{"data.csv row 14", "img/013.png", "negative label -1"}},
		{"empty data.csv", csv(func(string) string { return "" }), "eval", 2, []string{"data.csv"}},
		{"no such dataset", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, "eval", 2, []string{"dataset", "no such file"}},
	}
	for _, c := range cases {
		t.Run(c.cmd+"/"+c.name, func(t *testing.T) {
			data := tinyDataset(t, 16)
			c.edit(t, data)
			args := []string{"eval", "--model", demo, "--dataset", data, "--input-shape", "1,1,28,28", "--threads", "1"}
			if c.cmd != "eval" {
				algo := "L2Norm"
				if c.cmd == "my_pruning" {
					algo = "my_pruning"
				}
				args = []string{"prune", "--model", demo, "--dataset", data, "--input-shape", "1,1,28,28", "--threads", "1",
					"--algorithm", algo, "--finetune=" + fmt.Sprint(c.cmd == "prune --finetune"),
					"--exp-save", "exp", "--out", "out.pt"}
			}
			dir := t.TempDir()
			r := runEnv(t, dir, nil, args...)
			checkErrLine(t, r, c.code, c.wants...)
			checkNoOutputs(t, dir, nil)
		})
	}
}

// TestBadInputPlan: apply refuses plans that do not fit, naming the plan
// and what is wrong, and writes nothing.
func TestBadInputPlan(t *testing.T) {
	t.Parallel() // each case is its own process
	model := fixtures.Path(t, "smallcnn_scripted.pt")
	other := fixtures.Path(t, "residual_scripted.pt")
	work := t.TempDir()
	r := runIn(t, work, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
		"--input-shape", "1,3,32,32", "--exp-save", "exp", "--plan-out", "plan.json", "--out", "pruned.pt")
	if r.code != 0 {
		t.Fatalf("prune: exit %d: %s", r.code, r.stderr)
	}
	good, err := os.ReadFile(filepath.Join(work, "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(p map[string]any)) string {
		var p map[string]any
		if err := json.Unmarshal(good, &p); err != nil {
			t.Fatal(err)
		}
		f(p)
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tensors := func(p map[string]any) map[string]any { return p["tensors"].(map[string]any) }
	edit(func(p map[string]any) {
		if _, ok := tensors(p)["conv2.weight"]; !ok {
			t.Fatalf("the plan does not change conv2.weight:\n%s", good)
		}
	})
	plans := map[string]string{
		"malformed.json": `{"format": "gopruner-plan/1", "tensors": {`,
		"renamed.json": edit(func(p map[string]any) {
			ts := tensors(p)
			ts["conv9.weight"] = ts["conv2.weight"]
			delete(ts, "conv2.weight")
		}),
		"format.json":   edit(func(p map[string]any) { p["format"] = "gopruner-plan/9" }),
		"noformat.json": edit(func(p map[string]any) { delete(p, "format") }),
		"range.json": edit(func(p map[string]any) {
			k := tensors(p)["conv2.weight"].(map[string]any)["kept"].(map[string]any)
			k["0"] = append(k["0"].([]any), 999.0)
		}),
		"shape.json": edit(func(p map[string]any) { p["input_shape"] = []int{1, 1, 32, 32} }),
	}
	for name, js := range plans {
		if err := os.WriteFile(filepath.Join(work, name), []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(plan string) []string {
		return []string{"apply", "--model", model, "--plan", filepath.Join(work, plan), "--out", "out.pt"}
	}
	runBadCases(t, nil, []badCase{
		{name: "from another model", code: 2, wants: []string{"plan.json", other, "does not have"},
			args: []string{"apply", "--model", other, "--plan", filepath.Join(work, "plan.json"), "--out", "out.pt"}},
		{name: "malformed JSON", code: 2, wants: []string{"malformed.json", "JSON"}, args: apply("malformed.json")},
		{name: "missing plan", code: 2, wants: []string{"nosuch.json"}, args: apply("nosuch.json")},
		{name: "renamed tensor", code: 2, wants: []string{"renamed.json", `"conv9.weight"`, "does not have"}, args: apply("renamed.json")},
		{name: "wrong format", code: 2, wants: []string{"format.json", "gopruner-plan/9", "gopruner-plan/1"}, args: apply("format.json")},
		{name: "no format", code: 2, wants: []string{"noformat.json", "format"}, args: apply("noformat.json")},
		{name: "kept out of range", code: 2, wants: []string{"range.json", "conv2.weight", "999"}, args: apply("range.json")},
		{name: "input shape", code: 2, wants: []string{"shape.json", "layer conv1", "3 input channels"}, args: apply("shape.json")},
	})
}

// TestBadInputConfig: Pruning.yaml and GOPRUNER_* mistakes name the file
// and line, or the variable, and the key.
func TestBadInputConfig(t *testing.T) {
	t.Parallel() // each case is its own process
	model := fixtures.Path(t, "smallcnn_scripted.pt")
	base := "algorithm: L2Norm\nL2Norm:\n  training: false\nalf: 8\npath:\n  model: " + model +
		"\n  exp_save: exp\ninput_shape: [1, 3, 32, 32]\n"
	configs := map[string]string{
		"unknown.yaml":  strings.Replace(base, "alf: 8", "alff: 8", 1),
		"nested.yaml":   strings.Replace(base, "training: false", "trainig: false", 1),
		"type.yaml":     strings.Replace(base, "alf: 8", "alf: eight", 1),
		"p2.yaml":       base + "P: 2\n",
		"l2p2.yaml":     strings.Replace(base, "training: false", "training: false\n  P: 2", 1),
		"dcrop.yaml":    base + "delta_crop: 1.5\n",
		"shape.yaml":    strings.Replace(base, "[1, 3, 32, 32]", "[1, 3, 32]", 1),
		"invalid.yaml":  base + "iskl: [conv1\n",
		"good.yaml":     base,
		"Pruning.yaml":  strings.Replace(base, "alf: 8", "alfa: 8", 1),
		"nomodel.yaml":  strings.Replace(base, "  model: "+model+"\n", "", 1),
		"badmodel.yaml": strings.Replace(base, model, "gone.pt", 1),
	}
	setup := func(t *testing.T, dir string) {
		for name, y := range configs {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := func(name string) []string { return []string{"--config", name} }
	runBadCases(t, setup, []badCase{
		{name: "unknown key", code: 2, wants: []string{"unknown.yaml:4", "alff", "did you mean alf?"}, args: cfg("unknown.yaml")},
		{name: "unknown nested key", code: 2, wants: []string{"nested.yaml:3", "trainig", "did you mean"}, args: cfg("nested.yaml")},
		{name: "wrong type", code: 2, wants: []string{"type.yaml:4", "alf", `"eight"`, "not an integer"}, args: cfg("type.yaml")},
		{name: "P: 2", code: 2, wants: []string{"p2.yaml:9", "P: 2", "(0,1)"}, args: cfg("p2.yaml")},
		{name: "L2Norm.P: 2", code: 2, wants: []string{"l2p2.yaml:4", "L2Norm.P", "(0,1)"}, args: cfg("l2p2.yaml")},
		{name: "delta_crop: 1.5", code: 2, wants: []string{"dcrop.yaml:9", "delta_crop", "1.5"}, args: cfg("dcrop.yaml")},
		{name: "input_shape rank", code: 2, wants: []string{"shape.yaml", "input_shape", "3 dimensions"}, args: cfg("shape.yaml")},
		{name: "invalid YAML", code: 2, wants: []string{"invalid.yaml", "YAML"}, args: cfg("invalid.yaml")},
		{name: "missing config", code: 2, wants: []string{"nosuch.yaml"}, args: cfg("nosuch.yaml")},
		{name: "implicit ./Pruning.yaml", code: 2, wants: []string{"Pruning.yaml:4", "alfa", "did you mean alf?"}, args: nil},
		{name: "no model", code: 2, wants: []string{"no model", "path.model"}, args: cfg("nomodel.yaml")},
		{name: "model file missing", code: 2, wants: []string{"gone.pt", "no such file"}, args: cfg("badmodel.yaml")},
		{name: "GOPRUNER_P=abc", code: 2, wants: []string{"GOPRUNER_P", `"abc"`, "not a number"},
			env: []string{"GOPRUNER_P=abc"}, args: cfg("good.yaml")},
		{name: "GOPRUNER_P=1.5", code: 2, wants: []string{"GOPRUNER_P", "1.5", "(0,1)"},
			env: []string{"GOPRUNER_P=1.5"}, args: cfg("good.yaml")},
		{name: "GOPRUNER_ALF=0", code: 2, wants: []string{"GOPRUNER_ALF", "alf"},
			env: []string{"GOPRUNER_ALF=0"}, args: cfg("good.yaml")},
		{name: "GOPRUNER_INPUT_SHAPE=a", code: 2, wants: []string{"GOPRUNER_INPUT_SHAPE", `"a"`},
			env: []string{"GOPRUNER_INPUT_SHAPE=a"}, args: cfg("good.yaml")},
	})
}

// TestPruneNeverModifiesInput: a successful L2Norm run leaves the input
// model byte for byte (and its mtime) as it was, writes every output, and
// leaves no temporary or probe file anywhere it wrote.
func TestPruneNeverModifiesInput(t *testing.T) {
	t.Parallel() // each case is its own process
	for _, name := range []string{"smallcnn_scripted", "residual_traced"} {
		t.Run(name, func(t *testing.T) {
			src := fixtures.Path(t, name+".pt")
			dir := t.TempDir()
			inDir := filepath.Join(dir, "in")
			outDir := filepath.Join(dir, "out")
			for _, d := range []string{inDir, outDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			model := filepath.Join(inDir, "net.pt")
			copyTestFile(t, src, model)
			if err := os.Chmod(model, 0o444); err != nil {
				t.Fatal(err)
			}
			st0, err := os.Stat(model)
			if err != nil {
				t.Fatal(err)
			}
			sum := fileSHA(t, model)

			r := runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
				"--input-shape", "1,3,32,32", "--exp-save", "exp", "--model-name", "run",
				"--out", "out/pruned.pt", "--plan-out", "out/plan.json")
			if r.code != 0 {
				t.Fatalf("prune: exit %d: %s", r.code, r.stderr)
			}
			for _, m := range crashMarks {
				if strings.Contains(r.stderr, m) {
					t.Errorf("stderr contains %q:\n%s", m, r.stderr)
				}
			}
			if fileSHA(t, model) != sum {
				t.Error("the input model changed")
			}
			if st, err := os.Stat(model); err != nil || !st.ModTime().Equal(st0.ModTime()) || st.Mode() != st0.Mode() {
				t.Errorf("the input model was touched: %v", err)
			}
			for _, p := range []string{"out/pruned.pt", "out/plan.json", "exp/run.txt", "exp/run/plan.json",
				"exp/run/summary.json", "exp/run/report.html", "exp/run/log.jsonl"} {
				if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Size() == 0 {
					t.Errorf("output %s missing or empty: %v", p, err)
				}
			}
			var s struct {
				ModelOut string `json:"model_out"`
			}
			if b, err := os.ReadFile(filepath.Join(dir, "exp", "run", "summary.json")); err != nil {
				t.Error(err)
			} else if err := json.Unmarshal(b, &s); err != nil || s.ModelOut != "out/pruned.pt" {
				t.Errorf("summary.json model_out %q (%v), want out/pruned.pt", s.ModelOut, err)
			}
			for f := range listFiles(t, dir) {
				b := filepath.Base(f)
				if strings.Contains(b, ".tmp") || strings.HasPrefix(b, ".gopruner-probe") {
					t.Errorf("left behind: %s", f)
				}
			}
			if got := listFiles(t, inDir); len(got) != 1 {
				t.Errorf("the input directory holds %v, want only net.pt", got)
			}
			// The pruned model loads and runs.
			r = runIn(t, dir, "flops", "--model", "out/pruned.pt", "--input-shape", "1,3,32,32")
			if r.code != 0 {
				t.Errorf("flops on the pruned model: exit %d: %s", r.code, r.stderr)
			}

			if name != "smallcnn_scripted" {
				return
			}
			// --out through a symlink to the input: the output replaces the
			// link (rename), never the file it points to.
			link := filepath.Join(dir, "link.pt")
			if err := os.Symlink(model, link); err != nil {
				t.Fatal(err)
			}
			r = runIn(t, dir, "prune", "--model", model, "--algorithm", "L2Norm", "--P", "0.5", "--finetune=false",
				"--input-shape", "1,3,32,32", "--exp-save", "exp", "--model-name", "run2", "--out", "link.pt")
			if r.code != 0 && r.code != 2 {
				t.Errorf("--out a link to the input: exit %d: %s", r.code, r.stderr)
			}
			if fileSHA(t, model) != sum {
				t.Error("--out a link to the input: the input model changed")
			}
		})
	}
}
