package graph

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/ops"
)

// sizeListKinds take the target shape as their second input.
var sizeListKinds = map[string]bool{"aten::view": true, "aten::reshape": true, "aten::_unsafe_view": true,
	"aten::expand": true, "aten::broadcast_to": true}

// dispatch runs the handler for op. Each handler follows the channels of
// its data inputs (first: the positions, all: every tensor input); any other
// input that carries followed channels (an activation used as a conv weight,
// say) is frozen first, so that no handler can drop channels silently.
func (a *analyzer) dispatch(op *ir.Op) {
	k := op.Kind
	first := []int{0}
	var h func()
	data := first
	r := ops.Lookup(k).Rule
	if (k == "aten::max" || k == "aten::min") && a.isTensor(a.in(1)) {
		r = ops.Elementwise // max/min of two tensors
	}
	switch r {
	case ops.Conv:
		h = a.conv
	case ops.Linear:
		h = a.linear
	case ops.Addmm:
		h, data = a.addmm, []int{1}
	case ops.Matmul:
		h, data = a.matmul, []int{0, 1}
	case ops.Bmm:
		h, data = a.bmm, []int{0, 1}
	case ops.Einsum:
		h, data = a.einsum, []int{1}
	case ops.BatchNorm:
		h = a.batchNorm
	case ops.LayerNorm:
		h = a.layerNorm
	case ops.GroupNorm:
		h = a.groupNorm
	case ops.PReLU:
		h = a.prelu
	case ops.Cat:
		h = a.cat
	case ops.Stack:
		h = a.stack
	case ops.Split:
		h = a.split
	case ops.Unpack:
		h = a.unpack
	case ops.GetItem:
		h = a.getItem
	case ops.Skip:
		// Lists: whoever consumes them decides what the elements mean.
		// Shape queries read metadata only.
		return
	case ops.Slice:
		h = a.slice
	case ops.Select:
		h = a.selectDim
	case ops.ReshapeAs:
		h, data = a.reshape, []int{0, 1}
	case ops.Reshape:
		h = a.reshape
	case ops.Expand:
		h = a.expand
	case ops.Transpose:
		h = a.transpose
	case ops.Permute:
		h = a.permute
	case ops.T:
		h = a.transposeT
	case ops.ReduceList:
		h = func() { a.reduce(a.in(1), true) }
	case ops.ReduceInt:
		h = func() { a.reduce(a.in(1), false) }
	case ops.Norm:
		h = a.norm
	case ops.AlongDim:
		h = a.alongDim
	case ops.Elementwise:
		h, data = a.elementwise, nil
	case ops.GLU:
		h = a.glu
	case ops.PixelShuffle:
		h = a.pixelShuffle
	case ops.DtypeOnly:
		h, data = a.unary, nil // the second tensor lends its dtype only
	case ops.Unary:
		h, data = a.unary, nil // falls back to elementwise if it has tensor operands
	default:
		a.unknown(fmt.Sprintf("unsupported op %s", a.desc()))
		return
	}
	if data != nil {
		for i, in := range op.Inputs {
			if !slices.Contains(data, i) {
				a.freezeExtra(in)
			}
		}
	}
	h()
}

// freezeExtra freezes the channels an input carries that its op does not
// follow: a mapped tensor, or the elements of a tensor list.
func (a *analyzer) freezeExtra(id int) {
	r := fmt.Sprintf("%s reads them where the analysis does not follow channels", a.desc())
	a.freezeMap(a.maps[id], r)
	if v := a.value(id); v != nil && v.Kind != ir.KindTensor && v.Param == "" {
		rid := a.resolveList(id)
		if _, split := a.splits[rid]; split {
			a.freezeValue(id, r)
		} else if p := a.g.Producer(rid); p >= 0 && (a.g.Ops[p].Kind == "prim::ListConstruct" ||
			a.g.Ops[p].Kind == "prim::TupleConstruct") {
			for _, e := range a.g.Ops[p].Inputs {
				a.freezeMap(a.maps[e], r)
			}
		}
	}
}

// unknown freezes everything the op reads and writes.
func (a *analyzer) unknown(reason string) {
	for _, in := range a.op.Inputs {
		a.freezeValue(in, reason)
	}
	for _, o := range a.op.Outputs {
		a.defaultMap(o, reason)
	}
}

// freezeInputs freezes the channels of every input and leaves the outputs
// to step's frozen default; for ops understood but not prunable through.
func (a *analyzer) freezeInputs(reason string) {
	for _, in := range a.op.Inputs {
		a.freezeMap(a.maps[in], reason)
	}
	for _, o := range a.op.Outputs {
		a.defaultMap(o, reason)
	}
}

func (a *analyzer) unary() {
	x := a.in(0)
	if a.padChannels() {
		return
	}
	if ops.Lookup(a.op.Kind).Rule != ops.DtypeOnly && len(a.op.Inputs) > 1 {
		for _, in := range a.op.Inputs[1:] {
			if a.isTensor(in) {
				// clamp(x, min_tensor, max_tensor), fill_(x, tensor): data
				// operands broadcast like any elementwise op.
				a.elementwise()
				return
			}
		}
	}
	for _, o := range a.op.Outputs {
		a.passMap(x, o)
	}
}

// padChannels handles a constant pad across the channels, as the "option
// A" shortcut of CIFAR ResNets does (`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0,
// p, p))`): the new channels are constants whose count the code fixes, so
// they are spaces of their own, frozen, around the input's, which stay
// prunable. It reports whether it handled the op: false for any op that
// leaves the channel count alone.
func (a *analyzer) padChannels() bool {
	k := a.op.Kind
	if k != "aten::pad" && k != "aten::constant_pad_nd" {
		return false
	}
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	S, okS := a.shape(x)
	O, okO := a.shape(out)
	if m == nil || !okS || !okO || len(S) != len(O) || m.dim >= len(S) || S[m.dim] == O[m.dim] {
		return false
	}
	pads, ok := a.constInts(a.in(1))
	j := 2 * (len(S) - 1 - m.dim)
	constant := k == "aten::constant_pad_nd"
	if v := a.g.Value(a.in(2)); k == "aten::pad" && v != nil && v.Const && v.Kind == ir.KindString {
		constant = v.Str == "constant"
	}
	if !ok || !constant || j+1 >= len(pads) || pads[j] < 0 || pads[j+1] < 0 || S[m.dim]+pads[j]+pads[j+1] != O[m.dim] {
		a.freezeMap(m, fmt.Sprintf("%s changes the channel count", a.desc()))
		return true
	}
	reason := fmt.Sprintf("%s pads the channels with a count of constants its code fixes", a.desc())
	padded := func(n int64) []seg {
		if n == 0 {
			return nil
		}
		if pm := a.fresh(m.dim, n, reason); pm != nil {
			return pm.segs
		}
		return nil
	}
	before, after := padded(pads[j]), padded(pads[j+1])
	if (pads[j] > 0 && before == nil) || (pads[j+1] > 0 && after == nil) {
		a.freezeMap(m, reason)
		return true
	}
	a.setMap(out, &cmap{dim: m.dim, segs: slices.Concat(before, m.segs, after)})
	return true
}

