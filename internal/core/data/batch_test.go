package data

import (
	"context"
	"errors"
	"image"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// memDataset builds an in-memory dataset of n gray w×w images; sample i has
// every pixel i%256 and label i%3.
func memDataset(t *testing.T, n, w int) *Dataset {
	t.Helper()
	o, err := Options{Channels: 1, Height: w, Width: w, Workers: 3, ValFraction: -1, Mean: []float32{0}, Std: []float32{1}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	d := &Dataset{Classes: []string{"a", "b", "c"}, opts: o, origin: "test"}
	for i := range n {
		d.samples = append(d.samples, sample{name: "m" + string(rune('a'+i%26)), label: i % 3, split: Train, mem: constGray(w, w, uint8(i))})
	}
	d, err = d.finish()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func trainSplit(t *testing.T, d *Dataset) *Split {
	t.Helper()
	sp, err := d.Split(Train)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// sampleIDs reads back which samples a pass visited, from the pixel values.
func sampleIDs(bs []*Batch, chw int) []int {
	var ids []int
	for _, b := range bs {
		for j := range b.N {
			ids = append(ids, int(b.X[j*chw]*255+0.5))
		}
	}
	return ids
}

func TestBatchShapes(t *testing.T) {
	sp := trainSplit(t, memDataset(t, 10, 2))
	tests := []struct {
		o     BatchOptions
		sizes []int
	}{
		{BatchOptions{BatchSize: 4}, []int{4, 4, 2}},
		{BatchOptions{BatchSize: 4, DropLast: true}, []int{4, 4}},
		{BatchOptions{BatchSize: 5, DropLast: true}, []int{5, 5}},
		{BatchOptions{BatchSize: 3, MaxBatches: 2}, []int{3, 3}},
		{BatchOptions{BatchSize: 32}, []int{10}},
		{BatchOptions{BatchSize: 32, DropLast: true}, nil},
	}
	for _, tc := range tests {
		bs := collect(t, sp, tc.o)
		var sizes []int
		for _, b := range bs {
			sizes = append(sizes, b.N)
			if len(b.X) != b.N*4 || len(b.Y) != b.N || len(b.Index) != b.N {
				t.Errorf("%+v: batch lengths X %d Y %d Index %d for N %d", tc.o, len(b.X), len(b.Y), len(b.Index), b.N)
			}
		}
		if !slices.Equal(sizes, tc.sizes) || sp.NumBatches(tc.o) != len(tc.sizes) {
			t.Errorf("%+v: sizes %v (NumBatches %d), want %v", tc.o, sizes, sp.NumBatches(tc.o), tc.sizes)
		}
	}
	// Unshuffled: dataset order, labels and indices line up.
	bs := collect(t, sp, BatchOptions{BatchSize: 4})
	if ids := sampleIDs(bs, 4); !slices.Equal(ids, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("order %v", ids)
	}
	for _, b := range bs {
		for j := range b.N {
			if int(b.Y[j]) != sp.Label(b.Index[j]) {
				t.Errorf("Y %d for index %d (label %d)", b.Y[j], b.Index[j], sp.Label(b.Index[j]))
			}
		}
	}
	if err := passErr(sp, BatchOptions{}); err == nil {
		t.Error("BatchSize 0 accepted")
	}
}

func TestShuffleDeterministic(t *testing.T) {
	sp := trainSplit(t, memDataset(t, 50, 1))
	pass := func(seed int64, epoch int) []int {
		return sampleIDs(collect(t, sp, BatchOptions{BatchSize: 7, Shuffle: true, Seed: seed, Epoch: epoch}), 1)
	}
	a := pass(1, 0)
	if !slices.Equal(a, pass(1, 0)) {
		t.Error("same seed and epoch, different order")
	}
	if slices.Equal(a, pass(2, 0)) {
		t.Error("different seeds, same order")
	}
	if slices.Equal(a, pass(1, 1)) {
		t.Error("different epochs, same order")
	}
	sorted := slices.Sorted(slices.Values(a))
	for i, v := range sorted {
		if v != i {
			t.Fatalf("a pass must visit every sample once: %v", a)
		}
	}
	if !slices.Equal(a, sp.Order(BatchOptions{Shuffle: true, Seed: 1})) {
		t.Error("Order disagrees with Batches")
	}
}

func TestCache(t *testing.T) {
	dir := smallCSV(t, 9, "x", "y")
	o := grayOptions(3)
	o.ValFraction = -1
	ds, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	sp := trainSplit(t, ds)
	bo := BatchOptions{BatchSize: 4, Shuffle: true}
	first := collect(t, sp, bo)
	if st := ds.CacheStats(); st.Misses != 9 || st.Hits != 0 {
		t.Fatalf("after epoch 1: %+v, want 9 misses", st)
	}
	bo.Epoch = 1
	collect(t, sp, bo)
	if st := ds.CacheStats(); st.Misses != 9 || st.Hits != 9 {
		t.Fatalf("after epoch 2: %+v, want no new decodes and 9 hits", st)
	}
	// Same samples, same values, from the cache.
	bo.Epoch = 0
	again := collect(t, sp, bo)
	for i := range first {
		if !slices.Equal(first[i].X, again[i].X) {
			t.Fatal("cached batch differs")
		}
	}
}

func TestConcurrentPasses(t *testing.T) {
	d := memDataset(t, 64, 4)
	sp := trainSplit(t, d)
	var wg sync.WaitGroup
	results := make([][]int, 4)
	for g := range results {
		wg.Go(func() {
			var ids []int
			for b, err := range sp.Batches(context.Background(), BatchOptions{BatchSize: 5, Shuffle: true, Seed: 3, Reuse: g%2 == 0}) {
				if err != nil {
					t.Error(err)
					return
				}
				ids = append(ids, sampleIDs([]*Batch{b}, 16)...)
			}
			results[g] = ids
		})
	}
	wg.Wait()
	for g := range results {
		if !slices.Equal(results[g], results[0]) {
			t.Errorf("pass %d differs", g)
		}
	}
	if st := d.CacheStats(); st.Misses != 64 {
		t.Errorf("%d decodes for 64 samples read concurrently", st.Misses)
	}
}

func TestEarlyBreakAndCancel(t *testing.T) {
	sp := trainSplit(t, memDataset(t, 100, 8))
	before := runtime.NumGoroutine()
	for range 20 {
		n := 0
		for _, err := range sp.Batches(context.Background(), BatchOptions{BatchSize: 3}) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 2 {
				break
			}
		}
	}
	// The producer is gone once the loop returns.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after breaking out, %d before", g, before)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got error
	n := 0
	for _, err := range sp.Batches(ctx, BatchOptions{BatchSize: 3}) {
		if err != nil {
			got = err
			break
		}
		if n++; n == 1 {
			cancel()
		}
	}
	if !errors.Is(got, context.Canceled) {
		t.Errorf("after cancel: %v, want context.Canceled", got)
	}
}

func TestReuse(t *testing.T) {
	sp := trainSplit(t, memDataset(t, 30, 2))
	seen := map[*float32]bool{}
	var ids []int
	for b, err := range sp.Batches(context.Background(), BatchOptions{BatchSize: 4, Reuse: true}) {
		if err != nil {
			t.Fatal(err)
		}
		seen[&b.X[0]] = true
		ids = append(ids, sampleIDs([]*Batch{b}, 4)...)
	}
	if len(seen) > 3 {
		t.Errorf("%d buffers for 8 batches with Reuse", len(seen))
	}
	if len(ids) != 30 || ids[29] != 29 {
		t.Errorf("ids %v", ids)
	}
}

func TestAugmentation(t *testing.T) {
	// One 4×4 sample with distinct pixel values 1..16.
	g := image.NewGray(image.Rect(0, 0, 4, 4))
	for i := range g.Pix {
		g.Pix[i] = uint8(i + 1)
	}
	o, _ := Options{Channels: 1, Height: 4, Width: 4, ValFraction: -1, Mean: []float32{0}, Std: []float32{1.0 / 255}}.normalize()
	d, err := (&Dataset{Classes: []string{"a"}, opts: o, origin: "test", samples: []sample{{name: "g", split: Train, mem: g}}}).finish()
	if err != nil {
		t.Fatal(err)
	}
	sp := trainSplit(t, d)
	pixels := func(o BatchOptions) []int {
		b := collect(t, sp, o)[0]
		out := make([]int, len(b.X))
		for i, v := range b.X {
			out[i] = int(v + 0.5)
		}
		return out
	}
	plain := pixels(BatchOptions{BatchSize: 1})
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}; !slices.Equal(plain, want) {
		t.Fatalf("plain %v", plain)
	}
	mirrored := []int{4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13}
	flips := map[bool]int{}
	for seed := range int64(40) {
		o := BatchOptions{BatchSize: 1, Flip: true, Seed: seed}
		got := pixels(o)
		switch {
		case slices.Equal(got, plain):
			flips[false]++
		case slices.Equal(got, mirrored):
			flips[true]++
		default:
			t.Fatalf("flip gave %v", got)
		}
		if !slices.Equal(got, pixels(o)) {
			t.Fatal("flip not deterministic")
		}
	}
	if flips[true] == 0 || flips[false] == 0 {
		t.Errorf("flip outcomes %v over 40 seeds", flips)
	}

	// Crop with padding shifts the image with zero fill, by at most CropPad.
	shifted := 0
	for seed := range int64(40) {
		got := pixels(BatchOptions{BatchSize: 1, CropPad: 1, Seed: seed})
		if !slices.Equal(got, plain) {
			shifted++
		}
		ok := false
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				want := make([]int, 16)
				for y := range 4 {
					for x := range 4 {
						if sy, sx := y+dy, x+dx; sy >= 0 && sy < 4 && sx >= 0 && sx < 4 {
							want[y*4+x] = plain[sy*4+sx]
						}
					}
				}
				ok = ok || slices.Equal(got, want)
			}
		}
		if !ok {
			t.Fatalf("crop gave %v, not a shift of at most 1", got)
		}
	}
	if shifted == 0 {
		t.Error("CropPad never shifted")
	}
}

