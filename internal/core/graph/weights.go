package graph

import (
	"fmt"
	"slices"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// Weights that forward computes from a parameter, by ops that do not depend
// on the model input: weight normalisation (g·v/‖v‖, TCNs), handled apart
// because surgery can keep it exact, and weight standardisation (BiT's and
// NFNet's StdConv: each filter made zero-mean and unit-variance, maybe
// times a gain), which wexprOf follows. Both keep the filters (dim 0)
// independent of one another, so a conv's output channels prune exactly;
// the standardisation runs over each filter's input channels, so removing
// some of those changes the others' values: that side is inexact.

// wform is how a value computed from a weight P lays out P's filters.
type wform int

const (
	wScalar wform = iota // one number for every filter
	wFull                // P's layout: filters on dim 0, the rest as P has them
	wFlat                // filters on dim row, the rest of each filter flattened after it
	wRow                 // one value per filter on dim row, every other dim 1
)

// wexpr describes a value of a weight expression.
type wexpr struct {
	form wform
	row  int
	// src is P, the parameter the filters come from ("" until one is met).
	src string
	// mixed: some entry depends on other entries of its filter (a mean, a
	// variance, a normalisation across the filter).
	mixed bool
	// rows are the per-filter parameters read beside P (an NFNet gain).
	rows []string
	// baked: a reshape on the way wrote the filter count in as a constant.
	baked bool
}

// wval is how a value of a followed weight expression takes its shape
// from its source parameter under pruning (see Analysis.ValueShape).
type wval struct {
	src  string
	form wform
	row  int
}

// maxWexprDepth bounds the ops a weight expression may chain.
const maxWexprDepth = 24

// computedWeight resolves the weight w of a conv to the parameter P its
// filters come from (e.src), when forward computes it from P by per-filter
// ops (weight standardisation), with the per-filter parameters it also
// reads, whether it mixes the entries of a filter and whether a reshape
// wrote the filter count in. ok is false for anything else, which stays
// unfollowed.
func (a *analyzer) computedWeight(w int) (e wexpr, ok bool) {
	W, okW := a.shape(w)
	if !okW || len(W) < 2 || W[0] < 1 {
		return wexpr{}, false
	}
	clear(a.wseen)
	e, ok = a.wexprOf(w, W, 0)
	if !ok || e.form != wFull || e.src == "" || !slices.Equal(a.paramShape(e.src), W) {
		return wexpr{}, false
	}
	return e, true
}

// keepWexpr records the shapes of the values the last computedWeight
// walked, which take theirs from src once it is pruned.
func (a *analyzer) keepWexpr(src string) {
	for id, e := range a.wseen {
		if e.form != wScalar && (e.src == src || e.src == "") {
			a.wvals[id] = wval{src: src, form: e.form, row: e.row}
		}
	}
}

// wexprOf describes value id of a weight expression whose result has shape
// W (P's shape; W[0] filters), and notes it in a.wseen.
func (a *analyzer) wexprOf(id int, W []int64, depth int) (wexpr, bool) {
	e, ok := a.wexprAt(id, W, depth)
	if ok {
		a.wseen[id] = e
	}
	return e, ok
}

func (a *analyzer) wexprAt(id int, W []int64, depth int) (wexpr, bool) {
	v := a.value(id)
	if v == nil || depth > maxWexprDepth || a.live[id] {
		return wexpr{}, false
	}
	if v.Const && (v.Kind == ir.KindFloat || v.Kind == ir.KindInt) {
		return wexpr{form: wScalar}, true
	}
	s, okS := a.shape(id)
	if v.Param != "" {
		switch {
		case okS && slices.Equal(s, W):
			return wexpr{form: wFull, src: v.Param}, true
		case okS && ir.Numel(s) == 1:
			return wexpr{form: wScalar}, true
		case okS && rowShaped(s, W[0]) >= 0:
			return wexpr{form: wRow, row: rowShaped(s, W[0]), rows: []string{v.Param}}, true
		}
		return wexpr{}, false
	}
	pi := a.g.Producer(id)
	if pi < 0 {
		if okS && v.Kind == ir.KindTensor && ir.Numel(s) == 1 {
			return wexpr{form: wScalar}, true // a tensor constant
		}
		return wexpr{}, false
	}
	op := &a.g.Ops[pi]
	arg := func(i int) (wexpr, bool) {
		if i >= len(op.Inputs) {
			return wexpr{}, false
		}
		return a.wexprOf(op.Inputs[i], W, depth+1)
	}
	if !okS {
		return wexpr{}, false
	}
	switch op.Kind {
	case "aten::contiguous", "aten::clone", "aten::detach", "aten::to":
		return arg(0)
	case "aten::reshape", "aten::view", "aten::reshape_as", "aten::view_as", "aten::flatten":
		x, ok := arg(0)
		if !ok {
			return wexpr{}, false
		}
		r, ok := x.reshaped(s, W)
		if ok && x.form == wFull && r.form == wFlat && (op.Kind == "aten::reshape" || op.Kind == "aten::view") {
			// reshape(1, O, -1) with O a constant (timm's out_channels):
			// surgery must write the new count there.
			r.baked = len(op.Inputs) > 1 && a.bakedSize(op.Inputs[1], r.row, len(s))
		}
		return r, ok
	case "aten::batch_norm":
		// F.batch_norm(P.reshape(1, O, -1), None, None, gain?, training=True):
		// each filter standardised over its own entries (timm's StdConv2d,
		// ScaledStdConv2d).
		if len(op.Inputs) < 6 {
			return wexpr{}, false
		}
		x, ok := arg(0)
		training, okT := a.g.ConstInt(op.Inputs[5])
		if !ok || x.form != wFlat || x.row != 1 || len(s) != 3 || !okT || training == 0 ||
			!a.isNone(op.Inputs[3]) || !a.isNone(op.Inputs[4]) {
			return wexpr{}, false
		}
		out := x
		out.mixed = true
		for _, i := range []int{1, 2} {
			if a.isNone(op.Inputs[i]) {
				continue
			}
			g, ok := arg(i)
			gs, _ := a.shape(op.Inputs[i])
			if !ok || g.form != wRow || len(gs) != 1 || (g.src != "" && g.src != out.src) {
				return wexpr{}, false
			}
			out = out.join(g)
		}
		return out, true
	case "aten::var_mean", "aten::std_mean", "aten::mean", "aten::var", "aten::std", "aten::sum", "aten::amax", "aten::amin":
		// A statistic of each filter (BiT's StdConv2d: var_mean over dims
		// 1.., kept): one value per filter, depending on all of it.
		x, ok := arg(0)
		if !ok || x.form != wFull || len(s) != len(W) || rowShaped(s, W[0]) != 0 {
			return wexpr{}, false
		}
		return wexpr{form: wRow, src: x.src, mixed: true, rows: x.rows}, true
	case "aten::add", "aten::sub", "aten::mul", "aten::div", "aten::add_", "aten::sub_", "aten::mul_", "aten::div_",
		"aten::pow", "aten::sqrt", "aten::rsqrt", "aten::neg", "aten::abs", "aten::reciprocal", "aten::exp",
		"aten::clamp", "aten::clamp_min", "aten::clamp_max":
		return a.wexprElementwise(op, s, W, depth)
	}
	return wexpr{}, false
}

// wexprElementwise combines the operands of an elementwise op: filters
// line up with filters, and a per-filter value or a scalar broadcasts over
// each filter. Non-tensor arguments (alpha, a clamp's bounds, an exponent)
// must be constants.
func (a *analyzer) wexprElementwise(op *ir.Op, s, W []int64, depth int) (wexpr, bool) {
	out := wexpr{form: wScalar}
	for _, in := range op.Inputs {
		v := a.value(in)
		if v == nil {
			return wexpr{}, false
		}
		if v.Kind != ir.KindTensor && v.Param == "" {
			if !v.Const && v.Kind != ir.KindNone {
				return wexpr{}, false
			}
			continue
		}
		e, ok := a.wexprOf(in, W, depth+1)
		if !ok || (e.src != "" && out.src != "" && e.src != out.src) {
			return wexpr{}, false
		}
		if es, _ := a.shape(in); e.form != wScalar && len(es) != len(s) {
			return wexpr{}, false // broadcasting would line other dims up with the filters
		}
		switch {
		case e.form == wScalar:
		case out.form == wScalar:
			out.form, out.row = e.form, e.row
		case e.form == out.form && e.row == out.row:
		case e.form == wRow && out.form == wFull && e.row == 0, e.form == wRow && out.form == wFlat && e.row == out.row:
		case e.form == wFull && out.form == wRow && out.row == 0, e.form == wFlat && out.form == wRow && e.row == out.row:
			out.form, out.row = e.form, e.row
		default:
			return wexpr{}, false
		}
		out = out.join(e)
	}
	if out.form == wScalar {
		return out, true
	}
	// The result must have the shape the combined form says.
	if r, ok := out.reshaped(s, W); !ok || r.form != out.form || r.row != out.row {
		return wexpr{}, false
	}
	return out, true
}

// join merges e's source, mixing and per-filter parameters into x.
func (x wexpr) join(e wexpr) wexpr {
	if x.src == "" {
		x.src = e.src
	}
	x.mixed = x.mixed || e.mixed
	x.baked = x.baked || e.baked
	for _, r := range e.rows {
		if !slices.Contains(x.rows, r) {
			x.rows = append(x.rows, r)
		}
	}
	return x
}

// reshaped is x viewed with shape s: P's layout, the flattened one
// ([1, O, L] or [O, L]), or one value per filter, whichever s is.
func (x wexpr) reshaped(s, W []int64) (wexpr, bool) {
	n := W[0]
	switch x.form {
	case wScalar:
		return x, ir.Numel(s) == 1
	case wRow:
		if r := rowShaped(s, n); r >= 0 {
			x.row = r
			return x, true
		}
		return wexpr{}, false
	}
	rest := ir.Numel(W) / n
	switch {
	case slices.Equal(s, W):
		x.form, x.row = wFull, 0
	case len(s) == 3 && s[0] == 1 && s[1] == n && s[2] == rest:
		x.form, x.row = wFlat, 1
	case len(s) == 2 && s[0] == n && s[1] == rest:
		x.form, x.row = wFlat, 0
	default:
		return wexpr{}, false
	}
	return x, true
}

// rowShaped is the dim of s that holds n values, one per filter, when
// every other dim is 1; -1 otherwise (and for n = 1, which cannot be told
// from a scalar).
func rowShaped(s []int64, n int64) int {
	if n < 2 {
		return -1
	}
	at := -1
	for d, k := range s {
		switch {
		case k == n && at < 0:
			at = d
		case k != 1:
			return -1
		}
	}
	return at
}

// standardisedReason is why a conv's input channels are inexact when its
// weight standardisation runs over them.
func (a *analyzer) standardisedReason() string {
	return fmt.Sprintf("%s standardises each filter over its input channels: without some, the others' values change", a.desc())
}

// shape is the shape of a value laid out as w says (traced shape s) when
// its source has shape src.
func (w wval) shape(s, src []int64) []int64 {
	if len(src) == 0 || w.row < 0 || w.row >= len(s) {
		return s
	}
	switch w.form {
	case wFull:
		return src
	case wFlat:
		rest := int64(1)
		for _, d := range src[1:] {
			rest *= d
		}
		s[w.row] = src[0]
		s[len(s)-1] = rest
	case wRow:
		s[w.row] = src[0]
	}
	return s
}
