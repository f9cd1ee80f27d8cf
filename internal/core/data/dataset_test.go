package data

import (
	"context"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func labelsOf(sp *Split) []int {
	out := make([]int, sp.Len())
	for i := range out {
		out[i] = sp.Label(i)
	}
	return out
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name        string
		labels      []string
		classes     []string // Options.Classes
		wantClasses []string
		wantLabels  []int
	}{
		{"names sorted", []string{"pneumonia", "normal", "covid", "normal"}, nil,
			[]string{"covid", "normal", "pneumonia"}, []int{2, 1, 0, 1}},
		{"integers as is", []string{"3", "0", "1", "3"}, nil,
			[]string{"0", "1", "2", "3"}, []int{3, 0, 1, 3}},
		{"mixed are names", []string{"10", "9", "x", "9"}, nil,
			[]string{"10", "9", "x"}, []int{0, 1, 2, 1}},
		{"given list by name", []string{"b", "a", "b", "b"}, []string{"b", "a", "c"},
			[]string{"b", "a", "c"}, []int{0, 1, 0, 0}},
		{"given list by index", []string{"2", "0", "1", "1"}, []string{"normal", "pneumonia", "covid"},
			[]string{"normal", "pneumonia", "covid"}, []int{2, 0, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := smallCSV(t, len(tc.labels), tc.labels...)
			o := grayOptions(4)
			o.ValFraction = -1
			o.Classes = tc.classes
			ds, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ds.Classes, tc.wantClasses) {
				t.Errorf("classes %q, want %q", ds.Classes, tc.wantClasses)
			}
			sp, err := ds.Split(Train)
			if err != nil {
				t.Fatal(err)
			}
			if got := labelsOf(sp); !slices.Equal(got, tc.wantLabels) {
				t.Errorf("labels %v, want %v", got, tc.wantLabels)
			}
		})
	}
}

func TestClassesFile(t *testing.T) {
	dir := smallCSV(t, 3, "b", "a", "c")
	ds, err := Open(dir, grayOptions(4))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "classes.json")
	if err := ds.WriteClasses(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadClasses(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("read back %q", got)
	}
}

func TestSplitColumn(t *testing.T) {
	dir := t.TempDir()
	saveImage(t, dir, "a.png", constGray(4, 4, 1))
	writeFile(t, dir, "data.csv", "path,label,split\na.png,0,train\na.png,1,val\na.png,1,test\na.png,0,Train\n")
	ds, err := Open(dir, grayOptions(4))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"train": 2, "val": 1, "validation": 1, "test": 1} {
		sp, err := ds.Split(name)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Len() != want {
			t.Errorf("%s: %d samples, want %d", name, sp.Len(), want)
		}
	}
	if _, err := ds.Split("holdout"); err == nil {
		t.Error("unknown split name accepted")
	}
}

// valSet opens a data.csv listing rows (path,label) and returns the paths
// carved out as val.
func valSet(t *testing.T, dir string, rows []string, seed int64) []string {
	t.Helper()
	writeFile(t, dir, "data.csv", "path,label\n"+strings.Join(rows, "\n")+"\n")
	o := grayOptions(4)
	o.ValFraction = 0.2
	o.Seed = seed
	ds, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	val, err := ds.Split(Val)
	if err != nil {
		t.Fatal(err)
	}
	train, err := ds.Split(Train)
	if err != nil {
		t.Fatal(err)
	}
	if val.Len()+train.Len() != len(rows) {
		t.Fatalf("val %d + train %d != %d", val.Len(), train.Len(), len(rows))
	}
	var out []string
	for i := range val.Len() {
		out = append(out, val.Source(i))
	}
	slices.Sort(out)
	return out
}

func TestValFractionSplit(t *testing.T) {
	dir := t.TempDir()
	var rows []string
	for i := range 50 {
		rel := "s" + strconv.Itoa(i) + ".png"
		saveImage(t, dir, rel, constGray(2, 2, uint8(i)))
		rows = append(rows, rel+","+strconv.Itoa(i%3))
	}
	a := valSet(t, dir, rows, 1)
	if len(a) != 10 {
		t.Fatalf("val has %d samples, want 0.2·50 = 10", len(a))
	}
	if b := valSet(t, dir, rows, 1); !slices.Equal(a, b) {
		t.Errorf("same seed, different val: %v vs %v", a, b)
	}
	rev := slices.Clone(rows)
	slices.Reverse(rev)
	if b := valSet(t, dir, rev, 1); !slices.Equal(a, b) {
		t.Errorf("row order changed val: %v vs %v", a, b)
	}
	if b := valSet(t, dir, rows, 2); slices.Equal(a, b) {
		t.Errorf("different seeds, same val %v", a)
	}
}

