package plan

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopruner/gopruner/internal/core/fail"
)

func TestRoundAlf(t *testing.T) {
	cases := []struct{ n, alf, want int }{
		{33, 32, 32}, {65, 64, 64}, {65, 8, 64}, {33, 8, 32}, {7, 8, 7}, {8, 8, 8},
		{3, 1, 3}, {0, 1, 0}, {100, 0, 100}, {31, 32, 31},
		{7, 7, 7}, {64, 32, 64}, {1, 8, 1}, {50, 1, 50}, {96, 32, 96}, {127, 32, 96},
	}
	for _, c := range cases {
		if got := RoundAlf(c.n, c.alf); got != c.want {
			t.Errorf("RoundAlf(%d, %d) = %d, want %d", c.n, c.alf, got, c.want)
		}
	}
}

func TestKeepCount(t *testing.T) {
	cases := []struct {
		n     int
		ratio float64
		alf   int
		want  int
	}{
		{64, 0.5, 1, 32}, {64, 0.5, 8, 32}, {66, 0.5, 8, 32}, {64, 0.01, 8, 8}, {64, 0, 1, 1}, {64, 1, 8, 64},
	}
	for _, c := range cases {
		if got := KeepCount(c.n, c.ratio, c.alf); got != c.want {
			t.Errorf("KeepCount(%d, %g, %d) = %d, want %d", c.n, c.ratio, c.alf, got, c.want)
		}
	}
}

func TestUnit(t *testing.T) {
	for _, c := range []struct{ alf, block, want int }{
		{1, 0, 1}, {0, 0, 1}, {8, 0, 8}, {1, 4, 4}, {8, 4, 8}, {6, 4, 12}, {32, 12, 96}, {4, 32, 32}, {-3, 5, 5},
	} {
		if got := Unit(c.alf, c.block); got != c.want {
			t.Errorf("Unit(%d, %d) = %d, want %d", c.alf, c.block, got, c.want)
		}
	}
	// KeepCount and RoundAlfWithin by a unit keep whole units, at least one.
	for _, c := range []struct {
		n     int
		ratio float64
		unit  int
		want  int
	}{
		{128, 0.7, 4, 88}, {128, 0.01, 4, 4}, {96, 0.5, 12, 48}, {96, 0.49, 12, 36}, {8, 0.5, 12, 8},
	} {
		if got := KeepCount(c.n, c.ratio, c.unit); got != c.want {
			t.Errorf("KeepCount(%d, %g, %d) = %d, want %d", c.n, c.ratio, c.unit, got, c.want)
		}
	}
}

func TestTopKBlocks(t *testing.T) {
	sc := []float64{0.1, 0.1, 5, 0, 1, 1, 1, 1, 0, 0, 0, 0}
	for _, c := range []struct {
		k, block int
		want     []int
	}{
		{4, 4, []int{0, 1, 2, 3}},                           // block sums 5.2, 4, 0
		{8, 4, []int{0, 1, 2, 3, 4, 5, 6, 7}},               // the top two blocks
		{1, 4, []int{0, 1, 2, 3}},                           // at least one block
		{4, 2, []int{2, 3, 4, 5}},                           // pairs: 0.2, 5, 2, 2, 0, 0; tie to the lower pair
		{6, 3, []int{0, 1, 2, 3, 4, 5}},                     // triples: 5.2, 2, 1, 0
		{3, 1, []int{2, 4, 5}},                              // plain TopK
		{4, 5, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}, // 12 scores do not split into 5s
	} {
		if got := TopKBlocks(sc, c.k, c.block); !slices.Equal(got, c.want) {
			t.Errorf("TopKBlocks(k=%d, block=%d) = %v, want %v", c.k, c.block, got, c.want)
		}
	}
}