// elementwise ties every operand that spans the output's channel dim to the
// output and to each other; operands broadcast along it (size 1) or too low
// in rank to reach it constrain nothing. Direct parameter operands (layer
// scales, per-channel constants) become members.
func (a *analyzer) elementwise() {
	var operands []int
	for _, in := range a.op.Inputs {
		if a.isTensor(in) {
			operands = append(operands, in)
		}
	}
	out := a.out(0)
	fail := func(reason string) {
		for _, x := range operands {
			a.freezeMap(a.maps[x], reason)
		}
	}
	if !a.isTensor(out) {
		fail(fmt.Sprintf("%s has no tensor output", a.desc()))
		return
	}
	O, ok := a.shape(out)
	if !ok {
		fail(fmt.Sprintf("%s has an unknown output shape", a.desc()))
		return
	}
	R := len(O)
	D := -1
	var full []*cmap
	spans := map[int]bool{} // operands whose followed channels fill dim D
	for _, x := range operands {
		m := a.maps[x]
		if m == nil {
			continue
		}
		s, _ := a.shape(x)
		ad := m.dim + R - len(s)
		if ad < 0 || ad >= R || m.dim >= len(s) {
			fail(fmt.Sprintf("%s: operand channels do not line up", a.desc()))
			return
		}
		switch e := s[m.dim]; {
		case e == O[ad]:
			if D >= 0 && D != ad {
				fail(fmt.Sprintf("%s: operands carry channels on different dims", a.desc()))
				return
			}
			D = ad
			full = append(full, m)
			spans[x] = true
		case e == 1:
			// Broadcast along the channels: any channel count fits.
		default:
			fail(fmt.Sprintf("%s: operand channels do not match the output", a.desc()))
			return
		}
	}
	if D < 0 {
		return // no operand brings followed channels; output gets a frozen default
	}
	base := full[0]
	for _, m := range full[1:] {
		if !a.unifyMaps(base, m) {
			if a.splitToMatch(base, m) {
				// Another pass will make the cuts. Go on with the operand
				// cut finer, as if it had, so that this pass also finds the
				// cuts the ops after this one need (a ResNet's next blocks
				// add to this op's output): otherwise each pass would only
				// get one add further.
				if len(m.segs) > len(base.segs) {
					base = m
				}
				continue
			}
			fail(fmt.Sprintf("%s combines differently concatenated channels", a.desc()))
			return
		}
	}
	// Every other operand must broadcast along dim D, or be a parameter
	// that follows the channels. One whose own channels broadcast on
	// another dim counts too: its dim at D has a size of its own (a
	// transposed activation's height, say).
	for _, x := range operands {
		if spans[x] {
			continue
		}
		s, ok := a.shape(x)
		if !ok {
			a.freezeMap(base, fmt.Sprintf("%s: operand of unknown shape", a.desc()))
			continue
		}
		ad := D - (R - len(s))
		if ad < 0 || ad >= len(s) {
			continue // does not reach the channel dim
		}
		switch {
		case s[ad] == 1:
			// broadcast; a parameter here keeps its size (step pins it)
		case s[ad] == O[D] && a.param(x) != "":
			name := a.param(x)
			a.addMembers(base, name, ad, false)
			a.useParam(x, name, ad)
		default:
			a.freezeMap(base, fmt.Sprintf("%s: an operand of fixed size spans the channels", a.desc()))
		}
	}
	for _, o := range a.op.Outputs {
		if a.isTensor(o) {
			a.setMap(o, base.withDim(D))
		}
	}
}

func (a *analyzer) conv() {
	k := a.op.Kind
	x, w, b, out := a.in(0), a.in(1), a.in(2), a.out(0)
	transposed := strings.HasPrefix(k, "aten::conv_transpose")
	groups := int64(-1)
	switch k {
	case "aten::_convolution", "aten::convolution":
		if t, ok := a.g.ConstInt(a.in(6)); ok {
			transposed = t != 0
		}
		if g, ok := a.constInt(a.in(8)); ok {
			groups = g
		}
	default:
		if g, ok := a.constInt(a.in(6)); ok {
			groups = g
		}
	}
	wname, gname := a.param(w), ""
	var std wexpr
	standardised := false
	if wname == "" {
		wname, gname = a.weightNorm(w)
	}
	if wname == "" {
		if std, standardised = a.computedWeight(w); standardised {
			wname = std.src
		}
	}
	if wname != "" {
		a.layers[layerOf(wname)] = true
	}
	S, okS := a.shape(x)
	O, okO := a.shape(out)
	W, okW := a.shape(w)
	m := a.maps[x]
	fail := func(why string) {
		a.freezeMap(m, fmt.Sprintf("%s: %s", a.desc(), why))
	}
	if !okS || !okO || !okW || len(S) < 3 || len(O) != len(S) || len(W) != len(S) {
		fail("unexpected shapes")
		return
	}
	if wname == "" {
		fail("weight is not a parameter")
		return
	}
	if gname != "" && (transposed || groups != 1 || (m != nil && m.dim >= 2)) {
		fail("weight normalisation of a grouped, transposed or sliding conv is not followed")
		return
	}
	if standardised && (transposed || groups != 1 || (m != nil && m.dim >= 2)) {
		fail("a computed weight of a grouped, transposed or sliding conv is not followed")
		return
	}
	if m != nil && m.dim >= 2 {
		a.slidingConv(m, w, b, out, wname, transposed, S, O)
		return
	}
	if groups < 1 {
		// Not a constant: recover it from the shapes.
		if transposed && W[1] > 0 && O[1]%W[1] == 0 {
			groups = O[1] / W[1]
		} else if !transposed && W[1] > 0 && S[1]%W[1] == 0 {
			groups = S[1] / W[1]
		} else {
			fail("unknown groups")
			return
		}
	}
	cin, cout := S[1], O[1]
	inDim, outDim := 1, 0
	if transposed {
		inDim, outDim = 0, 1
	}
	wantIn, wantOut := W[1]*groups, W[0] // [Cout, Cin/groups, k...]
	if transposed {
		wantIn, wantOut = W[0], W[1]*groups // [Cin, Cout/groups, k...]
	}
	if wantIn != cin || wantOut != cout || cout%groups != 0 || cin%groups != 0 {
		fail("weight does not match input/output channels")
		return
	}
	var bname string
	if !a.isNone(b) {
		bname = a.param(b)
		B, _ := a.shape(b)
		if bname == "" || len(B) != 1 || B[0] != cout {
			fail("bias is not a per-channel parameter")
			return
		}
	}
	layer := layerOf(wname)
	addBias := func(om *cmap) {
		if bname != "" {
			a.addMembers(om, bname, 0, false)
			a.useParam(b, bname, 0)
		}
	}
	if groups == 1 {
		tied := []int{outDim}
		if m != nil && m.dim == 1 && m.extent() == cin {
			a.addMembers(m, wname, inDim, false)
			tied = append(tied, inDim)
			if std.mixed {
				a.inexactMap(m, a.standardisedReason())
			}
		} else if m != nil {
			fail("input channels are not on dim 1")
		}
		om := a.fresh(1, cout, "")
		if om == nil {
			return
		}
		switch {
		case gname != "":
			a.normedWeight(om, w, wname, gname)
		case standardised:
			a.standardisedWeight(om, w, std)
		default:
			a.addMembers(om, wname, outDim, true)
		}
		a.addLayers(om, layer)
		addBias(om)
		a.useParam(w, wname, tied...)
		a.setMap(out, om)
		return
	}
	if cin == cout && m != nil && m.dim == 1 && m.extent() == cin && blocksFit(m, cin/groups) {
		// Channel c in is channel c out (depthwise: one per group); the
		// conv's groups follow the channel count. A transposed conv's
		// weight is [Cin, Cout/groups, k...]: its dim 0 rows are input
		// channels, and a block of them holds exactly its group's weights,
		// as a block of output rows does for a plain conv.
		a.groupedConv(m, w, wname, layer, cin/groups, addBias)
		a.setMap(out, m)
		return
	}
	var reason string
	if cin != cout {
		if reason = a.regroupedConv(m, w, out, wname, layer, groups, cin, cout, transposed, addBias); reason == "" {
			return
		}
	} else {
		reason = groupedReason(layer, groups, cin, cout, transposed, m)
	}
	a.freezeMap(m, reason)
	om := a.fresh(1, cout, reason)
	if om == nil {
		return
	}
	a.addMembers(om, wname, outDim, true)
	a.addLayers(om, layer)
	addBias(om)
	a.useParam(w, wname, outDim)
	a.setMap(out, om)
}

