package stats

import (
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{1.5}, 1.5},
		{[]float64{1.71, 1.46, 1.52}, 1.52},
		{[]float64{1.4, 1.2, 1.6, 1.3}, 1.35},
		{[]float64{3, -1, 2, 2}, 2},
	} {
		in := slices.Clone(c.in)
		if got := Median(in); got != c.want {
			t.Errorf("Median(%v) = %g, want %g", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("Median reordered its input: %v, was %v", in, c.in)
		}
	}
}
