package kinds

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	if c, err := Parse("criterion", "L2Norm", Criteria); err != nil || c != L2Norm {
		t.Errorf("Parse(L2Norm) = %v, %v", c, err)
	}
	if _, err := Parse("select", "best", Selects); err == nil || !strings.Contains(err.Error(), `unknown select "best" (want acc or acc_per_mac or loss)`) {
		t.Errorf("Parse(best) error = %v", err)
	}
	if Or(Step(""), StepChannels) != StepChannels || Or(StepMACs, StepChannels) != StepMACs {
		t.Error("Or does not default only the empty value")
	}
	if !Valid(AlgorithmL2Norm, Algorithms) || Valid(Algorithm("l2norm"), Algorithms) {
		t.Error("Valid is not exact")
	}
	if got := strings.Join(Names(Steps), ","); got != "channels,macs" {
		t.Errorf("Names(Steps) = %s", got)
	}
}

func TestNewSearchKinds(t *testing.T) {
	if got := strings.Join(Names(Schedules), ","); got != "constant,decay" {
		t.Errorf("Names(Schedules) = %s", got)
	}
	if got := strings.Join(Names(TieBreaks), ","); got != "none,macs,loss" {
		t.Errorf("Names(TieBreaks) = %s", got)
	}
	if _, err := Parse("tie_break", "acc", TieBreaks); err == nil || !strings.Contains(err.Error(), "none or macs or loss") {
		t.Errorf("Parse(acc) error = %v", err)
	}
}
