package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/image/font/sfnt"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// sans is the one face every plot uses, so that the page embeds a single
// font (about 0.5 MB) instead of one copy per plot.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

var (
	colBefore = color.RGBA{R: 0xc6, G: 0xdb, B: 0xef, A: 0xff}
	colAfter  = color.RGBA{R: 0x21, G: 0x66, B: 0xac, A: 0xff}
	colTraj   = color.RGBA{R: 0x21, G: 0x66, B: 0xac, A: 0xff}
	colBase   = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colFinal  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colGrid   = color.RGBA{R: 0xe0, G: 0xe0, B: 0xe0, A: 0xff}
	colText   = color.RGBA{R: 0x44, G: 0x44, B: 0x44, A: 0xff}
)

const (
	minLabelDist = 0.06 // closer iteration labels (fraction of the axes) overlap
	maxNameRunes = 40   // longer layer names squeeze the bar area away
)

// figures draws every plot whose data is present.
func figures(d Data, scale float64) []figure {
	var figs []figure
	if f, ok := accuracyFigure(d, scale); ok {
		figs = append(figs, f)
	}
	if f, ok := candidatesFigure(d, scale); ok {
		figs = append(figs, f)
	}
	if f, ok := channelsFigure(d.Layers); ok {
		figs = append(figs, f)
	}
	if f, ok := latencyFigure(d.Latency); ok {
		figs = append(figs, f)
	}
	return figs
}

func accuracyFigure(d Data, scale float64) (figure, bool) {
	pct := d.MACsBefore > 0
	xOf := func(macs int64) float64 {
		if pct {
			return 100 * float64(macs) / float64(d.MACsBefore)
		}
		return float64(macs)
	}
	// A point needs both coordinates; MACs <= 0 means "not measured".
	usable := func(macs int64, acc float64) bool { return macs > 0 && finite(acc) }

	var (
		traj          plotter.XYs
		iters         plotter.XYs
		iterLabels    []string
		base, final   plotter.XYs
		baseLbl, fLbl []string
	)
	if a, ok := finitePtr(d.AccBefore); ok && usable(d.MACsBefore, a) {
		base = plotter.XYs{{X: xOf(d.MACsBefore), Y: a * scale}}
		baseLbl = []string{"before"}
		traj = append(traj, base[0])
	}
	for _, it := range d.Iterations {
		if !usable(it.MACs, it.Accuracy) {
			continue
		}
		xy := plotter.XY{X: xOf(it.MACs), Y: it.Accuracy * scale}
		traj = append(traj, xy)
		iters = append(iters, xy)
		iterLabels = append(iterLabels, fmt.Sprintf("#%d", it.Iteration))
	}
	if a, ok := finitePtr(d.AccAfter); ok && usable(d.MACsAfter, a) {
		final = plotter.XYs{{X: xOf(d.MACsAfter), Y: a * scale}}
		fLbl = []string{"after"}
	}
	if len(traj)+len(final) == 0 {
		return figure{}, false
	}

	fig := figure{ID: "plot-accuracy", Title: "Accuracy vs. MACs"}
	if len(iters) > 0 {
		fig.Caption = "Each point is the model after one pruning iteration (#n); the line follows the run from the original model."
		fig.Legend = append(fig.Legend, legendItem{swatch(colTraj, circle), "iterations"})
	} else {
		fig.Caption = "One-shot run: the model before and after pruning."
	}
	if len(base) > 0 {
		fig.Legend = append(fig.Legend, legendItem{swatch(colBase, square), "before pruning"})
	}
	if len(final) > 0 {
		fig.Legend = append(fig.Legend, legendItem{swatch(colFinal, triangle), "final model"})
	}

	fig.SVG, fig.Err = draw1(func() (*plot.Plot, vg.Length, vg.Length, error) {
		p := newPlot()
		p.Y.Label.Text = "accuracy (%)"
		if scale == 1 {
			p.Y.Label.Text = "accuracy"
		}
		p.X.Label.Text, p.X.Tick.Marker = "MACs", ticks{si: true}
		if pct {
			p.X.Label.Text, p.X.Tick.Marker = "MACs (% of original)", ticks{}
		}
		p.Y.Tick.Marker = ticks{}
		p.Add(grid(true))

		if len(traj) >= 2 {
			l, err := plotter.NewLine(traj)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("trajectory line: %w", err)
			}
			l.Color, l.Width = colTraj, vg.Points(1.5)
			p.Add(l)
		}
		if len(final) > 0 && len(traj) > 0 {
			// Dashed because the final model is not another pruning step: it
			// is the last state after fine-tuning (or the one-shot result).
			l, err := plotter.NewLine(plotter.XYs{traj[len(traj)-1], final[0]})
			if err != nil {
				return nil, 0, 0, fmt.Errorf("fine-tune line: %w", err)
			}
			l.Color, l.Width, l.Dashes = colFinal, vg.Points(1), []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
		}
		for _, s := range []struct {
			xys    plotter.XYs
			labels []string
			col    color.Color
			glyph  draw.GlyphDrawer
			r      vg.Length
		}{
			{iters, thin(iters, iterLabels, minLabelDist), colTraj, draw.CircleGlyph{}, 3},
			{base, baseLbl, colBase, draw.BoxGlyph{}, 4},
			{final, fLbl, colFinal, draw.PyramidGlyph{}, 5.5},
		} {
			if len(s.xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(s.xys)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("scatter: %w", err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: s.col, Radius: s.r, Shape: s.glyph}
			p.Add(sc)
			lb, err := labels(s.xys, s.labels, 8)
			if err != nil {
				return nil, 0, 0, err
			}
			// Below-right is off the trajectory, which rises to the right
			// (fewer MACs, lower accuracy); the offset clears the mark.
			for i := range lb.TextStyle {
				lb.TextStyle[i].YAlign = draw.YTop
			}
			lb.Offset = vg.Point{X: s.r + 1, Y: -s.r - 1}
			p.Add(lb)
		}
		return p, vg.Points(640), vg.Points(360), nil
	})
	return fig, true
}

