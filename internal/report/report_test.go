package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func ptr(f float64) *float64 { return &f }

// layers returns n layers named like a torchvision ResNet, pruned unevenly.
func testLayers(n int) []Layer {
	ls := make([]Layer, n)
	for i := range ls {
		before := 64 << (i * 3 / max(n, 1))
		ls[i] = Layer{
			Name:   fmt.Sprintf("layer%d.%d.conv%d", 1+i*4/max(n, 1), i%8, 1+i%3),
			Before: before,
			After:  before - before*(i%5)/10,
		}
	}
	return ls
}

func fullData() Data {
	d := Data{
		Title:        "ResNet-18 pruning",
		ModelPath:    "/models/resnet18.pt",
		OutPath:      "exp_save/resnet18/resnet18_pruned.pt",
		Algorithm:    "NetAdapt",
		Created:      time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC),
		MACsBefore:   1_814_000_000,
		MACsAfter:    1_020_000_000,
		ParamsBefore: 11_689_512,
		ParamsAfter:  7_012_004,
		AccBefore:    ptr(0.6976),
		AccAfter:     ptr(0.6931),
		Layers:       testLayers(20),
		Latency: []Latency{
			{Device: "cpu", Batch: 1, BeforeMs: 21.4, AfterMs: 13.9},
			{Device: "cuda:0", Batch: 64, BeforeMs: 38.2, AfterMs: 24.5},
		},
		Notes: []string{"fine-tuned for 3 epochs", "budget 0.55 of MACs"},
	}
	macs := d.MACsBefore
	acc := 0.6976
	for i := 1; i <= 12; i++ {
		macs = macs * 95 / 100
		acc -= 0.004
		d.Iterations = append(d.Iterations, Point{Iteration: i, MACs: macs, Accuracy: acc,
			Label: fmt.Sprintf("layer%d.0.conv1", 1+i%4)})
	}
	return d
}

func render(t *testing.T, d Data) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, d); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return b.String()
}

var svgElem = regexp.MustCompile(`(?s)<svg class="plot".*?</svg>`)

// externalRef returns the first reference the browser would fetch from
// outside the file: a src/href attribute, CSS url() or @import whose target
// is not a data: URI or fragment. The SVG xmlns attributes are names, not
// fetches, and pass. (A regexp does the same but takes seconds under -race
// on the half-megabyte font blob.)
func externalRef(html string) string {
	lower := strings.ToLower(html)
	for _, marker := range []string{"src", "href", "url(", "@import"} {
		for off := 0; ; {
			i := strings.Index(lower[off:], marker)
			if i < 0 {
				break
			}
			start := off + i
			j := start + len(marker)
			off = j
			if marker == "src" || marker == "href" {
				j = skip(lower, j, " \t\n\r")
				if j >= len(lower) || lower[j] != '=' {
					continue // a word such as "srcset" or text, not an attribute
				}
				j++
			}
			j = skip(lower, j, " \t\n\r\"'")
			target := lower[j:min(j+16, len(lower))]
			if strings.HasPrefix(target, "data:") || strings.HasPrefix(target, "#") {
				continue
			}
			// Relative paths count too: they break once the file is moved.
			return html[start:min(j+40, len(html))]
		}
	}
	return ""
}

func skip(s string, i int, set string) int {
	for i < len(s) && strings.IndexByte(set, s[i]) >= 0 {
		i++
	}
	return i
}

// checkPage holds the invariants every rendered page must satisfy.
func checkPage(t *testing.T, html string, wantPlots int) {
	t.Helper()
	if !strings.HasPrefix(html, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(html), "</html>") {
		t.Errorf("page is not a complete HTML document")
	}
	if m := externalRef(html); m != "" {
		t.Errorf("page references an external resource: %q", m)
	}
	if strings.Contains(html, `class="error"`) {
		t.Errorf("page shows a plot error")
	}
	if got := strings.Count(html, `<figure class="plot"`); got != wantPlots {
		t.Errorf("%d plot figures, want %d", got, wantPlots)
	}
	if want := fmt.Sprintf(`data-plots-expected="%d"`, wantPlots); !strings.Contains(html, want) {
		t.Errorf("page lacks %s", want)
	}
	svgs := svgElem.FindAllString(html, -1)
	if len(svgs) != wantPlots {
		t.Errorf("%d inline SVGs, want %d", len(svgs), wantPlots)
	}
	for i, s := range svgs {
		// Well-formed XML is a cheap proxy for "the browser will draw it"
		// and catches broken escaping of text inside the plots.
		dec := xml.NewDecoder(strings.NewReader(s))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("svg %d is not well-formed XML: %v", i, err)
				break
			}
		}
		if !strings.Contains(s, "<text") && !strings.Contains(s, "<path") {
			t.Errorf("svg %d draws nothing", i)
		}
	}
	if wantPlots > 0 && !strings.Contains(html, "@font-face") {
		t.Errorf("plot font is not embedded")
	}
}

