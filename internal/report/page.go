package report

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// page is the view model of the template: every string is final display
// text, so the template stays free of logic and html/template escapes it.
type page struct {
	Title    string
	Meta     []kv
	Summary  []summaryRow
	Latency  []latencyRow
	LatTgt   *latTargetRow
	Notes    []string
	Figures  []figure
	Layers   []layerRow
	Totals   *layerRow
	Iters    []iterRow
	Cands    []candRow
	FontCSS  template.CSS
	NumPlots int
}

type kv struct{ Key, Value string }

type summaryRow struct {
	Name, Before, After, Change string
	// Exact values go to title attributes so that rounded cells can still
	// be checked against logs.
	BeforeExact, AfterExact string
}

type latencyRow struct {
	Device, Batch, Before, After, Speedup string
}

// latTargetRow is target: latency's predicted against measured latency.
type latTargetRow struct {
	Setting, PredBefore, PredAfter, MeasBefore, MeasAfter, Error, SpeedupError, Table string
}

func latTarget(l *LatencyTarget) *latTargetRow {
	if l == nil {
		return nil
	}
	r := &latTargetRow{Setting: fmt.Sprintf("%s, %d thread(s), batch %d", l.Device, l.Threads, l.Batch),
		PredBefore: fmtMs(l.PredictedBeforeMs), PredAfter: fmtMs(l.PredictedAfterMs), MeasBefore: dash, MeasAfter: dash, Error: dash,
		SpeedupError: dash}
	if l.ErrorPct != nil {
		r.MeasBefore, r.MeasAfter = fmtMs(l.MeasuredBeforeMs), fmtMs(l.MeasuredAfterMs)
		r.Error = signed(*l.ErrorPct, 1) + "%"
	}
	if l.SpeedupErrorPct != nil {
		r.SpeedupError = signed(*l.SpeedupErrorPct, 1) + "%"
	}
	src := fmt.Sprintf("measured in %.1f s", l.TableSeconds)
	if l.Cached {
		src = "from the cache"
	}
	r.Table = fmt.Sprintf("%d layers, %d grid points, %s; residue %s", l.Layers, l.Points, src, fmtMs(l.ResidueMs))
	return r
}

type layerRow struct {
	Name, Before, After, Kept string
	Pruned                    bool
}

type iterRow struct {
	Iteration, MACs, MACsPct, Accuracy, Label string
}

// candRow is one candidate of one iteration; First marks the first row of
// an iteration, which carries its number.
type candRow struct {
	Iteration, Name, MACs, Removed, Accuracy, SE, Loss, Seconds, Slot string
	First, Kept                                                       bool
}

// figure is one plot section. Exactly one of SVG and Err is set.
type figure struct {
	ID, Title, Caption string
	Legend             []legendItem
	SVG                template.HTML
	Err                string
}

type legendItem struct {
	Style template.CSS
	Label string
}

const dash = "—"

func buildPage(d Data) page {
	p := page{Title: d.Title, Notes: d.Notes}
	if p.Title == "" {
		p.Title = "Pruning report"
	}
	for _, m := range []kv{
		{"Model", d.ModelPath},
		{"Pruned model", d.OutPath},
		{"Algorithm", d.Algorithm},
	} {
		if m.Value != "" {
			p.Meta = append(p.Meta, m)
		}
	}
	if !d.Created.IsZero() {
		p.Meta = append(p.Meta, kv{"Created", d.Created.Format("2006-01-02 15:04:05 -0700")})
	}

	scale := accScale(d)
	p.Summary = summaryRows(d, scale)
	p.Latency = latencyRows(d.Latency)
	p.LatTgt = latTarget(d.LatencyTarget)
	p.Layers, p.Totals = layerRows(d.Layers)
	p.Iters = iterRows(d, scale)
	p.Cands = candRows(d, scale)
	p.Figures = figures(d, scale)
	p.NumPlots = len(p.Figures)
	p.FontCSS = fontCSS()
	return p
}