func channelsFigure(layers []Layer) (figure, bool) {
	n := len(layers)
	if n == 0 {
		return figure{}, false
	}
	fig := figure{ID: "plot-channels", Title: "Channels per layer",
		Caption: "Output channels of each prunable layer, top to bottom in model order; the number is the share kept.",
		Legend:  []legendItem{{swatch(colBefore, bar), "before"}, {swatch(colAfter, bar), "after"}}}

	fig.SVG, fig.Err = draw1(func() (*plot.Plot, vg.Length, vg.Length, error) {
		names := make([]string, n)
		before := make(plotter.Values, n)
		after := make(plotter.Values, n)
		var ends plotter.XYs
		var kept []string
		maxV := 0.0
		for i, l := range layers {
			// gonum puts category 0 at the bottom; reversing keeps model order
			// reading top-down like the table.
			j := n - 1 - i
			names[j] = shorten(l.Name, maxNameRunes)
			if names[j] == "" {
				names[j] = fmt.Sprintf("layer %d", i)
			}
			before[j] = float64(max(l.Before, 0))
			after[j] = float64(max(l.After, 0))
			maxV = math.Max(maxV, math.Max(before[j], after[j]))
			if l.Before > 0 {
				ends = append(ends, plotter.XY{X: math.Max(before[j], after[j]), Y: float64(j)})
				kept = append(kept, fmt.Sprintf("%.0f%%", 100*float64(l.After)/float64(l.Before)))
			}
		}

		const rowPt = 11
		p := newPlot()
		p.X.Label.Text = "channels"
		p.X.Tick.Marker = ticks{si: true}
		p.Add(grid(false))
		for _, s := range []struct {
			vs  plotter.Values
			col color.Color
		}{{before, colBefore}, {after, colAfter}} {
			b, err := plotter.NewBarChart(s.vs, vg.Points(rowPt*0.75))
			if err != nil {
				return nil, 0, 0, fmt.Errorf("bars: %w", err)
			}
			b.Horizontal, b.Color, b.LineStyle.Width = true, s.col, 0
			p.Add(b)
		}
		if len(ends) > 0 {
			lb, err := labels(ends, kept, 7)
			if err != nil {
				return nil, 0, 0, err
			}
			for i := range lb.TextStyle {
				lb.TextStyle[i].YAlign = draw.YCenter
			}
			lb.Offset = vg.Point{X: vg.Points(3)}
			p.Add(lb)
		}
		p.NominalY(names...)
		p.Y.Tick.Label.Font.Size = vg.Points(8)
		p.X.Min = 0
		// Headroom keeps the end-of-bar labels inside the data area, where
		// gonum draws them; exactly at the edge they may be dropped.
		p.X.Max = math.Max(maxV*1.04, 1)
		return p, vg.Points(640), vg.Points(float64(max(rowPt*n+70, 170))), nil
	})
	return fig, true
}

