// Package fail classifies errors for the CLI's exit codes: usage errors (bad
// flags, config, model or data given by the user) exit 2, everything else
// exits 1. It also shortens the TorchScript interpreter's tracebacks to
// what the CLI's one error line needs.
package fail

import (
	"errors"
	"fmt"
)

// usage marks an error as the user's input being at fault.
type usage struct{ err error }

func (u *usage) Error() string { return u.err.Error() }
func (u *usage) Unwrap() error { return u.err }

// Usage marks err as a usage/input error (exit code 2). Nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &usage{err: err}
}

// Usagef formats a usage/input error.
func Usagef(format string, args ...any) error {
	return &usage{err: fmt.Errorf(format, args...)}
}

// IsUsage reports whether any error in err's chain was marked by Usage.
func IsUsage(err error) bool {
	var u *usage
	return errors.As(err, &u)
}

// Code is the process exit code for err: 0, 1 (runtime) or 2 (usage/input).
func Code(err error) int {
	switch {
	case err == nil:
		return 0
	case IsUsage(err):
		return 2
	default:
		return 1
	}
}
