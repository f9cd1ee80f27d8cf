package graph

// How the analysis works.
//
// Every tensor value gets a channel map for one of its dims (dim 1 for
// NCHW/NCL and [N, F] values): an ordered list of runs, each a channel
// space, its length and a stride (indices per channel, H·W after a flatten).
// Spaces are nodes of a union-find: ops that force two tensors to keep the
// same channels (residual adds, SE gating, depthwise convs) unite them, and
// the final classes are the groups. Parameters become members of the spaces
// their dims index; each op declares which parameter dims it ties, and every
// other dim it reads is pinned to its size, so a group that reaches a pinned
// dim (a weight shared with an op the analysis does not follow) is frozen.
// Anything not understood freezes the spaces it touches: a refused group is
// fine, a broken model is not.

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/ir"
)

// maxExtent bounds the channel extents and parameter dimensions the analysis
// follows. Real models stay far below it; the bound keeps index lists
// (TensorKeeps) and shape arithmetic sane on malformed input.
const maxExtent = 1 << 24

// noValue stands for a missing op input or output. Value ids come from the
// exporter and may be any int, so the sentinel is one no exporter produces.
const noValue = math.MinInt

// noIndex stands for a list index that is not a constant.
const noIndex = math.MinInt

// recoverPanics turns an internal panic into an error from Analyze. Tests and
// the fuzz target switch it off so that a bug shows up as a crash there.
var recoverPanics = true

// seg is a run of one channel space along a value's channel dim: n channels,
// each owning stride consecutive indices.
type seg struct{ sp, n, stride int }

// cmap says which channel spaces a value's channel dim is made of. Maps are
// shared between values (pass-through ops alias them) and never mutated.
type cmap struct {
	dim  int
	segs []seg
}

func (m *cmap) extent() int64 {
	var e int64
	for _, s := range m.segs {
		e += int64(s.n) * int64(s.stride)
	}
	return e
}

func (m *cmap) withDim(d int) *cmap { return &cmap{dim: d, segs: m.segs} }

// mrec is a member with the sequence number of its registration, so that
// groups list members in graph order after unions shuffled them.
type mrec struct {
	seq      int
	m        Member
	producer bool
}

type srec struct {
	seq int
	s   string
}

// crec is a grouped conv recorded on a space, with its registration order.
type crec struct {
	seq int
	c   GroupedConv
}

// space is a node of the union-find over channel spaces. Only roots carry
// members, layers and the frozen state.
type space struct {
	parent int
	n      int
	frozen bool
	reason string
	// inexact says why pruning this space is not function-preserving
	// (a LayerNorm over its channels); "" when it is.
	inexact string
	members []mrec
	layers  []srec
	convs   []crec
	ln      []srec // LayerNorm weights over these channels (normalized_shape follows)
	sized   []srec // weights reshaped with these filters' count written in
	// block is the granularity grouped convs impose (0: none).
	block int
	// origin is the fresh call that made this space and where in that
	// call's channels it starts; ok is false for spaces made otherwise.
	origin freshOrigin
}

// freshKey names one call of fresh: the op being analysed (-1 for the model
// inputs) and the count of fresh calls that op made before it. It is the
// same in every pass of Analyze, as a split only changes what a call
// returns, never which calls are made before it within an op.
type freshKey struct{ op, n int }

type freshOrigin struct {
	key freshKey
	off int
	ok  bool
}