func latencyFigure(ls []Latency) (figure, bool) {
	var (
		names         []string
		before, after plotter.Values
	)
	pos := func(ms float64) float64 {
		if finite(ms) && ms > 0 {
			return ms
		}
		return 0
	}
	for _, l := range ls {
		b, a := pos(l.BeforeMs), pos(l.AfterMs)
		if b == 0 && a == 0 {
			continue
		}
		name := l.Device
		if name == "" {
			name = "device"
		}
		if l.Batch > 0 {
			name += fmt.Sprintf(", batch %d", l.Batch)
		}
		if s, ok := speedup(l); ok {
			name += fmt.Sprintf("\n%.2f× speed-up", s)
		}
		names = append(names, shorten(name, maxNameRunes))
		before = append(before, b)
		after = append(after, a)
	}
	n := len(names)
	if n == 0 {
		return figure{}, false
	}
	fig := figure{ID: "plot-latency", Title: "Latency",
		Caption: "Measured latency per batch, lower is better.",
		Legend:  []legendItem{{swatch(colBefore, bar), "before"}, {swatch(colAfter, bar), "after"}}}

	fig.SVG, fig.Err = draw1(func() (*plot.Plot, vg.Length, vg.Length, error) {
		p := newPlot()
		p.Y.Label.Text = "latency (ms)"
		p.Y.Tick.Marker = ticks{}
		p.Add(grid(false))
		const barPt = 30
		maxV := 0.0
		for k, s := range []struct {
			vs  plotter.Values
			col color.Color
		}{{before, colBefore}, {after, colAfter}} {
			b, err := plotter.NewBarChart(s.vs, vg.Points(barPt))
			if err != nil {
				return nil, 0, 0, fmt.Errorf("bars: %w", err)
			}
			off := vg.Points(barPt / 2)
			if k == 0 {
				off = -off
			}
			b.Color, b.LineStyle.Width, b.Offset = s.col, 0, off
			p.Add(b)

			xys := make(plotter.XYs, 0, n)
			txt := make([]string, 0, n)
			for i, v := range s.vs {
				maxV = math.Max(maxV, v)
				if v > 0 {
					xys = append(xys, plotter.XY{X: float64(i), Y: v})
					txt = append(txt, fmt.Sprintf("%.3g", v))
				}
			}
			if len(xys) > 0 {
				lb, err := labels(xys, txt, 8)
				if err != nil {
					return nil, 0, 0, err
				}
				for i := range lb.TextStyle {
					lb.TextStyle[i].XAlign = draw.XCenter
				}
				lb.Offset = vg.Point{X: off, Y: vg.Points(2)}
				p.Add(lb)
			}
		}
		p.NominalX(names...)
		// Half a category of margin so the grid spans the outer bars too.
		p.X.Min, p.X.Max = -0.5, float64(n)-0.5
		p.Y.Min = 0
		p.Y.Max = math.Max(maxV*1.12, 1e-9)
		w := max(110*n+140, 320)
		return p, vg.Points(float64(w)), vg.Points(280), nil
	})
	return fig, true
}

// draw1 builds one plot and renders it to inline SVG markup. gonum/plot and
// vgsvg panic on some inputs (zero sizes, font trouble); the recover turns
// that into an error shown on the page instead of a crashed pruning run.
func draw1(build func() (*plot.Plot, vg.Length, vg.Length, error)) (svg template.HTML, errText string) {
	defer func() {
		if r := recover(); r != nil {
			svg, errText = "", fmt.Sprintf("plot could not be drawn: %v", r)
		}
	}()
	p, w, h, err := build()
	if err != nil {
		return "", "plot could not be drawn: " + err.Error()
	}
	c := vgsvg.New(w, h)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", "plot could not be drawn: write svg: " + err.Error()
	}
	s := buf.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", "plot could not be drawn: renderer produced no <svg> element"
	}
	// The XML prolog before <svg> is invalid inside HTML. vgsvg escapes all
	// text it draws, so the rest is safe to inline as markup.
	return template.HTML(`<svg class="plot" role="img"` + s[i+len("<svg"):]), ""
}

func newPlot() *plot.Plot {
	p := plot.New()
	for _, s := range []*text.Style{&p.Title.TextStyle, &p.Legend.TextStyle,
		&p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		s.Font = font.From(sans, s.Font.Size)
	}
	p.X.Label.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.TextStyle.Font.Size = vg.Points(11)
	p.X.Tick.Label.Font.Size = vg.Points(9)
	p.Y.Tick.Label.Font.Size = vg.Points(9)
	return p
}

func grid(vertical bool) *plotter.Grid {
	g := plotter.NewGrid()
	g.Horizontal.Color, g.Vertical.Color = colGrid, colGrid
	if !vertical {
		g.Vertical.Color = nil
	}
	return g
}

