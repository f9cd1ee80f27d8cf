// Package plan is the pruning plan: which channels of each group survive,
// and what that does to every tensor. It is the contract between the
// search, `gopruner apply` and the surgery (schema "gopruner-plan/1",
// DESIGN.md), and it is pure Go.
package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/graph"
)

// Format is the plan's schema name.
const Format = "gopruner-plan/1"

// Plan is plan.json.
type Plan struct {
	Format       string            `json:"format"`
	InputShape   []int64           `json:"input_shape"`
	MACsBefore   int64             `json:"macs_before"`
	MACsAfter    int64             `json:"macs_after"`
	ParamsBefore int64             `json:"params_before"`
	ParamsAfter  int64             `json:"params_after"`
	Groups       []Group           `json:"groups"`
	Tensors      map[string]Tensor `json:"tensors"`
	// ConvGroups is the new groups argument of every grouped conv and
	// GroupNorm pruned in whole groups (by weight) whose channels shrink. It
	// is derived from the kept channels, so plans without it (older ones)
	// replay the same; when present, apply checks that it agrees. Depthwise
	// convs are left out: their groups is their channel count, and plans of
	// depthwise models read as before.
	ConvGroups map[string]int64 `json:"conv_groups,omitempty"`
}

// Group is one pruned channel group.
type Group struct {
	Members        []string `json:"members"`
	ChannelsBefore int      `json:"channels_before"`
	Kept           []int    `json:"kept"`
	// Exact is false (and present) only for a group whose pruning is not
	// function-preserving (graph.Group.Exact); absent means exact, so plans
	// of models without such groups read as before.
	Exact *bool `json:"exact,omitempty"`
}

// Tensor is one parameter or buffer whose shape changes. Kept maps a
// dimension (as a decimal string, JSON keys being strings) to the ascending
// indices that survive.
type Tensor struct {
	ShapeBefore []int64          `json:"shape_before"`
	ShapeAfter  []int64          `json:"shape_after"`
	Kept        map[string][]int `json:"kept"`
}

// Build makes the plan for keeping kept[gid] channels (ascending indices) of
// each group of a; groups absent from kept are untouched.
func Build(a *graph.Analysis, params map[string][]int64, kept map[int][]int, inputShape []int64) (*Plan, error) {
	p := &Plan{Format: Format, InputShape: slices.Clone(inputShape), Tensors: map[string]Tensor{}}
	for i := range a.Groups {
		g := &a.Groups[i]
		k, ok := kept[g.ID]
		if !ok || len(k) == g.Channels {
			continue
		}
		if !g.Prunable() {
			return nil, fmt.Errorf("plan: group %d (%v) is frozen: %s", g.ID, g.Layers, g.Reason)
		}
		if err := checkKept(k, g.Channels); err != nil {
			return nil, fmt.Errorf("plan: group %d (%v): %w", g.ID, g.Layers, err)
		}
		if err := g.CheckBlocks(k); err != nil {
			return nil, fmt.Errorf("plan: group %d (%v): %w", g.ID, g.Layers, err)
		}
		// A group can index two ranges of one tensor dim (a conv whose
		// output is split to match a concatenation, GhostNet's primary and
		// cheap halves); plan.json spells members as tensor:dim, once each.
		members := make([]string, 0, len(g.Members))
		for _, m := range g.Members {
			if s := m.String(); !slices.Contains(members, s) {
				members = append(members, s)
			}
		}
		pg := Group{Members: members, ChannelsBefore: g.Channels, Kept: slices.Clone(k)}
		if !g.Exact {
			pg.Exact = new(bool)
		}
		p.Groups = append(p.Groups, pg)
	}
	for name, dims := range a.TensorKeeps(kept) {
		before, ok := params[name]
		if !ok {
			return nil, fmt.Errorf("plan: analysis names tensor %q that the model lacks", name)
		}
		t := Tensor{ShapeBefore: slices.Clone(before), ShapeAfter: slices.Clone(before), Kept: map[string][]int{}}
		for d, idx := range dims {
			if d < 0 || d >= len(before) {
				return nil, fmt.Errorf("plan: tensor %q has no dim %d", name, d)
			}
			t.ShapeAfter[d] = int64(len(idx))
			t.Kept[strconv.Itoa(d)] = idx
		}
		p.Tensors[name] = t
	}
	for i := range a.Groups {
		for _, c := range a.Groups[i].GroupedConvs {
			t, ok := p.Tensors[c.Weight]
			if !ok || c.PerGroup <= 1 || len(t.ShapeAfter) == 0 {
				continue
			}
			if t.ShapeAfter[0]%int64(c.PerGroup) != 0 {
				return nil, fmt.Errorf("plan: conv %s keeps %d channels, not whole groups of %d", c.Weight, t.ShapeAfter[0], c.PerGroup)
			}
			if p.ConvGroups == nil {
				p.ConvGroups = map[string]int64{}
			}
			p.ConvGroups[c.Weight] = t.ShapeAfter[0] / int64(c.PerGroup)
		}
	}
	return p, nil
}