type analyzer struct {
	g      *ir.Graph
	maps   map[int]*cmap
	live   map[int]bool
	src    map[int][]string // params a value not derived from the model input was computed from
	spaces []space
	seq    int
	// pins are parameter dims whose size some op relies on (dim -1: all dims).
	pins map[string]map[int]string
	// pshape is the shape each parameter was read with.
	pshape map[string][]int64
	// splits maps the tensor[] output of a split/chunk op to that op.
	splits map[int]int
	// aliases maps a list value taken out of a list or tuple to the value it
	// stands for, so that nested lists still resolve to their construct op.
	aliases map[int]int
	// fixedVals are values whose channels must stay as they are no matter
	// which op assigns their map (model inputs, values read before written).
	fixedVals map[int]string
	// nochan are values that carry no channels because an op summed them
	// away (a product, a reduction that drops the channel dim), and those
	// computed from such values alone. They get no frozen default map: a
	// later unsqueeze would put it on a spatial dim, where it would clash
	// with the channels of whatever the value gates.
	nochan map[int]bool
	// sized are the ops whose size arguments surgery must rewrite.
	sized  []SizedOp
	layers map[string]bool
	// wnorms maps the direction v of each weight-normalised layer the
	// analysis follows to its magnitude g.
	wnorms map[string]string
	// wvals are the computed weights the analysis follows (weight
	// normalisation, standardisation) and the values inside their
	// expressions, with how each takes its shape from its source parameter
	// (see keepWexpr); wseen collects those of the one being read.
	wvals map[int]wval
	wseen map[int]wexpr

	op      *ir.Op
	opIdx   int
	claimed map[int]bool

	// splitAt lists, per fresh call, the channel offsets where this pass
	// cuts its space into several (see splitToMatch); want collects the
	// cuts this pass found it needs, for the next.
	splitAt map[freshKey][]int
	want    map[freshKey]map[int]bool
	// coarse lists, per fresh call, the number of its channels that this
	// pass makes one channel of its space (see pixelShuffle); wantCoarse
	// collects those this pass found it needs, for the next.
	coarse     map[freshKey]int
	wantCoarse map[freshKey]int
	freshN     int
	// last is set on the pass whose result Analyze returns whatever it
	// finds: it asks for no cut, so every add that does not line up there
	// freezes.
	last bool
}

// maxSplitPasses bounds the analyses Analyze runs to line spaces up. Each
// pass only adds cuts, so the bound is only reached on pathological graphs;
// their last pass freezes what still does not line up.
const maxSplitPasses = 8

// Analyze builds the channel groups of g. It indexes g first if that was not
// done yet (so concurrent calls must pass an indexed graph). Ops it does not
// understand freeze the channels they touch instead of failing, so an error
// means the graph itself is unusable.
func Analyze(g *ir.Graph) (res *Analysis, err error) {
	if g == nil {
		return nil, errors.New("analyze: nil graph")
	}
	if len(g.Values) > 0 && g.Value(g.Values[0].ID) == nil {
		if err := g.Index(); err != nil {
			return nil, fmt.Errorf("analyze: %w", err)
		}
	}
	var splitAt map[freshKey][]int
	var coarse map[freshKey]int
	for pass := 0; ; pass++ {
		a, res, err := analyzeOnce(g, splitAt, coarse, pass+1 == maxSplitPasses)
		if err != nil || (len(a.want) == 0 && len(a.wantCoarse) == 0) || pass+1 == maxSplitPasses {
			return res, err
		}
		splitAt = mergeSplits(splitAt, a.want)
		if coarse == nil {
			coarse = map[freshKey]int{}
		}
		maps.Copy(coarse, a.wantCoarse) // the pass that read it is done
	}
}

// analyzeOnce is one pass of Analyze with the given space cuts and
// coarsenings.
func analyzeOnce(g *ir.Graph, splitAt map[freshKey][]int, coarse map[freshKey]int, last bool) (a *analyzer, res *Analysis, err error) {
	a = &analyzer{
		g:         g,
		maps:      map[int]*cmap{},
		live:      map[int]bool{},
		src:       map[int][]string{},
		pins:      map[string]map[int]string{},
		pshape:    map[string][]int64{},
		splits:    map[int]int{},
		aliases:   map[int]int{},
		fixedVals: map[int]string{},
		nochan:    map[int]bool{},
		layers:    map[string]bool{},
		wnorms:    map[string]string{},
		wvals:     map[int]wval{},
		wseen:     map[int]wexpr{},
		claimed:   map[int]bool{},
		opIdx:     -1,
		splitAt:   splitAt,
		coarse:    coarse,
		last:      last,
	}
	if recoverPanics {
		defer func() {
			if r := recover(); r != nil {
				where := "finishing"
				if a.op != nil {
					where = fmt.Sprintf("op %d (%s)", a.opIdx, a.op.Kind)
				}
				res, err = nil, fmt.Errorf("analyze: internal error at %s: %v", where, r)
			}
		}()
	}
	a.run()
	a.op = nil
	if (len(a.want) > 0 || len(a.wantCoarse) > 0) && !last {
		return a, nil, nil // another pass follows: its result is the one kept
	}
	return a, a.finish(), nil
}

