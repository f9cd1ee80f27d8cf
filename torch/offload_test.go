//go:build cgo

package torch

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestShapePassOffloadsTensors: a shape-only pass lets the tensors of a
// model loaded from a file wait in the file (cgo/origin.cc) and reads them
// back unchanged; it leaves alone a tensor that a handle outside still
// holds, one that no longer matches the file, and every tensor of a model
// loaded from memory or of a file that changed on disk.
func TestShapePassOffloadsTensors(t *testing.T) {
	path, meta := fixtures.Model(t, "mobilenet_v2_scripted")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	defer x.Close()
	// run runs the IR export's shape-only pass and says how many bytes it
	// let go.
	run := func(m *Module) int64 {
		t.Helper()
		if _, usedMeta, err := m.ExportIRPass(PassMeta, x); err != nil || !usedMeta {
			t.Fatalf("meta export: %v (meta %v)", err, usedMeta)
		}
		return must[int64](t)(m.offloaded())
	}
	// same says whether m serialises to want: the same tensors. (A tensor
	// handle held outside changes the archive's bytes, so this is asked
	// with none held.)
	same := func(m *Module, want []byte) {
		t.Helper()
		if got := must[[]byte](t)(m.Bytes()); !bytes.Equal(got, want) {
			t.Fatal("the module's tensors changed over the shape-only pass")
		}
	}
	pass := func(m *Module, want []byte) int64 {
		t.Helper()
		n := run(m)
		same(m, want)
		return n
	}

	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	before := must[[]byte](t)(m.Bytes())
	all := pass(m, before)
	t.Logf("offloaded %d of the file's %d bytes", all, len(file))
	// Every tensor of a page or more goes, less the pages its block shares
	// at either end.
	if all < int64(len(file))*8/10 {
		t.Fatalf("offloaded %d bytes of a %d-byte file", all, len(file))
	}
	if again := pass(m, before); again != all {
		t.Errorf("a second pass offloaded %d bytes, the first %d", again, all)
	}

	// The largest parameter, held by a handle: its bytes stay.
	var big string
	var bigN int64
	for _, name := range must[[]string](t)(m.ParameterNames()) {
		p := must[*Tensor](t)(m.Get(name))
		n := must[int64](t)(p.numel())
		p.Close()
		if n > bigN {
			big, bigN = name, n
		}
	}
	held := must[*Tensor](t)(m.Get(big))
	vals := must[[]float32](t)(held.Float32s())
	if n := run(m); n > all-4*bigN+8192 {
		t.Errorf("with %s held, offloaded %d bytes of %d", big, n, all)
	}
	if got := must[[]float32](t)(held.Float32s()); !slices.Equal(got, vals) {
		t.Errorf("the held %s changed", big)
	}
	held.Close()
	same(m, before)

	// Changed by value: no longer the file's bytes, so it stays.
	if err := m.EditFloat32s(big, func(_ []int64, v []float32) error {
		for i := range v {
			v[i] *= 2
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	edited := must[[]byte](t)(m.Bytes())
	if n := pass(m, edited); n > all-4*bigN+8192 {
		t.Errorf("with %s edited, offloaded %d bytes of %d", big, n, all)
	}

	// From memory: no file to wait in.
	b := must[*Module](t)(LoadBytes(file, CPU))
	defer b.Close()
	if n := pass(b, before); n != 0 {
		t.Errorf("a module loaded from memory offloaded %d bytes", n)
	}

	// A file that changed after the load holds other bytes: nothing goes.
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "m.pt")
	if err := os.WriteFile(copyPath, file, 0o644); err != nil {
		t.Fatal(err)
	}
	c := must[*Module](t)(Load(copyPath, CPU))
	defer c.Close()
	if err := os.WriteFile(copyPath, make([]byte, len(file)), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := pass(c, before); n != 0 {
		t.Errorf("offloaded %d bytes to a file that no longer holds them", n)
	}
}

// TestShapePassOffloadsRoom: a pass lets wait only the room it needs (32 MB
// in cgo/origin.cc), the largest blocks first, not a large model's whole
// file: reading bytes back costs their page faults and a copy.
func TestShapePassOffloadsRoom(t *testing.T) {
	path, meta := fixtures.Model(t, "resnet50_scripted")
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	before := must[[]byte](t)(m.Bytes())
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	defer x.Close()
	if _, usedMeta, err := m.ExportIRPass(PassMeta, x); err != nil || !usedMeta {
		t.Fatalf("meta export: %v (meta %v)", err, usedMeta)
	}
	n := must[int64](t)(m.offloaded())
	// resnet50's largest block is 9.4 MB: the last one taken may pass the
	// room by less than that.
	const room, largest = 32 << 20, 9437184
	if n < room || n >= room+largest {
		t.Errorf("offloaded %d bytes; want the room, %d, and less than one block more", n, room)
	}
	if got := must[[]byte](t)(m.Bytes()); !bytes.Equal(got, before) {
		t.Error("the module's tensors changed over the shape-only pass")
	}
}
