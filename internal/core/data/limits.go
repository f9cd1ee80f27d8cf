package data

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Limits on the untrusted files a data set is made of (data.csv, images).
// They are far above any real data set and exist so that a hostile or
// corrupt file fails fast with a clear error instead of exhausting memory
// (README "Security" lists them).
const (
	// MaxCSVBytes bounds data.csv: 10 million rows of 50 bytes.
	MaxCSVBytes = 512 << 20
	// MaxCSVRows bounds the data rows of data.csv (ImageNet-1k has 1.3 million).
	MaxCSVRows = 10_000_000
	// MaxCSVLine bounds one line of data.csv in bytes; a path is at most
	// 4096 bytes on Linux.
	MaxCSVLine = 64 << 10
	// MaxImageBytes bounds one image file.
	MaxImageBytes = 256 << 20
)

// csvLimits are the limits parseCSV applies: the constants above, lowered
// by tests that cannot afford to write half a gigabyte.
var csvLimits = struct{ bytes, rows, line int64 }{MaxCSVBytes, MaxCSVRows, MaxCSVLine}

// errLimit marks an input over one of the limits.
var errLimit = errors.New("the limit for untrusted input (README: Security)")

// boundedReader passes r through, failing as soon as more than maxTotal
// bytes, or a line longer than maxLine bytes, have been read: the limits
// trip after reading just past them, whatever the file's size.
type boundedReader struct {
	r                 io.Reader
	total, line       int64
	maxTotal, maxLine int64
	err               error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			b.line = 0
			continue
		}
		b.line++
		if b.line > b.maxLine {
			b.err = fmt.Errorf("a line is longer than %d bytes: %w", b.maxLine, errLimit)
			return i, b.err
		}
	}
	b.total += int64(n)
	if b.total > b.maxTotal {
		b.err = fmt.Errorf("larger than %d bytes: %w", b.maxTotal, errLimit)
		return n, b.err
	}
	return n, err
}

// checkRegular refuses anything but a regular file (after symlinks) before
// it is opened: opening a named pipe blocks until a writer comes, and a
// device can stream forever. Stat never blocks on either.
func checkRegular(path string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, errors.New("is a directory")
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (%s)", fileKind(fi.Mode()))
	}
	return fi, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "type " + m.Type().String()
}

// readRegular reads a regular file of at most max bytes.
func readRegular(path string, max int64) ([]byte, error) {
	fi, err := checkRegular(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("larger than %d bytes: %w", max, errLimit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > max {
		return nil, fmt.Errorf("larger than %d bytes: %w", max, errLimit)
	}
	return raw, nil
}