// TestSubset: a subset is n distinct samples of the split, in split order,
// the same for the same seed, and the split itself when n asks for all.
func TestSubset(t *testing.T) {
	sp := trainSplit(t, memDataset(t, 50, 2))
	for _, n := range []int{0, 50, 80} {
		if got := sp.Subset(n, 1); got != sp {
			t.Errorf("Subset(%d) of 50 is not the split itself", n)
		}
	}
	ids := func(s *Split) []int {
		var out []int
		for i := range s.Len() {
			out = append(out, s.idx[i])
		}
		return out
	}
	a, b, c := sp.Subset(20, 7), sp.Subset(20, 7), sp.Subset(20, 8)
	if a.Len() != 20 || a.Name() != sp.Name() {
		t.Fatalf("Subset(20): %d samples of split %q", a.Len(), a.Name())
	}
	if !slices.Equal(ids(a), ids(b)) {
		t.Error("the same seed gave different subsets")
	}
	if slices.Equal(ids(a), ids(c)) {
		t.Error("seeds 7 and 8 gave the same subset")
	}
	if !slices.IsSorted(ids(a)) || len(slices.Compact(slices.Clone(ids(a)))) != 20 {
		t.Errorf("subset %v is not 20 distinct samples in split order", ids(a))
	}
	for _, id := range ids(a) {
		if !slices.Contains(ids(sp), id) {
			t.Errorf("sample %d is not in the split", id)
		}
	}
}
