//go:build cgo

// Package model loads a TorchScript model for pruning and turns it into the
// IR and channel groups that the rest of gopruner works on. It explains bad
// model files in the user's terms (a state_dict is not TorchScript, and how
// to export one) instead of passing libtorch's zip-reader messages through.
package model

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/torch"
)

const exportHint = "export it with torch.jit.script(model).save(path) or torch.jit.trace(model, example).save(path)"

// Load reads a TorchScript file. The file is only read, never written.
// Files that are not TorchScript, or have no forward, give a usage error
// that says what the file is.
func Load(path string, dev torch.Device) (*torch.Module, error) {
	if err := CheckFile(path); err != nil {
		return nil, err
	}
	m, err := torch.Load(path, dev)
	if err != nil {
		return nil, fail.Usagef("model %s: cannot load as TorchScript: %v", path, err)
	}
	ok, err := m.HasMethod("forward")
	if err != nil {
		m.Close()
		return nil, err
	}
	if !ok {
		m.Close()
		return nil, fail.Usagef("model %s: TorchScript module has no forward method; gopruner prunes what forward computes", path)
	}
	if err := refuseBaked(m, path); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// refuseBaked refuses, before anything runs, a model whose weights were
// baked into something surgery cannot cut: XNNPACK's prepacked convs
// (optimize_for_mobile), quantized convs' packed int8 weights, or constants
// (torch.jit.freeze, optimize_for_inference). Each is a step taken after
// training for deployment; the fix is to prune the model from before it.
// A dynamically quantized Linear (packed weights too) is left alone: it is
// a layer the analysis does not follow, and the convs around it prune.
func refuseBaked(m *torch.Module, path string) error {
	types, err := m.ObjectTypes()
	if err != nil {
		return err
	}
	for _, t := range types {
		short := strings.TrimPrefix(t, "__torch__.torch.classes.")
		switch {
		case strings.HasPrefix(t, "__torch__.torch.classes.xnnpack."):
			return fail.Usagef("model %s was optimised for mobile: optimize_for_mobile packed its layers into XNNPACK contexts (%s), "+
				"which gopruner cannot cut; prune the model from before that step and optimise the pruned one", path, short)
		case strings.HasPrefix(t, "__torch__.torch.classes.quantized.Conv"):
			return fail.Usagef("model %s is quantized: its convs hold packed int8 weights (%s), which gopruner cannot cut; "+
				"it prunes float32 models: prune before quantizing", path, short)
		}
	}
	params, err := m.ParameterNames()
	if err != nil {
		return err
	}
	if len(params) == 0 {
		return fail.Usagef("model %s has no parameters: its weights are constants (torch.jit.freeze, optimize_for_inference and "+
			"optimize_for_mobile inline them), which gopruner cannot cut; prune the model from before that step and repeat it on the pruned one", path)
	}
	return nil
}

// CheckFile is Load's check of the file itself, without libtorch: a
// missing file, a directory, or a file that is no TorchScript archive is a
// usage error naming it. Commands run it first, so that a mistyped path is
// the error reported, not a setting that a valid model would need next.
func CheckFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail.Usagef("model %s: no such file", path)
		}
		return fail.Usagef("model %s: %v", path, err)
	}
	if st.IsDir() {
		return fail.Usagef("model %s: is a directory, not a TorchScript file", path)
	}
	if why := diagnose(path, st.Size()); why != "" {
		return fail.Usagef("model %s: %s", path, why)
	}
	return nil
}

// diagnose looks inside the file before libtorch does, to name what it is
// when it is not a TorchScript archive.
func diagnose(path string, size int64) string {
	if size == 0 {
		return "empty file"
	}
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := f.Read(head)
	head = head[:n]
	if len(head) >= 2 && head[0] == 0x80 && head[1] <= 5 {
		return "a legacy torch.save pickle, not TorchScript; " + exportHint
	}
	if !bytes.HasPrefix(head, []byte("PK\x03\x04")) {
		return "not a TorchScript file (not a zip archive); " + exportHint
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return "truncated or corrupt TorchScript archive (" + err.Error() + ")"
	}
	hasCode, hasData, hasConstants := false, false, false
	for _, e := range zr.File {
		parts := strings.SplitN(e.Name, "/", 3)
		if len(parts) < 2 {
			continue
		}
		switch {
		case parts[1] == "code" || strings.HasPrefix(parts[1], "code"):
			hasCode = true
		case parts[1] == "data.pkl":
			hasData = true
		case parts[1] == "constants.pkl":
			hasConstants = true
		}
	}
	if hasData && !hasCode && !hasConstants {
		return "a torch.save'd state_dict or pickled nn.Module, not TorchScript (no code/ in the archive); " + exportHint
	}
	return ""
}

