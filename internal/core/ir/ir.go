// Package ir is the model's forward pass as a flat list of executed aten ops,
// with the concrete shape of every tensor value. The C++ shim records it by
// tracing the TorchScript module once on an example input and hands it over as
// JSON (format "gopruner-ir/1"); everything downstream (channel groups, MACs,
// plans) works on this package and never on libtorch directly, so it tests
// without cgo.
//
// JSON shape:
//
//	{"format": "gopruner-ir/1",
//	 "inputs": [0], "outputs": [57],
//	 "output": {"structure": "tensor", "paths": [""], "selected": 0},
//	 "values": [{"id": 0, "kind": "tensor", "shape": [1,3,224,224], "dtype": "float"},
//	            {"id": 1, "kind": "tensor", "shape": [64,3,7,7], "param": "conv1.weight"},
//	            {"id": 2, "kind": "none"},
//	            {"id": 3, "kind": "int", "const": true, "int": 1}, ...],
//	 "ops": [{"kind": "aten::_convolution", "inputs": [0,1,2,...], "outputs": [9], "scope": "conv1"},
//	         {"kind": "aten::view", "inputs": [9,10], "outputs": [11], "site": "code/__torch__.py#1758:456-467;..."}],
//	 "params": {"conv1.weight": {"shape": [64,3,7,7], "buffer": false}, ...}}
//
// Values produced by prim::Constant carry their value (const=true) and have no
// producing op. Values read from the module (prim::GetAttr chains on self) carry
// the dotted attribute name in Param and have no producing op either. Every
// other node of the traced graph is an op, including prim::ListConstruct,
// prim::ListUnpack, prim::TupleConstruct and aten::size; list-valued constants
// are folded by ConstInts below.
package ir

import (
	"encoding/json"
	"fmt"
	"os"
)

// Format is the value of the "format" field this package reads and writes.
const Format = "gopruner-ir/1"

// Value kinds.
const (
	KindTensor     = "tensor"
	KindInt        = "int"
	KindFloat      = "float"
	KindBool       = "bool"
	KindNone       = "none"
	KindString     = "str"
	KindIntList    = "int[]"
	KindFloatList  = "float[]"
	KindBoolList   = "bool[]"
	KindTensorList = "tensor[]"
	KindOther      = "other"
)

// Value is one SSA value of the traced graph.
type Value struct {
	ID    int     `json:"id"`
	Kind  string  `json:"kind"`
	Shape []int64 `json:"shape,omitempty"`
	DType string  `json:"dtype,omitempty"`
	// Param is the dotted name of the parameter or buffer this value reads
	// (layer1.0.conv1.weight), empty for activations.
	Param string `json:"param,omitempty"`
	// Const is true for values whose content is known at export time; the
	// content is in one of Int, Float, Bool, Str, Ints, Floats.
	Const  bool      `json:"const,omitempty"`
	Int    int64     `json:"int,omitempty"`
	Float  float64   `json:"float,omitempty"`
	Bool   bool      `json:"bool,omitempty"`
	Str    string    `json:"str,omitempty"`
	Ints   []int64   `json:"ints,omitempty"`
	Floats []float64 `json:"floats,omitempty"`
}

// Op is one executed node.
type Op struct {
	Kind    string `json:"kind"`
	Inputs  []int  `json:"inputs"`
	Outputs []int  `json:"outputs"`
	// Scope is the module path the op belongs to when it can be told: for ops
	// that read parameters it is the owner of those parameters
	// ("layer1.0.conv1"); otherwise it may be empty.
	Scope string `json:"scope,omitempty"`
	// Site is where a view, reshape or split sits in the module's code,
	// when the trace could tell it uniquely: the source ranges of the
	// calls that lead to it and of the op itself. Surgery finds the op
	// again by it to rewrite a channel count written into its size
	// argument.
	Site string `json:"site,omitempty"`
}

// Param describes one named parameter or buffer of the module, whether or not
// the forward pass reads it.
type Param struct {
	Shape  []int64 `json:"shape"`
	Buffer bool    `json:"buffer,omitempty"`
}

// Graph is the exported forward pass.
type Graph struct {
	Format  string `json:"format"`
	Inputs  []int  `json:"inputs"`
	Outputs []int  `json:"outputs"`
	// Output describes forward's result, whose tensors Outputs are; nil in
	// IR exported before it was recorded.
	Output *OutputInfo      `json:"output,omitempty"`
	Values []Value          `json:"values"`
	Ops    []Op             `json:"ops"`
	Params map[string]Param `json:"params"`

	byID     map[int]int // value id -> index in Values
	producer map[int]int // value id -> index in Ops
	users    map[int][]int
}

// Parse decodes and indexes a graph.
func Parse(data []byte) (*Graph, error) {
	var g Graph
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("decode IR: %w", err)
	}
	if g.Format != Format {
		return nil, fmt.Errorf("IR format %q, want %q", g.Format, Format)
	}
	if err := g.Index(); err != nil {
		return nil, err
	}
	return &g, nil
}