func TestTopKDeterministic(t *testing.T) {
	got := TopK([]float64{1, 3, 3, 0, 2}, 3)
	want := []int{1, 2, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("TopK = %v, want %v", got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	params := map[string][]int64{"c.weight": {4, 3, 3, 3}, "c.bias": {4}}
	good := &Plan{Format: Format, InputShape: []int64{1, 3, 8, 8}, Tensors: map[string]Tensor{
		"c.weight": {ShapeBefore: []int64{4, 3, 3, 3}, ShapeAfter: []int64{2, 3, 3, 3}, Kept: map[string][]int{"0": {0, 3}}},
	}}
	if err := good.Validate(params); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		mut  func(p *Plan)
	}{
		{"unknown tensor", func(p *Plan) { p.Tensors["x.weight"] = p.Tensors["c.weight"] }},
		{"wrong shape", func(p *Plan) {
			t := p.Tensors["c.weight"]
			t.ShapeBefore = []int64{8, 3, 3, 3}
			p.Tensors["c.weight"] = t
		}},
		{"index out of range", func(p *Plan) {
			p.Tensors["c.weight"] = Tensor{ShapeBefore: []int64{4, 3, 3, 3}, ShapeAfter: []int64{2, 3, 3, 3}, Kept: map[string][]int{"0": {0, 9}}}
		}},
		{"not ascending", func(p *Plan) {
			p.Tensors["c.weight"] = Tensor{ShapeBefore: []int64{4, 3, 3, 3}, ShapeAfter: []int64{2, 3, 3, 3}, Kept: map[string][]int{"0": {3, 0}}}
		}},
		{"count mismatch", func(p *Plan) {
			p.Tensors["c.weight"] = Tensor{ShapeBefore: []int64{4, 3, 3, 3}, ShapeAfter: []int64{3, 3, 3, 3}, Kept: map[string][]int{"0": {0, 3}}}
		}},
		{"bad dim", func(p *Plan) {
			p.Tensors["c.weight"] = Tensor{ShapeBefore: []int64{4, 3, 3, 3}, ShapeAfter: []int64{2, 3, 3, 3}, Kept: map[string][]int{"7": {0, 3}}}
		}},
		{"format", func(p *Plan) { p.Format = "other/1" }},
		{"group names unknown tensor", func(p *Plan) {
			p.Groups = []Group{{Members: []string{"x.weight:0"}, ChannelsBefore: 4, Kept: []int{0, 3}}}
		}},
		{"group member without dim", func(p *Plan) {
			p.Groups = []Group{{Members: []string{"c.weight"}, ChannelsBefore: 4, Kept: []int{0, 3}}}
		}},
		{"conv_groups names unknown tensor", func(p *Plan) { p.ConvGroups = map[string]int64{"x.weight": 2} }},
		{"conv_groups below one", func(p *Plan) { p.ConvGroups = map[string]int64{"c.weight": 0} }},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			p := &Plan{Format: good.Format, InputShape: good.InputShape, Tensors: map[string]Tensor{}}
			for k, v := range good.Tensors {
				p.Tensors[k] = v
			}
			c.mut(p)
			err := p.Validate(params)
			if err == nil || fail.Code(err) != 2 {
				t.Fatalf("Validate = %v, want a usage error", err)
			}
		})
	}
}

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	p := &Plan{Format: Format, InputShape: []int64{1, 3, 8, 8}, MACsBefore: 10, MACsAfter: 5,
		Groups:  []Group{{Members: []string{"c.weight:0"}, ChannelsBefore: 4, Kept: []int{0, 3}}},
		Tensors: map[string]Tensor{"c.weight": {ShapeBefore: []int64{4, 3}, ShapeAfter: []int64{2, 3}, Kept: map[string][]int{"0": {0, 3}}}}}
	path := filepath.Join(dir, "plan.json")
	if err := p.Write(path); err != nil {
		t.Fatal(err)
	}
	q, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if q.MACsAfter != 5 || len(q.Groups) != 1 || q.Tensors["c.weight"].Kept["0"][1] != 3 {
		t.Fatalf("round trip lost data: %+v", q)
	}
	for _, bad := range []string{"{", `{"format": 3}`, `{"format": "x"}`, ""} {
		if _, err := Parse([]byte(bad), "p.json"); err == nil || fail.Code(err) != 2 {
			t.Errorf("Parse(%q) = %v, want a usage error", bad, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing.json")); fail.Code(err) != 2 {
		t.Errorf("missing plan: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("atomic write left %d files", len(entries))
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"format":"gopruner-plan/1","input_shape":[1,3,8,8],"tensors":{"a":{"shape_before":[4],"shape_after":[2],"kept":{"0":[0,1]}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"gopruner-plan/1","tensors":{"a":{"kept":{"x":[-1]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		_ = p.Validate(map[string][]int64{"a": {4}})
	})
}
