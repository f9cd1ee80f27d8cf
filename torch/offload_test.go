//go:build cgo

package torch

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// offloadFixture is the scripted mobilenet_v2 the offload tests load: its
// path, its bytes and an input (closed with the test).
func offloadFixture(t *testing.T) (string, []byte, *Tensor) {
	path, meta := fixtures.Model(t, "mobilenet_v2_scripted")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := must[*Tensor](t)(Randn(meta.InputShape, CPU))
	t.Cleanup(x.Close)
	return path, file, x
}

// TestShapePassOffloadsTensors: a shape-only pass lets the tensors of a
// model loaded from a file wait in the file (cgo/origin.cc), and the save
// reads them back unchanged; it leaves alone a tensor that a handle
// outside still holds, one that no longer matches the file, and every
// tensor of a model loaded from memory or of a file that changed on disk.
func TestShapePassOffloadsTensors(t *testing.T) {
	path, file, x := offloadFixture(t)
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

// TestParkedTensorsWaitUntilRead: after a shape-only pass the tensors go on
// waiting in the file until a call needs them. Read copies one out and
// leaves it waiting; Get, the forward, Clone and the save read them back;
// a cut takes only the kept bytes from the file. Each gives what a module
// loaded from memory (which never parks) gives, byte for byte. A file that
// changes while they wait fails the call that reads them.
func TestParkedTensorsWaitUntilRead(t *testing.T) {
	path, file, x := offloadFixture(t)
	ref := must[*Module](t)(LoadBytes(file, CPU))
	defer ref.Close()
	park := func(m *Module) int64 {
		t.Helper()
		if _, usedMeta, err := m.ExportIRPass(PassMeta, x); err != nil || !usedMeta {
			t.Fatalf("meta export: %v (meta %v)", err, usedMeta)
		}
		n := must[int64](t)(m.offloaded())
		if n == 0 {
			t.Fatal("nothing parked")
		}
		return n
	}
	values := func(m *Module, name string, get func(string) (*Tensor, error)) []float32 {
		t.Helper()
		v := must[*Tensor](t)(get(name))
		defer v.Close()
		return must[[]float32](t)(v.Float32s())
	}
	m := must[*Module](t)(Load(path, CPU))
	defer m.Close()
	parked := park(m)

	// The largest weight: Read leaves it waiting, Get brings it back.
	big, bigN := "", int64(0)
	for _, name := range must[[]string](t)(ref.ParameterNames()) {
		p := must[*Tensor](t)(ref.Get(name))
		if n := must[int64](t)(p.numel()); n > bigN {
			big, bigN = name, n
		}
		p.Close()
	}
	want := values(ref, big, ref.Get)
	if got := values(m, big, m.Read); !slices.Equal(got, want) {
		t.Fatalf("Read(%s) differs from the loaded tensor", big)
	}
	if n := must[int64](t)(m.offloaded()); n != parked {
		t.Fatalf("Read brought bytes back: %d parked, %d before", n, parked)
	}
	if got := values(m, big, m.Get); !slices.Equal(got, want) {
		t.Fatalf("Get(%s) differs from the loaded tensor", big)
	}
	if n := must[int64](t)(m.offloaded()); n > parked-4*bigN+8192 {
		t.Fatalf("Get left %s waiting: %d parked, %d before", big, n, parked)
	}

	// The forward, ForwardAll and Clone read everything back first.
	fwd := func(m *Module) []float32 { return forwardValues(t, m, x) }
	wantY := fwd(ref)
	park(m)
	if got := fwd(m); !slices.Equal(got, wantY) {
		t.Fatal("the forward of a parked module differs")
	}
	if n := must[int64](t)(m.offloaded()); n != 0 {
		t.Fatalf("%d bytes still parked after a forward", n)
	}
	park(m)
	ys, _, err := m.ForwardAll(true, x)
	if err != nil {
		t.Fatal(err)
	}
	got := must[[]float32](t)(ys[0].Float32s())
	for _, y := range ys {
		y.Close()
	}
	if !slices.Equal(got, wantY) {
		t.Fatal("ForwardAll of a parked module differs")
	}
	park(m)
	c := must[*Module](t)(m.Clone())
	if got := fwd(c); !slices.Equal(got, wantY) {
		t.Fatal("the clone of a parked module differs")
	}
	c.Close()

	// A cut from the file (every dim in one pass) against the in-place cut
	// of the module from memory; dims 0 and 1, 1 alone and 0 alone.
	var edits []Slice
	every := func(n int64, step int) []int {
		var out []int
		for i := 0; i < int(n); i += step {
			out = append(out, i)
		}
		return out
	}
	for _, name := range must[[]string](t)(ref.ParameterNames()) {
		p := must[*Tensor](t)(ref.Get(name))
		shape := must[[]int64](t)(p.Shape())
		p.Close()
		switch {
		case len(shape) == 4 && shape[1] > 1 && len(edits)%2 == 0:
			edits = append(edits, Slice{Tensor: name, Keep: map[int][]int{0: every(shape[0], 2), 1: every(shape[1], 3)}})
		case len(shape) == 4 && shape[1] > 1:
			edits = append(edits, Slice{Tensor: name, Keep: map[int][]int{1: every(shape[1], 2)}})
		case len(shape) == 2:
			edits = append(edits, Slice{Tensor: name, Keep: map[int][]int{1: every(shape[1], 5)}})
		case len(shape) == 1 && shape[0] >= 1024:
			edits = append(edits, Slice{Tensor: name, Keep: map[int][]int{0: every(shape[0], 4)}})
		}
	}
	park(m)
	gotIn := must[int](t)(m.prune(edits, nil))
	wantIn := must[int](t)(ref.prune(edits, nil))
	if gotIn != wantIn || gotIn < len(edits)*9/10 {
		t.Fatalf("%d of %d tensors cut in place, %d in the module from memory", gotIn, len(edits), wantIn)
	}
	if !bytes.Equal(must[[]byte](t)(m.Bytes()), must[[]byte](t)(ref.Bytes())) {
		t.Fatal("the cut of a parked module differs from the cut of the loaded one")
	}

	// The file changes while its bytes wait: the call that needs them fails
	// and says why; the module can still be freed.
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "m.pt")
	if err := os.WriteFile(copyPath, file, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct {
		name string
		run  func(*Module) error
	}{
		{"Bytes", func(m *Module) error { _, err := m.Bytes(); return err }},
		{"Read", func(m *Module) error { v, err := m.Read(big); v.Close(); return err }},
		{"Forward", func(m *Module) error { y, err := m.Forward(true, x); y.Close(); return err }},
	} {
		if err := os.WriteFile(copyPath, file, 0o644); err != nil {
			t.Fatal(err)
		}
		cm := must[*Module](t)(Load(copyPath, CPU))
		park(cm)
		changed := slices.Clone(file)
		for i := 4096; i < len(changed); i++ {
			changed[i] ^= 0x5a
		}
		if err := os.WriteFile(copyPath, changed, 0o644); err != nil {
			t.Fatal(err)
		}
		err := call.run(cm)
		if err == nil || !strings.Contains(err.Error(), "changed while gopruner ran") {
			t.Errorf("%s after the file changed: %v", call.name, err)
		}
		cm.Close()
	}
}

// TestEveryModuleCallUnparks reads the shim's sources: every bridge call
// that takes a module reads back the tensors waiting in its file before it
// can read or hand them out (gpt::unpark, or run_forward, which does), or
// handles the waiting tensor it touches itself (h->parked), or is one of
// the calls that read no tensor bytes. A new call that forgot would read
// zeros where the weights wait.
func TestEveryModuleCallUnparks(t *testing.T) {
	noBytes := map[string]string{
		"gpt_module_free":           "the blocks go with the module",
		"gpt_module_unit_functions": "counts functions",
		"gpt_module_offloaded":      "counts parked bytes",
		"gpt_module_has_method":     "looks up a method",
		"gpt_module_bn_modes":       "reads the graph",
		"gpt_module_set_threads":    "a setting",
		"gpt_module_set_rng":        "a setting",
		"gpt_module_names":          "names only",
		"gpt_module_object_types":   "type names only",
		// Both are export_ir_call, checked below: shapes only, or a real
		// pass after an unpark.
		"gpt_module_export_ir":       "export_ir_call",
		"gpt_module_export_ir_train": "export_ir_call",
	}
	files, err := filepath.Glob("../cgo/*.cc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shim sources: %v", err)
	}
	head := regexp.MustCompile(`(?m)^gpt_err (\w+)\(gpt_module (\w+)[,)]`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		for _, m := range head.FindAllStringSubmatchIndex(src, -1) {
			name := src[m[2]:m[3]]
			body := src[m[0]:]
			if end := strings.Index(body, "\n}\n"); end >= 0 {
				body = body[:end]
			}
			seen++
			if why, ok := noBytes[name]; ok {
				if why == "export_ir_call" && !strings.Contains(body, "export_ir_call(") {
					t.Errorf("%s: %s no longer calls export_ir_call", f, name)
				}
				continue
			}
			if name == "export_ir_call" {
				if !strings.Contains(body, "gpt::unpark(h);\n  *json = gpt::dup(export_ir(h, in, train, false));") {
					t.Errorf("%s: export_ir_call runs its real pass without an unpark first", f)
				}
				continue
			}
			if !strings.Contains(body, "unpark(") && !strings.Contains(body, "run_forward(") && !strings.Contains(body, "->parked") {
				t.Errorf("%s: %s takes a module but neither reads its waiting tensors back nor is known to read no tensor bytes", f, name)
			}
		}
	}
	// 23 module calls and export_ir_call when this was written.
	if seen < 24 {
		t.Errorf("found %d module calls; the pattern no longer matches the shim", seen)
	}
}
