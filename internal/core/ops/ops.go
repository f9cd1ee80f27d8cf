// Package ops is gopruner's one table of the TorchScript ops it knows: for
// each op kind (its canonical name, "aten::conv2d", "prim::ListUnpack"),
// the rule by which the channel analysis (internal/core/graph) follows its
// channels, and the cost rule by which internal/core/flops counts its MACs
// (ptflops' formulas, see flops' package comment).
//
// An op the table does not name has rule Unknown (the analysis freezes what
// it touches) and cost Free (ptflops does not count it).
//
// The package is pure Go and imports nothing of gopruner's.
package ops

import "strings"

// Rule is how the channel analysis follows an op's channels; graph has one
// handler per rule.
type Rule uint8

const (
	Unknown      Rule = iota // not supported: the analysis freezes its channels
	Conv                     // convolution, transposed included
	Linear                   // aten::linear
	Addmm                    // aten::addmm (bias, input, weight)
	Matmul                   // aten::mm, aten::matmul: a layer when the second operand is a weight
	Bmm                      // aten::bmm: a batched product of activations
	Einsum                   // aten::einsum
	BatchNorm                // per-channel norms: batch_norm, instance_norm
	LayerNorm                // aten::layer_norm
	GroupNorm                // aten::group_norm
	PReLU                    // aten::prelu
	Cat                      // concatenation
	Stack                    // stacking along a new dim
	Split                    // split, chunk and the like
	Unpack                   // list and tuple unpacking
	GetItem                  // indexing into a list or tuple
	Skip                     // list construction and metadata queries: no channels flow
	Slice                    // narrow, slice
	Select                   // aten::select
	ReshapeAs                // view_as, reshape_as: the shape comes from a second tensor
	Reshape                  // view, reshape, flatten, (un)squeeze
	Expand                   // expand, repeat, broadcast_to
	Transpose                // transpose, swapaxes, swapdims
	Permute                  // aten::permute
	T                        // aten::t
	ReduceList               // reductions over an int[] of dims
	ReduceInt                // reductions over one int dim (max/min of two tensors are elementwise)
	Norm                     // vector norms over a list of dims, after the order p
	AlongDim                 // along one dim, keeping it: softmax, cumsum, gather
	Elementwise              // broadcasting operands
	GLU                      // gated linear unit: one half of a dim gates the other
	PixelShuffle             // pixel_shuffle, pixel_unshuffle: channels to and from space
	DtypeOnly                // to, type_as: the second tensor lends its dtype only
	Unary                    // keeps every dim of its first input: activations, pooling, casts, padding, upsampling
)

// Cost is how flops counts an op.
type Cost uint8

const (
	Free          Cost = iota // not counted
	ConvCost                  // N·∏out_spatial·numel(weight) (+ N·C_out·∏out_spatial with bias)
	LinearCost                // (in·out + out with bias)·∏leading dims; operands of aten::linear
	AddmmCost                 // the linear rule on addmm's operands
	MatmulCost                // the linear rule when the second operand is a weight
	NormCost                  // numel(input), twice that with affine weights (batch and instance norm: weight is input 1)
	GroupNormCost             // NormCost with group_norm's operands (weight is input 2)
	ActCost                   // numel(output)
	PoolCost                  // numel(input)
	UpsampleCost              // numel(output)
)

// Op is what the table says about one op kind.
type Op struct {
	Rule Rule
	Cost Cost
	// Layer is the kind a counted op has in `gopruner flops` ("conv",
	// "relu", ...); "" when Cost is Free.
	Layer string
}

var table = map[string]Op{}

// Lookup is the entry of op kind k, spelt as the trace spells it.
// Upsampling ops ("aten::upsample_*", "aten::_upsample_*") are matched by
// prefix.
func Lookup(k string) Op {
	if op, ok := table[k]; ok {
		return op
	}
	if strings.HasPrefix(k, "aten::upsample_") || strings.HasPrefix(k, "aten::_upsample_") {
		return Op{Rule: Unary, Cost: UpsampleCost, Layer: "upsample"}
	}
	return Op{}
}

// Aten is the canonical spelling of an op kind that may come without its
// namespace ("conv2d" → "aten::conv2d").
func Aten(k string) string {
	if strings.Contains(k, "::") {
		return k
	}
	return "aten::" + k
}

// rule gives kinds rule r unless an earlier line gave them one: the order
// of init is the priority of the rules.
func rule(r Rule, kinds ...string) {
	for _, k := range kinds {
		if !strings.Contains(k, "::") {
			k = "aten::" + k
		}
		op := table[k]
		if op.Rule == Unknown {
			op.Rule = r
			table[k] = op
		}
	}
}

// inplace adds the in-place variant (trailing underscore) of every kind.
func inplace(kinds ...string) []string {
	out := make([]string, 0, 2*len(kinds))
	for _, k := range kinds {
		out = append(out, k, k+"_")
	}
	return out
}

// cost gives kinds cost c, shown as layer.
func cost(c Cost, layer string, kinds ...string) {
	for _, k := range kinds {
		k = "aten::" + k
		op := table[k]
		op.Cost, op.Layer = c, layer
		table[k] = op
	}
}

