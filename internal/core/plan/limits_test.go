package plan

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// manyTensors is a plan.json naming n tensors; small entries when empty,
// so that a million of them stay under MaxPlanBytes.
func manyTensors(n int, empty bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"format": "gopruner-plan/1", "input_shape": [1, 3, 8, 8], "groups": [], "tensors": {`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if empty {
			fmt.Fprintf(&b, `"t%d":{}`, i)
		} else {
			fmt.Fprintf(&b, `"t%d.weight": {"shape_before": [4], "shape_after": [2], "kept": {"0": [0, 1]}}`, i)
		}
	}
	b.WriteString("}}")
	return b.Bytes()
}

func TestPlanLimits(t *testing.T) {
	big := manyTensors(1_000_000, true)
	groups := []byte(`{"format": "gopruner-plan/1", "groups": [` +
		strings.TrimSuffix(strings.Repeat(`{"members": [], "channels_before": 1, "kept": [0]},`, MaxPlanGroups+1), ",") + `], "tensors": {}}`)
	for _, c := range []struct {
		name  string
		data  []byte
		wants []string
	}{
		{"a million tensors", big, []string{"plan big.json", "tensors", "more than 100000 entries"}},
		{"too many groups", groups, []string{"groups", "more than 100000 entries"}},
		{"too large", append(bytes.Repeat([]byte(" "), MaxPlanBytes), '{', '}'), []string{"larger than"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse(c.data, "big.json")
			t.Logf("%d bytes refused in %v: %v", len(c.data), time.Since(start), err)
			if err == nil || !fail.IsUsage(err) {
				t.Fatalf("Parse: %v, want a usage error", err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
		})
	}
	// At the limit it still parses.
	p, err := Parse(manyTensors(1000, false), "ok.json")
	if err != nil || len(p.Tensors) != 1000 {
		t.Fatalf("1000 tensors: %v", err)
	}
	// Read refuses a file over the size limit without reading it all.
	path := filepath.Join(t.TempDir(), "sparse.json")
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 1<<30); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("1 GB plan: %v", err)
	}
}
