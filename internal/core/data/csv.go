package data

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Accepted data.csv column names, case-insensitive. When several are present
// the first in these lists wins.
var (
	pathColumns  = []string{"path", "file", "filename", "image"}
	labelColumns = []string{"label", "class", "target"}
)

// Split names.
const (
	Train = "train"
	Val   = "val"
	Test  = "test"
)

// splitAliases maps accepted split values (lower case) to split names; "valid"
// and "validation" are common in exported datasets.
var splitAliases = map[string]string{
	"train": Train, "val": Val, "valid": Val, "validation": Val, "test": Test,
}

// csvRow is one data line of data.csv.
type csvRow struct {
	Row   int // 1-based data row (the header is not counted)
	Path  string
	Label string
	Split string // a split name, or "" without a split column
}

type csvTable struct {
	rows     []csvRow
	hasSplit bool
}

// parseCSV reads a data.csv. name is what errors call the file. It never
// looks at the file system, so that it can be fuzzed on its own.
func parseCSV(r io.Reader, name string) (*csvTable, error) {
	// Streamed, not read whole: the limits on size and line length trip
	// just past them, however large the file (see limits.go).
	br := bufio.NewReader(&boundedReader{r: r, maxTotal: csvLimits.bytes, maxLine: csvLimits.line})
	first, err := br.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	// Spreadsheets save a BOM, which would otherwise glue itself to the first
	// column's name.
	first = bytes.TrimPrefix(first, []byte("\ufeff"))

	cr := csv.NewReader(io.MultiReader(bytes.NewReader(first), br))
	cr.Comma = sniffComma(first)
	cr.FieldsPerRecord = -1 // checked below, with a better message
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true

	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file, want a header naming a path and a label column", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	header = slices.Clone(header) // ReuseRecord would overwrite it
	cols := make([]string, len(header))
	for i, h := range header {
		cols[i] = strings.ToLower(strings.TrimSpace(h))
	}
	pathCol := findColumn(cols, pathColumns)
	if pathCol < 0 {
		return nil, fmt.Errorf("%s: header %q has no path column; accepted names: %s",
			name, header, strings.Join(pathColumns, ", "))
	}
	labelCol := findColumn(cols, labelColumns)
	if labelCol < 0 {
		return nil, fmt.Errorf("%s: header %q has no label column; accepted names: %s",
			name, header, strings.Join(labelColumns, ", "))
	}
	splitCol := findColumn(cols, []string{"split"})
	need := max(pathCol, labelCol, splitCol) + 1

	t := &csvTable{hasSplit: splitCol >= 0}
	for row := 1; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && int64(row) > csvLimits.rows {
			err = fmt.Errorf("more than %d data rows: %w", csvLimits.rows, errLimit)
		}
		if err != nil {
			return nil, fmt.Errorf("%s row %d: %w", name, row, err)
		}
		if len(rec) < need {
			return nil, fmt.Errorf("%s row %d: has %d fields, the header has %d", name, row, len(rec), len(header))
		}
		r := csvRow{Row: row, Path: strings.TrimSpace(rec[pathCol]), Label: strings.TrimSpace(rec[labelCol])}
		if r.Path == "" {
			return nil, fmt.Errorf("%s row %d: empty %s", name, row, header[pathCol])
		}
		if r.Label == "" {
			return nil, fmt.Errorf("%s row %d: image %q: empty %s", name, row, r.Path, header[labelCol])
		}
		if splitCol >= 0 {
			v := strings.TrimSpace(rec[splitCol])
			s, ok := splitAliases[strings.ToLower(v)]
			if !ok {
				return nil, fmt.Errorf("%s row %d: image %q: unknown split %q; accepted: train, val (valid, validation), test",
					name, row, r.Path, v)
			}
			r.Split = s
		}
		t.rows = append(t.rows, r)
	}
	if len(t.rows) == 0 {
		return nil, fmt.Errorf("%s: no data rows after the header: empty dataset", name)
	}
	return t, nil
}

func findColumn(cols, names []string) int {
	for _, n := range names {
		for i, c := range cols {
			if c == n {
				return i
			}
		}
	}
	return -1
}

// sniffComma picks the delimiter from the header line: spreadsheets in many
// locales save ';'-separated "CSV", and tab-separated files are common too.
func sniffComma(raw []byte) rune {
	line := raw
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		line = raw[:i]
	}
	if bytes.IndexByte(line, ',') >= 0 {
		return ','
	}
	if bytes.IndexByte(line, ';') >= 0 {
		return ';'
	}
	if bytes.IndexByte(line, '\t') >= 0 {
		return '\t'
	}
	return ','
}