// mergeSplits adds the cuts a pass asked for to those it ran with.
func mergeSplits(have map[freshKey][]int, want map[freshKey]map[int]bool) map[freshKey][]int {
	out := make(map[freshKey][]int, len(have)+len(want))
	for k, v := range have {
		out[k] = slices.Clone(v)
	}
	for k, pts := range want {
		for p := range pts {
			if !slices.Contains(out[k], p) {
				out[k] = append(out[k], p)
			}
		}
		slices.Sort(out[k])
	}
	return out
}

func (a *analyzer) run() {
	g := a.g
	for i := range g.Values {
		v := &g.Values[i]
		if v.Param == "" {
			continue
		}
		a.src[v.ID] = []string{v.Param}
		if v.Shape == nil {
			continue
		}
		if _, seen := a.pshape[v.Param]; !seen {
			a.pshape[v.Param] = v.Shape
		}
		// A parameter read with a shape other than the declared one cannot be
		// resized safely: we would not know which of the two to trust.
		if p, ok := g.Params[v.Param]; ok && !slices.Equal(p.Shape, v.Shape) {
			a.pin(v.Param, -1, "is read with a shape that differs from its declared one")
		}
	}
	// Traced graphs are in execution order. A value read before the op that
	// writes it (only possible in a malformed graph) would have been judged
	// without its map, so its channels stay fixed.
	for i, op := range g.Ops {
		for _, in := range op.Inputs {
			if p := g.Producer(in); p >= i {
				a.fixedVals[in] = fmt.Sprintf("value %d is read before it is written", in)
			}
		}
	}
	for _, id := range g.Inputs {
		a.fixedVals[id] = "model input"
		a.live[id] = true
		a.defaultMap(id, "model input")
	}
	for i := range g.Ops {
		a.step(i)
	}
	a.op = nil
	for _, id := range g.Outputs {
		a.freezeValue(id, "model output")
	}
}

func (a *analyzer) step(i int) {
	op := &a.g.Ops[i]
	a.op, a.opIdx = op, i
	a.freshN = 0
	clear(a.claimed)
	live := false
	for _, in := range op.Inputs {
		if a.live[in] {
			live = true
			break
		}
	}
	if !live {
		a.passive(op)
		return
	}
	for _, o := range op.Outputs {
		a.live[o] = true
	}
	a.dispatch(op)
	derived := a.fromNochan(op)
	for _, o := range op.Outputs {
		switch {
		case a.maps[o] != nil, a.nochan[o]:
		case derived && (a.isTensor(o) || a.isTensorList(o)):
			a.nochan[o] = true
		default:
			a.defaultMap(o, fmt.Sprintf("output of %s is not followed", a.desc()))
		}
	}
	for _, in := range op.Inputs {
		if a.live[in] || a.claimed[in] {
			continue
		}
		for _, s := range a.src[in] {
			a.pin(s, -1, fmt.Sprintf("is read by %s in a way the analysis does not follow", a.desc()))
		}
	}
}

// fromNochan reports whether op reads live tensors and all of them carry no
// channels (see nochan).
func (a *analyzer) fromNochan(op *ir.Op) bool {
	n := 0
	for _, in := range op.Inputs {
		if !a.live[in] {
			continue
		}
		v := a.value(in)
		if v != nil && v.Kind != ir.KindTensor && v.Kind != ir.KindTensorList && v.Kind != ir.KindOther {
			continue // a live size or flag
		}
		if !a.nochan[in] {
			return false
		}
		n++
	}
	return n > 0
}

// passive handles an op that does not depend on the model input (weight
// transposes, constant arithmetic): it only remembers which parameters its
// outputs come from, so that whoever uses them can claim or pin those.
func (a *analyzer) passive(op *ir.Op) {
	var srcs []string
	for _, in := range op.Inputs {
		for _, s := range a.src[in] {
			if !slices.Contains(srcs, s) {
				srcs = append(srcs, s)
			}
		}
	}
	if len(srcs) == 0 {
		return
	}
	for _, o := range op.Outputs {
		a.src[o] = srcs
	}
}

// desc names the current op for reasons: kind and, when known, scope.
func (a *analyzer) desc() string {
	if a.op == nil {
		return "the graph"
	}
	if a.op.Scope != "" {
		return a.op.Kind + " in " + a.op.Scope
	}
	return fmt.Sprintf("%s (op %d)", a.op.Kind, a.opIdx)
}

// ---- value helpers ----

func (a *analyzer) in(i int) int {
	if a.op == nil || i < 0 || i >= len(a.op.Inputs) {
		return noValue
	}
	return a.op.Inputs[i]
}

