//go:build cgo

package main

import (
	"os"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// checkWritableDir fails early, before any work, when outputs could not be
// written: the directory must exist and accept a file.
func checkWritableDir(dir, what string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fail.Usagef("%s: directory %s does not exist", what, dir)
	}
	if !st.IsDir() {
		return fail.Usagef("%s: %s is not a directory", what, dir)
	}
	f, err := os.CreateTemp(dir, ".gopruner-probe-*")
	if err != nil {
		return fail.Usagef("%s: directory %s is not writable", what, dir)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}
