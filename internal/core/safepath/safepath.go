// Package safepath is gopruner's one path policy: where a name that came
// from an untrusted place may lead.
//
// Some inputs name files without being the user's own command line: the
// rows of a data.csv, the entries of an ImageFolder tree, a run name in a
// shared Pruning.yaml, and later the tasks a worker takes from a broker. A
// row "../../../etc/hostname" or a symlink planted in a data set must not
// make gopruner read outside the data set, and a run name "../../x" must not
// make it write outside exp_save. Every command, and every worker, asks the
// functions here rather than joining paths itself, so that the rule is
// written (and fuzzed) once:
//
//   - Component: a run name is one path component (no separator, not "." or
//     "..", no control character).
//   - Within: a relative path, cleaned, joined to a root and with every
//     symlink of its existing prefix resolved, stays inside the root. It
//     never opens the file, so a named pipe outside the root is never
//     opened (opening one blocks).
//
// The package is pure Go and touches the file system only through Lstat,
// Readlink (filepath.EvalSymlinks) and Abs.
package safepath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxComponent bounds a run name in bytes: it becomes a directory and the
// prefix of file names such as NAME_pruned.pt and NAME.txt, and most file
// systems refuse names over 255 bytes.
const MaxComponent = 200

// Errors the policy returns, wrapped with the detail; test with errors.Is.
var (
	// ErrAbsolute: an absolute path where a relative one is required.
	ErrAbsolute = errors.New("is an absolute path")
	// ErrEscapes: a path that leaves its root, by ".." or by a symlink.
	ErrEscapes = errors.New("leaves its directory")
	// ErrInvalid: a name that cannot be a path (empty, NUL, a separator in a
	// component, control characters).
	ErrInvalid = errors.New("is not a valid name")
)

// Component checks that name is usable as exactly one path component: not
// empty, not "." or "..", no '/' or '\\', no control characters (a newline
// in a file name breaks every log and summary line that names it), valid
// UTF-8, at most MaxComponent bytes. The error says which rule failed
// without repeating the name, which callers quote.
func Component(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("%w: it is a directory reference", ErrInvalid)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%w: it contains a path separator; give one name, not a path", ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: it is not valid UTF-8", ErrInvalid)
	case len(name) > MaxComponent:
		return fmt.Errorf("%w: it is %d bytes long, at most %d", ErrInvalid, len(name), MaxComponent)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: it contains a control character", ErrInvalid)
		}
	}
	return nil
}

// Within returns the path that rel names inside root, or an error when rel
// may not be read from there.
//
// rel must be relative ("/etc/passwd" is refused with ErrAbsolute), must
// not climb out of root once cleaned ("../x", "a/../../x": ErrEscapes), and
// once the symlinks of its longest existing prefix are resolved it must
// still lie inside root, itself resolved (a link "img/x.png ->
// /etc/hostname": ErrEscapes). A missing file is not an error here: the
// caller reports it when it stats or opens the result. A symlink whose
// target is missing is refused, since the target could appear later
// anywhere.
//
// With allowExternal, only emptiness and NUL bytes are checked and rel is
// returned cleaned (joined to root when relative): the user has said that
// the data set may point anywhere.
//
// The result is filepath.Join(root, rel) (rel alone when it is absolute and
// allowed), not the resolved path, so messages show what the user wrote.
// Nothing is opened, so a named pipe, wherever it is, never blocks Within.
func Within(root, rel string, allowExternal bool) (string, error) {
	r, err := NewRoot(root, allowExternal)
	if err != nil {
		if allowExternal {
			r = &Root{dir: root, allow: true}
		} else {
			return "", err
		}
	}
	return r.Within(rel)
}

// Root applies Within to many paths under one root, resolving the root
// once and caching resolved directories, so that a data.csv of a million
// rows costs about one Lstat per row beyond the caller's own Stat. It is
// safe for concurrent use.
type Root struct {
	dir   string // as given, for the results
	abs   string // absolute
	real  string // absolute, symlinks resolved
	allow bool

	mu   sync.Mutex
	dirs map[string]string // absolute directory → resolved
}

