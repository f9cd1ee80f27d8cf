package graph

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/ir"
	"github.com/gopruner/gopruner/internal/core/ops"
)

func init() { recoverPanics = false }

// halfKept keeps the first half or all but one (at least one) of every prunable group's
// blocks, or every other block when odd is set, so that offsets and strides
// get exercised with non-prefix selections too. A block is one channel
// unless a grouped conv asks for more.
func halfKept(a *Analysis, odd bool) (map[int][]int, map[int]int) {
	idx, cnt := map[int][]int{}, map[int]int{}
	for _, g := range a.Prunable() {
		u := g.Unit()
		nb := g.Channels / u
		var blocks []int
		if odd {
			for j := 0; j < nb; j += 2 {
				blocks = append(blocks, j)
			}
		} else {
			// Groups keep different counts (half, or all but one), so that
			// two groups a rule failed to tie do not line up by chance.
			n := max(1, nb/2)
			if g.ID%2 == 1 {
				n = max(1, nb-1)
			}
			for j := 0; j < n; j++ {
				blocks = append(blocks, j)
			}
		}
		var k []int
		for _, j := range blocks {
			for c := j * u; c < (j+1)*u; c++ {
				k = append(k, c)
			}
		}
		idx[g.ID], cnt[g.ID] = k, len(k)
	}
	return idx, cnt
}

// checkAnalysis verifies the invariants every analysis must satisfy and
// that pruning every prunable group leaves a well-formed network: each
// shape relation an op had before pruning still holds after it.
func checkAnalysis(t testing.TB, g *ir.Graph, a *Analysis) {
	t.Helper()
	for i, grp := range a.Groups {
		if grp.ID != i {
			t.Fatalf("group %d has ID %d", i, grp.ID)
		}
		if grp.Frozen && grp.Reason == "" {
			t.Errorf("group %d frozen without a reason", i)
		}
		seen := map[Member]bool{}
		for _, m := range grp.Members {
			if seen[m] {
				t.Errorf("group %d: duplicate member %+v", i, m)
			}
			seen[m] = true
		}
		for _, p := range grp.Producers {
			if !seen[p] {
				t.Errorf("group %d: producer %+v is not a member", i, p)
			}
		}
		if !grp.Prunable() {
			continue
		}
		for _, m := range grp.Members {
			s := a.ParamShape(m.Tensor, nil)
			if m.Dim >= len(s) || int64(m.Offset+grp.Channels*max(m.Stride, 1)) > s[m.Dim] {
				t.Errorf("group %d: member %+v exceeds %s%v", i, m, m.Tensor, s)
			}
		}
	}
	for _, odd := range []bool{false, true} {
		idx, cnt := halfKept(a, odd)
		if err := a.ValidateKept(idx); err != nil {
			t.Fatalf("ValidateKept: %v", err)
		}
		keeps := a.TensorKeeps(idx)
		for name, dims := range keeps {
			s := a.ParamShape(name, cnt)
			for d, ks := range dims {
				if d >= len(s) || int64(len(ks)) != s[d] {
					t.Errorf("TensorKeeps %s dim %d keeps %d, ParamShape says %v", name, d, len(ks), s)
				}
				if !slices.IsSorted(ks) {
					t.Errorf("TensorKeeps %s dim %d not sorted", name, d)
				}
			}
		}
		for name := range g.Params {
			before, after := a.ParamShape(name, nil), a.ParamShape(name, cnt)
			if !slices.Equal(before, after) && keeps[name] == nil {
				t.Errorf("%s changes %v -> %v but TensorKeeps omits it", name, before, after)
			}
		}
		if errs := prunedErrors(g, a, cnt); len(errs) > 0 {
			t.Errorf("pruned network is inconsistent:\n  %s", strings.Join(errs, "\n  "))
		}
	}
}