// slidingConv handles a conv whose input carries the channels on a length
// dim: ECA's attention pools each channel to one value, moves the channels
// onto the length and runs a Conv1d of kernel k across them, so each
// channel's gate mixes its neighbours'. When the conv neither strides nor
// changes that length, every channel keeps its position and a shorter run
// of them is as valid an input: the group stays prunable and inexact. Any
// other conv across the channels freezes them. The conv's own channels
// (dim 1) are not followed, so its weight keeps its shape.
func (a *analyzer) slidingConv(m *cmap, w, b, out int, wname string, transposed bool, S, O []int64) {
	d := m.dim
	st := int64(0)
	if strides, ok := a.constInts(a.in(3)); ok && len(strides) == 1 {
		st = strides[0]
	} else if ok && len(strides) == len(S)-2 {
		st = strides[d-2]
	}
	if transposed || d >= len(S) || O[d] != S[d] || st != 1 || m.extent() != S[d] {
		a.freezeMap(m, fmt.Sprintf("%s: input channels are not on dim 1", a.desc()))
		return
	}
	a.inexactMap(m, fmt.Sprintf("%s slides along the channels: without some, their neighbours' result changes", a.desc()))
	a.useParam(w, wname)
	if bn := a.param(b); bn != "" {
		a.useParam(b, bn)
	}
	a.setMap(out, m)
}

func (a *analyzer) linear() {
	w := a.in(1)
	name, gname := a.param(w), ""
	if name == "" {
		name, gname = a.weightNorm(w)
	}
	W, _ := a.shape(w)
	if name == "" || len(W) != 2 {
		a.freezeInputs(fmt.Sprintf("%s: weight is not a 2-D parameter", a.desc()))
		return
	}
	a.denseNormed(a.in(0), a.out(0), w, name, gname, 1, 0, a.in(2))
}

// weightNorm resolves a weight that weight normalisation computes (TCNs,
// WaveNet-style signal nets): its direction v stands for the weight, with
// the same shape, and g, one magnitude per dim-0 slice, goes with the
// output channels. Anything else ("", "") stays unfollowed.
func (a *analyzer) weightNorm(w int) (v, g string) {
	v, g, ok := a.g.WeightNorm(w)
	if !ok {
		return "", ""
	}
	W, okW := a.shape(w)
	V, G := a.paramShape(v), a.paramShape(g)
	if !okW || !slices.Equal(V, W) || len(G) != len(W) || len(W) < 2 || G[0] != W[0] || ir.Numel(G) != G[0] {
		return "", ""
	}
	return v, g
}

// normedWeight makes a weight-normalised layer's output rows members of
// om: the magnitude g holds each filter's norm, so it is the producer the
// criteria score (Taylor's w·∂L/∂w over v alone sums to zero: the layer
// does not depend on v's scale); v's rows follow as a plain member.
func (a *analyzer) normedWeight(om *cmap, w int, v, g string) {
	a.addMembers(om, g, 0, true)
	a.addMembers(om, v, 0, false)
	a.useParam(w, g, 0)
	a.wnorms[v] = g
	a.wvals[w] = wval{src: v, form: wFull}
}

// standardisedWeight makes the filters of a weight computed from e.src
// filter by filter (see computedWeight) members of om: e.src's rows are
// the producer, and each per-filter parameter read beside it (a gain)
// follows them. Where a reshape wrote the filter count in, om lists the
// weight among its SizedWeights.
func (a *analyzer) standardisedWeight(om *cmap, w int, e wexpr) {
	a.addMembers(om, e.src, 0, true)
	n := a.paramShape(e.src)[0]
	for _, r := range e.rows {
		d := rowShaped(a.paramShape(r), n)
		a.addMembers(om, r, d, false)
		a.useParam(w, r, d)
	}
	a.keepWexpr(e.src)
	if e.baked {
		for _, sg := range om.segs {
			r := &a.spaces[a.find(sg.sp)]
			r.sized = append(r.sized, srec{a.nextSeq(), e.src})
		}
	}
}

func (a *analyzer) addmm() {
	w := a.in(2)
	name, inDim, outDim, ok := a.matrix(w)
	if !ok {
		a.freezeInputs(fmt.Sprintf("%s: second matrix is not a parameter", a.desc()))
		return
	}
	a.dense(a.in(1), a.out(0), w, name, inDim, outDim, a.in(0))
}

func (a *analyzer) matmul() {
	w := a.in(1)
	name, inDim, outDim, ok := a.matrix(w)
	if !ok {
		a.matmulProduct(a.in(0), w)
		return
	}
	a.dense(a.in(0), a.out(0), w, name, inDim, outDim, noValue)
}

// matrix resolves the right-hand matrix of mm/addmm/matmul to a 2-D
// parameter, through t/transpose/permute, and says which of its dims is
// multiplied with the input features and which gives the output features.
func (a *analyzer) matrix(id int) (name string, inDim, outDim int, ok bool) {
	flip := false
	for range 8 {
		if p := a.param(id); p != "" {
			s, _ := a.shape(id)
			if len(s) != 2 || len(a.paramShape(p)) != 2 {
				return "", 0, 0, false
			}
			if flip {
				return p, 1, 0, true
			}
			return p, 0, 1, true
		}
		pi := a.g.Producer(id)
		if pi < 0 || len(a.g.Ops[pi].Inputs) == 0 {
			return "", 0, 0, false
		}
		op := &a.g.Ops[pi]
		switch op.Kind {
		case "aten::t":
			flip = !flip
		case "aten::transpose":
			if len(op.Inputs) < 3 {
				return "", 0, 0, false
			}
			d0, ok0 := a.g.ConstInt(op.Inputs[1])
			d1, ok1 := a.g.ConstInt(op.Inputs[2])
			n0, okn0 := normDim(d0, 2)
			n1, okn1 := normDim(d1, 2)
			if !ok0 || !ok1 || !okn0 || !okn1 {
				return "", 0, 0, false
			}
			if n0 != n1 {
				flip = !flip
			}
		case "aten::permute":
			if len(op.Inputs) < 2 {
				return "", 0, 0, false
			}
			p, okp := a.g.ConstInts(op.Inputs[1])
			if !okp || len(p) != 2 {
				return "", 0, 0, false
			}
			if n, ok := normDim(p[0], 2); !ok {
				return "", 0, 0, false
			} else if n == 1 {
				flip = !flip
			}
		case "aten::contiguous", "aten::detach", "aten::to", "aten::clone":
		default:
			return "", 0, 0, false
		}
		id = op.Inputs[0]
	}
	return "", 0, 0, false
}

