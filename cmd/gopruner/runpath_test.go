//go:build cgo

package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// TestRunpathPrefersItsOwnLib: the binary looks for libgptorch.so next to
// itself (../lib) before the checkout it was built in. With the checkout
// first, a copy of bin/ and lib/ installed elsewhere loaded whatever shim
// the checkout held later, and a shim of another ABI crashed it
// (SIGSEGV in a call whose arguments no longer matched).
func TestRunpathPrefersItsOwnLib(t *testing.T) {
	bin := fixtures.Binary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rp, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp) != 1 {
		t.Fatalf("RUNPATH entries %q, want one", rp)
	}
	dirs := strings.Split(rp[0], ":")
	if dirs[0] != "$ORIGIN/../lib" {
		t.Fatalf("RUNPATH %q: the first directory is %q, want $ORIGIN/../lib", rp[0], dirs[0])
	}

	// A copy with its own lib runs; the lib it loads is its own.
	dir := t.TempDir()
	for _, sub := range []string{"bin", "lib"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyTestFile(t, bin, filepath.Join(dir, "bin", "gopruner"))
	if err := os.Chmod(filepath.Join(dir, "bin", "gopruner"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyTestFile(t, filepath.Join(filepath.Dir(bin), "..", "lib", "libgptorch.so"), filepath.Join(dir, "lib", "libgptorch.so"))
	cmd := exec.Command(filepath.Join(dir, "bin", "gopruner"), "version")
	cmd.Env = append(os.Environ(), "LD_DEBUG=libs")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the copy does not run: %v\n%s", err, out)
	}
	// The loader names each library it initialises, with the path it loaded.
	want := filepath.Join(dir, "lib", "libgptorch.so")
	for _, line := range strings.Split(string(out), "\n") {
		_, path, ok := strings.Cut(line, "calling init: ")
		if !ok || !strings.HasSuffix(path, "libgptorch.so") {
			continue
		}
		if got := filepath.Clean(strings.TrimSpace(path)); got != want {
			t.Fatalf("the copy loaded %s, not its own %s", got, want)
		}
		return
	}
	t.Fatalf("libgptorch.so's initialisation is not in the loader's trace:\n%s", out)
}