// Params returns the shape of every parameter and buffer by dotted name.
func Params(m *torch.Module) (map[string][]int64, error) {
	names, err := m.ParameterNames()
	if err != nil {
		return nil, err
	}
	bufs, err := m.BufferNames()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]int64, len(names)+len(bufs))
	for _, n := range append(names, bufs...) {
		t, err := m.Get(n)
		if err != nil {
			return nil, err
		}
		s, err := t.Shape()
		t.Close()
		if err != nil {
			return nil, err
		}
		out[n] = s
	}
	return out, nil
}

// Example makes the example input for tracing: standard-normal values from
// a fixed seed, so analyses are reproducible.
func Example(shape []int64, dev torch.Device) (*torch.Tensor, error) {
	if len(shape) < 2 {
		return nil, fail.Usagef("input shape %v: want at least [N, C], e.g. 1,3,224,224", shape)
	}
	n := int64(1)
	for _, d := range shape {
		if d <= 0 {
			return nil, fail.Usagef("input shape %v: dimensions must be positive", shape)
		}
		n *= d
	}
	data := make([]float32, n)
	// A cheap deterministic fill: the values only need to be generic.
	s := uint64(0x9E3779B97F4A7C15)
	for i := range data {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		data[i] = float32(int64(s>>40)-(1<<23)) / float32(1<<23)
	}
	return torch.FromFloat32(data, shape, dev)
}

// Trace runs forward once on an example input of the given shape and
// returns the IR. A shape the model rejects is a usage error that, where
// libtorch says which weight refused it, names the layer and both counts.
func Trace(m *torch.Module, shape []int64) (*ir.Graph, error) {
	x, err := Example(shape, m.Device())
	if err != nil {
		return nil, err
	}
	defer x.Close()
	js, err := m.ExportIR(x)
	if err != nil {
		return nil, explainForward(m, shape, err)
	}
	g, err := ir.Parse(js)
	if err != nil {
		return nil, fmt.Errorf("model IR: %w", err)
	}
	// The output setting can only be checked against what forward returns;
	// here, before any work, is the first time that is known.
	if o := g.Output; o != nil && o.Selected < 0 {
		return nil, fail.Usagef("%s", o.Error)
	}
	return g, nil
}

var (
	convShapeErr = regexp.MustCompile(`weight of size \[([0-9, ]+)\], expected input\[([0-9, ]+)\] to have (\d+) channels, but got (\d+) channels`)
	convRankErr  = regexp.MustCompile(`Expected (\d+)-dimensional input for \d+-dimensional weight \[([0-9, ]+)\], but got (\d+)-dimensional input`)
	// A scripted conv checks the rank itself, before any weight is named.
	convBatchErr = regexp.MustCompile(`Expected \d+D \(unbatched\) or (\d+)D \(batched\) input to (conv\w*), but got input of size: \[([0-9, ]+)\]`)
	linearErr    = regexp.MustCompile(`mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)`)
	// Weights of another dtype than the float32 example input (a model
	// saved after .half() or .double()); the layer comes from the shim's
	// "(raised in layer ...)".
	dtypeErr  = regexp.MustCompile(`Input type \((?:CPU|CUDA)?(\w+?)Type\) and weight type \((?:CPU|CUDA)?(\w+?)Type\) should be the same`)
	scalarErr = regexp.MustCompile(`expected scalar type (\w+) but found (\w+)`)
	raisedIn  = regexp.MustCompile(`\(raised in layer ([^)]+)\)`)
	// A forward with a second input that has no default.
	arityErr = regexp.MustCompile(`forward\(\) is missing value for argument '[^']*'\. Declaration: forward\(([^)]*)\)`)
)

// ShapeError is an example input shape the model refuses. Origin, when
// set, says where the shape came from ("file Pruning.yaml:9 input_shape"),
// so that the one-line error names the setting to change.
type ShapeError struct {
	Shape  []int64
	Why    string
	Origin string
}

func (e *ShapeError) Error() string {
	if e.Origin != "" {
		return fmt.Sprintf("input_shape %v (%s) does not fit the model: %s", e.Shape, e.Origin, e.Why)
	}
	return fmt.Sprintf("input shape %v does not fit the model: %s", e.Shape, e.Why)
}

func shapeErr(shape []int64, format string, args ...any) error {
	return fail.Usage(&ShapeError{Shape: shape, Why: fmt.Sprintf(format, args...)})
}