func (a *analyzer) out(i int) int {
	if a.op == nil || i < 0 || i >= len(a.op.Outputs) {
		return noValue
	}
	return a.op.Outputs[i]
}

func (a *analyzer) value(id int) *ir.Value {
	if id == noValue {
		return nil
	}
	return a.g.Value(id)
}

// isTensor reports whether id is a tensor. Values read from the module
// count whatever their static type: scripted graphs type an optional bias
// as Optional[Tensor], which the exporter writes as "other".
func (a *analyzer) isTensor(id int) bool {
	v := a.value(id)
	return v != nil && (v.Kind == ir.KindTensor || v.Param != "")
}

// isTensorList reports whether id is a list of tensors.
func (a *analyzer) isTensorList(id int) bool {
	v := a.value(id)
	return v != nil && v.Kind == ir.KindTensorList
}

// isNone reports whether input id is absent or an explicit None.
func (a *analyzer) isNone(id int) bool {
	v := a.value(id)
	return v == nil || v.Kind == ir.KindNone
}

// shape returns a tensor's shape; a missing shape reads as 0-D (the exporter
// omits empty shapes). ok is false for non-tensors and negative dims.
func (a *analyzer) shape(id int) ([]int64, bool) {
	if !a.isTensor(id) {
		return nil, false
	}
	v := a.value(id)
	s := v.Shape
	if s == nil && v.Param != "" {
		// The exporter leaves parameter shapes to Graph.Params.
		s = a.paramShape(v.Param)
	}
	for _, d := range s {
		if d < 0 {
			return nil, false
		}
	}
	return s, true
}

// param returns the parameter name a value reads directly, or "".
func (a *analyzer) param(id int) string {
	v := a.value(id)
	if v == nil {
		return ""
	}
	return v.Param
}

func (a *analyzer) constInt(id int) (int64, bool) {
	if id == noValue {
		return 0, false
	}
	v := a.value(id)
	if v == nil || v.Kind != ir.KindInt {
		return 0, false
	}
	return a.g.ConstInt(id)
}

func (a *analyzer) constInts(id int) ([]int64, bool) {
	if id == noValue {
		return nil, false
	}
	return a.g.ConstInts(id)
}

// normDim turns a possibly negative dim into an index of a rank-r shape.
func normDim(d int64, r int) (int, bool) {
	if d < 0 {
		d += int64(r)
	}
	if d < 0 || d >= int64(r) {
		return 0, false
	}
	return int(d), true
}

// prod multiplies dims, reporting overflow as !ok.
func prod(ds []int64) (int64, bool) {
	p := int64(1)
	for _, d := range ds {
		if d < 0 {
			return 0, false
		}
		if d != 0 && p > math.MaxInt64/d {
			return 0, false
		}
		p *= d
	}
	return p, true
}

// ---- spaces ----

func (a *analyzer) newSpace(n int) int {
	a.spaces = append(a.spaces, space{parent: len(a.spaces), n: n})
	return len(a.spaces) - 1
}

func (a *analyzer) find(x int) int {
	r := x
	for a.spaces[r].parent != r {
		r = a.spaces[r].parent
	}
	for a.spaces[x].parent != r {
		x, a.spaces[x].parent = a.spaces[x].parent, r
	}
	return r
}

// union merges two spaces that must lose the same channels. The older space
// stays root, which keeps group order tied to graph order.
func (a *analyzer) union(x, y int) {
	rx, ry := a.find(x), a.find(y)
	if rx == ry {
		return
	}
	if a.spaces[rx].n != a.spaces[ry].n {
		// Callers only unify runs of equal length; this guards the invariant.
		r := fmt.Sprintf("%s ties channel spaces of different sizes", a.desc())
		a.freezeSp(rx, r)
		a.freezeSp(ry, r)
		return
	}
	if ry < rx {
		rx, ry = ry, rx
	}
	dst, src := &a.spaces[rx], &a.spaces[ry]
	src.parent = rx
	if src.frozen {
		if !dst.frozen {
			dst.reason = src.reason
		}
		dst.frozen = true
	}
	if dst.inexact == "" {
		dst.inexact = src.inexact
	}
	dst.members = append(dst.members, src.members...)
	dst.layers = append(dst.layers, src.layers...)
	dst.convs = append(dst.convs, src.convs...)
	dst.ln = append(dst.ln, src.ln...)
	dst.sized = append(dst.sized, src.sized...)
	dst.block = lcm(dst.block, src.block)
	src.members, src.layers, src.convs, src.ln, src.sized = nil, nil, nil, nil, nil
}