// ReadFile parses an IR JSON file.
func ReadFile(path string) (*Graph, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	g, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Index builds the lookup tables and checks that every reference resolves.
// Call it after building a Graph by hand.
func (g *Graph) Index() error {
	g.byID = make(map[int]int, len(g.Values))
	for i, v := range g.Values {
		if _, dup := g.byID[v.ID]; dup {
			return fmt.Errorf("IR: value %d defined twice", v.ID)
		}
		g.byID[v.ID] = i
	}
	g.producer = make(map[int]int)
	g.users = make(map[int][]int)
	for i, op := range g.Ops {
		for _, in := range op.Inputs {
			if _, ok := g.byID[in]; !ok {
				return fmt.Errorf("IR: op %d (%s) reads unknown value %d", i, op.Kind, in)
			}
			g.users[in] = append(g.users[in], i)
		}
		for _, out := range op.Outputs {
			if _, ok := g.byID[out]; !ok {
				return fmt.Errorf("IR: op %d (%s) writes unknown value %d", i, op.Kind, out)
			}
			if p, dup := g.producer[out]; dup {
				return fmt.Errorf("IR: value %d written by ops %d and %d", out, p, i)
			}
			g.producer[out] = i
		}
	}
	for _, id := range append(append([]int{}, g.Inputs...), g.Outputs...) {
		if _, ok := g.byID[id]; !ok {
			return fmt.Errorf("IR: graph input/output %d is not a value", id)
		}
	}
	if g.Output != nil {
		if err := g.Output.check(); err != nil {
			return fmt.Errorf("IR: %w", err)
		}
		if len(g.Output.Paths) != len(g.Outputs) {
			return fmt.Errorf("IR: %d output paths for %d outputs", len(g.Output.Paths), len(g.Outputs))
		}
	}
	return nil
}

// Value returns the value with the given id, or nil.
func (g *Graph) Value(id int) *Value {
	i, ok := g.byID[id]
	if !ok {
		return nil
	}
	return &g.Values[i]
}

// Producer returns the index of the op that writes value id, or -1 for graph
// inputs, constants and parameters.
func (g *Graph) Producer(id int) int {
	if i, ok := g.producer[id]; ok {
		return i
	}
	return -1
}

// Users returns the indices of the ops that read value id, in graph order.
func (g *Graph) Users(id int) []int { return g.users[id] }

// ConstInt returns the integer content of value id if it is known.
func (g *Graph) ConstInt(id int) (int64, bool) {
	v := g.Value(id)
	if v == nil || !v.Const {
		return 0, false
	}
	switch v.Kind {
	case KindInt:
		return v.Int, true
	case KindBool:
		if v.Bool {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// ConstInts returns the integer-list content of value id: either a constant
// int[] or the output of a prim::ListConstruct whose inputs are all constant
// ints.
func (g *Graph) ConstInts(id int) ([]int64, bool) {
	v := g.Value(id)
	if v == nil {
		return nil, false
	}
	if v.Const && v.Kind == KindIntList {
		return v.Ints, true
	}
	p := g.Producer(id)
	if p < 0 || g.Ops[p].Kind != "prim::ListConstruct" {
		return nil, false
	}
	out := make([]int64, 0, len(g.Ops[p].Inputs))
	for _, in := range g.Ops[p].Inputs {
		n, ok := g.ConstInt(in)
		if !ok {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// WeightNorm reports whether value id is a weight that weight
// normalisation computes from two parameters, w = g·v/‖v‖ with the norm of
// each slice along dim 0 (`torch.nn.utils.weight_norm` with its default
// dim, and its parametrization in PyTorch 2: `aten::_weight_norm(v, g, 0)`
// in a trace), and names the direction v and the magnitude g.
func (g *Graph) WeightNorm(id int) (v, mag string, ok bool) {
	p := g.Producer(id)
	if p < 0 || g.Ops[p].Kind != "aten::_weight_norm" || len(g.Ops[p].Inputs) != 3 || len(g.Ops[p].Outputs) != 1 {
		return "", "", false
	}
	in := g.Ops[p].Inputs
	vv, gv := g.Value(in[0]), g.Value(in[1])
	if dim, okD := g.ConstInt(in[2]); !okD || dim != 0 || vv == nil || gv == nil || vv.Param == "" || gv.Param == "" || vv.Param == gv.Param {
		return "", "", false
	}
	return vv.Param, gv.Param, true
}

// ListElems returns the element values of a list built by
// prim::ListConstruct (for example the tensors of aten::cat).
func (g *Graph) ListElems(id int) ([]int, bool) {
	p := g.Producer(id)
	if p < 0 || g.Ops[p].Kind != "prim::ListConstruct" {
		return nil, false
	}
	return g.Ops[p].Inputs, true
}

// Numel is the number of elements of a tensor shape.
func Numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}