// maxCachedDirs bounds the directory cache; past it, it starts over.
const maxCachedDirs = 1 << 16

// NewRoot resolves root for Within. The root is the user's own choice, so
// a root that is itself a symlink is fine: entries are checked against its
// target.
func NewRoot(root string, allowExternal bool) (*Root, error) {
	r := &Root{dir: root, allow: allowExternal, dirs: map[string]string{}}
	var err error
	if r.abs, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("directory %s: %w", root, err)
	}
	if r.real, err = filepath.EvalSymlinks(r.abs); err != nil {
		return nil, fmt.Errorf("directory %s: %w", root, err)
	}
	return r, nil
}

// Within is the package's Within for this root.
func (r *Root) Within(rel string) (string, error) {
	if rel == "" {
		return "", fmt.Errorf("%w: empty path", ErrInvalid)
	}
	if strings.IndexByte(rel, 0) >= 0 || strings.IndexByte(r.dir, 0) >= 0 {
		return "", fmt.Errorf("%w: contains a NUL byte", ErrInvalid)
	}
	if filepath.IsAbs(rel) || filepath.VolumeName(rel) != "" {
		if r.allow {
			return filepath.Clean(rel), nil
		}
		return "", ErrAbsolute
	}
	clean := filepath.Clean(rel)
	joined := filepath.Join(r.dir, clean)
	if r.allow {
		return joined, nil
	}
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w by \"..\"", ErrEscapes)
	}
	real, err := r.resolve(filepath.Join(r.abs, clean))
	if err != nil {
		return "", err
	}
	if !inside(r.real, real) {
		return "", fmt.Errorf("%w: it resolves (through a symlink) to %s", ErrEscapes, real)
	}
	return joined, nil
}

// resolve is resolveExisting with the parent directory taken from the
// cache: only a last element that is itself a symlink, or a parent that
// does not resolve, takes the full walk.
func (r *Root) resolve(abs string) (string, error) {
	parent, base := filepath.Dir(abs), filepath.Base(abs)
	rp, ok := r.resolveDir(parent)
	if !ok {
		return resolveExisting(abs)
	}
	fi, err := os.Lstat(filepath.Join(rp, base))
	if err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return resolveExisting(abs)
	}
	// A regular entry, or one that cannot be reached (nothing to follow).
	return filepath.Join(rp, base), nil
}

func (r *Root) resolveDir(d string) (string, bool) {
	r.mu.Lock()
	v, ok := r.dirs[d]
	r.mu.Unlock()
	if ok {
		return v, true
	}
	v, err := filepath.EvalSymlinks(d)
	if err != nil {
		return "", false
	}
	r.mu.Lock()
	if len(r.dirs) >= maxCachedDirs {
		r.dirs = map[string]string{}
	}
	r.dirs[d] = v
	r.mu.Unlock()
	return v, true
}

// resolveRoot is root made absolute with its symlinks resolved. The root
// is the user's own choice, so a root that is itself a link is fine.
func resolveRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("directory %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("directory %s: %w", root, err)
	}
	return real, nil
}

// resolveExisting resolves the symlinks of the longest prefix of abs (an
// absolute, clean path) that exists, and appends the rest unchanged. The
// rest holds no ".." (the path is clean), so it cannot climb back out.
func resolveExisting(abs string) (string, error) {
	p, rest := abs, ""
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		// Walk up only past a name that cannot be reached (absent, or under
		// a file or a directory we may not search): nothing can be opened
		// through it either. An entry that exists but does not resolve (a
		// dangling or looping symlink) is refused: where it leads is unknown.
		if _, lerr := os.Lstat(p); lerr == nil {
			return "", fmt.Errorf("%w: %s is a symlink that does not resolve", ErrEscapes, p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest), nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// inside reports whether p is root or below it; both absolute and clean.
func inside(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel))
}

// Inside reports whether path, after resolving the symlinks of its existing
// prefix, lies in root (resolved too). Tests and callers that got a path
// from elsewhere use it to check a result of Within.
func Inside(root, path string) bool {
	realRoot, err := resolveRoot(root)
	if err != nil {
		return false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	real, err := resolveExisting(abs)
	return err == nil && inside(realRoot, real)
}
