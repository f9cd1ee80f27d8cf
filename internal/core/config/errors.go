package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUsage marks every error that Load, CheckResume and RegisterFlags return:
// all of them are the user's input (file, environment, flags), which the CLI
// reports with exit status 2, unlike runtime failures (exit 1). Test with
// errors.Is(err, config.ErrUsage).
var ErrUsage = errors.New("usage error")

// Error is a problem with one configuration value or with the configuration
// file as a whole. It matches ErrUsage under errors.Is.
type Error struct {
	// Where names the source: "Pruning.yaml:12" (file and line), "env GOPRUNER_P",
	// "flag --P", or just the file name when no line applies.
	Where string
	// Key is the configuration key at fault as the user spelt it, with its
	// section path ("my_pruning.alff"); empty when the problem is not one key.
	Key string
	// Msg says what is wrong, without Where and Key.
	Msg string
	// Suggestion is the nearest valid key for an unknown key, or "".
	Suggestion string
	// Err is the underlying cause (an I/O or YAML syntax error), or nil.
	Err error
	// More counts further problems found in the same load and not described
	// here: the CLI prints one line, so only the first is spelt out.
	More int
}

// Error formats the problem as one line: "where: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Where != "" {
		b.WriteString(e.Where)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.More == 1 {
		b.WriteString(" (and 1 more problem)")
	} else if e.More > 1 {
		fmt.Fprintf(&b, " (and %d more problems)", e.More)
	}
	return b.String()
}

// Is reports that every *Error is a usage error.
func (e *Error) Is(target error) bool { return target == ErrUsage }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// problems collects the errors of one load in the order they were found, so
// the first one reported is the first one in the file.
type problems []*Error

func (p *problems) add(e *Error) { *p = append(*p, e) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	first := *p[0]
	first.More = len(p) - 1
	return &first
}

// levenshtein is the edit distance between a and b (insertions, deletions,
// substitutions), on bytes: keys are ASCII.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// foldKey makes spelling variants compare equal: viper-style lower case, and
// kebab-case (as in the flags) for snake_case (as in the file).
func foldKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "-", "_")
}

// nearest returns the candidate closest to name by edit distance, or "" when
// none is close enough to be a plausible typo. Ties go to the earlier
// candidate, so callers list the likelier scope first.
func nearest(name string, candidates []string) string {
	n := foldKey(name)
	if len(n) > 64 {
		return "" // no key is that long; and edit distance is quadratic
	}
	// Short keys (P, lr, alf) allow one edit; longer ones proportionally more,
	// but never so many that any key "suggests" any other.
	limit := 1
	switch {
	case len(n) > 8:
		limit = 3
	case len(n) > 4:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		// "path.model" is offered for a stray top-level "model" as well as
		// for "path_model".
		d := levenshtein(n, strings.ReplaceAll(foldKey(c), ".", "_"))
		if i := strings.LastIndexByte(c, '.'); i >= 0 {
			d = min(d, levenshtein(n, foldKey(c[i+1:])))
		}
		// d < len(n): a key that must be rewritten entirely ("a" → "P")
		// is not a typo of it.
		if d < bestD && d < len(n) {
			best, bestD = c, d
		}
	}
	return best
}
