// Package stats holds the small summary statistics that timing and
// benchmark code shares.
package stats

import "slices"

// Median is the middle value of xs (the mean of the two middle ones for an
// even count), 0 for none. xs is left as it is.
func Median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}