// dense is a linear layer: input features on x's last dim, weight dims
// inDim/outDim, optional bias b.
func (a *analyzer) dense(x, out, w int, name string, inDim, outDim int, b int) {
	a.denseNormed(x, out, w, name, "", inDim, outDim, b)
}

// denseNormed is dense for a weight that may be weight-normalised: g is its
// magnitude, or "".
func (a *analyzer) denseNormed(x, out, w int, name, g string, inDim, outDim int, b int) {
	a.layers[layerOf(name)] = true
	S, okS := a.shape(x)
	O, okO := a.shape(out)
	W := a.paramShape(name)
	m := a.maps[x]
	if !okS || !okO || len(S) < 1 || len(O) != len(S) || len(W) != 2 ||
		S[len(S)-1] != W[inDim] || O[len(O)-1] != W[outDim] {
		a.freezeInputs(fmt.Sprintf("%s: unexpected shapes", a.desc()))
		return
	}
	last := len(S) - 1
	if m != nil && m.dim != last {
		// Features are not the followed dim (a linear over a spatial
		// dim): channels pass through, the weight keeps its size.
		a.setMap(out, m)
		return
	}
	var bname string
	if !a.isNone(b) {
		bname = a.param(b)
		B, _ := a.shape(b)
		if bname == "" || len(B) != 1 || B[0] != O[last] {
			a.freezeMap(m, fmt.Sprintf("%s: bias is not a per-feature parameter", a.desc()))
			return
		}
	}
	tied := []int{outDim}
	if m != nil {
		if m.extent() == W[inDim] {
			a.addMembers(m, name, inDim, false)
			tied = append(tied, inDim)
		} else {
			a.freezeMap(m, fmt.Sprintf("%s: input features do not match the weight", a.desc()))
		}
	}
	om := a.fresh(last, O[last], "")
	if om == nil {
		return
	}
	if g != "" {
		a.normedWeight(om, w, name, g)
	} else {
		a.addMembers(om, name, outDim, true)
	}
	a.addLayers(om, layerOf(name))
	if bname != "" {
		a.addMembers(om, bname, 0, false)
		a.useParam(b, bname, 0)
	}
	a.useParam(w, name, tied...)
	a.setMap(out, om)
}

// perChannel makes the listed optional inputs (BatchNorm affine and running
// stats, PReLU weight) members along x's channels; it reports false (and
// ties nothing) if one of them is not a 1-D parameter of the channel count.
func (a *analyzer) perChannel(m *cmap, ids ...int) bool {
	type p struct {
		id   int
		name string
	}
	var ps []p
	for _, id := range ids {
		if a.isNone(id) {
			continue
		}
		name := a.param(id)
		s, _ := a.shape(id)
		if name == "" || len(s) != 1 || s[0] != m.extent() {
			return false
		}
		ps = append(ps, p{id, name})
	}
	for _, q := range ps {
		a.addMembers(m, q.name, 0, false)
		a.useParam(q.id, q.name, 0)
	}
	return true
}

func (a *analyzer) batchNorm() {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	if m.dim != 1 {
		a.freezeInputs(fmt.Sprintf("%s: channels are not on dim 1", a.desc()))
		return
	}
	if !a.perChannel(m, a.in(1), a.in(2), a.in(3), a.in(4)) {
		a.freezeMap(m, fmt.Sprintf("%s: affine or running stats are not per-channel parameters", a.desc()))
	}
	a.passMap(x, a.out(0))
}

// layerNorm follows a LayerNorm over the followed dim alone: after a
// flatten, in an [N, C] classifier, or over the channels of a channels-last
// block (ConvNeXt). Over the channels, its mean and variance run over them,
// so removing channels changes what it computes for the rest however the
// weights are sliced: the group stays prunable but is marked inexact. Over
// the channels together with other dims it freezes.
func (a *analyzer) layerNorm() {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	k := -1
	if ns, ok := a.constInts(a.in(1)); ok {
		k = len(ns)
	}
	switch {
	case k < 0:
		a.freezeMap(m, fmt.Sprintf("%s: unknown normalized_shape", a.desc()))
	case m.dim < len(S)-k:
		// normalizes other dims; weight and bias stay (step pins them)
	case k == 1 && m.dim == len(S)-1:
		// Pruning rewrites normalized_shape, found through the weight.
		wname := a.param(a.in(2))
		if wname == "" || !a.perChannel(m, a.in(2), a.in(3)) {
			a.freezeMap(m, fmt.Sprintf("%s over the channels has no per-channel weight parameter", a.desc()))
			break
		}
		r := &a.spaces[a.find(m.segs[0].sp)]
		if len(m.segs) != 1 || m.segs[0].stride != 1 {
			a.freezeMap(m, fmt.Sprintf("%s over concatenated channels", a.desc()))
			break
		}
		r.ln = append(r.ln, srec{a.nextSeq(), wname})
		a.inexactMap(m, fmt.Sprintf("%s normalizes over these channels: removing some changes its mean and variance", a.desc()))
	default:
		a.freezeMap(m, fmt.Sprintf("%s normalizes over the channels together with other dims", a.desc()))
	}
	a.passMap(x, a.out(0))
}

func (a *analyzer) prelu() {
	x, w := a.in(0), a.in(1)
	m := a.maps[x]
	if m == nil {
		return
	}
	if s, _ := a.shape(w); !(len(s) == 1 && s[0] == 1) {
		if m.dim != 1 || !a.perChannel(m, w) {
			a.freezeMap(m, fmt.Sprintf("%s: weight is not per-channel", a.desc()))
		}
	}
	a.passMap(x, a.out(0))
}

func (a *analyzer) cat() {
	maps, cd, fail, ok := a.listMaps(0)
	if !ok {
		return
	}
	out := a.out(0)
	if len(maps) == 1 {
		a.setMap(out, maps[0])
		return
	}
	if cd == maps[0].dim {
		var segs []seg
		for _, m := range maps {
			segs = append(segs, m.segs...)
		}
		a.setMap(out, &cmap{dim: cd, segs: segs})
		return
	}
	if a.tieAll(maps, fail, "inputs are concatenated along another dim but their channels differ") {
		a.setMap(out, maps[0])
	}
}