func (a *analyzer) freezeSp(sp int, reason string) {
	r := &a.spaces[a.find(sp)]
	if !r.frozen {
		r.frozen = true
		r.reason = reason
	}
}

// inexactMap marks every space of m as prunable only approximately.
func (a *analyzer) inexactMap(m *cmap, reason string) {
	for _, s := range m.segs {
		if r := &a.spaces[a.find(s.sp)]; r.inexact == "" {
			r.inexact = reason
		}
	}
}

func (a *analyzer) freezeMap(m *cmap, reason string) {
	if m == nil {
		return
	}
	for _, s := range m.segs {
		a.freezeSp(s.sp, reason)
	}
}

func (a *analyzer) nextSeq() int {
	a.seq++
	return a.seq
}

func (a *analyzer) addMember(sp int, m Member, producer bool) {
	r := &a.spaces[a.find(sp)]
	r.members = append(r.members, mrec{seq: a.nextSeq(), m: m, producer: producer})
}

// addMembers records that dim of tensor indexes the channel dim described by
// m: every run becomes a member at its offset.
func (a *analyzer) addMembers(m *cmap, tensor string, dim int, producer bool) {
	off := 0
	for _, s := range m.segs {
		a.addMember(s.sp, Member{Tensor: tensor, Dim: dim, Offset: off, Stride: s.stride}, producer)
		off += s.n * s.stride
	}
}

func (a *analyzer) addLayer(sp int, layer string) {
	r := &a.spaces[a.find(sp)]
	r.layers = append(r.layers, srec{a.nextSeq(), layer})
}

// addLayers records layer in every space of m: a conv's output split to
// line up with a concatenation (splitToMatch) is in several groups.
func (a *analyzer) addLayers(m *cmap, layer string) {
	for _, s := range m.segs {
		a.addLayer(s.sp, layer)
	}
}

// fresh makes a map of one new space covering extent channels at dim;
// frozen with reason unless reason is empty. nil if extent is out of range.
func (a *analyzer) fresh(dim int, extent int64, reason string) *cmap {
	if extent < 1 || extent > maxExtent {
		return nil
	}
	key := freshKey{a.opIdx, a.freshN}
	a.freshN++
	cuts := a.splitAt[key]
	if reason != "" {
		cuts = nil
	}
	m := &cmap{dim: dim}
	if f := a.coarse[key]; f > 1 && reason == "" && len(cuts) == 0 && extent%int64(f) == 0 {
		// Each channel of the space owns f consecutive ones (a pixel
		// shuffle's r²). Such a space is never cut: its origin is not ok.
		n := int(extent) / f
		m.segs = []seg{{sp: a.newSpace(n), n: n, stride: f}}
		return m
	}
	start := 0
	for i := 0; i <= len(cuts); i++ {
		end := int(extent)
		if i < len(cuts) {
			end = cuts[i]
		}
		if end <= start || end > int(extent) {
			continue
		}
		sp := a.newSpace(end - start)
		a.spaces[sp].origin = freshOrigin{key: key, off: start, ok: true}
		if reason != "" {
			a.freezeSp(sp, reason)
		}
		m.segs = append(m.segs, seg{sp: sp, n: end - start, stride: 1})
		start = end
	}
	return m
}

// defaultMap gives a value that no rule mapped a frozen space on dim 1, so
// that anything it meets later is frozen too.
func (a *analyzer) defaultMap(id int, reason string) {
	s, ok := a.shape(id)
	if !ok || len(s) < 2 || a.maps[id] != nil {
		return
	}
	if m := a.fresh(1, s[1], reason); m != nil {
		a.maps[id] = m
	}
}

// setMap assigns m to value id after checking that it describes the value's
// shape; a map that does not fit is frozen instead (the output then gets a
// frozen default map from step).
func (a *analyzer) setMap(id int, m *cmap) bool {
	if m == nil || id == noValue {
		return false
	}
	s, ok := a.shape(id)
	if !ok || m.dim < 0 || m.dim >= len(s) || s[m.dim] != m.extent() || a.maps[id] != nil {
		a.freezeMap(m, fmt.Sprintf("%s: channels do not match the output shape", a.desc()))
		return false
	}
	if r, fixed := a.fixedVals[id]; fixed {
		a.freezeMap(m, r)
	}
	a.maps[id] = m
	return true
}

