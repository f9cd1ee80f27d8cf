package lut

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReachable(t *testing.T) {
	for _, tc := range []struct {
		channels, unit int
		want           []int
	}{
		{16, 4, []int{4, 8, 12, 16}},
		{18, 4, []int{4, 8, 12, 16, 18}},
		{3, 1, []int{1, 2, 3}},
		{4, 4, []int{4}},
		{5, 0, []int{1, 2, 3, 4, 5}},
	} {
		if got := Reachable(tc.channels, tc.unit); !slices.Equal(got, tc.want) {
			t.Errorf("Reachable(%d, %d) = %v, want %v", tc.channels, tc.unit, got, tc.want)
		}
	}
}

func TestSubsample(t *testing.T) {
	counts := Reachable(64, 4) // 4 … 64, 16 counts
	for _, tc := range []struct {
		in   []int
		n    int
		want []int
	}{
		{counts, 6, []int{4, 16, 28, 40, 52, 64}},
		{counts, 2, []int{4, 64}},
		{[]int{4, 8, 12}, 6, []int{4, 8, 12}},
		{[]int{4, 8, 12}, 1, []int{12}},
	} {
		got := Subsample(tc.in, tc.n)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Subsample(%v, %d) = %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
}

func layer2D(ns []float64) Layer {
	return Layer{Name: "conv", Axes: []Axis{{Group: 1, Counts: []int{4, 8, 16}}, {Group: 2, Counts: []int{2, 4}}}, NS: ns}
}

func TestMonotone(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Layer
		want []float64
	}{
		{"1-d dip", Layer{Axes: []Axis{{Group: 0, Counts: []int{1, 2, 3, 4}}}, NS: []float64{5, 3, 7, 6}}, []float64{3, 3, 6, 6}},
		{"2-d already monotone", layer2D([]float64{1, 2, 3, 4, 5, 6}), []float64{1, 2, 3, 4, 5, 6}},
		// Row 1 is below row 0 in column 0, and row 2's second entry dips;
		// the full-width corner (7) stays.
		{"2-d dips", layer2D([]float64{4, 5, 3, 9, 8, 7}), []float64{3, 5, 3, 7, 7, 7}},
	} {
		got := Monotone(tc.l)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Monotone = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func table(layers ...Layer) *Table {
	return &Table{Format: Format, Layers: layers, FullNS: 1000}
}

func TestPredict(t *testing.T) {
	l := layer2D([]float64{10, 20, 30, 40, 50, 60}) // rows: group 1 at 4, 8, 16; cols: group 2 at 2, 4
	dw := Layer{Name: "dw", Axes: []Axis{{Group: 2, Counts: []int{2, 4}}}, NS: []float64{100, 200}}
	full := map[int]int{1: 16, 2: 4}
	p, err := NewPredictor(table(l, dw), full, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Residue(); got != 1000-60-200 {
		t.Fatalf("residue %v, want 740", got)
	}
	for _, tc := range []struct {
		keep map[int]int
		want int64
	}{
		{full, 1000},
		{nil, 1000}, // missing groups are full
		{map[int]int{1: 4, 2: 2}, 740 + 10 + 100},
		{map[int]int{1: 8, 2: 4}, 740 + 40 + 200},
		// Between grid points: 12 is half way from 8 to 16, 3 half way from
		// 2 to 4: bilinear = mean of 30, 40, 50, 60 = 45; dw 150.
		{map[int]int{1: 12, 2: 3}, 740 + 45 + 150},
		// Below the grid clamps to its first point.
		{map[int]int{1: 1, 2: 1}, 740 + 10 + 100},
	} {
		if got := p.Predict(tc.keep); got != tc.want {
			t.Errorf("Predict(%v) = %d, want %d", tc.keep, got, tc.want)
		}
	}
	if got := p.Layers(map[int]int{1: 4, 2: 2}); !slices.Equal(got, []float64{10, 100}) {
		t.Errorf("Layers = %v", got)
	}
}

// TestPredictMonotone checks the property netadapt's binary search needs:
// with noisy measurements, the prediction never decreases as a group keeps
// more channels.
func TestPredictMonotone(t *testing.T) {
	noisy := layer2D([]float64{30, 10, 20, 50, 5, 40})
	p, err := NewPredictor(table(noisy), map[int]int{1: 16, 2: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k2 := 1; k2 <= 4; k2++ {
		prev := int64(math.MinInt64)
		for k1 := 1; k1 <= 16; k1++ {
			v := p.Predict(map[int]int{1: k1, 2: k2})
			if v < prev {
				t.Fatalf("group 1 at %d (group 2 at %d): %d < %d", k1, k2, v, prev)
			}
			prev = v
		}
	}
	for k1 := 1; k1 <= 16; k1++ {
		prev := int64(math.MinInt64)
		for k2 := 1; k2 <= 4; k2++ {
			v := p.Predict(map[int]int{1: k1, 2: k2})
			if v < prev {
				t.Fatalf("group 2 at %d (group 1 at %d): %d < %d", k2, k1, v, prev)
			}
			prev = v
		}
	}
}

func TestKeepGrid(t *testing.T) {
	l := layer2D(nil)
	var got []map[int]int
	for i := range l.Points() {
		got = append(got, l.Keep(i))
	}
	want := []map[int]int{{1: 4, 2: 2}, {1: 4, 2: 4}, {1: 8, 2: 2}, {1: 8, 2: 4}, {1: 16, 2: 2}, {1: 16, 2: 4}}
	if len(got) != len(want) {
		t.Fatalf("%d points, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i][1] != want[i][1] || got[i][2] != want[i][2] {
			t.Errorf("point %d: %v, want %v", i, got[i], want[i])
		}
	}
}

func key() Key {
	return Key{Model: "abc", Device: "cpu", Threads: 1, Batch: 1, InputShape: []int64{1, 3, 32, 32}, Alf: 4,
		MaxPoints: 6, Groups: []int{1, 2}}
}

func TestCacheRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lut.json")
	if got, err := Load(path, key()); got != nil || err != nil {
		t.Fatalf("missing file: %v, %v; want nil, nil", got, err)
	}
	tab := table(layer2D([]float64{1, 2, 3, 4, 5, 6}))
	tab.Key = key()
	if err := tab.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, key())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Layers[0].NS, tab.Layers[0].NS) || got.FullNS != tab.FullNS {
		t.Errorf("loaded %+v, saved %+v", got, tab)
	}
	// Every key field must invalidate the cache.
	for name, change := range map[string]func(*Key){
		"model":   func(k *Key) { k.Model = "other" },
		"device":  func(k *Key) { k.Device = "cuda:0" },
		"threads": func(k *Key) { k.Threads = 2 },
		"batch":   func(k *Key) { k.Batch = 8 },
		"shape":   func(k *Key) { k.InputShape = []int64{1, 3, 64, 64} },
		"alf":     func(k *Key) { k.Alf = 8 },
		"points":  func(k *Key) { k.MaxPoints = 4 },
		"groups":  func(k *Key) { k.Groups = []int{1} },
	} {
		k := key()
		change(&k)
		if _, err := Load(path, k); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s changed: err %v, want ErrMismatch", name, err)
		}
	}
}

func TestLoadBad(t *testing.T) {
	dir := t.TempDir()
	good := table(layer2D([]float64{1, 2, 3, 4, 5, 6}))
	good.Key = key()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not json", "{", "not a table"},
		{"wrong format", `{"format": "other/1", "full_ns": 1}`, `format "other/1"`},
		{"no full latency", `{"format": "` + Format + `", "full_ns": 0}`, "full_ns 0"},
		{"short measurements", `{"format": "` + Format + `", "full_ns": 5, "layers": [{"name": "c", "axes": [{"group": 1, "counts": [1, 2]}], "ns": [1]}]}`,
			"layer c: 1 measurements for 2 grid points"},
		{"counts descend", `{"format": "` + Format + `", "full_ns": 5, "layers": [{"name": "c", "axes": [{"group": 1, "counts": [2, 1]}], "ns": [1, 2]}]}`,
			"do not ascend"},
		{"three axes", `{"format": "` + Format + `", "full_ns": 5, "layers": [{"name": "c", "axes": [{"group": 1, "counts": [1]}, {"group": 2, "counts": [1]}, {"group": 3, "counts": [1]}], "ns": [1]}]}`,
			"3 axes"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, key())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err %v, want one naming %s and saying %q", tc.name, err, path, tc.want)
		}
	}
}