func TestImageFolder(t *testing.T) {
	dir := t.TempDir()
	saveImage(t, dir, "pneumonia/p1.png", constGray(8, 8, 200))
	saveImage(t, dir, "pneumonia/p2.JPG", constGray(8, 8, 100))
	saveImage(t, dir, "normal/n1.jpeg", constGray(8, 8, 50))
	saveImage(t, dir, "covid/c1.png", constRGB(8, 8, color.RGBA{10, 20, 30, 255}))
	writeFile(t, dir, "normal/notes.txt", "ignored")
	writeFile(t, dir, ".hidden/x.png", "ignored")
	o := grayOptions(4)
	o.ValFraction = -1
	ds, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"covid", "normal", "pneumonia"}; !slices.Equal(ds.Classes, want) {
		t.Errorf("classes %q, want %q", ds.Classes, want)
	}
	sp, err := ds.Split(Train)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range sp.Len() {
		got = append(got, sp.Source(i)+"="+strconv.Itoa(sp.Label(i)))
	}
	want := []string{"covid/c1.png=0", "normal/n1.jpeg=1", "pneumonia/p1.png=2", "pneumonia/p2.JPG=2"}
	if !slices.Equal(got, want) {
		t.Errorf("samples %q, want %q", got, want)
	}
	if err := sp.Preload(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestImageFolderSplits(t *testing.T) {
	dir := t.TempDir()
	saveImage(t, dir, "train/NORMAL/a.png", constGray(4, 4, 1))
	saveImage(t, dir, "train/PNEUMONIA/b.png", constGray(4, 4, 2))
	saveImage(t, dir, "train/PNEUMONIA/c.png", constGray(4, 4, 3))
	saveImage(t, dir, "val/NORMAL/d.png", constGray(4, 4, 4))
	saveImage(t, dir, "test/PNEUMONIA/e.png", constGray(4, 4, 5))
	ds, err := Open(dir, grayOptions(4))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"NORMAL", "PNEUMONIA"}; !slices.Equal(ds.Classes, want) {
		t.Errorf("classes %q, want %q", ds.Classes, want)
	}
	for name, want := range map[string][]int{"train": {0, 1, 1}, "val": {0}, "test": {1}} {
		sp, err := ds.Split(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := labelsOf(sp); !slices.Equal(got, want) {
			t.Errorf("%s labels %v, want %v", name, got, want)
		}
	}
}

func TestOpenAbsolutePath(t *testing.T) {
	imgDir := t.TempDir()
	saveImage(t, imgDir, "x.png", constGray(4, 4, 9))
	dir := t.TempDir()
	writeFile(t, dir, "data.csv", "filename,target\n"+filepath.Join(imgDir, "x.png")+",0\n")
	if _, err := Open(dir, grayOptions(4)); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Fatalf("an absolute path without AllowExternalPaths: %v", err)
	}
	o := grayOptions(4)
	o.AllowExternalPaths = true
	ds, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ds.Split(Train)
	pix, err := sp.Image(0)
	if err != nil || pix[0] != 9 {
		t.Fatalf("pix %v, err %v", pix, err)
	}
}

func TestOptionsErrors(t *testing.T) {
	dir := smallCSV(t, 2, "a")
	for _, o := range []Options{
		{Channels: 2, Height: 4, Width: 4},
		{Channels: 1, Height: 0, Width: 4},
		{Channels: 3, Height: 4, Width: 4, Mean: []float32{0.1, 0.2}},
		{Channels: 1, Height: 4, Width: 4, Std: []float32{0}},
		{Channels: 1, Height: 4, Width: 4, Classes: []string{"a", "a"}},
	} {
		if _, err := Open(dir, o); err == nil {
			t.Errorf("Open accepted %+v", o)
		}
	}
	if _, err := Open(filepath.Join(dir, "nope"), grayOptions(4)); err == nil {
		t.Error("Open accepted a missing directory")
	}
}