func labels(xys plotter.XYs, txt []string, size float64) (*plotter.Labels, error) {
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: txt})
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].Font = font.From(sans, vg.Points(size))
		lb.TextStyle[i].Color = colText
	}
	return lb, nil
}

// thin blanks labels that would sit within minDist (as a fraction of the
// plot's data range) of a label already kept; iterations bunch up where
// each step removes little, and overlapping labels are unreadable. The last
// label is kept first because the final iteration is the one readers seek.
func thin(xys plotter.XYs, ls []string, minDist float64) []string {
	if len(xys) == 0 {
		return ls
	}
	xmin, xmax, ymin, ymax := plotter.XYRange(xys)
	norm := func(v, lo, hi float64) float64 {
		if hi > lo {
			return (v - lo) / (hi - lo)
		}
		return 0
	}
	out := make([]string, len(ls))
	var kept []plotter.XY
	try := func(i int) {
		p := plotter.XY{X: norm(xys[i].X, xmin, xmax), Y: norm(xys[i].Y, ymin, ymax)}
		for _, q := range kept {
			if math.Hypot(p.X-q.X, p.Y-q.Y) < minDist {
				return
			}
		}
		kept = append(kept, p)
		out[i] = ls[i]
	}
	try(len(ls) - 1)
	for i := range len(ls) - 1 {
		try(i)
	}
	return out
}

// shorten cuts s to n runes, keeping both ends: layer names differ in
// their tails (block index, conv number) as often as in their heads.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	head := (n - 1) / 2
	tail := n - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// ticks keeps gonum's tick positions but writes labels with as many
// decimals as the positions need: gonum's own labels can repeat ("70, 70")
// on the narrow accuracy ranges pruning runs produce. With si set, counts
// get SI suffixes (1.2 G) unless that makes neighbouring labels equal.
type ticks struct{ si bool }

func (t ticks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	var major []int
	for i := range ts {
		if ts[i].Label != "" {
			major = append(major, i)
		}
	}
	label := func(f func(float64) string) bool {
		seen := make(map[string]bool, len(major))
		for _, i := range major {
			l := f(ts[i].Value)
			if seen[l] {
				return false
			}
			seen[l] = true
			ts[i].Label = l
		}
		return true
	}
	if t.si && label(human) {
		return ts
	}
	for dec := 0; dec <= 9; dec++ {
		f := func(v float64) string { return strconv.FormatFloat(v, 'f', dec, 64) }
		if label(f) && exact(ts, major, dec) {
			return ts
		}
	}
	return ts
}

// exact reports whether dec decimals represent every major tick value.
func exact(ts []plot.Tick, major []int, dec int) bool {
	p := math.Pow10(dec)
	for _, i := range major {
		v := ts[i].Value * p
		if math.Abs(v-math.Round(v)) > 1e-6*math.Max(1, math.Abs(v)) {
			return false
		}
	}
	return true
}

type shape int

const (
	bar shape = iota
	circle
	square
	triangle
)

// swatch is the CSS of a legend key matching a plot mark's colour and shape.
func swatch(c color.RGBA, s shape) template.CSS {
	css := fmt.Sprintf("background:#%02x%02x%02x", c.R, c.G, c.B)
	switch s {
	case circle:
		css += ";border-radius:50%"
	case square:
		css += ";border-radius:0;transform:scale(.8)"
	case triangle:
		css += ";border-radius:0;clip-path:polygon(50% 0,100% 100%,0 100%)"
	}
	return template.CSS(css)
}

// fontCSS declares the plot font once for the whole page. The SVGs are
// rendered without embedded fonts and name the family in their text
// styles, which the @font-face rule then satisfies. Without the rule the
// browser falls back to a system sans font, which is acceptable, so
// failures here only drop the rule.
var fontCSS = sync.OnceValue(func() template.CSS {
	face := font.DefaultCache.Lookup(sans, 10)
	if face.Face == nil {
		return ""
	}
	// vgsvg names fonts by their sfnt family, so the rule must too.
	family, err := face.Face.Name(nil, sfnt.NameIDFamily)
	if err != nil || strings.ContainsAny(family, `"\<>;{}`) {
		return ""
	}
	var raw bytes.Buffer
	if _, err := face.Face.WriteSourceTo(nil, &raw); err != nil {
		return ""
	}
	return template.CSS(fmt.Sprintf(
		`@font-face{font-family:"%s";font-weight:normal;font-style:normal;src:url(data:font/ttf;base64,%s) format("truetype")}`,
		family, base64.StdEncoding.EncodeToString(raw.Bytes())))
})
