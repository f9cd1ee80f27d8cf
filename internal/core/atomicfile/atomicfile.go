// Package atomicfile replaces files atomically: the content goes to a
// temporary file in the target's directory (named ".<base>.tmp-*", or "<base>.tmp-*" for WritePath), is
// synced, given its permissions, and renamed over the target. Readers see
// the old file or the new one, never a partial one, and a failed write
// leaves nothing behind.
//
// Every output gopruner writes (plans, summaries, checkpoints, reports, the
// dataset's classes and CSV, and the models the shim saves, through
// WritePath) goes through here.
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

// WritePath stores at path, with permissions perm and atomically, the file
// that fn writes at the temporary path it is given (for writers that take a
// path rather than an io.Writer, such as libtorch's model save).
//
// The temporary name is "<base>.tmp-*", not hidden: libtorch names an
// archive's root folder after the file name up to its last dot, so the saved
// model reads the same as one saved at path directly.
func WritePath(path string, perm fs.FileMode, fn func(tmp string) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = fn(tmp); err != nil {
		return err
	}
	if f, err = os.OpenFile(tmp, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return finish(f, tmp, path, perm)
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
	return finish(f, tmp, path, perm)
}

// finish gives the open temporary file tmp its permissions, syncs and
// closes it, and renames it to path. On an error the caller removes tmp.
func finish(f *os.File, tmp, path string, perm fs.FileMode) error {
	err := f.Chmod(perm) // CreateTemp makes 0600 files
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
