package graph

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// A product of activations (torch.einsum, bmm, a matmul whose second
// operand is no weight: self-attention, non-local blocks) is read as
// einsum reads it: every operand's dims carry labels, and the output keeps
// some labels and sums over the rest. Followed channels on a dim follow
// its label:
//   - a label the output keeps is elementwise: the channels reach the
//     output's dim of that label, and every operand that spans the label
//     must carry the same channels there (or broadcast along it);
//   - a label summed over is a contraction: every operand that spans it
//     must carry the same channels, which are then gone. A zeroed channel
//     adds nothing to a sum of products, so the groups stay exact, as
//     they do for a sum over the channels.
//
// An operand that spans a followed label with a size of its own (a weight,
// a constant, a value whose channels are elsewhere) freezes the channels,
// as does a label twice in one operand (a diagonal) or channels that would
// reach two dims of the output.

// prodSpec labels the dims of a product's operands and output. Letters
// label themselves; the dims an ellipsis (or a matmul's batch dims) stands
// for are labelled -1 for the last of them, -2 for the one before, and so
// on, so that they line up from the right as they broadcast.
type prodSpec struct {
	ins [][]int
	out []int
}

// ellipsis labels n broadcast dims.
func ellipsis(n int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = i - n
	}
	return l
}

// matmulSpec is torch.matmul's (and mm's, bmm's) product for operands of
// ranks ra and rb: "...nk,...km->...nm", with a 1-D operand a vector.
func matmulSpec(ra, rb int) (prodSpec, bool) {
	const n, k, m = 'n', 'k', 'm'
	switch {
	case ra < 1 || rb < 1:
		return prodSpec{}, false
	case ra == 1 && rb == 1:
		return prodSpec{ins: [][]int{{k}, {k}}}, true
	case ra == 1:
		b := ellipsis(rb - 2)
		return prodSpec{ins: [][]int{{k}, append(slices.Clone(b), k, m)}, out: append(b, m)}, true
	case rb == 1:
		b := ellipsis(ra - 2)
		return prodSpec{ins: [][]int{append(slices.Clone(b), n, k), {k}}, out: append(b, n)}, true
	}
	b := ellipsis(max(ra, rb) - 2)
	return prodSpec{
		ins: [][]int{append(ellipsis(ra-2), n, k), append(ellipsis(rb-2), k, m)},
		out: append(b, n, m),
	}, true
}

// einsumSpec parses an einsum equation for operands of the given ranks:
// "bchw,bc->bchw", "ij,jk" (the output then is every letter used once, in
// alphabetical order), with "..." for broadcast dims.
func einsumSpec(eq string, ranks []int) (prodSpec, error) {
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(ranks) {
		return prodSpec{}, fmt.Errorf("equation %q has %d operands, the op %d", eq, len(terms), len(ranks))
	}
	var spec prodSpec
	count := map[int]int{}
	maxEll := 0
	for i, t := range terms {
		letters, ell, err := einsumTerm(t)
		if err != nil {
			return prodSpec{}, fmt.Errorf("equation %q: %w", eq, err)
		}
		n := ranks[i] - len(letters)
		if n < 0 || (n > 0 && ell < 0) {
			return prodSpec{}, fmt.Errorf("equation %q: operand %d has rank %d", eq, i, ranks[i])
		}
		var l []int
		if ell < 0 {
			l = letters
		} else {
			l = slices.Concat(letters[:ell], ellipsis(n), letters[ell:])
			maxEll = max(maxEll, n)
		}
		for _, c := range letters {
			count[c]++
		}
		spec.ins = append(spec.ins, l)
	}
	if explicit {
		letters, ell, err := einsumTerm(rhs)
		if err != nil {
			return prodSpec{}, fmt.Errorf("equation %q: %w", eq, err)
		}
		for _, c := range letters {
			if count[c] == 0 || twice(letters, c) {
				return prodSpec{}, fmt.Errorf("equation %q: output label %q", eq, rune(c))
			}
		}
		if ell < 0 {
			spec.out = letters
		} else {
			spec.out = slices.Concat(letters[:ell], ellipsis(maxEll), letters[ell:])
		}
		return spec, nil
	}
	spec.out = ellipsis(maxEll)
	var once []int
	for c, n := range count {
		if n == 1 {
			once = append(once, c)
		}
	}
	slices.Sort(once)
	spec.out = append(spec.out, once...)
	return spec, nil
}

// einsumTerm reads one operand's subscripts: its letters, and the index
// among them where "..." stands (-1 if nowhere).
func einsumTerm(t string) (letters []int, ell int, err error) {
	ell = -1
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letters = append(letters, int(c))
		case strings.HasPrefix(t[i:], "...") && ell < 0:
			ell = len(letters)
			i += 2
		default:
			return nil, 0, fmt.Errorf("subscripts %q", t)
		}
	}
	return letters, ell, nil
}