func TestBadData(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		split string // if set, Open succeeds and the error comes from this split
		want  []string
	}{
		{"missing image", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "data.csv", "path,label\na.png,0\nx/gone.png,1\n")
		}, "", []string{"data.csv row 2:", `image "x/gone.png"`, "file not found"}},
		{"corrupt image", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "x/bad.png", "\x89PNG\r\n\x1a\nnot really")
			writeFile(t, dir, "data.csv", "path,label\na.png,0\na.png,0\nx/bad.png,1\n")
		}, "train", []string{"data.csv row 3:", `image "x/bad.png"`, "decode"}},
		{"not an image", func(t *testing.T, dir string) {
			writeFile(t, dir, "a.png", "hello")
			writeFile(t, dir, "data.csv", "path,label\na.png,0\n")
		}, "train", []string{"data.csv row 1:", `image "a.png"`, "PNG or JPEG"}},
		{"label not in class set", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "data.csv", "path,label\na.png,normal\na.png,covid\n")
		}, "", []string{"data.csv row 2:", `image "a.png"`, `label "covid" not in the class set`}},
		{"integer label out of class set", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "data.csv", "path,label\na.png,1\na.png,5\n")
		}, "", []string{"data.csv row 2:", `label "5" not in the class set`}},
		{"negative label", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "data.csv", "path,label\na.png,1\na.png,-1\n")
		}, "", []string{"data.csv row 2:", "negative label"}},
		{"empty data.csv", func(t *testing.T, dir string) {
			writeFile(t, dir, "data.csv", "path,label\n")
		}, "", []string{"data.csv", "empty dataset"}},
		{"empty folder", func(t *testing.T, dir string) {}, "", []string{"empty dataset"}},
		{"folder without images", func(t *testing.T, dir string) {
			writeFile(t, dir, "cat/readme.txt", "x")
		}, "", []string{"empty dataset"}},
		{"empty split", func(t *testing.T, dir string) {
			saveImage(t, dir, "a.png", constGray(4, 4, 1))
			writeFile(t, dir, "data.csv", "path,label,split\na.png,0,train\na.png,0,val\n")
		}, "test", []string{"data.csv", `split "test" is empty`}},
		{"no path column", func(t *testing.T, dir string) {
			writeFile(t, dir, "data.csv", "img,label\na.png,0\n")
		}, "", []string{"data.csv", "no path column", "path, file, filename, image"}},
		{"no label column", func(t *testing.T, dir string) {
			writeFile(t, dir, "data.csv", "path,y\na.png,0\n")
		}, "", []string{"data.csv", "no label column", "label, class, target"}},
		{"unknown split value", func(t *testing.T, dir string) {
			writeFile(t, dir, "data.csv", "path,label,split\na.png,0,train\na.png,0,dev\n")
		}, "", []string{"data.csv row 2:", `image "a.png"`, `unknown split "dev"`}},
		{"folder class not in class set", func(t *testing.T, dir string) {
			saveImage(t, dir, "covid/a.png", constGray(4, 4, 1))
		}, "", []string{`directory "covid"`, `label "covid" not in the class set`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			o := grayOptions(4)
			o.ValFraction = -1
			if strings.Contains(tc.name, "class set") && !strings.Contains(tc.name, "integer") {
				o.Classes = []string{"normal", "pneumonia"}
			}
			if strings.Contains(tc.name, "integer") {
				o.Classes = []string{"a", "b"}
			}
			ds, err := Open(dir, o)
			if tc.split != "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				var sp *Split
				sp, err = ds.Split(tc.split)
				if err == nil {
					err = passErr(sp, BatchOptions{BatchSize: 2})
					if perr := sp.Preload(context.Background()); perr == nil || perr.Error() != err.Error() {
						t.Errorf("Preload: %v, Batches: %v", perr, err)
					}
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			msg := err.Error()
			if (strings.Contains(msg, "data.csv row") || strings.Contains(msg, "data.csv:")) && !strings.Contains(err.Error(), filepath.Join(dir, "data.csv")) {
				t.Errorf("error %q does not give the full data.csv path", err)
			}
		})
	}
}

func TestOpenNotADir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o644)
	if _, err := Open(f, grayOptions(4)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("err %v", err)
	}
}
