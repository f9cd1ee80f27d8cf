package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new\n" {
		t.Fatalf("read %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	boom := errors.New("boom")
	err = Write(p, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Write error = %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Errorf("failed write changed the file to %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left %d entries behind, want only out.json", len(ents))
	}
	if err := WriteFile(filepath.Join(dir, "no", "such"), nil, 0o644); err == nil {
		t.Error("write into a missing directory passed")
	}
}

func TestWritePath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.pt")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	var seen string
	err := WritePath(p, 0o644, func(tmp string) error {
		seen = tmp
		if filepath.Dir(tmp) != dir || tmp == p {
			t.Errorf("temporary path %s is not a sibling of %s", tmp, p)
		}
		return os.WriteFile(tmp, []byte("new"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("read %q, want new", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("temporary file %s left behind", seen)
	}
	boom := errors.New("boom")
	err = WritePath(p, 0o644, func(tmp string) error {
		_ = os.WriteFile(tmp, []byte("partial"), 0o600)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("WritePath error = %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("failed write changed the file to %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left %d entries behind, want only model.pt", len(ents))
	}
}
