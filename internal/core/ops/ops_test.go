package ops

import "testing"

func TestLookup(t *testing.T) {
	cases := []struct {
		kind  string
		rule  Rule
		cost  Cost
		layer string
	}{
		{"aten::conv2d", Conv, ConvCost, "conv"},
		{"aten::_convolution", Conv, ConvCost, "conv"},
		{"aten::_convolution_mode", Conv, ConvCost, "conv"},
		{"aten::linear", Linear, LinearCost, "linear"},
		{"aten::matmul", Matmul, MatmulCost, "linear"},
		{"aten::batch_norm", BatchNorm, NormCost, "batchnorm"},
		{"aten::instance_norm", BatchNorm, NormCost, "instancenorm"},
		{"aten::group_norm", GroupNorm, GroupNormCost, "groupnorm"},
		{"aten::layer_norm", LayerNorm, Free, ""},
		{"aten::conv_transpose3d", Conv, ConvCost, "conv"},
		{"aten::max_pool3d", Unary, PoolCost, "pool"},
		{"aten::upsample_trilinear3d", Unary, UpsampleCost, "upsample"},
		{"aten::relu_", Unary, ActCost, "relu"},
		{"aten::log1p_", Unary, Free, ""},
		{"aten::isfinite", Unary, Free, ""},
		{"aten::hardtanh", Unary, ActCost, "relu"},
		{"aten::prelu", PReLU, ActCost, "prelu"},
		{"aten::prelu_", Unknown, ActCost, "prelu"},
		{"aten::adaptive_avg_pool2d", Unary, PoolCost, "pool"},
		{"aten::upsample_nearest2d", Unary, UpsampleCost, "upsample"},
		{"aten::view_as", ReshapeAs, Free, ""},
		{"aten::to", DtypeOnly, Free, ""},
		{"aten::max", ReduceInt, Free, ""},
		{"aten::add_", Elementwise, Free, ""},
		{"aten::stack", Stack, Free, ""},
		{"aten::glu", GLU, Free, ""},
		{"aten::pixel_shuffle", PixelShuffle, Free, ""},
		{"aten::linalg_vector_norm", Norm, Free, ""},
		{"aten::max_unpool2d", Unary, Free, ""},
		{"prim::ListConstruct", Skip, Free, ""},
		{"prim::dtype", Skip, Free, ""},
		{"conv2d", Unknown, Free, ""}, // Lookup wants the namespace; Aten adds it
		{"aten::nonsense", Unknown, Free, ""},
	}
	for _, c := range cases {
		got := Lookup(c.kind)
		if got.Rule != c.rule || got.Cost != c.cost || got.Layer != c.layer {
			t.Errorf("Lookup(%s) = %+v, want rule %d cost %d layer %q", c.kind, got, c.rule, c.cost, c.layer)
		}
	}
	if Aten("conv2d") != "aten::conv2d" || Aten("prim::ListUnpack") != "prim::ListUnpack" {
		t.Error("Aten does not add only a missing namespace")
	}
}