func summaryRows(d Data, scale float64) []summaryRow {
	var rows []summaryRow
	count := func(name string, before, after int64) {
		if before <= 0 && after <= 0 {
			return
		}
		r := summaryRow{Name: name, Before: dash, After: dash, Change: dash}
		if before > 0 {
			r.Before, r.BeforeExact = human(float64(before)), strconv.FormatInt(before, 10)
		}
		if after > 0 {
			r.After, r.AfterExact = human(float64(after)), strconv.FormatInt(after, 10)
		}
		if before > 0 && after > 0 {
			r.Change = fmt.Sprintf("%s (%.1f%% of original, %.2f× smaller)",
				signed(100*(float64(after)/float64(before)-1), 1)+"%",
				100*float64(after)/float64(before), float64(before)/float64(after))
		}
		rows = append(rows, r)
	}
	count("MACs", d.MACsBefore, d.MACsAfter)
	count("Parameters", d.ParamsBefore, d.ParamsAfter)

	accuracyRow(&rows, "Accuracy", d.AccBefore, d.AccAfter, scale)
	accuracyRow(&rows, "Test accuracy", d.TestAccBefore, d.TestAccAfter, scale)
	return rows
}

// accuracyRow adds a before/after accuracy row when either is known.
func accuracyRow(rows *[]summaryRow, name string, before, after *float64, scale float64) {
	ab, okB := finitePtr(before)
	aa, okA := finitePtr(after)
	if okB || okA {
		r := summaryRow{Name: name, Before: dash, After: dash, Change: dash}
		if okB {
			r.Before, r.BeforeExact = fmtAcc(ab, scale), strconv.FormatFloat(ab, 'g', -1, 64)
		}
		if okA {
			r.After, r.AfterExact = fmtAcc(aa, scale), strconv.FormatFloat(aa, 'g', -1, 64)
		}
		if okB && okA {
			r.Change = signed((aa-ab)*scale, 2) + " points"
		}
		*rows = append(*rows, r)
	}
}

func latencyRows(ls []Latency) []latencyRow {
	rows := make([]latencyRow, 0, len(ls))
	for _, l := range ls {
		r := latencyRow{Device: l.Device, Batch: dash, Before: fmtMs(l.BeforeMs),
			After: fmtMs(l.AfterMs), Speedup: dash}
		if r.Device == "" {
			r.Device = dash
		}
		if l.Batch > 0 {
			r.Batch = strconv.FormatInt(l.Batch, 10)
		}
		if s, ok := speedup(l); ok {
			r.Speedup = fmt.Sprintf("%.2f×", s)
		}
		rows = append(rows, r)
	}
	return rows
}

func layerRows(ls []Layer) ([]layerRow, *layerRow) {
	if len(ls) == 0 {
		return nil, nil
	}
	rows := make([]layerRow, 0, len(ls))
	var sumB, sumA int64
	for _, l := range ls {
		rows = append(rows, layerRow{
			Name:   l.Name,
			Before: strconv.Itoa(l.Before),
			After:  strconv.Itoa(l.After),
			Kept:   keptPct(int64(l.Before), int64(l.After)),
			Pruned: l.After != l.Before,
		})
		sumB += int64(l.Before)
		sumA += int64(l.After)
	}
	tot := &layerRow{Name: fmt.Sprintf("Total (%d layers)", len(ls)),
		Before: strconv.FormatInt(sumB, 10), After: strconv.FormatInt(sumA, 10),
		Kept: keptPct(sumB, sumA)}
	return rows, tot
}

func iterRows(d Data, scale float64) []iterRow {
	rows := make([]iterRow, 0, len(d.Iterations))
	for _, it := range d.Iterations {
		r := iterRow{Iteration: strconv.Itoa(it.Iteration), MACs: dash, MACsPct: dash,
			Accuracy: dash, Label: it.Label}
		if it.MACs > 0 {
			r.MACs = human(float64(it.MACs))
			if d.MACsBefore > 0 {
				r.MACsPct = fmt.Sprintf("%.1f%%", 100*float64(it.MACs)/float64(d.MACsBefore))
			}
		}
		if finite(it.Accuracy) {
			r.Accuracy = fmtAcc(it.Accuracy, scale)
		}
		rows = append(rows, r)
	}
	return rows
}