// explainForward turns a forward failure on the example input into an
// input-shape error. It finds the layer libtorch complained about by the
// weight shape it printed.
func explainForward(m *torch.Module, shape []int64, err error) error {
	msg := err.Error()
	var te *torch.Error
	if errors.As(err, &te) {
		msg = te.Msg // without the bridge call's name ("export_ir: ")
	}
	if sm := arityErr.FindStringSubmatch(msg); sm != nil {
		var args []string
		for i, a := range strings.Split(sm[1], ", ") {
			if f := strings.Fields(a); i > 0 && len(f) > 0 { // the first is self
				args = append(args, f[len(f)-1])
			}
		}
		return fail.Usagef("the model's forward(%s) takes %d inputs, and gopruner passes one tensor (input shape %v): "+
			"save a wrapper module whose forward takes that one tensor", strings.Join(args, ", "), len(args), shape)
	}
	if dt := weightDtype(msg); dt != "" {
		where := ""
		if l := raisedIn.FindStringSubmatch(msg); l != nil {
			where = " (layer " + l[1] + ")"
		}
		return fail.Usagef("the model's weights are %s%s and gopruner runs it on float32 inputs: it prunes float32 models; "+
			"save the model after .float() and cast the pruned one back", dtypeName(dt), where)
	}
	if sm := convShapeErr.FindStringSubmatch(msg); sm != nil {
		wshape := parseInts(sm[1])
		layer := layerOf(m, wshape, "the first convolution")
		if len(wshape) >= 3 && len(shape) != len(wshape) {
			// A scripted conv takes an input one dimension short as
			// unbatched, so the count it prints is not the channel count.
			return shapeErr(shape, "layer %s expects %d-dimensional input%s, the input shape has %d dimensions", layer, len(wshape), dimsHint(len(wshape)), len(shape))
		}
		return shapeErr(shape, "layer %s expects %s input channels, the input shape gives %s", layer, sm[3], sm[4])
	}
	if sm := convRankErr.FindStringSubmatch(msg); sm != nil {
		layer := layerOf(m, parseInts(sm[2]), "the first convolution")
		want, _ := strconv.Atoi(sm[1])
		return shapeErr(shape, "layer %s expects %d-dimensional input%s, the input shape has %s dimensions", layer, want, dimsHint(want), sm[3])
	}
	if sm := convBatchErr.FindStringSubmatch(msg); sm != nil {
		want, _ := strconv.Atoi(sm[1])
		return shapeErr(shape, "its %s layers expect %d-dimensional input%s, the input shape has %d dimensions", sm[2], want, dimsHint(want), len(shape))
	}
	if sm := linearErr.FindStringSubmatch(msg); sm != nil {
		// mat2 is the transposed weight [in, out] of the Linear layer.
		in, out := parseInts(sm[3]), parseInts(sm[4])
		if len(in) == 1 && len(out) == 1 {
			if layer := layerOf(m, []int64{out[0], in[0]}, ""); layer != "" {
				return shapeErr(shape, "layer %s expects %d input features, it gets %s", layer, in[0], sm[2])
			}
		}
	}
	// The shape-only pass reads the tensors it let wait back from the
	// file (cgo/origin.cc): a file changed under the run is a runtime
	// failure of its own, not the input shape's.
	if strings.Contains(msg, "changed while gopruner ran") {
		return errors.New(msg)
	}
	if strings.Contains(msg, "Expected") || strings.Contains(msg, "expected") || strings.Contains(msg, "shape") || strings.Contains(msg, "size") {
		return shapeErr(shape, "%s", msg)
	}
	return fmt.Errorf("forward on an example input of shape %v: %w", shape, err)
}

// weightDtype is the dtype libtorch names when a float32 input meets
// weights of another ("Half"), or "".
func weightDtype(msg string) string {
	if sm := dtypeErr.FindStringSubmatch(msg); sm != nil && sm[1] == "Float" && sm[2] != "Float" {
		return sm[2]
	}
	// The other side of the check varies with the kernel: the dtype that
	// is not the input's is the weights'.
	if sm := scalarErr.FindStringSubmatch(msg); sm != nil && (sm[1] == "Float") != (sm[2] == "Float") {
		if sm[1] == "Float" {
			return sm[2]
		}
		return sm[1]
	}
	return ""
}

// dtypeName spells libtorch's tensor type names (Half, Double) as torch
// dtypes.
func dtypeName(t string) string {
	switch t {
	case "Float":
		return "float32"
	case "Half":
		return "float16"
	case "Double":
		return "float64"
	case "BFloat16":
		return "bfloat16"
	}
	return t
}

