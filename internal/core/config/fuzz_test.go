package config

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as Pruning.yaml. Load must never panic,
// must fail only with a usage *Error, and whatever it accepts must print and
// survive a YAML round trip.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		oldStyle,
		"",
		"alff: 8\n",
		"P: 1.5\n",
		"cart: \"0,0,1\"\n",
		"my_pruning:\n  algoritm: TaylorFOWeight\n  cart: [0, cpu, \"cuda:1\"]\n",
		"L2Norm: &a\n  P: 0.2\nmy_pruning: *a\n",
		"path:\n  model: m.pt\n  dataset: ~\n",
		"input_shape: [1, 3, 8, 8]\nmean: [0.5]\nstd: [0.5, 0.5, 0.5]\n",
		"- a\n- b\n",
		"a: &x [*x]\n",
		"P: .inf\nalf: 1e400\n",
		"---\nP: 0.3\n---\nP: 0.4\n",
		"{P: [}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(Sources{Content: data, File: "fuzz.yaml"})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v (%T) is not a usage *Error", err, err)
			}
			return
		}
		if err := c.Print(io.Discard); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := c.WriteYAML(&buf); err != nil {
			t.Fatal(err)
		}
		back, err := Load(Sources{Content: buf.Bytes(), File: "dump.yaml"})
		if err != nil {
			t.Fatalf("dump of an accepted config does not load: %v\ninput:\n%s\ndump:\n%s", err, data, buf.String())
		}
		assertSameSettings(t, back, c)
		if err := c.WriteJSON(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