// TestScaledResidue: with cut measurements the residue follows the
// activations piecewise linearly between them (and below the smallest cut
// along the first segment, never below 0); a cut residue above a wider
// one (noise) is lowered to it, and cuts that are all noise leave the
// residue constant.
func TestScaledResidue(t *testing.T) {
	dw := Layer{Name: "dw", Axes: []Axis{{Group: 2, Counts: []int{2, 4, 6, 8}}}, NS: []float64{100, 200, 300, 400}}
	full := map[int]int{2: 8}
	act := func(keep map[int]int) float64 { // activations: 10 per channel
		if k, ok := keep[2]; ok {
			return float64(10 * k)
		}
		return 80
	}
	tab := table(dw) // full 1000: residue 600 at 80 activations
	tab.Cuts = []Cut{{Keep: map[int]int{2: 2}, ResidueNS: 100}, {Keep: map[int]int{2: 4}, ResidueNS: 500}}
	p, err := NewPredictor(tab, full, act)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Scaled() {
		t.Fatal("residue not scaled")
	}
	for _, tc := range []struct {
		k    int
		want int64
	}{
		{8, 1000},
		{6, 300 + 550}, // halfway between 500 at 40 and 600 at 80
		{4, 200 + 500}, // the half cut
		{3, 150 + 300}, // halfway between 100 at 20 and 500 at 40
		{2, 100 + 100}, // the quarter cut
		{1, 100 + 0},   // below it along the first segment's slope (20/act), clamped at 0 (the layer clamps to its smallest count)
	} {
		if got := p.Predict(map[int]int{2: tc.k}); got != tc.want {
			t.Errorf("keep %d: %d, want %d", tc.k, got, tc.want)
		}
	}
	// A quarter-width residue above the half-width one is noise: lowered
	// to it, the residue is flat below the half cut.
	tab.Cuts[0].ResidueNS = 550
	if p, err = NewPredictor(tab, full, act); err != nil {
		t.Fatal(err)
	}
	if got := p.Predict(map[int]int{2: 2}); got != 100+500 {
		t.Errorf("noisy quarter: predict %d, want %d", got, 100+500)
	}
	// Every cut above the full-width residue: constant.
	tab.Cuts[0].ResidueNS, tab.Cuts[1].ResidueNS = 900, 700
	if p, err = NewPredictor(tab, full, act); err != nil {
		t.Fatal(err)
	}
	if p.Scaled() || p.Predict(map[int]int{2: 4}) != 200+600 {
		t.Errorf("noisy cuts: scaled %v, predict %d", p.Scaled(), p.Predict(map[int]int{2: 4}))
	}
	// The prediction never decreases as the group keeps more channels.
	tab.Cuts[0].ResidueNS, tab.Cuts[1].ResidueNS = 0, 450
	if p, err = NewPredictor(tab, full, act); err != nil {
		t.Fatal(err)
	}
	prev := int64(-1)
	for k := 1; k <= 8; k++ {
		got := p.Predict(map[int]int{2: k})
		if got < prev {
			t.Errorf("keep %d: %d below keep %d's %d", k, got, k-1, prev)
		}
		prev = got
	}
}