// listMaps reads the tensor list and the dim of cat or stack: the list
// elements' maps, which must all carry followed channels on one dim, and the
// op's dim normalised over the output's rank. Each element has the output's
// rank less lost (0 for cat, 1 for stack). On ok false it has frozen
// everything; fail freezes the same way for the caller's own reason.
func (a *analyzer) listMaps(lost int) (maps []*cmap, dim int, fail func(string), ok bool) {
	list, out := a.in(0), a.out(0)
	O, okO := a.shape(out)
	elems, okE := a.g.ListElems(a.resolveList(list))
	if !okE || !okO || len(elems) == 0 {
		a.unknown(fmt.Sprintf("%s: list not followed", a.desc()))
		return nil, 0, nil, false
	}
	fail = func(why string) {
		r := fmt.Sprintf("%s: %s", a.desc(), why)
		for _, e := range elems {
			a.freezeValue(e, r)
		}
		a.defaultMap(out, r)
	}
	d := int64(0)
	if in1 := a.in(1); in1 != noValue {
		c, okC := a.constInt(in1)
		if !okC {
			fail("dim is not constant")
			return nil, 0, nil, false
		}
		d = c
	}
	dim, okD := normDim(d, len(O))
	if !okD {
		fail("bad dim")
		return nil, 0, nil, false
	}
	var consts []int
	var first *cmap
	for i, e := range elems {
		m := a.maps[e]
		s, okS := a.shape(e)
		if m == nil && lost == 0 && okS && len(s) == len(O) && (!a.live[e] || a.nochan[e]) {
			consts = append(consts, i)
			maps = append(maps, nil)
			continue
		}
		if m == nil || len(s) != len(O)-lost || (first != nil && m.dim != first.dim) {
			fail("inputs do not all carry followed channels on one dim")
			return nil, 0, nil, false
		}
		if first == nil {
			first = m
		}
		maps = append(maps, m)
	}
	if first == nil && a.nochan[a.resolveList(list)] {
		// Nothing but values without channels (CBAM's pooled planes):
		// neither is the concatenation (see step).
		return nil, 0, nil, false
	}
	if len(consts) > 0 && (first == nil || !a.constChannels(elems, maps, consts, first.dim, dim)) {
		fail("inputs do not all carry followed channels on one dim")
		return nil, 0, nil, false
	}
	return maps, dim, fail, true
}

// constChannels gives each constant element of a cat along the channels
// (one that does not depend on the model input, as CoordConv's coordinate
// planes) a frozen space of its own, as padChannels does for a pad's
// constants: its count is fixed, the channels around it stay prunable.
// Along any other dim (cd, the channels', is not dim) a constant would
// have to lose channels with the rest, so it reports false there.
func (a *analyzer) constChannels(elems []int, maps []*cmap, consts []int, cd, dim int) bool {
	if cd != dim {
		return false
	}
	for _, i := range consts {
		reason := fmt.Sprintf("%s concatenates channels that do not depend on the model input, a count its code fixes", a.desc())
		if a.live[elems[i]] {
			reason = fmt.Sprintf("%s concatenates values computed across the channels (a mean, a product), a count its code fixes", a.desc())
		}
		s, _ := a.shape(elems[i])
		if s[dim] == 0 {
			maps[i] = &cmap{dim: dim}
			continue
		}
		m := a.fresh(dim, s[dim], reason)
		if m == nil {
			return false
		}
		maps[i] = m
	}
	return true
}

// tieAll ties every map to the first. Where one does not line up it asks
// the next pass for the cuts that would make it, calls fail with why and
// reports false.
func (a *analyzer) tieAll(maps []*cmap, fail func(string), why string) bool {
	for _, m := range maps[1:] {
		if !a.unifyMaps(maps[0], m) {
			a.splitToMatch(maps[0], m)
			fail(why)
			return false
		}
	}
	return true
}

// stack handles torch.stack (SKNet's branches, stacked, summed and then
// weighted by a softmax across them). Its inputs have one shape, so their
// channels line up index for index and are tied; the output carries them
// one dim further out when the new dim comes at or before theirs.
func (a *analyzer) stack() {
	maps, sd, fail, ok := a.listMaps(1)
	if !ok {
		return
	}
	if !a.tieAll(maps, fail, "inputs are stacked but their channels differ") {
		return
	}
	d := maps[0].dim
	if sd <= d {
		d++
	}
	a.setMap(a.out(0), maps[0].withDim(d))
}

// split handles split/chunk: a tensor[] result waits for its ListUnpack;
// direct tensor results are the pieces.
func (a *analyzer) split() {
	if len(a.op.Outputs) == 1 && !a.isTensor(a.out(0)) {
		a.splits[a.out(0)] = a.opIdx
		return
	}
	a.pieces(a.in(0), a.op.Outputs, a.opIdx, 0)
}

// pieces gives each piece of a split of x its map; pieces[i] is piece
// first+i of split op splitOp (a negative first counts from the end;
// noIndex: unknown). A split along the
// channels freezes them all: the cut positions are baked into the graph and
// would no longer match after any space before or across them shrinks. A
// chunk into equal parts is the exception (chunkPieces).
func (a *analyzer) pieces(x int, pieces []int, splitOp, first int) {
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	for _, p := range pieces {
		P, ok := a.shape(p)
		if !ok || len(P) != len(S) || P[m.dim] != S[m.dim] {
			if a.chunkPieces(m, S, pieces, splitOp, first) || a.sizedSplit(m, S, pieces, splitOp, first) {
				return
			}
			r := fmt.Sprintf("%s splits the channels", a.desc())
			a.freezeMap(m, r)
			for _, p := range pieces {
				a.defaultMap(p, r)
			}
			return
		}
	}
	for _, p := range pieces {
		a.setMap(p, m)
	}
}

// chunkPieces handles torch.chunk into n equal parts along the channels
// (YOLOv8's C2f: `cv1(x).chunk(2, 1)`, one half passed on, the other through
// the bottlenecks). The code computes the part size from the channel count
// when it runs, so the pruned model's parts must be equal again: the parts
// are tied, channel k of each lost with channel k of the others, and the
// producer's space is cut where the parts meet (the next pass of Analyze
// makes the cuts; until then the parts freeze). It reports whether the
// parts got their maps.
func (a *analyzer) chunkPieces(m *cmap, S []int64, pieces []int, splitOp, first int) bool {
	if splitOp < 0 || first == noIndex || m.dim >= len(S) {
		return false
	}
	op := &a.g.Ops[splitOp]
	if (op.Kind != "aten::chunk" && op.Kind != "aten::unsafe_chunk") || len(op.Inputs) < 3 {
		return false
	}
	n, okN := a.constInt(op.Inputs[1])
	d, okD := a.constInt(op.Inputs[2])
	if nd, ok := normDim(d, len(S)); !okN || !okD || !ok || nd != m.dim || n < 2 {
		return false
	}
	if first < 0 {
		first += int(n) // y[-1]
	}
	return a.tieParts(m, S, int(n), pieces, first)
}