// passMap gives output o the map of input x when both have the same rank.
func (a *analyzer) passMap(x, o int) {
	m := a.maps[x]
	if m == nil || !a.isTensor(o) {
		return
	}
	sx, _ := a.shape(x)
	so, ok := a.shape(o)
	if !ok || len(so) != len(sx) {
		a.freezeMap(m, fmt.Sprintf("%s changes the rank", a.desc()))
		return
	}
	a.setMap(o, m)
}

// unifyMaps ties two maps run by run; false (and nothing tied) when their
// runs do not line up.
func (a *analyzer) unifyMaps(x, y *cmap) bool {
	if !sameRuns(x, y) {
		return false
	}
	for i := range x.segs {
		a.union(x.segs[i].sp, y.segs[i].sp)
	}
	return true
}

// splitToMatch asks the next pass of Analyze for the cuts that would make
// x's and y's runs line up, where unifyMaps refused them: a residual add of
// a conv's output and a concatenation (VNet's `ops(cat(up, skip)) +
// cat(up, skip)`, GhostNet's `cat(primary, cheap)` plus the block's input)
// ties the conv's first channels to one part of the concatenation and the
// rest to the other, so the conv's space becomes two that are pruned apart.
// Only spaces that fresh made can be cut, at the same offsets in every space
// of their class; frozen ones stay whole (their channels stay anyway). It
// reports whether it asked for a cut not asked for before.
func (a *analyzer) splitToMatch(x, y *cmap) bool {
	ex, ey := runEnds(x), runEnds(y)
	if ex == nil || ey == nil || ex[len(ex)-1] != ey[len(ey)-1] {
		return false
	}
	cx, okx := a.cutsAt(x, ey)
	cy, oky := a.cutsAt(y, ex)
	if !okx || !oky {
		return false
	}
	return a.askCuts(append(cx, cy...))
}

// runEnds lists where each run of m ends, nil if a run has a stride (a
// flatten's: its channels are not contiguous indices).
func runEnds(m *cmap) []int {
	var e []int
	off := 0
	for _, s := range m.segs {
		if s.stride != 1 {
			return nil
		}
		off += s.n
		e = append(e, off)
	}
	return e
}

// cut is one cut of a fresh call's space, at offset at of its channels.
type cut struct {
	key freshKey
	at  int
}

// cutsAt lists the cuts that put a run boundary of m at every position in
// ends (channel offsets along m), in every space of each class that must
// be cut; false if one of those is frozen or not made by fresh.
func (a *analyzer) cutsAt(m *cmap, ends []int) ([]cut, bool) {
	var cuts []cut
	start := 0
	for _, s := range m.segs {
		end := start + s.n
		var pts []int
		for _, e := range ends {
			if e > start && e < end {
				pts = append(pts, e-start)
			}
		}
		start = end
		if len(pts) == 0 {
			continue
		}
		r := a.find(s.sp)
		if a.spaces[r].frozen {
			return nil, false
		}
		for _, i := range a.class(r) {
			o := a.spaces[i].origin
			if !o.ok {
				return nil, false
			}
			for _, p := range pts {
				cuts = append(cuts, cut{o.key, o.off + p})
			}
		}
	}
	return cuts, true
}

// class lists the spaces whose root is r: the spaces of one group.
func (a *analyzer) class(r int) []int {
	var out []int
	for i := range a.spaces {
		if a.find(i) == r {
			out = append(out, i)
		}
	}
	return out
}

// askCuts records cuts for the next pass; it reports whether one of them
// was not made or asked for already. The last pass asks for none.
func (a *analyzer) askCuts(cuts []cut) bool {
	if a.last {
		return false
	}
	added := false
	for _, c := range cuts {
		if slices.Contains(a.splitAt[c.key], c.at) || a.want[c.key][c.at] {
			continue
		}
		if a.want == nil {
			a.want = map[freshKey]map[int]bool{}
		}
		if a.want[c.key] == nil {
			a.want[c.key] = map[int]bool{}
		}
		a.want[c.key][c.at] = true
		added = true
	}
	return added
}

