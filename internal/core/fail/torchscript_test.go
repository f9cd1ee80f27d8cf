package fail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The testdata messages are libtorch 1.13's own, raised by models loaded
// from files, as gopruner runs them (the graph optimiser off, which keeps
// every frame): the demo CNN given too few input dimensions, a scripted
// torchvision resnet18 given too few channels (run with the optimiser on),
// a BatchNorm1d after a Conv2d two submodules down, in a model whose
// source names forward's first argument s, and a traced resnet18.
func TestTorchScript(t *testing.T) {
	for _, tc := range []struct{ file, prefix, want string }{
		{"ts_democnn.txt", "input shape [1 1 28] does not fit the model: ",
			"input shape [1 1 28] does not fit the model: ValueError: expected 4D input (got 3D input) (raised in layer bn1)"},
		{"ts_resnet18.txt", "",
			"RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 1, 64, 64] to have 3 channels, but got 1 channels instead (raised in layer conv1)"},
		{"ts_nested.txt", "forward: ", "forward: ValueError: expected 2D or 3D input (got 4D input) (raised in layer features.1.norm)"},
		// The same with the optimiser on: the calls were inlined, the
		// traceback has the innermost frame only, and no layer.
		{"ts_inlined.txt", "", "ValueError: expected 2D or 3D input (got 4D input)"},
		// A traced resnet18: the original code is a list of Python frames.
		{"ts_traced.txt", "",
			"RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 1, 64, 64] to have 3 channels, but got 1 channels instead (raised in layer conv1)"},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := TorchScript(tc.prefix + string(b)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.file, got, tc.want)
		}
	}
	for _, msg := range []string{
		"model m.pt: no such file",
		tsFailed, // nothing after it: kept whole
		tsFailed + "\nTraceback of TorchScript (most recent call last):\n  File \"x.py\", line 1, in forward\n    y = f(x)\n        ~ <--- HERE\n",
	} {
		if got := TorchScript(msg); got != msg {
			t.Errorf("%q shortened to %q", msg, got)
		}
	}
}

func FuzzTorchScript(f *testing.F) {
	for _, name := range []string{"ts_democnn.txt", "ts_resnet18.txt", "ts_nested.txt", "ts_inlined.txt", "ts_traced.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, msg string) {
		got := TorchScript(msg)
		if !strings.Contains(msg, tsFailed) && got != msg {
			t.Fatalf("a message without a traceback changed: %q", got)
		}
		if len(got) > len(msg)+len(" (raised in layer )") {
			t.Fatalf("longer than the message: %q", got)
		}
	})
}