// TestNoisyTableStaysPositive: layers timed during a burst of other work
// sum to twice the whole model (the shape of a failed CI run: a 1.2 ms
// model whose table predicted −2 ms for its smallest keep). The layers keep
// their shape at the model's scale, the residue is 0, and no keep vector
// predicts zero or below; cut residues measured against the unscaled
// layers are moved to the new scale.
func TestNoisyTableStaysPositive(t *testing.T) {
	a := Layer{Name: "a", Axes: []Axis{{Group: 1, Counts: []int{2, 4, 8}}}, NS: []float64{200, 600, 1400}}
	b := Layer{Name: "b", Axes: []Axis{{Group: 1, Counts: []int{2, 4, 8}}, {Group: 2, Counts: []int{4, 8}}},
		NS: []float64{100, 150, 300, 500, 600, 1000}}
	full := map[int]int{1: 8, 2: 8}
	tab := &Table{Format: Format, Layers: []Layer{a, b}, FullNS: 1200} // layers sum to 2400
	p, err := NewPredictor(tab, full, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Residue() != 0 || p.LayerScale() != 0.5 {
		t.Fatalf("residue %v, layer scale %v; want 0, 0.5", p.Residue(), p.LayerScale())
	}
	if got := p.Predict(full); got != 1200 {
		t.Errorf("full width predicts %d, want the model's 1200", got)
	}
	if got := p.Predict(map[int]int{1: 2, 2: 4}); got != (200+100)/2 {
		t.Errorf("smallest keep predicts %d, want %d", got, (200+100)/2)
	}
	prev := int64(0)
	for k1 := 1; k1 <= 8; k1++ {
		got := p.Predict(map[int]int{1: k1, 2: 4})
		if got <= 0 || got < prev {
			t.Errorf("keep %d: %d (previous %d)", k1, got, prev)
		}
		prev = got
	}
	// A cut measured at a whole 700 with its unscaled layers at 200+100:
	// residue 400 against them, 550 against the scaled ones (150).
	act := func(keep map[int]int) float64 { return float64(keep[1] + keep[2]) }
	tab.Cuts = []Cut{{Keep: map[int]int{1: 2, 2: 4}, ResidueNS: 400}}
	if p, err = NewPredictor(tab, full, act); err != nil {
		t.Fatal(err)
	}
	// The full-width residue is 0, so the cut's (550 > 0) is noise by the
	// running minimum: the residue stays 0 and the prediction positive.
	if p.Scaled() || p.Predict(map[int]int{1: 2, 2: 4}) != 150 {
		t.Errorf("scaled %v, smallest keep predicts %d, want 150", p.Scaled(), p.Predict(map[int]int{1: 2, 2: 4}))
	}
	// A consistent table is left as it was.
	tab.FullNS, tab.Cuts = 3000, nil
	if p, err = NewPredictor(tab, full, nil); err != nil {
		t.Fatal(err)
	}
	if p.LayerScale() != 1 || p.Residue() != 600 {
		t.Errorf("consistent table: scale %v, residue %v; want 1, 600", p.LayerScale(), p.Residue())
	}
}

// TestState: a time is of the nearest reference within StateTolerance,
// of none beyond it, and never of a non-positive reference.
func TestState(t *testing.T) {
	refs := []float64{2.5, 1.4, 3.5, 0}
	for _, c := range []struct {
		ms   float64
		want int
	}{{2.45, 0}, {1.43, 1}, {3.2, 2}, {1.9, -1}, {2.9, 0}, {3.05, 2}, {5, -1}, {1.66, 1}, {1.1, -1}, {0, -1}} {
		if got := State(refs, c.ms); got != c.want {
			t.Errorf("%.3f ms: state %d, want %d", c.ms, got, c.want)
		}
	}
	if got := State(nil, 2.5); got != -1 {
		t.Errorf("no references: %d", got)
	}
}