// askCoarse asks the next pass to make every space of m's runs with f
// consecutive channels to one channel of the space: the runs must have
// stride 1 and be whole, uncut spaces made by fresh, as must every space
// tied to them, each a multiple of f. It reports whether it asked; false
// on the last pass.
func (a *analyzer) askCoarse(m *cmap, f int) bool {
	if a.last {
		return false
	}
	want := map[freshKey]int{}
	for _, s := range m.segs {
		r := a.find(s.sp)
		if s.stride != 1 || a.spaces[r].frozen {
			return false
		}
		for _, i := range a.class(r) {
			o := a.spaces[i].origin
			if !o.ok || o.off != 0 || len(a.splitAt[o.key]) > 0 || a.spaces[i].n%f != 0 || a.coarse[o.key] != 0 {
				return false
			}
			want[o.key] = f
		}
	}
	if a.wantCoarse == nil {
		a.wantCoarse = map[freshKey]int{}
	}
	for k, v := range want {
		if w, ok := a.wantCoarse[k]; ok && w != v {
			return false
		}
	}
	maps.Copy(a.wantCoarse, want)
	return true
}

// subMap is the part of m from channel offset lo to hi, which must fall on
// run boundaries; nil otherwise.
func subMap(m *cmap, lo, hi int) *cmap {
	out := &cmap{dim: m.dim}
	off := 0
	for _, s := range m.segs {
		end := off + s.n*s.stride
		switch {
		case end <= lo || off >= hi:
		case off >= lo && end <= hi:
			out.segs = append(out.segs, s)
		default:
			return nil
		}
		off = end
	}
	if len(out.segs) == 0 {
		return nil
	}
	return out
}

// resolveList follows list aliases back to the value a construct or split
// op produced.
func (a *analyzer) resolveList(id int) int {
	for range 64 {
		next, ok := a.aliases[id]
		if !ok {
			return id
		}
		id = next
	}
	return id
}

// freezeValue freezes everything a value carries: its own channels, the
// elements of a list or tuple, the input of a split, and pins the
// parameters a constant value was computed from.
func (a *analyzer) freezeValue(id int, reason string) {
	seen := map[int]bool{}
	var walk func(id int)
	walk = func(id int) {
		if seen[id] || len(seen) > 1<<16 {
			return
		}
		seen[id] = true
		a.freezeMap(a.maps[id], reason)
		for _, s := range a.src[id] {
			a.pin(s, -1, "is read where its channels are not followed: "+reason)
		}
		r := a.resolveList(id)
		if r != id {
			walk(r)
		}
		if p, ok := a.splits[r]; ok {
			if ins := a.g.Ops[p].Inputs; len(ins) > 0 {
				walk(ins[0])
			}
		}
		if p := a.g.Producer(r); p >= 0 {
			switch a.g.Ops[p].Kind {
			case "prim::ListConstruct", "prim::TupleConstruct":
				for _, in := range a.g.Ops[p].Inputs {
					walk(in)
				}
			}
		}
	}
	walk(id)
}

// ---- parameters ----

func (a *analyzer) pin(name string, dim int, reason string) {
	m := a.pins[name]
	if m == nil {
		m = map[int]string{}
		a.pins[name] = m
	}
	if _, ok := m[dim]; !ok {
		m[dim] = reason
	}
}

// pinReason says why tensor's dim must keep its size, or "".
func (a *analyzer) pinReason(name string, dim int) string {
	m := a.pins[name]
	if r, ok := m[-1]; ok {
		return r
	}
	return m[dim]
}

// paramShape is a parameter's shape as declared, else as read.
func (a *analyzer) paramShape(name string) []int64 {
	if p, ok := a.g.Params[name]; ok {
		return p.Shape
	}
	return a.pshape[name]
}

// useParam claims input value id (read as parameter name) for the current
// op: the listed dims of name follow channel spaces, every other dim is
// pinned because the op relies on its size.
func (a *analyzer) useParam(id int, name string, tied ...int) {
	a.claimed[id] = true
	for d := range a.paramShape(name) {
		if !slices.Contains(tied, d) {
			a.pin(name, d, fmt.Sprintf("is read by %s with a fixed size", a.desc()))
		}
	}
}

// layerOf is the module path of a weight: "layer1.0.conv1.weight" ->
// "layer1.0.conv1".
func layerOf(weight string) string {
	// Weight normalisation's direction: torch.nn.utils.weight_norm's
	// weight_v, PyTorch 2's parametrization's original1.
	for _, suf := range []string{".weight", ".weight_v", ".parametrizations.weight.original1"} {
		if len(weight) > len(suf) && strings.HasSuffix(weight, suf) {
			return weight[:len(weight)-len(suf)]
		}
	}
	return weight
}
