package graph

import "testing"

func TestReasonKind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"model output", "model output"},
		{"", "no producer"},
		{"aten::view (op 8) splits or merges the channel dim with another dim",
			"aten::view splits or merges the channel dim with another dim"},
		{"aten::view in features.3 splits or merges the channel dim with another dim",
			"aten::view splits or merges the channel dim with another dim"},
		{"output of aten::view (op 12) is not followed", "output of aten::view is not followed"},
		{"aten::permute in head moves the channel dim", "aten::permute moves the channel dim"},
		{"aten::flatten in head: channels do not match the output shape", "aten::flatten: channels do not match the output shape"},
		{"unsupported op my::op in block.2", "unsupported op my::op"},
		{"grouped conv layer1.0.conv2 (groups=4)", "grouped conv"},
		{"grouped transposed conv up.1 (groups=4)", "grouped transposed conv"},
		{"grouped conv b.conv (groups=4, 64 to 128 channels) changes the channel count",
			"grouped conv changes the channel count"},
		{"grouped conv b.conv (groups=4) on concatenated or strided channels that do not split into whole groups",
			"grouped conv on concatenated or strided channels that do not split into whole groups"},
		{"depthwise conv features.1.conv on strided channels", "depthwise conv on strided channels"},
		{"depthwise conv features.1.conv on concatenated or strided channels",
			"depthwise conv on concatenated or strided channels"},
		{"fc.weight:1 does not fit tensor fc.weight", "a member does not fit its tensor"},
		{"emb.weight is read where its channels are not followed: aten::index (op 3) reads them where the analysis does not follow channels",
			"a parameter is read where its channels are not followed: aten::index reads them where the analysis does not follow channels"},
		{"value 17 is read before it is written", "a value is read before it is written"},
		{"no conv or linear produces these channels", "no conv or linear produces these channels"},
	} {
		if got := ReasonKind(tc.in); got != tc.want {
			t.Errorf("ReasonKind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
