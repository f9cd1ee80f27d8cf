//go:build cgo

package prune

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestL2NormEquivalenceAnyRank is checkEquivalence on the models of every
// input rank: an [N,F] MLP, a [N,C,L] signal CNN, a [N,C,D,H,W] video net
// and transposed-conv decoders, scripted and traced.
func TestL2NormEquivalenceAnyRank(t *testing.T) {
	dir, meta := fixtures.RankModels(t)
	for _, name := range fixtures.RankNames(meta) {
		t.Run(name, func(t *testing.T) {
			m := meta[name[:strings.LastIndex(name, "_")]]
			checkEquivalence(t, filepath.Join(dir, name+".pt"), m.InputShape, 0.5, false)
		})
	}
}
