// Package atomicfile replaces files atomically: the content goes to a
// temporary file in the target's directory (named ".<base>.tmp-*"), is
// synced, given its permissions, and renamed over the target. Readers see
// the old file or the new one, never a partial one, and a failed write
// leaves nothing behind.
//
// Every output gopruner writes (plans, summaries, checkpoints, reports, the
// dataset's classes and CSV) goes through here. The shim's C++ model save
// (cgo/) does the same in its own language.
//
// The package is pure Go.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile stores data at path with permissions perm, atomically.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write stores at path, with permissions perm and atomically, what fn
// writes. The directory must exist. fn's error is returned as it is; I/O
// errors name path.
func Write(path string, perm fs.FileMode, fn func(w io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // already failing; a second close error adds nothing
			_ = os.Remove(tmp)
		}
	}()
	if err = fn(f); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil { // CreateTemp makes 0600 files
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