// candRows lists every iteration's candidates. Removed is the share of the
// original MACs the candidate takes away from the model it was cut from
// (the previous iteration's), the resource side of the comparison.
func candRows(d Data, scale float64) []candRow {
	var rows []candRow
	prev := d.MACsBefore
	for _, it := range d.Iterations {
		for i, c := range it.Candidates {
			r := candRow{Iteration: strconv.Itoa(it.Iteration), First: i == 0, Kept: c.Kept,
				Name: fmt.Sprintf("%s %d→%d", strings.Join(c.Layers, ","), c.From, c.To),
				MACs: human(float64(c.MACs)), Removed: dash, Accuracy: dash, SE: dash, Loss: dash, Seconds: dash, Slot: c.Slot}
			if len(c.Layers) == 0 {
				r.Name = fmt.Sprintf("group %d %d→%d", c.Group, c.From, c.To)
			}
			if prev > 0 && d.MACsBefore > 0 {
				r.Removed = fmt.Sprintf("%.2f%%", 100*float64(prev-c.MACs)/float64(d.MACsBefore))
			}
			if finite(c.Accuracy) {
				r.Accuracy = fmtAcc(c.Accuracy, scale)
			}
			if c.AccuracySE > 0 && finite(c.AccuracySE) {
				r.SE = fmt.Sprintf("±%.2f", c.AccuracySE*scale)
			}
			if c.TrainLoss > 0 && finite(c.TrainLoss) {
				r.Loss = strconv.FormatFloat(c.TrainLoss, 'f', 4, 64)
			}
			if c.Seconds > 0 && finite(c.Seconds) {
				r.Seconds = fmt.Sprintf("%.1f s", c.Seconds)
			}
			if r.Slot == "" {
				r.Slot = dash
			}
			if c.Kept && it.TieBroken {
				r.Name += " (tie-break)"
			}
			if c.Failed != "" {
				r.Accuracy, r.Name = "failed", r.Name+" (failed: "+c.Failed+")"
			}
			if c.ScreenedOut {
				r.Name += " (screened out: accuracy before fine-tuning)"
				if c.ScreenSeconds > 0 && finite(c.ScreenSeconds) {
					r.Seconds = fmt.Sprintf("%.1f s", c.ScreenSeconds)
				}
			}
			if c.Worker != "" {
				r.Slot = c.Worker
			}
			rows = append(rows, r)
		}
		if it.MACs > 0 {
			prev = it.MACs
		}
	}
	return rows
}

// accScale returns the factor that turns the accuracies in d into
// percentages: 100 when all of them look like fractions, else 1.
func accScale(d Data) float64 {
	accs := make([]float64, 0, len(d.Iterations)+2)
	if d.AccBefore != nil {
		accs = append(accs, *d.AccBefore)
	}
	for _, p := range []*float64{d.AccAfter, d.TestAccBefore, d.TestAccAfter} {
		if p != nil {
			accs = append(accs, *p)
		}
	}
	for _, it := range d.Iterations {
		accs = append(accs, it.Accuracy)
	}
	for _, a := range accs {
		if finite(a) && (a < 0 || a > 1) {
			return 1
		}
	}
	return 100
}

func speedup(l Latency) (float64, bool) {
	if !finite(l.BeforeMs) || !finite(l.AfterMs) || l.BeforeMs <= 0 || l.AfterMs <= 0 {
		return 0, false
	}
	return l.BeforeMs / l.AfterMs, true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func finitePtr(p *float64) (float64, bool) {
	if p == nil || !finite(*p) {
		return 0, false
	}
	return *p, true
}

func fmtAcc(a, scale float64) string { return fmt.Sprintf("%.2f%%", a*scale) }

func fmtMs(ms float64) string {
	if !finite(ms) || ms <= 0 {
		return dash
	}
	return fmt.Sprintf("%.3g ms", ms)
}

// signed formats v with an explicit sign; a real minus sign reads better
// than a hyphen in tables.
func signed(v float64, prec int) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', prec, 64)
	if v < 0 && strings.Trim(s, "0.") != "" {
		return "−" + s
	}
	return "+" + s
}

func keptPct(before, after int64) string {
	if before <= 0 {
		return dash
	}
	return fmt.Sprintf("%.1f%%", 100*float64(after)/float64(before))
}

// human formats counts such as MACs with an SI suffix and three
// significant digits, e.g. 1.23 G.
func human(v float64) string {
	if !finite(v) {
		return dash
	}
	a := math.Abs(v)
	units := []struct {
		div    float64
		suffix string
	}{{1e15, " P"}, {1e12, " T"}, {1e9, " G"}, {1e6, " M"}, {1e3, " k"}}
	div, suffix := 1.0, ""
	for _, u := range units {
		// The margin moves values that would print as "1000 k" up to "1.00 M".
		if a >= u.div*0.9995 {
			div, suffix = u.div, u.suffix
			break
		}
	}
	x := v / div
	switch ax := math.Abs(x); {
	case suffix == "" && ax == math.Trunc(ax):
		return strconv.FormatFloat(x, 'f', 0, 64)
	case ax < 9.995:
		return fmt.Sprintf("%.2f%s", x, suffix)
	case ax < 99.95:
		return fmt.Sprintf("%.1f%s", x, suffix)
	default:
		return fmt.Sprintf("%.0f%s", x, suffix)
	}
}