// sizedSplit handles torch.split(x, size, dim) along the channels into
// equal parts where the trace found the split in the code (Res2Net's
// `torch.split(x, width, 1)`): the parts are tied as a chunk's are, and
// surgery writes the kept part size in (a SizedOp). It reports whether
// the pieces got their maps.
func (a *analyzer) sizedSplit(m *cmap, S []int64, pieces []int, splitOp, first int) bool {
	if splitOp < 0 || first == noIndex || m.dim >= len(S) || len(pieces) == 0 {
		return false
	}
	op := &a.g.Ops[splitOp]
	if op.Kind != "aten::split" || op.Site == "" || len(op.Inputs) < 3 {
		return false
	}
	size, okS := a.constInt(op.Inputs[1])
	d, okD := a.constInt(op.Inputs[2])
	if nd, ok := normDim(d, len(S)); !okS || !okD || !ok || nd != m.dim || size < 1 || S[m.dim]%size != 0 {
		return false
	}
	n := int(S[m.dim] / size)
	if first < 0 {
		first += n
	}
	if !a.tieParts(m, S, n, pieces, first) {
		return false
	}
	// Each getItem of the parts comes here; the parts are equal, so one
	// record serves them all.
	if !slices.ContainsFunc(a.sized, func(r SizedOp) bool { return r.Site == op.Site }) {
		a.sized = append(a.sized, SizedOp{Site: op.Site, Entry: 0, Value: pieces[0], Dim: m.dim})
	}
	return true
}

// tieParts gives pieces, parts first.. of x's channels (map m, shape S) cut
// into n equal parts, their maps, with the parts tied channel for channel
// and the producer's space cut where they meet (asked of the next pass; the
// parts freeze until then). It reports whether the pieces got their maps.
func (a *analyzer) tieParts(m *cmap, S []int64, n int, pieces []int, first int) bool {
	if n < 2 || S[m.dim]%int64(n) != 0 || first < 0 || first+len(pieces) > n {
		return false
	}
	q := int(S[m.dim]) / n
	for _, p := range pieces {
		if P, ok := a.shape(p); !ok || len(P) != len(S) || P[m.dim] != int64(q) {
			return false
		}
	}
	if runEnds(m) == nil {
		return false
	}
	var ends []int
	for k := 1; k < n; k++ {
		ends = append(ends, k*q)
	}
	parts := make([]*cmap, n)
	for k := range parts {
		if parts[k] = subMap(m, k*q, (k+1)*q); parts[k] == nil {
			if cuts, ok := a.cutsAt(m, ends); ok {
				a.askCuts(cuts)
			}
			return false
		}
	}
	for _, p := range parts[1:] {
		if !sameRuns(parts[0], p) {
			a.splitToMatch(parts[0], p)
			return false
		}
	}
	for _, p := range parts[1:] {
		a.unifyMaps(parts[0], p)
	}
	for i, p := range pieces {
		a.setMap(p, parts[first+i])
	}
	return true
}

// glu handles the gated linear unit, glu(x, dim) = a·σ(b) for the halves a
// and b of x along dim (gated convolutions for signals and audio). Along
// another dim the channels pass. Along the channels, output channel k is
// channel k of the first half gated by channel k of the second, and glu
// halves whatever count it is given: the halves are tied as torch.chunk's
// two parts are.
func (a *analyzer) glu() {
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	d, ok := int64(-1), true
	if in := a.in(1); in != noValue {
		d, ok = a.constInt(in)
	}
	nd, okD := normDim(d, len(S))
	switch {
	case !ok || !okD:
		a.freezeMap(m, fmt.Sprintf("%s along an unknown dim", a.desc()))
	case nd != m.dim:
		a.passMap(x, out)
	case !a.tieParts(m, S, 2, []int{out}, 0):
		a.freezeMap(m, fmt.Sprintf("%s halves the channels", a.desc()))
	}
}

// pixelShuffle handles sub-pixel convolution (ESPCN; super-resolution and
// segmentation decoders). pixel_shuffle(x, r) makes output channel c of
// input channels c·r² to c·r²+r²−1, spread over an r×r patch, so those go
// together: the producer's space is made again (by the next pass of
// Analyze) with each of its channels owning r² consecutive ones, and that
// channel is the output's. pixel_unshuffle does the reverse: each input
// channel becomes r² consecutive output channels, a stride.
func (a *analyzer) pixelShuffle() {
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	r, ok := a.constInt(a.in(1))
	if !ok || r < 1 || r > 64 || m.dim != len(S)-3 {
		a.freezeMap(m, fmt.Sprintf("%s moves channels with an unknown factor or on another dim", a.desc()))
		return
	}
	f := int(r * r)
	shuffle := a.op.Kind == "aten::pixel_shuffle"
	segs := make([]seg, len(m.segs))
	for i, s := range m.segs {
		stride := s.stride * f
		if shuffle {
			if s.stride%f != 0 {
				segs = nil
				break
			}
			stride = s.stride / f
		}
		segs[i] = seg{sp: s.sp, n: s.n, stride: stride}
	}
	switch {
	case segs != nil:
		a.setMap(out, &cmap{dim: m.dim, segs: segs})
	case a.askCoarse(m, f):
		// Frozen in this pass only; the next makes the r² channels one.
		a.defaultMap(out, fmt.Sprintf("%s: waiting for its input to be grouped", a.desc()))
	default:
		a.freezeMap(m, fmt.Sprintf("%s merges channels that cannot be grouped by %d", a.desc(), f))
	}
}

// sameRuns reports whether x and y are runs of the same lengths and strides.
func sameRuns(x, y *cmap) bool {
	if len(x.segs) != len(y.segs) {
		return false
	}
	for i := range x.segs {
		if x.segs[i].n != y.segs[i].n || x.segs[i].stride != y.segs[i].stride {
			return false
		}
	}
	return true
}

func (a *analyzer) unpack() {
	src := a.resolveList(a.in(0))
	if p, ok := a.splits[src]; ok {
		ins := a.g.Ops[p].Inputs
		if len(ins) == 0 {
			return
		}
		a.pieces(ins[0], a.op.Outputs, p, 0)
		return
	}
	if pi := a.g.Producer(src); pi >= 0 {
		op := &a.g.Ops[pi]
		if (op.Kind == "prim::ListConstruct" || op.Kind == "prim::TupleConstruct") &&
			len(op.Inputs) == len(a.op.Outputs) {
			for i, o := range a.op.Outputs {
				a.alias(o, op.Inputs[i])
			}
			return
		}
	}
	a.unknown(fmt.Sprintf("%s: list not followed", a.desc()))
}

func (a *analyzer) getItem() {
	src := a.resolveList(a.in(0))
	idx, okIdx := a.constInt(a.in(1))
	if p, ok := a.splits[src]; ok {
		if ins := a.g.Ops[p].Inputs; len(ins) > 0 {
			if !okIdx {
				idx = noIndex
			}
			a.pieces(ins[0], a.op.Outputs, p, int(idx))
		}
		return
	}
	if pi := a.g.Producer(src); pi >= 0 && okIdx {
		op := &a.g.Ops[pi]
		if op.Kind == "prim::ListConstruct" || op.Kind == "prim::TupleConstruct" {
			if i, ok := normDim(idx, len(op.Inputs)); ok {
				a.alias(a.out(0), op.Inputs[i])
				return
			}
		}
	}
	v := a.value(src)
	if v != nil && (v.Kind == ir.KindIntList || v.Kind == ir.KindFloatList || v.Kind == ir.KindBoolList) {
		return // reading a shape list
	}
	a.unknown(fmt.Sprintf("%s: list not followed", a.desc()))
}