var (
	// _convolution_mode is what conv1d/2d/3d with padding="same" or
	// "valid" (a string) trace as; its arguments are convNd's.
	convs = []string{"_convolution", "convolution", "_convolution_mode", "conv1d", "conv2d", "conv3d",
		"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
	pools = []string{"max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
		"max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
		"avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
		"adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"}
)

func init() {
	rule(Conv, convs...)
	rule(Linear, "linear")
	rule(Addmm, "addmm")
	rule(Matmul, "mm", "matmul")
	rule(Bmm, "bmm")
	rule(Einsum, "einsum")
	rule(BatchNorm, "batch_norm", "instance_norm")
	rule(LayerNorm, "layer_norm")
	rule(GroupNorm, "group_norm")
	rule(PReLU, "prelu")
	rule(Cat, "cat", "concat", "concatenate")
	rule(Stack, "stack")
	rule(Split, "split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes",
		"chunk", "unsafe_chunk", "tensor_split", "prim::ConstantChunk")
	rule(Unpack, "prim::ListUnpack", "prim::TupleUnpack")
	rule(GetItem, "__getitem__", "prim::TupleIndex", "prim::ListIndex")
	rule(Skip, "prim::ListConstruct", "prim::TupleConstruct",
		"size", "dim", "numel", "len", "is_floating_point", "is_contiguous", "__is__", "__isnot__",
		"sym_size", "_shape_as_tensor", "prim::dtype", "prim::device", "prim::layout",
		"prim::is_cuda", "prim::shape", "prim::requires_grad")
	rule(Slice, "narrow", "slice")
	rule(Select, "select")
	rule(ReshapeAs, "view_as", "reshape_as")
	rule(Reshape, "view", "reshape", "_unsafe_view", "flatten", "unsqueeze", "unsqueeze_",
		"squeeze", "squeeze_", "_reshape_alias")
	rule(Expand, "expand", "repeat", "broadcast_to")
	rule(Transpose, "transpose", "transpose_", "swapaxes", "swapdims")
	rule(Permute, "permute")
	rule(T, "t", "t_")
	rule(ReduceList, "mean", "sum", "nansum", "amax", "amin", "std", "var", "logsumexp")
	rule(ReduceInt, "prod", "argmax", "argmin", "max", "min", "median", "mode",
		"kthvalue", "all", "any")
	rule(Norm, "norm", "linalg_vector_norm", "frobenius_norm")
	rule(AlongDim, "softmax", "log_softmax", "_softmax", "_log_softmax", "cumsum",
		"cumprod", "logcumsumexp", "index_select", "gather", "roll", "flip")
	rule(Elementwise, inplace("add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder",
		"fmod", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
		"masked_fill", "addcmul", "addcdiv", "lerp", "logical_and", "logical_or",
		"logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "atan2", "hypot",
		"copysign", "xlogy")...)
	rule(Elementwise, "rsub", "where", "__and__", "__or__", "__xor__", "expand_as")
	rule(GLU, "glu")
	rule(PixelShuffle, "pixel_shuffle", "pixel_unshuffle")
	rule(DtypeOnly, "to", "type_as")
	rule(Unary, inplace("relu", "relu6", "hardtanh", "hardswish", "silu", "gelu", "sigmoid",
		"hardsigmoid", "tanh", "leaky_relu", "elu", "selu", "celu", "mish", "threshold",
		"clamp", "clamp_min", "clamp_max", "abs", "neg", "exp", "log", "sqrt", "rsqrt",
		"reciprocal", "square", "sign", "floor", "ceil", "round", "erf", "dropout",
		"feature_dropout", "alpha_dropout", "feature_alpha_dropout", "detach", "zero",
		"nan_to_num", "hardshrink", "softshrink", "fill", "log1p", "expm1", "log2", "log10", "sin",
		"cos", "tan", "atan", "sinh", "cosh", "asinh", "trunc", "frac", "sgn", "logit", "rrelu",
		"logical_not", "bitwise_not")...)
	rule(Unary, "softplus", "softsign", "log_sigmoid", "tanhshrink", "native_dropout",
		"dropout1d", "dropout2d", "dropout3d", "isnan", "isinf", "isfinite",
		"contiguous", "clone", "float", "half", "double", "cpu", "cuda",
		"pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
		"replication_pad1d", "replication_pad2d", "replication_pad3d",
		"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
		// With the pooling's indices as a second operand: elementwise.
		"max_unpool2d", "max_unpool3d")
	rule(Unary, pools...)

	cost(ConvCost, "conv", convs...)
	cost(LinearCost, "linear", "linear")
	cost(AddmmCost, "linear", "addmm")
	cost(MatmulCost, "linear", "mm", "matmul")
	cost(NormCost, "batchnorm", "batch_norm")
	cost(NormCost, "instancenorm", "instance_norm")
	cost(GroupNormCost, "groupnorm", "group_norm")
	cost(ActCost, "relu", inplace("relu", "relu6", "hardtanh")...)
	cost(ActCost, "leaky_relu", inplace("leaky_relu")...)
	cost(ActCost, "elu", inplace("elu")...)
	cost(ActCost, "prelu", inplace("prelu")...)
	cost(PoolCost, "pool", pools...)
}
