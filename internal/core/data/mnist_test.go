package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/gopruner/gopruner/internal/fixtures"
)

func idx(typ byte, dims []int, payload []byte) []byte {
	b := []byte{0, 0, typ, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, payload...)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// tinyMNIST is 3 train and 2 test 2×2 images; image i has pixels 10·i.
func tinyMNIST(compress bool) fstest.MapFS {
	img := func(n, off int) []byte {
		var p []byte
		for i := range n {
			p = append(p, bytes.Repeat([]byte{byte(10 * (i + off))}, 4)...)
		}
		return p
	}
	files := map[string][]byte{
		MNISTTrainImages: idx(8, []int{3, 2, 2}, img(3, 0)),
		MNISTTrainLabels: idx(8, []int{3}, []byte{7, 0, 3}),
		MNISTTestImages:  idx(8, []int{2, 2, 2}, img(2, 3)),
		MNISTTestLabels:  idx(8, []int{2}, []byte{1, 9}),
	}
	fsys := fstest.MapFS{}
	for name, b := range files {
		if compress {
			fsys[name+".gz"] = &fstest.MapFile{Data: gz(b)}
		} else {
			fsys[name] = &fstest.MapFile{Data: b}
		}
	}
	return fsys
}

func TestFromMNISTTiny(t *testing.T) {
	for _, compress := range []bool{false, true} {
		ds, err := FromMNIST(tinyMNIST(compress), Options{ValFraction: -1})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.Classes) != 10 || ds.Classes[9] != "9" {
			t.Errorf("classes %q", ds.Classes)
		}
		train, _ := ds.Split(Train)
		test, _ := ds.Split(Test)
		if got := labelsOf(train); !slices.Equal(got, []int{7, 0, 3}) {
			t.Errorf("train labels %v", got)
		}
		if got := labelsOf(test); !slices.Equal(got, []int{1, 9}) {
			t.Errorf("test labels %v", got)
		}
		pix, err := test.Image(1)
		if err != nil || !slices.Equal(pix, []uint8{40, 40, 40, 40}) {
			t.Errorf("test image 1: %v %v", pix, err)
		}
	}
}

func TestFromMNISTErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(fstest.MapFS)
		want string
	}{
		{"no train", func(f fstest.MapFS) { delete(f, MNISTTrainImages) }, "train-images-idx3-ubyte"},
		{"bad magic", func(f fstest.MapFS) { f[MNISTTrainLabels].Data[2] = 9 }, "IDX magic"},
		{"truncated", func(f fstest.MapFS) {
			f[MNISTTrainImages].Data = f[MNISTTrainImages].Data[:20]
		}, "needs 12"},
		{"count mismatch", func(f fstest.MapFS) { f[MNISTTestLabels] = &fstest.MapFile{Data: idx(8, []int{1}, []byte{1})} }, "2 images but"},
		{"corrupt gzip", func(f fstest.MapFS) {
			f[MNISTTrainImages+".gz"] = &fstest.MapFile{Data: []byte{0x1f, 0x8b, 1, 2}}
		}, "train-images-idx3-ubyte.gz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := tinyMNIST(false)
			tc.edit(fsys)
			_, err := FromMNIST(fsys, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// No test pair at all is fine.
	fsys := tinyMNIST(false)
	delete(fsys, MNISTTestImages)
	delete(fsys, MNISTTestLabels)
	if _, err := FromMNIST(fsys, Options{}); err != nil {
		t.Errorf("train only: %v", err)
	}
}

func TestWriteImageCSVRoundTrip(t *testing.T) {
	src, err := FromMNIST(tinyMNIST(true), Options{ValFraction: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteImageCSV(dir, src, ExportPart{Split: Train, N: 2}, ExportPart{Split: Test, As: Val}); err != nil {
		t.Fatal(err)
	}
	back, err := Open(dir, Options{Channels: 1, Height: 2, Width: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Classes, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}) {
		t.Errorf("classes %q", back.Classes)
	}
	train, _ := back.Split(Train)
	val, _ := back.Split(Val)
	if labelsOf(train)[0] != 7 || train.Len() != 2 || val.Len() != 2 || labelsOf(val)[1] != 9 {
		t.Errorf("train %v val %v", labelsOf(train), labelsOf(val))
	}
	pix, err := val.Image(0)
	if err != nil || !slices.Equal(pix, []uint8{30, 30, 30, 30}) {
		t.Errorf("val image 0: %v %v", pix, err)
	}
	if err := WriteImageCSV(t.TempDir(), src, ExportPart{Split: Train, N: 4}); err == nil {
		t.Error("asking for more samples than the split has is not an error")
	}
}

// Skip cuts disjoint ranges from one split: train and val from the same
// training set, as benchmark 9 does with Fashion-MNIST.
func TestWriteImageCSVSkip(t *testing.T) {
	src, err := FromMNIST(tinyMNIST(false), Options{ValFraction: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteImageCSV(dir, src, ExportPart{Split: Train, N: 1}, ExportPart{Split: Train, As: Val, Skip: 1}); err != nil {
		t.Fatal(err)
	}
	back, err := Open(dir, Options{Channels: 1, Height: 2, Width: 2})
	if err != nil {
		t.Fatal(err)
	}
	train, _ := back.Split(Train)
	val, _ := back.Split(Val)
	if got := labelsOf(train); !slices.Equal(got, []int{7}) {
		t.Errorf("train labels %v, want [7]", got)
	}
	if got := labelsOf(val); !slices.Equal(got, []int{0, 3}) {
		t.Errorf("val labels %v, want [0 3] (the train split after its first)", got)
	}
	for _, p := range []ExportPart{{Split: Train, Skip: 4}, {Split: Train, Skip: -1}, {Split: Train, Skip: 2, N: 2}} {
		if err := WriteImageCSV(t.TempDir(), src, p); err == nil {
			t.Errorf("%+v of a 3-sample split is not an error", p)
		}
	}
	if err := WriteImageCSV(t.TempDir(), src, ExportPart{Split: Train, Skip: 3}); err == nil {
		t.Error("skipping the whole split writes an empty part without error")
	}
}

// gomnist loads the full GoMNIST set once for all tests that use it.
var gomnist = func() func(t *testing.T) *Dataset {
	var (
		once sync.Once
		ds   *Dataset
		err  error
		skip bool
	)
	return func(t *testing.T) *Dataset {
		t.Helper()
		if raceEnabled {
			// Inflating 47 MB takes tens of seconds under -race; the tiny IDX
			// tests cover the same code for races.
			t.Skip("full MNIST skipped under -race")
		}
		once.Do(func() {
			dir, lerr := LocateGoMNIST()
			if lerr != nil {
				err, skip = lerr, true
				return
			}
			ds, err = FromMNIST(os.DirFS(dir), Options{})
		})
		if skip {
			fixtures.Missing(t, "GoMNIST: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
}()

func TestGoMNIST(t *testing.T) {
	ds := gomnist(t)
	for name, want := range map[string]int{Train: 54000, Val: 6000, Test: 10000} {
		sp, err := ds.Split(name)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Len() != want {
			t.Errorf("%s: %d samples, want %d", name, sp.Len(), want)
		}
	}
}

// The demo's dataset (12,000 train and 2,000 val PNGs with a split column) at
// a twentieth of the size: writing 14,000 files takes seconds on a VM disk.
func TestGoMNISTAsPNG(t *testing.T) {
	ds := gomnist(t)
	dir := t.TempDir()
	err := WriteImageCSV(dir, ds, ExportPart{Split: Train, N: 600}, ExportPart{Split: Test, As: Val, N: 100})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Open(dir, Options{Channels: 1, Height: 28, Width: 28})
	if err != nil {
		t.Fatal(err)
	}
	train, _ := back.Split(Train)
	val, _ := back.Split(Val)
	if train.Len() != 600 || val.Len() != 100 {
		t.Fatalf("train %d val %d", train.Len(), val.Len())
	}
	// Spot-check a few images against the source.
	srcVal, _ := ds.Split(Test)
	for _, i := range []int{0, 42, 99} {
		a, err := val.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := srcVal.Image(i)
		if !slices.Equal(a, b) || val.Label(i) != srcVal.Label(i) {
			t.Errorf("val %d differs from MNIST test %d", i, i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "val", "000699.png")); err != nil {
		t.Error(err)
	}
}