// alias makes dst stand for src (an element taken out of a list or tuple).
func (a *analyzer) alias(dst, src int) {
	if dst == noValue {
		return
	}
	if a.isTensor(dst) {
		if m := a.maps[src]; m != nil {
			a.setMap(dst, m)
		}
		return
	}
	a.aliases[dst] = src
}

// slice handles narrow/slice: fine when the channels come through whole.
func (a *analyzer) slice() {
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	O, ok := a.shape(out)
	if !ok || len(O) != len(S) || O[m.dim] != S[m.dim] {
		a.freezeMap(m, fmt.Sprintf("%s cuts the channels", a.desc()))
		return
	}
	a.setMap(out, m)
}

func (a *analyzer) selectDim() {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	d, ok := a.constInt(a.in(1))
	nd, okd := normDim(d, len(S))
	if !ok || !okd || nd == m.dim {
		a.freezeMap(m, fmt.Sprintf("%s selects along the channels", a.desc()))
		return
	}
	dim := m.dim
	if nd < dim {
		dim--
	}
	a.setMap(a.out(0), m.withDim(dim))
}

// reshape relates the channel dim of x to a dim of the output purely by
// shapes. In memory, channel c of a run owns, for every index of the dims
// before the channel dim, a block of stride·inner elements; the output dim
// whose prefix product equals that outer size carries the channels if its
// own inner size divides every block. Flatten into features gives stride
// H·W; unflatten gives it back; splitting the channels themselves
// (channel shuffle) finds no such dim and freezes.
func (a *analyzer) reshape() {
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	fail := func(why string) { a.freezeMap(m, fmt.Sprintf("%s %s", a.desc(), why)) }
	S, _ := a.shape(x)
	O, ok := a.shape(out)
	if !ok {
		fail("has an unknown output shape")
		return
	}
	nS, ok1 := prod(S)
	nO, ok2 := prod(O)
	outer, ok3 := prod(S[:m.dim])
	inner, ok4 := prod(S[m.dim+1:])
	if !ok1 || !ok2 || !ok3 || !ok4 || nS != nO || nS == 0 {
		fail("changes the number of elements")
		return
	}
	for d := range O {
		pre, _ := prod(O[:d])
		if pre > outer {
			break
		}
		if pre != outer {
			continue
		}
		inner2, ok := prod(O[d+1:])
		if !ok || inner2 == 0 {
			continue
		}
		segs := make([]seg, 0, len(m.segs))
		fits := true
		for _, s := range m.segs {
			block := int64(s.stride) * inner
			if block%inner2 != 0 || block/inner2 > maxExtent {
				fits = false
				break
			}
			segs = append(segs, seg{sp: s.sp, n: s.n, stride: int(block / inner2)})
		}
		if !fits {
			continue
		}
		nm := &cmap{dim: d, segs: segs}
		if nm.extent() != O[d] {
			continue
		}
		if sizeListKinds[a.op.Kind] && a.bakedSize(a.in(1), d, len(O)) && !a.sizedReshape(out, d) {
			fail("hard-codes the channel count in its target shape")
			return
		}
		if k := a.op.Kind; k == "aten::view_as" || k == "aten::reshape_as" {
			// The target shape follows the other tensor: its channels must
			// shrink with ours.
			if om := a.maps[a.in(1)]; om == nil || om.dim != d || !a.unifyMaps(nm, om) {
				fail("takes its shape from a tensor whose channels are not the same")
				a.freezeMap(om, fmt.Sprintf("%s: shape source", a.desc()))
				return
			}
		}
		a.setMap(out, nm)
		return
	}
	fail("splits or merges the channel dim with another dim")
}

// sizedReshape records that the current op's size list writes the count of
// the channels that reach dim d of out in, where surgery can rewrite it (a
// view or reshape the trace found in the code, ir.Op.Site): it reports
// false (and records nothing) elsewhere.
func (a *analyzer) sizedReshape(out, d int) bool {
	if k := a.op.Kind; a.op.Site == "" || (k != "aten::view" && k != "aten::reshape") || len(a.op.Inputs) != 2 {
		return false
	}
	a.sized = append(a.sized, SizedOp{Site: a.op.Site, Entry: d, Value: out, Dim: d})
	return true
}

// bakedSize reports whether entry d of the size list id is a constant other
// than -1: such a view would break once the channels shrink.
func (a *analyzer) bakedSize(id, d, rank int) bool {
	if ints, ok := a.constInts(id); ok {
		return len(ints) != rank || ints[d] != -1
	}
	elems, ok := a.g.ListElems(id)
	if !ok || len(elems) != rank {
		return true
	}
	if v, ok := a.constInt(elems[d]); ok && v != -1 {
		return true
	}
	return false
}

