//go:build cgo

// Command exportir writes the IR of test fixtures as JSON, so the pure
// packages' real-IR tests (internal/core/graph, internal/core/flops) run
// against what libtorch really exports. `make fixtures` runs it:
//
//	exportir -fixtures .cache/fixtures -out .cache/ir resnet18_scripted ...
//
// For each NAME it loads FIXTURES/NAME.pt, traces it once on an example
// input of the sidecar's input_shape and writes OUT/NAME.json. A dump newer
// than its model is kept.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gopruner/gopruner/internal/core/atomicfile"

	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/torch"
)

func main() {
	fixtures := flag.String("fixtures", ".cache/fixtures", "fixture directory (scripts/make_fixtures.py)")
	out := flag.String("out", ".cache/ir", "directory for NAME.json")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: exportir [-fixtures DIR] [-out DIR] NAME...")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, name := range flag.Args() {
		if err := export(*fixtures, *out, name); err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
	}
}

func export(fixtures, out, name string) error {
	pt := filepath.Join(fixtures, name+".pt")
	dst := filepath.Join(out, name+".json")
	src, err := os.Stat(pt)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dst); err == nil && st.ModTime().After(src.ModTime()) {
		return nil
	}
	var meta struct {
		InputShape []int64 `json:"input_shape"`
	}
	data, err := os.ReadFile(filepath.Join(fixtures, name+".json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return fmt.Errorf("%s.json: %w", name, err)
	}
	m, err := torch.Load(pt, torch.CPU)
	if err != nil {
		return err
	}
	defer m.Close()
	x, err := model.Example(meta.InputShape, torch.CPU)
	if err != nil {
		return err
	}
	defer x.Close()
	js, err := m.ExportIR(x)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, js, 0o644)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "exportir:", err)
	os.Exit(1)
}
