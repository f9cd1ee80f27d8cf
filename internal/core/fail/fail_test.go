package fail

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"runtime", base, 1},
		{"usage", Usage(base), 2},
		{"wrapped usage", fmt.Errorf("load m.pt: %w", Usage(base)), 2},
		{"usagef", Usagef("alf: %d must be positive", -1), 2},
	}
	for _, c := range cases {
		if got := Code(c.err); got != c.want {
			t.Errorf("%s: Code = %d, want %d", c.name, got, c.want)
		}
	}
	if Usage(nil) != nil {
		t.Error("Usage(nil) must stay nil")
	}
	if !errors.Is(Usage(base), base) {
		t.Error("Usage must keep the chain")
	}
}