// prunedErrors lists the shape relations that held in the traced graph
// but break under kept.
func prunedErrors(g *ir.Graph, a *Analysis, kept map[int]int) []string {
	var errs []string
	shape := func(id int, k map[int]int) []int64 { return a.ValueShape(id, k) }
	// A grouped conv's new groups count is its weight's kept rows over its
	// channels per group.
	perGroup := map[string]int64{}
	for _, grp := range a.Groups {
		for _, c := range grp.GroupedConvs {
			perGroup[c.Weight] = int64(c.PerGroup)
		}
	}
	for i, op := range g.Ops {
		// rel evaluates a relation before and after pruning; only a relation
		// that held before must hold after.
		rel := func(what string, f func(k map[int]int) bool) {
			if f(nil) && !f(kept) {
				errs = append(errs, fmt.Sprintf("op %d %s: %s", i, op.Kind, what))
			}
		}
		in := func(j int) int {
			if j < len(op.Inputs) {
				return op.Inputs[j]
			}
			return noValue
		}
		dim := func(id int, d int, k map[int]int) int64 {
			s := shape(id, k)
			if d < 0 {
				d += len(s)
			}
			if d < 0 || d >= len(s) {
				return -1
			}
			return s[d]
		}
		for _, v := range append(append([]int{}, op.Inputs...), op.Outputs...) {
			before := shape(v, nil)
			for j, d := range shape(v, kept) {
				if d < 0 && j < len(before) && before[j] >= 0 {
					errs = append(errs, fmt.Sprintf("op %d: value %d gets a negative dim", i, v))
				}
			}
		}
		out := noValue
		if len(op.Outputs) > 0 {
			out = op.Outputs[0]
		}
		switch {
		case ops.Lookup(op.Kind).Rule == ops.Conv:
			x, w := in(0), in(1)
			groups := int64(1)
			gi := 8
			if op.Kind == "aten::conv2d" {
				gi = 6
			}
			if v, ok := g.ConstInt(in(gi)); ok {
				groups = v
			}
			wname := ""
			if v := g.Value(w); v != nil {
				wname = v.Param
			}
			groupsAt := func(k map[int]int) int64 {
				if per, ok := perGroup[wname]; ok && per > 0 {
					return dim(w, 0, k) / per
				}
				return groups
			}
			rel("weight in-channels", func(k map[int]int) bool { return dim(w, 1, k)*groupsAt(k) == dim(x, 1, k) })
			rel("groups divide the channels", func(k map[int]int) bool {
				gk := groupsAt(k)
				return gk > 0 && dim(w, 0, k)%gk == 0 && dim(x, 1, k)%gk == 0
			})
			rel("weight out-channels", func(k map[int]int) bool { return dim(w, 0, k) == dim(out, 1, k) })
			if b := in(2); g.Value(b) != nil && g.Value(b).Param != "" {
				rel("bias", func(k map[int]int) bool { return dim(b, 0, k) == dim(out, 1, k) })
			}
		case op.Kind == "aten::batch_norm":
			for j := 1; j <= 4; j++ {
				p := in(j)
				if v := g.Value(p); v != nil && v.Param != "" {
					rel("bn param", func(k map[int]int) bool { return dim(p, 0, k) == dim(in(0), 1, k) })
				}
			}
			rel("bn shape", func(k map[int]int) bool { return slices.Equal(shape(in(0), k), shape(out, k)) })
		case op.Kind == "aten::linear":
			rel("linear in", func(k map[int]int) bool { return dim(in(1), 1, k) == dim(in(0), -1, k) })
			rel("linear out", func(k map[int]int) bool { return dim(in(1), 0, k) == dim(out, -1, k) })
		case ops.Lookup(op.Kind).Rule == ops.Elementwise:
			var ts []int
			for _, x := range op.Inputs {
				if v := g.Value(x); v != nil && v.Kind == ir.KindTensor {
					ts = append(ts, x)
				}
			}
			rel("broadcast", func(k map[int]int) bool {
				o := shape(out, k)
				for _, x := range ts {
					s := shape(x, k)
					if len(s) > len(o) {
						return false
					}
					for j := range s {
						d := s[j]
						if od := o[len(o)-len(s)+j]; d != od && d != 1 {
							return false
						}
					}
				}
				return true
			})
		case op.Kind == "aten::cat":
			elems, ok := g.ListElems(in(0))
			if !ok {
				break
			}
			cd, _ := g.ConstInt(in(1))
			rel("cat", func(k map[int]int) bool {
				o := shape(out, k)
				d, ok := normDim(cd, len(o))
				if !ok {
					return false
				}
				var sum int64
				for _, e := range elems {
					s := shape(e, k)
					if len(s) != len(o) {
						return false
					}
					for j := range s {
						if j != d && s[j] != o[j] {
							return false
						}
					}
					sum += s[d]
				}
				return sum == o[d]
			})
		case ops.Lookup(op.Kind).Rule == ops.Matmul || ops.Lookup(op.Kind).Rule == ops.Bmm ||
			ops.Lookup(op.Kind).Rule == ops.Einsum:
			operands := []int{in(0), in(1)}
			if ops.Lookup(op.Kind).Rule == ops.Einsum {
				elems, ok := g.ListElems(in(1))
				if !ok {
					break
				}
				operands = elems
			}
			rel("product labels", func(k map[int]int) bool { return productFits(g, op, operands, shape, k) })
		case ops.Lookup(op.Kind).Rule == ops.Reshape || ops.Lookup(op.Kind).Rule == ops.ReshapeAs:
			rel("numel", func(k map[int]int) bool {
				p1, ok1 := prod(shape(in(0), k))
				p2, ok2 := prod(shape(out, k))
				return ok1 && ok2 && p1 == p2
			})
		case ops.Lookup(op.Kind).Rule == ops.Unary || ops.Lookup(op.Kind).Rule == ops.DtypeOnly || op.Kind == "aten::mean":
			rel("channels pass through", func(k map[int]int) bool { return dim(in(0), 1, k) == dim(out, 1, k) })
		}
	}
	return errs
}

// productFits reports whether a product's operands and output agree on the
// size of every label (1 broadcasts).
func productFits(g *ir.Graph, op ir.Op, operands []int, shape func(int, map[int]int) []int64, k map[int]int) bool {
	shapes := make([][]int64, len(operands))
	ranks := make([]int, len(operands))
	for i, x := range operands {
		shapes[i] = shape(x, k)
		ranks[i] = len(shapes[i])
	}
	var spec prodSpec
	var ok bool
	if ops.Lookup(op.Kind).Rule == ops.Einsum {
		v := g.Value(op.Inputs[0])
		if v == nil {
			return false
		}
		var err error
		spec, err = einsumSpec(v.Str, ranks)
		ok = err == nil
	} else {
		spec, ok = matmulSpec(ranks[0], ranks[1])
	}
	if !ok {
		return false
	}
	size := map[int]int64{}
	fits := func(l int, d int64) bool {
		if d == 1 {
			return true
		}
		if s, seen := size[l]; seen && s != d {
			return false
		}
		size[l] = d
		return true
	}
	for i, s := range shapes {
		for j, d := range s {
			if !fits(spec.ins[i][j], d) {
				return false
			}
		}
	}
	o := shape(op.Outputs[0], k)
	if len(o) != len(spec.out) {
		return false
	}
	for j, d := range o {
		if !fits(spec.out[j], d) {
			return false
		}
	}
	return true
}