func (a *analyzer) expand() {
	x, out := a.in(0), a.out(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	O, ok := a.shape(out)
	if !ok || len(O) != len(S) || O[m.dim] != S[m.dim] {
		a.freezeMap(m, fmt.Sprintf("%s changes the channel dim", a.desc()))
		return
	}
	if a.op.Kind != "aten::repeat" && a.bakedSize(a.in(1), m.dim, len(O)) {
		a.freezeMap(m, fmt.Sprintf("%s hard-codes the channel count", a.desc()))
		return
	}
	a.setMap(out, m)
}

// moveDim follows the channels to the dim they move to (NCHW -> NHWC and
// back, as ConvNeXt blocks do): every handler checks the dim it needs, so a
// conv meeting channels-last input still freezes there, while a Linear or
// LayerNorm over the last dim follows them. A move the analysis cannot
// resolve (a non-constant permutation) freezes.
func (a *analyzer) moveDim(newPos func(d int) (int, bool)) {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	nd, ok := newPos(m.dim)
	if !ok {
		a.freezeMap(m, fmt.Sprintf("%s moves the channel dim by an unknown permutation", a.desc()))
		return
	}
	sx, _ := a.shape(x)
	if so, ok := a.shape(a.out(0)); !ok || len(so) != len(sx) {
		a.freezeMap(m, fmt.Sprintf("%s changes the rank", a.desc()))
		return
	}
	if nd == m.dim {
		a.setMap(a.out(0), m)
		return
	}
	a.setMap(a.out(0), m.withDim(nd))
}

func (a *analyzer) transpose() {
	S, _ := a.shape(a.in(0))
	d0, ok0 := a.constInt(a.in(1))
	d1, ok1 := a.constInt(a.in(2))
	a.moveDim(func(d int) (int, bool) {
		n0, okn0 := normDim(d0, len(S))
		n1, okn1 := normDim(d1, len(S))
		if !ok0 || !ok1 || !okn0 || !okn1 {
			return 0, false
		}
		switch d {
		case n0:
			return n1, true
		case n1:
			return n0, true
		}
		return d, true
	})
}

func (a *analyzer) permute() {
	S, _ := a.shape(a.in(0))
	perm, ok := a.constInts(a.in(1))
	a.moveDim(func(d int) (int, bool) {
		if !ok || len(perm) != len(S) {
			return 0, false
		}
		for i, p := range perm {
			if n, ok := normDim(p, len(S)); ok && n == d {
				return i, true
			}
		}
		return 0, false
	})
}

func (a *analyzer) transposeT() {
	S, _ := a.shape(a.in(0))
	a.moveDim(func(d int) (int, bool) {
		if len(S) < 2 {
			return d, true
		}
		return 1 - d, true
	})
}

// norm handles vector norms: x.norm(p, dim, keepdim) (F.normalize divides by
// it), torch.linalg.vector_norm, frobenius_norm. They reduce over a list of
// dims, which the order p comes before except in frobenius_norm.
func (a *analyzer) norm() {
	arg := a.in(2)
	if a.op.Kind == "aten::frobenius_norm" {
		arg = a.in(1)
	}
	a.reduce(arg, true)
}

// reduce handles a reduction of input 0 over the dims that value arg lists
// (list) or names (one int). Over other dims the channels pass, a dim
// further in for each reduced dim before theirs that goes; over the
// channels channelReduce decides; over every dim they freeze.
func (a *analyzer) reduce(arg int, list bool) {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	var dims []int64
	full := false
	switch v := a.value(arg); {
	case arg == noValue || v == nil || v.Kind == ir.KindNone:
		full = true
	case list:
		if ds, ok := a.constInts(arg); ok {
			dims = ds
			full = len(ds) == 0
		} else if v.Kind == ir.KindInt {
			full = true // mean(x, dtype)
		} else {
			a.freezeMap(m, fmt.Sprintf("%s over unknown dims", a.desc()))
			return
		}
	default:
		d, ok := a.constInt(arg)
		if !ok {
			a.freezeMap(m, fmt.Sprintf("%s over an unknown dim", a.desc()))
			return
		}
		dims = []int64{d}
	}
	if full {
		a.freezeMap(m, fmt.Sprintf("%s reduces over all dims", a.desc()))
		return
	}
	var nds []int
	for _, d := range dims {
		nd, ok := normDim(d, len(S))
		if !ok {
			a.freezeMap(m, fmt.Sprintf("%s: bad dim", a.desc()))
			return
		}
		if !slices.Contains(nds, nd) {
			nds = append(nds, nd)
		}
	}
	if slices.Contains(nds, m.dim) {
		a.channelReduce(m, list)
		if O, ok := a.shape(a.out(0)); ok && len(O) < len(S) {
			for _, o := range a.op.Outputs {
				if a.isTensor(o) {
					a.nochan[o] = true // the channel dim is gone
				}
			}
		}
		return
	}
	dim := m.dim
	O, _ := a.shape(a.out(0))
	if len(O) != len(S) { // keepdim=false
		for _, d := range nds {
			if d < m.dim {
				dim--
			}
		}
	}
	for _, o := range a.op.Outputs {
		if a.isTensor(o) {
			a.setMap(o, m.withDim(dim))
		}
	}
}

// channelReduce handles a reduction over the channels (CBAM's spatial
// attention reads the mean and the max over them). Its output has no
// channels to follow; what it does to its input's channels depends on the
// reduction. A sum over zeroed channels is the sum over the kept ones, so
// the groups stay exact; so is a norm of an order that zeros leave alone
// (zeroFreeNorm). A mean, max, min, deviation or logsumexp over
// fewer channels is another function, as a LayerNorm's is: the groups
// stay prunable, inexact, and fine-tuning adapts to it. The index and
// product reductions (argmax, the indices of max, prod, ...) freeze them:
// their result means something else once channels go. max and min along
// a dim give values and indices; with the indices unread (CBAM's
// `torch.max(x, dim=1)[0]`) they are amax and amin.
func (a *analyzer) channelReduce(m *cmap, list bool) {
	k := a.op.Kind
	valuesOnly := (k == "aten::max" || k == "aten::min") && len(a.op.Outputs) == 2 && !a.read(a.op.Outputs[1])
	switch {
	case !list && !valuesOnly:
		a.freezeMap(m, fmt.Sprintf("%s reduces over the channels", a.desc()))
	case k == "aten::sum" || k == "aten::nansum":
	case ops.Lookup(k).Rule == ops.Norm:
		if !a.zeroFreeNorm() {
			a.freezeMap(m, fmt.Sprintf("%s over the channels has an order a zero changes", a.desc()))
		}
	default:
		a.inexactMap(m, fmt.Sprintf("%s reduces over the channels, and over fewer of them gives another result", a.desc()))
	}
}

// zeroFreeNorm reports whether the norm op being analysed ignores zeros: a
// zeroed channel adds nothing to Σ|x|^p for an order p > 0, nor to the
// count of non-zeros (p = 0) or to max |x| (p = inf), so a norm over the
// channels is exact, as a sum is. A negative order (min |x| at -inf) is
// changed by a zero, and so is an order not known.
func (a *analyzer) zeroFreeNorm() bool {
	if a.op.Kind == "aten::frobenius_norm" {
		return true
	}
	p := a.in(1)
	v := a.value(p)
	switch {
	case p == noValue || v == nil:
		return false
	case v.Kind == ir.KindNone:
		return true // the default order, 2
	case !v.Const:
		return false
	case v.Kind == ir.KindFloat:
		return v.Float >= 0
	case v.Kind == ir.KindInt:
		return v.Int >= 0
	}
	return false
}

// read reports whether value id is an op's input or a graph output.
func (a *analyzer) read(id int) bool {
	return len(a.g.Users(id)) > 0 || slices.Contains(a.g.Outputs, id)
}

// softmaxKinds normalise along one dim; their output keeps its input's
// channels.
var softmaxKinds = map[string]bool{"aten::softmax": true, "aten::log_softmax": true, "aten::_softmax": true, "aten::_log_softmax": true}

// alongDim handles softmax, cumsum, index_select...: harmless along other
// dims, channel-mixing along the channels.
func (a *analyzer) alongDim() {
	x := a.in(0)
	m := a.maps[x]
	if m == nil {
		return
	}
	S, _ := a.shape(x)
	var dims []int64
	switch a.op.Kind {
	case "aten::roll":
		// roll(x, shifts, dims): one dim only; several would need each
		// checked against the shifts.
		if ds, ok := a.constInts(a.in(2)); ok && len(ds) == 1 {
			dims = ds
		}
	case "aten::flip":
		// flip(x, dims): any number of dims, none of them the channels'.
		if ds, ok := a.constInts(a.in(1)); ok && len(ds) > 0 {
			dims = ds
		}
	default:
		if d, ok := a.constInt(a.in(1)); ok {
			dims = []int64{d}
		}
	}
	along := len(dims) == 0
	for _, d := range dims {
		if nd, ok := normDim(d, len(S)); !ok || nd == m.dim {
			along = true
		}
	}
	if along && softmaxKinds[a.op.Kind] && len(dims) == 1 {
		// Over fewer channels a softmax normalises otherwise, as a
		// LayerNorm does: prunable, inexact.
		a.inexactMap(m, fmt.Sprintf("%s normalizes over the channels: without some, the others' share changes", a.desc()))
		a.passMap(x, a.out(0))
		return
	}
	if along {
		a.freezeMap(m, fmt.Sprintf("%s works along the channels", a.desc()))
		return
	}
	a.passMap(x, a.out(0))
}
