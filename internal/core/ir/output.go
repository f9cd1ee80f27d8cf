package ir

import (
	"encoding/json"
	"fmt"
	"strings"
)

// OutputInfo describes what forward returned: a tensor, or any nesting of
// tuples, NamedTuples, lists and dicts of them. The graph's Outputs are its
// tensors in the order of Paths.
type OutputInfo struct {
	// Structure is the result's type on one line, e.g.
	// "dict(out: tensor, aux: tensor)" or
	// "GoogLeNetOutputs(logits: tensor, aux_logits2: None, aux_logits1: None)".
	Structure string `json:"structure"`
	// Paths name each tensor by the dict keys, NamedTuple field names and
	// tuple/list indices that lead to it, joined by dots ("out", "aux.0");
	// a bare tensor's path is "".
	Paths []string `json:"paths"`
	// Selected is the index in Paths of the prediction (the tensor that the
	// loss, accuracy and run checks use) under the output setting, -1 when
	// the setting names nothing the result has; Error then says why and
	// which paths there are.
	Selected int    `json:"selected"`
	Error    string `json:"error,omitempty"`
}

// ParseOutputInfo decodes the JSON the shim gives for a forward result.
func ParseOutputInfo(data []byte) (*OutputInfo, error) {
	var o OutputInfo
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("decode output info: %w", err)
	}
	return &o, o.check()
}

func (o *OutputInfo) check() error {
	if o.Selected >= len(o.Paths) || (o.Selected < 0 && o.Error == "") {
		return fmt.Errorf("output info: selected %d of %d paths", o.Selected, len(o.Paths))
	}
	return nil
}

// Prediction names the selected tensor for messages: its path, or "the
// output" for a bare tensor.
func (o *OutputInfo) Prediction() string {
	if o == nil || o.Selected < 0 {
		return ""
	}
	if p := o.Paths[o.Selected]; p != "" {
		return p
	}
	return "the output"
}

// String is the structure with the prediction marked, for reports:
// `dict(out: tensor, aux: tensor), prediction "out"`.
func (o *OutputInfo) String() string {
	if o == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(o.Structure)
	if o.Selected >= 0 && o.Paths[o.Selected] != "" {
		fmt.Fprintf(&b, ", prediction %q", o.Paths[o.Selected])
	}
	return b.String()
}
