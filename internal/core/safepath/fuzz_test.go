package safepath

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// FuzzWithin checks the policy's one promise on arbitrary paths against a
// tree with symlinks in and out of the root: whatever Within accepts lies in
// the root once resolved, unless allowExternal was asked for; and it never
// panics.
func FuzzWithin(f *testing.F) {
	for _, s := range []string{
		"img/a.png", "../x", "img/../../outside/secret", "/etc/passwd", "img/out",
		"outdir/secret", "indir/../img/in", "img/fifo", "./././a", "a//b/", "img/self/x",
		"..\\..\\x", "img/dangling", "indir/../../outside", "\x00", "",
	} {
		f.Add(s, false)
	}
	f.Add("../x", true)
	root, _ := tree(f)
	// One Root shared by every input, as data.Open shares one per data
	// set: its directory cache must never change an answer.
	shared, err := NewRoot(root, false)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rel string, allow bool) {
		got, err := Within(root, rel, allow)
		if !allow {
			sgot, serr := shared.Within(rel)
			if sgot != got || (serr == nil) != (err == nil) {
				t.Fatalf("Within(%q) = %q, %v; the shared Root says %q, %v", rel, got, err, sgot, serr)
			}
		}
		if err != nil {
			if allow && rel != "" && !strings.ContainsRune(rel, 0) {
				t.Fatalf("allowExternal refused %q: %v", rel, err)
			}
			return
		}
		if allow {
			return
		}
		if filepath.IsAbs(rel) {
			t.Fatalf("Within accepted the absolute path %q", rel)
		}
		if r, _ := filepath.Rel(root, got); r == ".." || strings.HasPrefix(r, "../") {
			t.Fatalf("Within(%q) = %q, lexically outside %s", rel, got, root)
		}
		if !Inside(root, got) {
			t.Fatalf("Within(%q) = %q, which resolves outside %s", rel, got, root)
		}
	})
}

// FuzzComponent: an accepted run name joined to a directory is a direct
// child of it, and the name has no control characters.
func FuzzComponent(f *testing.F) {
	for _, s := range []string{"m", "..", ".", "a/b", "/abs", "a\nb", "x.y", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if Component(name) != nil {
			return
		}
		dir := "/exp"
		p := filepath.Join(dir, name)
		if filepath.Dir(p) != dir || filepath.Base(p) != name {
			t.Fatalf("Component accepted %q, but %s is not a child of %s", name, p, dir)
		}
		for _, r := range name {
			if unicode.IsControl(r) {
				t.Fatalf("Component accepted %q with a control character", name)
			}
		}
	})
}
