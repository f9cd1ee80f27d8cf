package report

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var colCand = color.RGBA{R: 0x9e, G: 0x9e, B: 0x9e, A: 0xff}

// errPoints are points with vertical error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// candidatesFigure plots every candidate's accuracy with ± one standard
// error, iteration by iteration, the kept one in colour: whether the
// search could tell its candidates apart is then visible at a glance.
// Absent unless some candidate has a measured standard error.
func candidatesFigure(d Data, scale float64) (figure, bool) {
	var kept, other errPoints
	measured := false
	first, last := 0.0, 0.0
	for i, it := range d.Iterations {
		if i == 0 || float64(it.Iteration) < first {
			first = float64(it.Iteration)
		}
		last = max(last, float64(it.Iteration))
		n := len(it.Candidates)
		for j, c := range it.Candidates {
			if !finite(c.Accuracy) || c.ScreenedOut {
				continue // a screened-out accuracy is from before the fine-tune: not comparable
			}
			se := 0.0
			if finite(c.AccuracySE) && c.AccuracySE > 0 {
				se, measured = c.AccuracySE*scale, true
			}
			// Spread an iteration's candidates across ±0.3 around its number.
			x := float64(it.Iteration)
			if n > 1 {
				x += 0.6 * (float64(j)/float64(n-1) - 0.5)
			}
			dst := &other
			if c.Kept {
				dst = &kept
			}
			dst.XYs = append(dst.XYs, plotter.XY{X: x, Y: c.Accuracy * scale})
			dst.YErrors = append(dst.YErrors, struct{ Low, High float64 }{se, se})
		}
	}
	if !measured {
		return figure{}, false
	}
	fig := figure{ID: "plot-candidates", Title: "Candidates per iteration",
		Caption: "Each candidate's validation accuracy with ± one standard error (binomial, over the validation samples). Candidates whose bars overlap the kept one's were not told apart by the validation.",
		Legend:  []legendItem{{swatch(colCand, circle), "candidate"}, {swatch(colAfter, circle), "kept"}}}
	fig.SVG, fig.Err = draw1(func() (*plot.Plot, vg.Length, vg.Length, error) {
		p := newPlot()
		p.Y.Label.Text = "accuracy (%)"
		if scale == 1 {
			p.Y.Label.Text = "accuracy"
		}
		p.X.Label.Text = "iteration"
		p.X.Tick.Marker, p.Y.Tick.Marker = iterTicks{}, ticks{}
		// Half an iteration of margin keeps the outer candidates off the axes.
		p.X.Min, p.X.Max = first-0.5, last+0.5
		p.Add(grid(false))
		for _, s := range []struct {
			pts errPoints
			col color.Color
			r   vg.Length
		}{{other, colCand, 2.5}, {kept, colAfter, 3.5}} {
			if len(s.pts.XYs) == 0 {
				continue
			}
			eb, err := plotter.NewYErrorBars(s.pts)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("error bars: %w", err)
			}
			eb.LineStyle.Color, eb.LineStyle.Width, eb.CapWidth = s.col, vg.Points(1), vg.Points(4)
			p.Add(eb)
			sc, err := plotter.NewScatter(s.pts.XYs)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("scatter: %w", err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: s.col, Radius: s.r, Shape: draw.CircleGlyph{}}
			p.Add(sc)
		}
		return p, vg.Points(640), vg.Points(320), nil
	})
	return fig, true
}

// iterTicks marks whole iterations only, labelling at most about a dozen.
type iterTicks struct{}

func (iterTicks) Ticks(lo, hi float64) []plot.Tick {
	from, to := int(math.Ceil(lo)), int(math.Floor(hi))
	step := max(1, (to-from+1)/12)
	var ts []plot.Tick
	for i := from; i <= to; i++ {
		t := plot.Tick{Value: float64(i)}
		if (i-from)%step == 0 {
			t.Label = strconv.Itoa(i)
		}
		ts = append(ts, t)
	}
	return ts
}