// dimsHint spells out the dimensions of a batch of the given rank.
func dimsHint(rank int) string {
	switch rank {
	case 2:
		return " (N,F)"
	case 3:
		return " (N,C,L)"
	case 4:
		return " (N,C,H,W)"
	case 5:
		return " (N,C,D,H,W)"
	}
	return ""
}

// layerOf names the layer whose weight has shape w (the first by name when
// several do), or def when none has.
func layerOf(m *torch.Module, w []int64, def string) string {
	params, err := Params(m)
	if err != nil {
		return def
	}
	var hits []string
	for name, s := range params {
		if strings.HasSuffix(name, ".weight") && slices.Equal(s, w) {
			hits = append(hits, strings.TrimSuffix(name, ".weight"))
		}
	}
	if len(hits) == 0 {
		return def
	}
	slices.Sort(hits)
	return hits[0]
}

func parseInts(s string) []int64 {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Analyzed is a loaded model with its IR and channel groups.
type Analyzed struct {
	Module     *torch.Module
	Path       string
	InputShape []int64
	Graph      *ir.Graph
	Analysis   *graph.Analysis
	Params     map[string][]int64
	Timings    Timings
	// Warnings matter to a run that fine-tunes (engine.Model.Warnings).
	Warnings []string
}

// Timings is how long Open and Analyze spent in each phase (for benchmarks
// and the prune run's timings log line).
type Timings struct {
	Load     time.Duration // reading the TorchScript file (Open only)
	IRExport time.Duration // forward on the example input, IR export and parse
	Analysis time.Duration // channel groups
}

// Base is the pure description of the model that every decision is made on.
func (a *Analyzed) Base() *cut.Base {
	return &cut.Base{Graph: a.Graph, Analysis: a.Analysis, Params: a.Params, InputShape: a.InputShape}
}

// Close frees the module.
func (a *Analyzed) Close() {
	if a != nil {
		a.Module.Close()
	}
}

// Open loads, traces and analyses a model.
func Open(path string, shape []int64, dev torch.Device) (*Analyzed, error) {
	start := time.Now()
	m, err := Load(path, dev)
	if err != nil {
		return nil, err
	}
	load := time.Since(start)
	a, err := Analyze(m, shape)
	if err != nil {
		m.Close()
		return nil, err
	}
	a.Path = path
	a.Timings.Load = load
	return a, nil
}

// Analyze traces an already loaded module and finds its channel groups.
func Analyze(m *torch.Module, shape []int64) (*Analyzed, error) {
	start := time.Now()
	g, err := Trace(m, shape)
	if err != nil {
		return nil, err
	}
	traced := time.Now()
	b, err := cut.FromGraph(g, shape)
	if err != nil {
		return nil, err
	}
	var warnings []string
	if unread := graph.UnreadParams(g); len(unread) > 0 {
		if err := withTraining(m, shape, b.Analysis); err != nil {
			warnings = append(warnings, fmt.Sprintf("%d parameters (%s) are not read in eval mode, and the training-mode trace failed (%v): "+
				"if training runs those layers, fine-tuning the pruned model may fail", len(unread), listSome(unread, 3), err))
		}
	}
	analysed := time.Now()
	return &Analyzed{Module: m, InputShape: b.InputShape, Graph: g, Analysis: b.Analysis, Params: b.Params,
		Timings: Timings{IRExport: traced.Sub(start), Analysis: analysed.Sub(traced)}, Warnings: warnings}, nil
}

// withTraining traces m in training mode and folds what that trace adds into
// an: the layers only training runs (auxiliary classifiers) read channels
// the eval trace never shows, and fine-tuning runs them.
func withTraining(m *torch.Module, shape []int64, an *graph.Analysis) error {
	// A training-mode BatchNorm refuses a batch of one where it sees one
	// value per channel (after an auxiliary head's pooling to 1×1).
	shape = slices.Clone(shape)
	shape[0] = max(shape[0], 2)
	x, err := Example(shape, m.Device())
	if err != nil {
		return err
	}
	defer x.Close()
	js, err := m.ExportIRTrain(x)
	if err != nil {
		return err
	}
	tg, err := ir.Parse(js)
	if err != nil {
		return fmt.Errorf("training-mode IR: %w", err)
	}
	ta, err := graph.Analyze(tg)
	if err != nil {
		return fmt.Errorf("training-mode channel analysis: %w", err)
	}
	an.WithTraining(ta)
	return nil
}

// listSome joins the first n of xs, with a count of the rest.
func listSome(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}
