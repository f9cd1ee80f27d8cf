package data

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestParseCSVHeaders(t *testing.T) {
	for _, pathCol := range []string{"path", "File", "FILENAME", " image "} {
		for _, labelCol := range []string{"label", "Class", "TARGET"} {
			t.Run(pathCol+"/"+labelCol, func(t *testing.T) {
				src := "id," + pathCol + ",extra," + labelCol + "\n1,a.png,x,cat\n2, b.png ,y, dog\n"
				tab, err := parseCSV(strings.NewReader(src), "data.csv")
				if err != nil {
					t.Fatal(err)
				}
				want := []csvRow{{Row: 1, Path: "a.png", Label: "cat"}, {Row: 2, Path: "b.png", Label: "dog"}}
				if !slices.Equal(tab.rows, want) || tab.hasSplit {
					t.Errorf("got %+v (split %v), want %+v", tab.rows, tab.hasSplit, want)
				}
			})
		}
	}
}

func TestParseCSVVariants(t *testing.T) {
	tests := []struct {
		name, src string
		want      []csvRow
	}{
		{"semicolon", "path;label;split\na.png;1;train\nb.png;0;VAL\n",
			[]csvRow{{1, "a.png", "1", Train}, {2, "b.png", "0", Val}}},
		{"tab", "path\tlabel\na b.png\t1\n", []csvRow{{1, "a b.png", "1", ""}}},
		{"bom and crlf", "\ufeffPath,Label\r\na.png,x\r\n", []csvRow{{1, "a.png", "x", ""}}},
		{"quoted comma", "path,label\n\"a,b.png\",x\n", []csvRow{{1, "a,b.png", "x", ""}}},
		{"split aliases", "path,label,Split\na,1,Validation\nb,1,valid\nc,1, Test\n",
			[]csvRow{{1, "a", "1", Val}, {2, "b", "1", Val}, {3, "c", "1", Test}}},
		{"path wins over image", "image,path,label\nx,a.png,1\n", []csvRow{{1, "a.png", "1", ""}}},
		{"blank lines skipped", "path,label\n\na.png,1\n\nb.png,2\n",
			[]csvRow{{1, "a.png", "1", ""}, {2, "b.png", "2", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := parseCSV(strings.NewReader(tc.src), "data.csv")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tab.rows, tc.want) {
				t.Errorf("got %+v, want %+v", tab.rows, tc.want)
			}
		})
	}
}

func TestParseCSVErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"empty file", "", []string{"data.csv", "empty file"}},
		{"header only", "path,label\n", []string{"data.csv", "no data rows", "empty dataset"}},
		{"no path column", "name,label\na,1\n", []string{"data.csv", "no path column", "path, file, filename, image"}},
		{"no label column", "path,kind\na,1\n", []string{"data.csv", "no label column", "label, class, target"}},
		{"unknown split", "path,label,split\na.png,1,train\nb.png,1,holdout\n",
			[]string{"data.csv row 2", `"b.png"`, `unknown split "holdout"`}},
		{"short row", "path,label,split\na.png,1,train\nb.png,1\n", []string{"data.csv row 2", "2 fields"}},
		{"empty label", "path,label\na.png,\n", []string{"data.csv row 1", `"a.png"`, "empty label"}},
		{"empty path", "path,label\n,1\n", []string{"data.csv row 1", "empty path"}},
		{"bad quote", "path,label\n\"a.png,1\n", []string{"data.csv row 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCSV(strings.NewReader(tc.src), "data.csv")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseCSV(f *testing.F) {
	for _, s := range []string{
		"path,label\na.png,1\n",
		"File;Class;split\nx/y.jpg;cat;val\n",
		"\ufeffimage\ttarget\n\"q,\"\"x\".png\t3\n",
		"path,label,split\na,1,train\nb,2\n",
		"path,label\n\"unterminated\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := parseCSV(bytes.NewReader(b), "data.csv")
		if err != nil {
			if tab != nil {
				t.Fatal("table and error")
			}
			return
		}
		if len(tab.rows) == 0 {
			t.Fatal("success without rows")
		}
		for i, r := range tab.rows {
			if r.Row != i+1 || r.Path == "" || r.Label == "" {
				t.Fatalf("bad row %+v at %d", r, i)
			}
			if tab.hasSplit != (r.Split != "") {
				t.Fatalf("split %q with hasSplit %v", r.Split, tab.hasSplit)
			}
		}
	})
}
