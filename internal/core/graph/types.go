// Package graph finds the channel groups of a traced model: the sets of
// tensor slices that must lose the same channels together for the network to
// stay well-formed (a conv's filters, its bias, the BatchNorm after it, the
// input slice of every consumer, the other branch of a residual add, ...).
// It is pure Go over package ir and never touches libtorch.
package graph

import (
	"fmt"
	"iter"
	"slices"
)

// Member is one tensor dimension that a group's channels index.
//
// Channel c of the group (0 <= c < Group.Channels) owns the indices
// [Offset + c*Stride, Offset + (c+1)*Stride) of dimension Dim of Tensor.
// Stride is 1 except where a flatten feeds a Linear (then it is H*W) or a
// group channel is one conv group of a grouped conv that changes the
// channel count (Cin/groups or Cout/groups, on its side); Offset
// is non-zero where the group is one part of a concatenation.
type Member struct {
	Tensor string `json:"tensor"`
	Dim    int    `json:"dim"`
	Offset int    `json:"offset"`
	Stride int    `json:"stride"`
}

// String is the member as plan.json spells it: "tensor:dim".
func (m Member) String() string { return fmt.Sprintf("%s:%d", m.Tensor, m.Dim) }

// Indices returns the indices of m's dimension that the given group channels
// own, ascending when channels is ascending.
func (m Member) Indices(channels []int) []int {
	return slices.AppendSeq(make([]int, 0, len(channels)*max(m.Stride, 1)), m.each(channels))
}

// each yields Indices' indices without building the list.
func (m Member) each(channels []int) iter.Seq[int] {
	stride := max(m.Stride, 1)
	return func(yield func(int) bool) {
		for _, c := range channels {
			for k := range stride {
				if !yield(m.Offset + c*stride + k) {
					return
				}
			}
		}
	}
}

// Group is one channel space: Channels channels that are pruned together.
type Group struct {
	ID       int `json:"id"`
	Channels int `json:"channels"`
	// Members lists every parameter/buffer dimension indexed by the group, in
	// graph order, without duplicates.
	Members []Member `json:"members"`
	// Producers are the members that hold the group's filters: the output
	// dimension (dim 0) of each conv/linear weight that writes the space. The
	// L2Norm and Taylor criteria score channels over these.
	Producers []Member `json:"producers"`
	// Layers are the module paths of the layers whose output channels are
	// this group ("layer1.0.conv1"); `iskl` matches against them.
	Layers []string `json:"layers"`
	// Block, above 1, is the granularity of the group: its channels go in
	// whole blocks of Block consecutive channels (channel c is in block
	// c/Block), because a grouped convolution or a GroupNorm reads them and
	// can only lose whole groups. Channels is a multiple of it; 0 or 1: any channel may go
	// alone.
	Block int `json:"block,omitempty"`
	// GroupedConvs are the convolutions (groups > 1) whose input and output
	// channels are this group's: channel c in is channel c out, or, for a
	// conv that changes the channel count, group channel c is conv group c
	// (its Cin/groups input and Cout/groups output channels). Their groups
	// argument becomes the kept rows of the weight's dim 0 over PerGroup. The
	// GroupNorms over the group's channels are listed too (Weight is the
	// norm's affine weight): their num_groups follows the same rule.
	GroupedConvs []GroupedConv `json:"grouped_convs,omitempty"`
	// DepthwiseConvs are the weights of the GroupedConvs with one channel per
	// group (groups equals the channel count), listed for graph --json
	// readers that predate GroupedConvs.
	DepthwiseConvs []string `json:"depthwise_convs,omitempty"`
	// LayerNorms are the weight names of LayerNorms over this group's
	// channels (channels-last blocks), whose normalized_shape must be set to
	// the new count when the group is pruned.
	LayerNorms []string `json:"layer_norms,omitempty"`
	// SizedWeights are the weights among this group's filters that forward
	// reshapes with their filter count written in (weight standardisation's
	// `w.reshape(1, out_channels, -1)`): surgery sets that count to the
	// filters kept.
	SizedWeights []string `json:"sized_weights,omitempty"`
	// Frozen groups are never pruned; Reason says why (model input/output,
	// an op the analysis does not understand, a partial slice, ...).
	Frozen bool   `json:"frozen"`
	Reason string `json:"reason,omitempty"`
	// Exact groups are function-preserving: the pruned model computes what
	// the original computes with the removed channels zeroed. A group whose
	// channels a LayerNorm normalizes over is not (removing channels changes
	// its mean and variance); Inexact says why. Criteria and the search
	// treat both kinds alike.
	Exact   bool   `json:"exact"`
	Inexact string `json:"inexact,omitempty"`
}

// Prunable reports whether the group may lose channels.
func (g *Group) Prunable() bool { return !g.Frozen && len(g.Producers) > 0 }

// GroupedConv is a convolution whose groups argument follows a group's
// channels: Weight is its weight parameter, PerGroup the rows of the
// weight's dim 0 per conv group (1 for depthwise; Cout/groups for a conv,
// Cin/groups for a transposed conv). Its new groups count is the kept size
// of the weight's dim 0 over PerGroup.
type GroupedConv struct {
	Weight   string `json:"weight"`
	PerGroup int    `json:"per_group"`
}

// Unit is the smallest number of channels the group can lose or keep: its
// Block, or 1.
func (g *Group) Unit() int { return max(g.Block, 1) }

// CheckBlocks reports an error unless kept (ascending channel indices) is a
// union of whole blocks of the group.
func (g *Group) CheckBlocks(kept []int) error { return CheckBlocks(kept, g.Unit()) }

// CheckBlocks reports an error unless kept (ascending indices) is a union of
// whole aligned blocks of b consecutive indices.
func CheckBlocks(kept []int, b int) error {
	if b <= 1 {
		return nil
	}
	if len(kept)%b != 0 {
		return fmt.Errorf("keeps %d channels, not a whole number of blocks of %d", len(kept), b)
	}
	for i := 0; i < len(kept); i += b {
		if kept[i]%b != 0 {
			return fmt.Errorf("kept channel %d does not start a block of %d", kept[i], b)
		}
		for j := 1; j < b; j++ {
			if kept[i+j] != kept[i]+j {
				return fmt.Errorf("keeps part of the block of %d channels at %d", b, kept[i])
			}
		}
	}
	return nil
}

// SizedOp is an op on an activation whose size argument the code writes
// a channel count into: a view or reshape's size list
// (`x.view(b, self.inter, -1)`, LeNet's `x.view(-1, 16 * 5 * 5)`), or the
// part size of a split along the channels (Res2Net's
// `torch.split(x, width, 1)`, Entry 0). Once channels go, that entry
// must become the size of dim Dim of value Value (Analysis.ValueShape).
// Site finds the op in the module's code (ir.Op.Site).
type SizedOp struct {
	Site  string
	Entry int
	Value int
	Dim   int
}
