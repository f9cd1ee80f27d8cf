package safepath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestComponent(t *testing.T) {
	long := strings.Repeat("a", MaxComponent+1)
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"resnet18", true},
		{"xray_pruned-v2.1", true},
		{"..a", true}, // a name that starts with dots is still one name
		{"ünïcode", true},
		{strings.Repeat("a", MaxComponent), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/abs", false},
		{`a\b`, false},
		{"a\nb", false},
		{"a\tb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"a\u0085b", false}, // NEL, a C1 control
		{"\xff\xfe", false},
		{long, false},
	} {
		err := Component(c.name)
		if (err == nil) != c.ok {
			t.Errorf("Component(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Component(%q) = %v, not ErrInvalid", c.name, err)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("Component(%q): message is not one line: %q", c.name, err)
		}
	}
}

// tree makes root/ with img/a.png, img/in -> a.png, img/out -> ../../outside/secret,
// img/dangling -> ../../outside/none, loopdir -> ../outside, and a FIFO
// outside/fifo.png with img/fifo -> it. It returns root and outside.
func tree(t testing.TB) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "data")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "img"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "img", "a.png"))
	write(filepath.Join(outside, "secret"))
	if err := syscall.Mkfifo(filepath.Join(outside, "fifo.png"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"img/in":       "a.png",
		"img/out":      "../../outside/secret",
		"img/abs":      filepath.Join(outside, "secret"),
		"img/dangling": "../../outside/none",
		"img/fifo":     "../../outside/fifo.png",
		"img/self":     "self",
		"outdir":       "../outside",
		"indir":        "img",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestWithin(t *testing.T) {
	root, _ := tree(t)
	for _, c := range []struct {
		rel     string
		want    string // the result relative to root, when allowed
		wantErr error  // without allowExternal
	}{
		{rel: "img/a.png", want: "img/a.png"},
		{rel: "./img/../img/a.png", want: "img/a.png"},
		{rel: "img/in", want: "img/in"},
		{rel: "indir/a.png", want: "indir/a.png"},
		{rel: "img/missing.png", want: "img/missing.png"}, // absent: the caller reports it
		{rel: "new/dir/x.png", want: "new/dir/x.png"},
		{rel: "img/a.png/x", want: "img/a.png/x"}, // under a file: cannot be opened either
		{rel: ".", want: "."},
		{rel: "../outside/secret", wantErr: ErrEscapes},
		{rel: "..", wantErr: ErrEscapes},
		{rel: "img/../../outside/secret", wantErr: ErrEscapes},
		{rel: "../../../etc/hostname", wantErr: ErrEscapes},
		{rel: "/etc/hostname", wantErr: ErrAbsolute},
		{rel: "img/out", wantErr: ErrEscapes},
		{rel: "img/abs", wantErr: ErrEscapes},
		{rel: "img/fifo", wantErr: ErrEscapes},
		{rel: "img/dangling", wantErr: ErrEscapes},
		{rel: "img/self", wantErr: ErrEscapes},
		{rel: "outdir/secret", wantErr: ErrEscapes},
		{rel: "outdir/fifo.png", wantErr: ErrEscapes},
		{rel: "outdir/not-yet.png", wantErr: ErrEscapes},
		{rel: "", wantErr: ErrInvalid},
		{rel: "a\x00b", wantErr: ErrInvalid},
	} {
		t.Run(c.rel, func(t *testing.T) {
			got, err := Within(root, c.rel, false)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Within(%q) = %q, %v; want %v", c.rel, got, err, c.wantErr)
				}
				// allowExternal lets everything but invalid names through.
				got, err := Within(root, c.rel, true)
				if c.wantErr == ErrInvalid {
					if err == nil {
						t.Errorf("allowExternal: Within(%q) = %q, want an error", c.rel, got)
					}
				} else if err != nil {
					t.Errorf("allowExternal: Within(%q): %v", c.rel, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Within(%q): %v", c.rel, err)
			}
			if want := filepath.Join(root, c.want); got != want {
				t.Errorf("Within(%q) = %q, want %q", c.rel, got, want)
			}
			if !Inside(root, got) {
				t.Errorf("Within(%q) = %q, which Inside says is outside", c.rel, got)
			}
		})
	}
}

// A root that is itself a symlink (a data set on another disk) is the
// user's choice; its entries are checked against its target.
func TestWithinLinkedRoot(t *testing.T) {
	root, _ := tree(t)
	link := filepath.Join(t.TempDir(), "ds")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Within(link, "img/in", false); err != nil {
		t.Errorf("img/in under a linked root: %v", err)
	}
	if _, err := Within(link, "img/out", false); !errors.Is(err, ErrEscapes) {
		t.Errorf("img/out under a linked root: %v, want ErrEscapes", err)
	}
	rel, err := filepath.Rel(mustWD(t), root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Within(rel, "img/a.png", false); err != nil {
		t.Errorf("relative root %s: %v", rel, err)
	}
}

func mustWD(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
