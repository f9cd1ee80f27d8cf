//go:build cgo

package torchengine

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/torch"
)

// renorm keeps a weight-normalised layer's weight w = g·v/‖v‖ exact when
// surgery removes part of each row of v (its input channels): ‖v‖ shrinks,
// so g's rows are scaled by ‖v kept‖/‖v‖, and the kept part of w keeps its
// values. before holds ‖v‖ of the rows that stay.
type renorm struct {
	v, g   string
	before []float64
}

// renormsBefore reads, ahead of surgery, the row norms of every direction
// that a slice cuts across its norm (cut.Slice.Renorm).
func renormsBefore(m *torch.Module, sl []cut.Slice) ([]renorm, error) {
	var out []renorm
	for _, s := range sl {
		if s.Renorm == "" {
			continue
		}
		n, err := criteria.FilterNorms(m, s.Tensor, 0)
		if err != nil {
			return nil, fmt.Errorf("weight norm of %s: %w", s.Tensor, err)
		}
		if rows, ok := s.Keep[0]; ok {
			kept := make([]float64, len(rows))
			for i, r := range rows {
				if r < 0 || r >= len(n) {
					return nil, fmt.Errorf("weight norm of %s: row %d outside %d", s.Tensor, r, len(n))
				}
				kept[i] = n[r]
			}
			n = kept
		}
		out = append(out, renorm{v: s.Tensor, g: s.Renorm, before: n})
	}
	return out, nil
}

// apply scales g once v has been cut. A row whose norm was zero stays as
// it was: its weight was zero (or undefined) before as well.
func (r renorm) apply(m *torch.Module) error {
	after, err := criteria.FilterNorms(m, r.v, 0)
	if err != nil {
		return err
	}
	return m.EditFloat32s(r.g, func(_ []int64, vals []float32) error {
		if len(vals) != len(after) || len(after) != len(r.before) {
			return fmt.Errorf("%s has %d values for %d rows of %s", r.g, len(vals), len(after), r.v)
		}
		for i := range vals {
			if r.before[i] > 0 {
				vals[i] = float32(float64(vals[i]) * after[i] / r.before[i])
			}
		}
		return nil
	})
}