func checkKept(k []int, n int) error {
	if len(k) == 0 {
		return fmt.Errorf("keeps no channel")
	}
	for i, c := range k {
		if c < 0 || c >= n {
			return fmt.Errorf("kept channel %d is outside 0..%d", c, n-1)
		}
		if i > 0 && c <= k[i-1] {
			return fmt.Errorf("kept channels are not ascending and unique at %d", c)
		}
	}
	return nil
}

// Validate checks that the plan fits a model whose parameters and buffers
// have the given shapes. Every failure is a usage error naming the tensor.
func (p *Plan) Validate(params map[string][]int64) error {
	if p.Format != Format {
		return fail.Usagef("plan format %q, want %q", p.Format, Format)
	}
	if len(p.InputShape) < 2 {
		return fail.Usagef("plan input_shape %v: want at least [N, C]", p.InputShape)
	}
	names := make([]string, 0, len(p.Tensors))
	for n := range p.Tensors {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		t := p.Tensors[name]
		shape, ok := params[name]
		if !ok {
			return fail.Usagef("plan names tensor %q, which the model does not have", name)
		}
		if !slices.Equal(shape, t.ShapeBefore) {
			return fail.Usagef("plan: tensor %q has shape %v in the model, the plan expects %v (a plan from another model?)", name, shape, t.ShapeBefore)
		}
		if len(t.ShapeAfter) != len(shape) {
			return fail.Usagef("plan: tensor %q: shape_after %v has the wrong rank", name, t.ShapeAfter)
		}
		if len(t.Kept) == 0 {
			return fail.Usagef("plan: tensor %q lists no kept dimension", name)
		}
		for ds, idx := range t.Kept {
			d, err := strconv.Atoi(ds)
			if err != nil || d < 0 || d >= len(shape) {
				return fail.Usagef("plan: tensor %q: kept names dim %q of a rank-%d tensor", name, ds, len(shape))
			}
			if err := checkKept(idx, int(shape[d])); err != nil {
				return fail.Usagef("plan: tensor %q dim %d: %v", name, d, err)
			}
			if int64(len(idx)) != t.ShapeAfter[d] {
				return fail.Usagef("plan: tensor %q dim %d keeps %d indices but shape_after says %d", name, d, len(idx), t.ShapeAfter[d])
			}
		}
		for d := range shape {
			if _, ok := t.Kept[strconv.Itoa(d)]; !ok && t.ShapeAfter[d] != shape[d] {
				return fail.Usagef("plan: tensor %q dim %d changes size but lists no kept indices", name, d)
			}
		}
	}
	for _, w := range slices.Sorted(maps.Keys(p.ConvGroups)) {
		if _, ok := params[w]; !ok {
			return fail.Usagef("plan: conv_groups names tensor %q, which the model does not have", w)
		}
		if p.ConvGroups[w] < 1 {
			return fail.Usagef("plan: conv_groups[%q] = %d, want at least 1", w, p.ConvGroups[w])
		}
	}
	for i, g := range p.Groups {
		if err := checkKept(g.Kept, g.ChannelsBefore); err != nil {
			return fail.Usagef("plan: group %d (%v): %v", i, g.Members, err)
		}
		for _, m := range g.Members {
			name, ds, ok := strings.Cut(m, ":")
			d, err := strconv.Atoi(ds)
			if !ok || err != nil {
				return fail.Usagef("plan: group %d member %q: want tensor:dim", i, m)
			}
			shape, ok := params[name]
			if !ok {
				return fail.Usagef("plan: group %d names tensor %q, which the model does not have", i, name)
			}
			if d < 0 || d >= len(shape) {
				return fail.Usagef("plan: group %d member %q: the tensor has no dim %d", i, m, d)
			}
		}
	}
	return nil
}

// KeptByDim returns the tensor's kept indices keyed by int dimension.
func (t Tensor) KeptByDim() map[int][]int {
	out := make(map[int][]int, len(t.Kept))
	for ds, idx := range t.Kept {
		d, err := strconv.Atoi(ds)
		if err == nil {
			out[d] = idx
		}
	}
	return out
}

// Read parses plan.json. Malformed files are usage errors.
func Read(path string) (*Plan, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse decodes a plan; name is used in error messages. A plan over
// MaxPlanBytes, MaxPlanTensors or MaxPlanGroups is refused before decoding.
func Parse(data []byte, name string) (*Plan, error) {
	if err := checkLimits(data, name); err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fail.Usagef("plan %s: not valid plan JSON: %v", name, err)
	}
	if p.Format != Format {
		return nil, fail.Usagef("plan %s: format %q, want %q", name, p.Format, Format)
	}
	return &p, nil
}

// Write saves the plan atomically at each of paths. The bytes are
// MarshalIndent's and a newline, encoded straight into the file: a
// densenet121's plan is 1.8 MB, and marshalling, indenting and appending
// the newline held three copies of it.
func (p *Plan) Write(paths ...string) error {
	for _, path := range paths {
		err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", " ")
			return enc.Encode(p)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