// twice reports whether label l occurs more than once in ls.
func twice(ls []int, l int) bool {
	i := slices.Index(ls, l)
	return i >= 0 && slices.Contains(ls[i+1:], l)
}

// bmm handles aten::bmm, a batched matmul of activations.
func (a *analyzer) bmm() {
	a.matmulProduct(a.in(0), a.in(1))
}

// matmulProduct follows a matmul of operands x and y that is no layer.
func (a *analyzer) matmulProduct(x, y int) {
	X, okX := a.shape(x)
	Y, okY := a.shape(y)
	spec, ok := matmulSpec(len(X), len(Y))
	if !okX || !okY || !ok {
		a.unknown(fmt.Sprintf("%s: operands of unknown shape", a.desc()))
		return
	}
	a.product([]int{x, y}, spec)
}

// einsum handles aten::einsum(equation, operands, path).
func (a *analyzer) einsum() {
	eqv := a.value(a.in(0))
	elems, okE := a.g.ListElems(a.resolveList(a.in(1)))
	if eqv == nil || !eqv.Const || eqv.Kind != ir.KindString || !okE {
		a.unknown(fmt.Sprintf("%s: equation or operands not known", a.desc()))
		return
	}
	ranks := make([]int, len(elems))
	for i, e := range elems {
		s, ok := a.shape(e)
		if !ok {
			a.unknown(fmt.Sprintf("%s: operand of unknown shape", a.desc()))
			return
		}
		ranks[i] = len(s)
	}
	spec, err := einsumSpec(eqv.Str, ranks)
	if err != nil {
		a.unknown(fmt.Sprintf("%s: %v", a.desc(), err))
		return
	}
	a.product(elems, spec)
}

// product follows the channels of operands through the product spec
// describes, into the op's first output.
func (a *analyzer) product(operands []int, spec prodSpec) {
	out := a.out(0)
	fail := func(why string) {
		r := fmt.Sprintf("%s: %s", a.desc(), why)
		for _, x := range operands {
			a.freezeMap(a.maps[x], r)
		}
	}
	O, okO := a.shape(out)
	if !okO || len(O) != len(spec.out) {
		fail("output of unexpected shape")
		return
	}
	shapes := make([][]int64, len(operands))
	for i, x := range operands {
		s, ok := a.shape(x)
		if !ok || len(s) != len(spec.ins[i]) {
			fail("operand of unexpected shape")
			return
		}
		shapes[i] = s
	}
	// The channels on each followed label, tied across the operands.
	var labels []int
	carried := map[int]*cmap{}
	for i, x := range operands {
		m := a.maps[x]
		if m == nil {
			continue
		}
		if m.dim >= len(spec.ins[i]) {
			fail("operand channels do not line up")
			return
		}
		l := spec.ins[i][m.dim]
		if twice(spec.ins[i], l) {
			fail("takes a diagonal across the channels")
			return
		}
		base, seen := carried[l]
		if !seen {
			carried[l] = m
			labels = append(labels, l)
			continue
		}
		if !a.unifyMaps(base, m) {
			a.splitToMatch(base, m)
			fail("multiplies differently concatenated channels")
			return
		}
	}
	// Every operand spanning a followed label carries its channels there,
	// or broadcasts along it. Frozen channels keep their count, so any
	// operand may span them (the frozen default of a value whose op the
	// analysis does not follow).
	for _, l := range labels {
		if a.frozenMap(carried[l]) {
			continue
		}
		for i, x := range operands {
			d := slices.Index(spec.ins[i], l)
			if d < 0 || shapes[i][d] == 1 || (a.maps[x] != nil && a.maps[x].dim == d) {
				continue
			}
			fail("an operand of fixed size spans the channels")
			return
		}
	}
	// The output follows the channels on the one label it keeps; frozen
	// ones on another of its dims need not be followed.
	outDim, frozenDim := -1, -1
	for _, l := range labels {
		d := slices.Index(spec.out, l)
		switch {
		case d < 0:
			// Summed over: exact, as a sum over the channels is.
		case a.frozenMap(carried[l]):
			if frozenDim < 0 {
				frozenDim = d
			}
		case outDim >= 0:
			fail("the output would carry channels on two dims")
			return
		default:
			outDim = d
		}
	}
	if outDim < 0 {
		outDim = frozenDim
	}
	switch {
	case outDim >= 0:
		a.setMap(out, carried[spec.out[outDim]].withDim(outDim))
	case len(labels) > 0:
		a.nochan[out] = true // every channel summed away
	}
}

// frozenMap reports whether every channel of m is frozen.
func (a *analyzer) frozenMap(m *cmap) bool {
	for _, s := range m.segs {
		if !a.spaces[a.find(s.sp)].frozen {
			return false
		}
	}
	return true
}