func TestRender(t *testing.T) {
	noIter := fullData()
	noIter.Algorithm = "L2Norm"
	noIter.Iterations = nil

	bare := fullData()
	bare.AccBefore, bare.AccAfter, bare.Latency, bare.Iterations = nil, nil, nil, nil

	many := fullData()
	many.Layers = testLayers(150)
	many.Layers[77].Name = "features.denseblock4.denselayer16.very.long.module.path.conv2"

	evil := `<script>alert("x")</script>&'`
	special := fullData()
	special.Title = "T " + evil
	special.ModelPath = "/tmp/" + evil + ".pt"
	special.Notes = []string{evil}
	special.Layers = []Layer{{Name: evil, Before: 8, After: 4}, {Name: "a&b<c>", Before: 4, After: 4}}
	special.Latency = []Latency{{Device: evil, Batch: 1, BeforeMs: 2, AfterMs: 1}}
	special.Iterations[0].Label = evil

	nan := math.NaN()
	degenerate := Data{
		MACsBefore: 0, MACsAfter: 0,
		AccBefore: ptr(nan), AccAfter: ptr(math.Inf(1)),
		Layers: []Layer{{Name: "", Before: 0, After: 0}, {Name: "neg", Before: -3, After: -1},
			{Name: "grown", Before: 4, After: 9}},
		Iterations: []Point{{Iteration: 1, MACs: 0, Accuracy: nan}, {Iteration: 2, MACs: -5, Accuracy: 0.5}},
		Latency: []Latency{{Device: "cpu", BeforeMs: nan, AfterMs: math.Inf(1)},
			{Device: "gpu", BeforeMs: 0, AfterMs: -1}, {Device: "npu", BeforeMs: 3, AfterMs: nan}},
	}

	// Accuracy without a MACs baseline plots raw MACs on the x axis.
	rawMACs := fullData()
	rawMACs.MACsBefore = 0

	pct := fullData()
	pct.AccBefore, pct.AccAfter = ptr(69.76), ptr(69.31)
	for i := range pct.Iterations {
		pct.Iterations[i].Accuracy *= 100
	}

	tests := []struct {
		name   string
		data   Data
		plots  int
		want   []string
		absent []string
	}{
		{"full", fullData(), 3,
			[]string{"<title>ResNet-18 pruning</title>", "NetAdapt", "2025-03-14 15:09:26",
				"/models/resnet18.pt", "1.81 G", "1.02 G", "11.7 M", "7.01 M",
				"69.76%", "69.31%", "−0.45 points", "−43.8%", "cuda:0", "1.54×",
				"fine-tuned for 3 epochs", `id="plot-accuracy"`, `id="plot-channels"`,
				`id="plot-latency"`, "Iterations (12)", "layer1.0.conv1", "Total (20 layers)"},
			[]string{"One-shot"}},
		{"no iterations", noIter, 3,
			[]string{"One-shot run", "L2Norm", `id="plot-accuracy"`},
			[]string{"Iterations ("}},
		{"no accuracy or latency", bare, 1,
			[]string{`id="plot-channels"`, "MACs", "Parameters"},
			[]string{`id="plot-accuracy"`, `id="plot-latency"`, "Accuracy", "Speed-up", "Iterations ("}},
		{"150 layers", many, 3,
			[]string{"Total (150 layers)", "features.denseblock4.denselayer16.very.long.module.path.conv2",
				"features.denseblock…ng.module.path.conv2"},
			nil},
		{"special characters", special, 3,
			[]string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#39;", "a&amp;b&lt;c&gt;"},
			[]string{"<script>alert", "a&b<c>"}},
		{"empty", Data{}, 0,
			[]string{"<title>Pruning report</title>"},
			[]string{"<table", "Notes"}},
		{"degenerate values", degenerate, 2,
			[]string{`id="plot-channels"`, `id="plot-latency"`, "layer 0"},
			[]string{`id="plot-accuracy"`, "NaN", "Inf"}},
		{"raw MACs axis", rawMACs, 3, []string{`id="plot-accuracy"`, "1.02 G"}, nil},
		{"accuracy in percent", pct, 3, []string{"69.76%", "−0.45 points"}, []string{"6976"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			html := render(t, tc.data)
			checkPage(t, html, tc.plots)
			for _, s := range tc.want {
				if !strings.Contains(html, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(html, s) {
					t.Errorf("page unexpectedly contains %q", s)
				}
			}
		})
	}
}

func TestRenderLayerPlotScalesWithLayerCount(t *testing.T) {
	height := func(n int) float64 {
		d := Data{Layers: testLayers(n)}
		html := render(t, d)
		m := regexp.MustCompile(`<svg class="plot" role="img" width="[0-9.]+pt" height="([0-9.]+)pt"`).FindStringSubmatch(html)
		if m == nil {
			t.Fatalf("no sized svg for %d layers", n)
		}
		var h float64
		if _, err := fmt.Sscan(m[1], &h); err != nil {
			t.Fatalf("height %q: %v", m[1], err)
		}
		return h
	}
	h10, h150 := height(10), height(150)
	// 150 labelled bars need at least ~9 pt each to stay legible.
	if h150 < 150*9 || h150 < 5*h10 {
		t.Errorf("plot height %v pt for 150 layers (%v pt for 10) is too small to read", h150, h10)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderWriteError(t *testing.T) {
	err := Render(failWriter{}, fullData())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Render to failing writer: err = %v, want wrapped write error", err)
	}
}

func TestDrawErrorsBecomeText(t *testing.T) {
	tests := []struct {
		name  string
		build func() (*plot.Plot, vg.Length, vg.Length, error)
		want  string
	}{
		{"error", func() (*plot.Plot, vg.Length, vg.Length, error) { return nil, 0, 0, errors.New("boom") }, "boom"},
		{"panic", func() (*plot.Plot, vg.Length, vg.Length, error) { panic("kaput") }, "kaput"},
		{"zero size", func() (*plot.Plot, vg.Length, vg.Length, error) { return newPlot(), 0, 0, nil }, "could not be drawn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svg, msg := draw1(tc.build)
			if svg != "" || !strings.Contains(msg, tc.want) {
				t.Errorf("draw1 = (%d bytes svg, %q), want no svg and an error containing %q", len(svg), msg, tc.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := fullData()
	if err := Write(path, d); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := render(t, d); string(got) != want {
		t.Errorf("written file differs from Render output (%d vs %d bytes)", len(got), len(want))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	assertOnly(t, dir, "report.html")
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name   string
		target string // relative to a fresh directory
		setup  func(t *testing.T, dir string)
		want   []string // what dir must hold afterwards
	}{
		{"missing directory", "nope/report.html", nil, nil},
		{"target is a directory", "report.html", func(t *testing.T, dir string) {
			// Rename over a non-empty directory fails after the temporary
			// file is complete, exercising the late cleanup path.
			if err := os.MkdirAll(filepath.Join(dir, "report.html", "x"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, []string{"report.html"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			err := Write(filepath.Join(dir, tc.target), fullData())
			if err == nil {
				t.Fatalf("Write(%s) succeeded, want error", tc.target)
			}
			if !strings.Contains(err.Error(), "report") {
				t.Errorf("error lacks context: %v", err)
			}
			assertOnly(t, dir, tc.want...)
		})
	}
}

// assertOnly fails unless dir holds exactly the named entries, which is how
// leftover temporary files show up.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {999, "999"}, {12.5, "12.5"}, {3.14159, "3.14"}, {1000, "1.00 k"}, {999_400, "999 k"},
		{999_600, "1.00 M"}, {1_814_000_000, "1.81 G"}, {45_600_000, "45.6 M"},
		{-2_500, "-2.50 k"}, {math.NaN(), "—"}, {math.Inf(-1), "—"},
	}
	for _, tc := range tests {
		if got := human(tc.in); got != tc.want {
			t.Errorf("human(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShortenAndThin(t *testing.T) {
	if got := shorten("abcdefghij", 5); got != "ab…ij" {
		t.Errorf("shorten = %q", got)
	}
	if got := shorten("ääää", 4); got != "ääää" {
		t.Errorf("shorten counted bytes, not runes: %q", got)
	}
	// 45 points bunched on a diagonal, then two far apart.
	var xys plotter.XYs
	var ls []string
	for i := range 45 {
		xys = append(xys, plotter.XY{X: float64(i) / 2000, Y: float64(i) / 2000})
		ls = append(ls, fmt.Sprint(i))
	}
	xys = append(xys, plotter.XY{X: 1, Y: 1}, plotter.XY{X: 0.5, Y: 0.5})
	ls = append(ls, "far", "last")
	out := thin(xys, ls, 0.06)
	var kept []string
	for _, s := range out {
		if s != "" {
			kept = append(kept, s)
		}
	}
	if strings.Join(kept, ",") != "0,far,last" {
		t.Errorf("thin kept %v, want [0 far last]", kept)
	}
	if got := thin(nil, nil, 0.06); len(got) != 0 {
		t.Errorf("thin(nil) = %v", got)
	}
}

// FuzzRender checks that no input makes Render fail or panic.
func FuzzRender(f *testing.F) {
	f.Add("conv1", 64, 32, int64(1000), int64(500), 0.9, 0.8, 3.0, 2.0)
	f.Add("<>&\"'", -1, 0, int64(0), int64(-7), math.NaN(), math.Inf(1), math.NaN(), 0.0)
	f.Add("\n\t\x00é…", 1<<30, 1<<31-1, int64(math.MaxInt64), int64(1), -5.0, 1e300, 1e-300, math.MaxFloat64)
	f.Fuzz(func(t *testing.T, name string, before, after int, macsB, macsA int64, accB, accA, latB, latA float64) {
		d := Data{Title: name, ModelPath: name, MACsBefore: macsB, MACsAfter: macsA,
			ParamsBefore: macsB, ParamsAfter: macsA, AccBefore: &accB, AccAfter: &accA,
			Layers:     []Layer{{Name: name, Before: before, After: after}, {Name: name + "2", Before: after, After: before}},
			Iterations: []Point{{Iteration: 1, MACs: macsA, Accuracy: accA, Label: name}, {Iteration: 2, MACs: macsB, Accuracy: accB}},
			Latency:    []Latency{{Device: name, Batch: int64(before), BeforeMs: latB, AfterMs: latA}},
			Notes:      []string{name}}
		var b bytes.Buffer
		if err := Render(&b, d); err != nil {
			t.Fatalf("Render: %v", err)
		}
		if strings.Contains(b.String(), `class="error"`) {
			t.Errorf("a plot failed to draw: %s", regexp.MustCompile(`<p class="error">[^<]*`).FindString(b.String()))
		}
	})
}

func TestExternalRef(t *testing.T) {
	tests := []struct {
		html string
		bad  bool
	}{
		{`<img src="https://cdn.example/x.png">`, true},
		{`<a HREF = 'http://x'>`, true},
		{`<link href="//cdn.example/a.css">`, true},
		{`<style>@font-face{src:url( "https://f/x.ttf")}</style>`, true},
		{`<style>@import "http://x/y.css";</style>`, true},
		{`<svg xmlns="http://www.w3.org/2000/svg">`, false},
		{`<style>src: url(data:font/ttf;base64,AAAA)</style>`, false},
		{`<img src="data:image/png;base64,AAAA"><a href="#top">`, false},
		{`<p>the src of the href is http://nothing</p>`, false},
		{`<img src=plot.png>`, true},
	}
	for _, tc := range tests {
		if got := externalRef(tc.html) != ""; got != tc.bad {
			t.Errorf("externalRef(%q) found=%v, want %v", tc.html, got, tc.bad)
		}
	}
}

func TestTickLabelsAreDistinct(t *testing.T) {
	tests := []struct {
		lo, hi float64
		si     bool
		want   string // one label that must appear
	}{
		{69.31, 69.76, false, ""},
		{0.5, 0.5000001, false, ""},
		{55, 100, false, "60"},
		{0, 266, true, "0"},
		{1.02e9, 1.81e9, true, "1.20 G"},
		{1.8100e9, 1.8101e9, true, ""},
	}
	for _, tc := range tests {
		seen := map[string]bool{}
		found := tc.want == ""
		for _, tk := range (ticks{si: tc.si}).Ticks(tc.lo, tc.hi) {
			if tk.Label == "" {
				continue
			}
			if seen[tk.Label] {
				t.Errorf("ticks(%v, %v): label %q repeats", tc.lo, tc.hi, tk.Label)
			}
			seen[tk.Label] = true
			found = found || tk.Label == tc.want
		}
		if !found || len(seen) < 2 {
			t.Errorf("ticks(%v, %v) = %v, want distinct labels including %q", tc.lo, tc.hi, seen, tc.want)
		}
	}
}

// TestRenderLatencyTarget checks that target: latency's predicted and
// measured latency and the prediction's error reach the page, and that an
// unmeasured final model shows dashes rather than a made-up error.
func TestRenderLatencyTarget(t *testing.T) {
	errPct := 4.25
	d := fullData()
	d.LatencyTarget = &LatencyTarget{Device: "cpu", Threads: 1, Batch: 1, PredictedBeforeMs: 0.72, PredictedAfterMs: 0.36,
		MeasuredBeforeMs: 0.7, MeasuredAfterMs: 0.375, ErrorPct: &errPct, SpeedupErrorPct: &errPct, Layers: 10, Points: 234, TableSeconds: 2.5, ResidueMs: 0.2}
	page := render(t, d)
	for _, want := range []string{`id="latency-target"`, "cpu, 1 thread(s), batch 1", "0.36 ms", "0.375 ms", "4.2%",
		"10 layers, 234 grid points, measured in 2.5 s"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	d.LatencyTarget.ErrorPct = nil
	page = render(t, d)
	if !strings.Contains(page, "<td>measured</td><td>"+dash+"</td><td>"+dash+"</td>") {
		t.Error("an unmeasured final model should show dashes")
	}
	d.LatencyTarget = nil
	if page = render(t, d); strings.Contains(page, `id="latency-target"`) {
		t.Error("no latency target, but the section is there")
	}
}
