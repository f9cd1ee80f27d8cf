package ir

import (
	"strings"
	"testing"
)

func TestParseOutputInfo(t *testing.T) {
	tests := []struct {
		name, js   string
		prediction string
		str        string
		err        string
	}{
		{"bare tensor", `{"structure":"tensor","paths":[""],"selected":0}`, "the output", "tensor", ""},
		{"dict", `{"structure":"dict(aux: tensor, out: tensor)","paths":["aux","out"],"selected":1}`, "out", `dict(aux: tensor, out: tensor), prediction "out"`, ""},
		{"nothing selected", `{"structure":"dict(out: tensor)","paths":["out"],"selected":-1,"error":"output \"x\": no \"x\""}`, "", "dict(out: tensor)", ""},
		{"selected past the paths", `{"structure":"tensor","paths":[""],"selected":1}`, "", "", "selected 1 of 1 paths"},
		{"unselected without a reason", `{"structure":"tensor","paths":[""],"selected":-1}`, "", "", "selected -1 of 1 paths"},
		{"not JSON", `{"structure":`, "", "", "decode output info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOutputInfo([]byte(tt.js))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Prediction(); got != tt.prediction {
				t.Errorf("prediction %q, want %q", got, tt.prediction)
			}
			if got := o.String(); got != tt.str {
				t.Errorf("string %q, want %q", got, tt.str)
			}
		})
	}
}

func TestGraphOutputPathsMatchOutputs(t *testing.T) {
	base := `{"format":"gopruner-ir/1","inputs":[0],"outputs":[0],%s"values":[{"id":0,"kind":"tensor"}],"ops":[],"params":{}}`
	for _, tt := range []struct{ output, err string }{
		{``, ""},
		{`"output":{"structure":"tensor","paths":[""],"selected":0},`, ""},
		{`"output":{"structure":"tuple(tensor, tensor)","paths":["0","1"],"selected":0},`, "2 output paths for 1 outputs"},
	} {
		_, err := Parse([]byte(strings.Replace(base, "%s", tt.output, 1)))
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("output %s: error %v, want %q", tt.output, err, tt.err)
		}
	}
}
