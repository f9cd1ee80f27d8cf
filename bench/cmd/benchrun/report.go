package main

import (
	"fmt"
	"math"
	"strings"
)

// section is one benchmark's results.
type section struct {
	ID      int         `json:"id"`
	Title   string      `json:"title"`
	Summary *summaryRow `json:"summary,omitempty"`
	Tables  []*table    `json:"tables,omitempty"`
	Notes   []string    `json:"notes,omitempty"`
	Data    any         `json:"data,omitempty"`
	Skipped string      `json:"skipped,omitempty"`
	Error   string      `json:"error,omitempty"`
	WallS   float64     `json:"wall_s"`
}

// summaryRow is the section's row in the top table.
type summaryRow struct {
	Gopruner  string `json:"gopruner"`
	Reference string `json:"reference"`
	Ratio     string `json:"ratio"`
	Note      string `json:"note,omitempty"`
}

type table struct {
	Caption string     `json:"caption,omitempty"`
	Header  []string   `json:"header"`
	Rows    [][]string `json:"rows"`
}

func (s *section) addTable(caption string, header ...string) *table {
	t := &table{Caption: caption, Header: header}
	s.Tables = append(s.Tables, t)
	return t
}

func (t *table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func (s *section) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

func (t *table) markdown(b *strings.Builder) {
	if t.Caption != "" {
		fmt.Fprintf(b, "%s\n\n", t.Caption)
	}
	b.WriteString("| " + strings.Join(escape(t.Header), " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.Header)) + "\n")
	for _, r := range t.Rows {
		for len(r) < len(t.Header) {
			r = append(r, "")
		}
		b.WriteString("| " + strings.Join(escape(r), " | ") + " |\n")
	}
	b.WriteString("\n")
}

func escape(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	return out
}

func (r *results) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# gopruner benchmarks\n\n")
	fmt.Fprintf(&b, "%s · %s, %d cores, %.1f GiB · load average %s at start, %s at end · gopruner %s, libtorch %s, Python torch %s, %s · measured with %s · whole run %.0f s\n\n",
		r.Date, m.CPU, m.Cores, m.MemGiB, loadStr(m.LoadAvgStart), loadStr(m.LoadAvgEnd), m.Gopruner, m.Libtorch, m.PythonTorch,
		m.GoVersion, r.Method, r.WallS)
	policy := r.OMPWaitPolicy
	if policy == "" {
		policy = "libgomp's default"
	}
	fmt.Fprintf(&b, "Ratios compare runs made side by side in this one run; absolute times move with the machine and its load. "+
		"Every process ran with OMP_WAIT_POLICY=%s (gopruner and the Python references alike).\n\n", policy)
	top := &table{Header: []string{"#", "benchmark", "gopruner", "reference", "ratio", "note"}}
	for _, s := range r.Sections {
		row := []string{fmt.Sprint(s.ID), s.Title}
		switch {
		case s.Skipped != "":
			row = append(row, "skipped: "+s.Skipped, "", "", "")
		case s.Summary != nil:
			row = append(row, s.Summary.Gopruner, s.Summary.Reference, s.Summary.Ratio, s.Summary.Note)
			if s.Error != "" {
				row[5] = strings.TrimSpace(row[5] + " (error: " + s.Error + ")")
			}
		case s.Error != "":
			row = append(row, "n/a (error: "+s.Error+")", "", "", "")
		default:
			row = append(row, "n/a", "", "", "")
		}
		top.add(row...)
	}
	top.markdown(&b)
	for _, s := range r.Sections {
		if s.Skipped != "" {
			continue
		}
		fmt.Fprintf(&b, "## %d. %s\n\n", s.ID, s.Title)
		if s.Error != "" {
			fmt.Fprintf(&b, "**error:** %s\n\n", s.Error)
		}
		for _, t := range s.Tables {
			t.markdown(&b)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if len(s.Notes) > 0 {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func loadStr(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, "/")
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// Formatting helpers for table cells.

func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func mb(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

func ratio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	if x >= 10 {
		return fmt.Sprintf("%.1f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

func pct(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }

// errPct shows a small relative error with enough digits to be non-zero.
func errPct(x float64) string {
	if x == 0 {
		return "0"
	}
	return fmt.Sprintf("%+.4f%%", 100*x)
}

func human(n float64) string {
	switch a := math.Abs(n); {
	case a >= 1e9:
		return fmt.Sprintf("%.3fG", n/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", n/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fK", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}

func relErr(got, want float64) float64 {
	if want == 0 {
		if got == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return (got - want) / want
}

// logSlope is the least-squares slope of log(y) against log(x): 1 means y
// grows linearly with x, 2 quadratically.
func logSlope(x, y []float64) float64 {
	n := 0.0
	var sx, sy, sxx, sxy float64
	for i := range x {
		if x[i] <= 0 || y[i] <= 0 {
			continue
		}
		lx, ly := math.Log(x[i]), math.Log(y[i])
		sx += lx
		sy += ly
		sxx += lx * lx
		sxy += lx * ly
		n++
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// linearity names what a log-log slope says about growth.
func linearity(slope float64) string {
	switch {
	case math.IsNaN(slope):
		return "n/a"
	case slope < 0.8:
		return "sub-linear"
	case slope <= 1.25:
		return "linear"
	default:
		return "super-linear"
	}
}
