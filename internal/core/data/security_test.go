package data

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The path policy and the limits on untrusted files (issue 17). Escaping
// targets are named pipes: opening one blocks until a writer comes, so a
// test that opened it would hang, and openWithin turns that into a failure.

// mkfifo makes a named pipe at dir/rel.
func mkfifo(t *testing.T, dir, rel string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// openWithin opens dir and fails the test if that takes more than 5 s,
// which means something blocked on a named pipe.
func openWithin(t *testing.T, dir string, o Options) (*Dataset, error) {
	t.Helper()
	type res struct {
		ds  *Dataset
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ds, err := Open(dir, o)
		if err == nil {
			// Reading every image is where a file would be opened.
			if sp, serr := ds.Split(Train); serr == nil {
				err = sp.Preload(t.Context())
			}
		}
		ch <- res{ds, err}
	}()
	select {
	case r := <-ch:
		return r.ds, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("Open(%s) blocked for 5 s: it opened a named pipe", dir)
		return nil, nil
	}
}

// layout is a data set "ds" with one good image next to a directory
// "outside" that holds a named pipe and a regular image.
func layout(t *testing.T) (ds, outside string) {
	t.Helper()
	base := t.TempDir()
	ds = filepath.Join(base, "ds")
	outside = filepath.Join(base, "outside")
	saveImage(t, ds, "img/good.png", constGray(4, 4, 7))
	saveImage(t, outside, "real.png", constGray(4, 4, 9))
	mkfifo(t, outside, "fifo.png")
	return ds, outside
}

func TestPathPolicyCSV(t *testing.T) {
	cases := []struct {
		name  string
		row   func(ds, outside string) string // the path written in row 2
		setup func(t *testing.T, ds, outside string)
		wants []string
		other bool // the target is not the pipe: skip the allowed run
	}{
		{name: "dot-dot", row: func(_, _ string) string { return "../outside/fifo.png" },
			wants: []string{`image "../outside/fifo.png"`, `leaves its directory by ".."`}},
		{name: "deep dot-dot", row: func(_, _ string) string { return "img/../../../../../../etc/hostname" },
			wants: []string{`leaves its directory`}, other: true},
		{name: "absolute", row: func(_, outside string) string { return filepath.Join(outside, "fifo.png") },
			wants: []string{"is an absolute path"}},
		{name: "symlink out", row: func(_, _ string) string { return "img/link.png" },
			setup: func(t *testing.T, ds, outside string) {
				symlink(t, filepath.Join(outside, "fifo.png"), filepath.Join(ds, "img", "link.png"))
			},
			wants: []string{`image "img/link.png"`, "resolves (through a symlink)"}},
		{name: "symlinked directory out", row: func(_, _ string) string { return "sub/fifo.png" },
			setup: func(t *testing.T, ds, outside string) { symlink(t, "../outside", filepath.Join(ds, "sub")) },
			wants: []string{`image "sub/fifo.png"`, "resolves (through a symlink)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, outside := layout(t)
			if c.setup != nil {
				c.setup(t, ds, outside)
			}
			writeFile(t, ds, "data.csv", "path,label\nimg/good.png,0\n"+c.row(ds, outside)+",1\n")
			_, err := openWithin(t, ds, grayOptions(4))
			if err == nil {
				t.Fatal("Open accepted a path out of the data set")
			}
			msg := err.Error()
			for _, w := range append([]string{"data.csv row 2:", "allow_external_paths"}, c.wants...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error is not one line: %q", msg)
			}

			// Allowed out, the row reaches the pipe, which is refused
			// before it is opened rather than blocking.
			if c.other {
				return
			}
			o := grayOptions(4)
			o.AllowExternalPaths = true
			_, err = openWithin(t, ds, o)
			if err == nil || !strings.Contains(err.Error(), "data.csv row 2:") {
				t.Errorf("allow_external_paths: %v, want an error naming row 2", err)
			}
		})
	}
}

// With allow_external_paths, regular files outside the data set are read.
func TestPathPolicyAllowExternal(t *testing.T) {
	ds, outside := layout(t)
	symlink(t, filepath.Join(outside, "real.png"), filepath.Join(ds, "img", "link.png"))
	writeFile(t, ds, "data.csv", "path,label\n../outside/real.png,0\n"+
		filepath.Join(outside, "real.png")+",1\nimg/link.png,1\n")
	o := grayOptions(4)
	o.AllowExternalPaths = true
	d, err := openWithin(t, ds, o)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 3 {
		t.Errorf("%d samples, want 3", d.Len())
	}
	// A symlink that stays inside needs no permission.
	writeFile(t, ds, "data.csv", "path,label\nimg/in.png,0\nimg/good.png,1\n")
	symlink(t, "good.png", filepath.Join(ds, "img", "in.png"))
	if _, err := openWithin(t, ds, grayOptions(4)); err != nil {
		t.Errorf("a symlink inside the data set: %v", err)
	}
}

// A named pipe inside the data set is refused before it is opened, whatever
// the policy: the row is named and nothing blocks.
func TestNamedPipeRefused(t *testing.T) {
	ds, _ := layout(t)
	mkfifo(t, ds, "img/pipe.png")
	writeFile(t, ds, "data.csv", "path,label\nimg/good.png,0\nimg/pipe.png,1\n")
	for _, allow := range []bool{false, true} {
		o := grayOptions(4)
		o.AllowExternalPaths = allow
		_, err := openWithin(t, ds, o)
		if err == nil || !strings.Contains(err.Error(), "data.csv row 2:") || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("allow=%v: %v, want row 2 refused as a named pipe", allow, err)
		}
	}
	// data.csv itself as a pipe.
	ds2 := t.TempDir()
	mkfifo(t, ds2, "data.csv")
	if _, err := openWithin(t, ds2, grayOptions(4)); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("data.csv as a named pipe: %v", err)
	}
}

func TestPathPolicyFolder(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, ds, outside string)
		wants []string
	}{
		{"image symlink out", func(t *testing.T, ds, outside string) {
			symlink(t, filepath.Join(outside, "fifo.png"), filepath.Join(ds, "cat", "x.png"))
		}, []string{`entry "cat/x.png"`, "resolves (through a symlink)", "allow_external_paths"}},
		{"class symlink out", func(t *testing.T, ds, outside string) {
			symlink(t, outside, filepath.Join(ds, "dog"))
		}, []string{`entry "dog"`, "resolves (through a symlink)"}},
		{"relative symlink out", func(t *testing.T, ds, outside string) {
			symlink(t, "../../outside/fifo.png", filepath.Join(ds, "cat", "y.png"))
		}, []string{`entry "cat/y.png"`}},
		{"pipe in the tree", func(t *testing.T, ds, outside string) {
			mkfifo(t, ds, "cat/p.png")
		}, []string{`image "cat/p.png"`, "named pipe"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			ds, outside := filepath.Join(base, "ds"), filepath.Join(base, "outside")
			saveImage(t, ds, "cat/a.png", constGray(4, 4, 1))
			saveImage(t, ds, "dog/b.png", constGray(4, 4, 2))
			mkfifo(t, outside, "fifo.png")
			if c.name == "class symlink out" {
				os.RemoveAll(filepath.Join(ds, "dog"))
			}
			c.setup(t, ds, outside)
			_, err := openWithin(t, ds, grayOptions(4))
			if err == nil {
				t.Fatal("Open accepted it")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Links that stay inside are fine.
	ds := t.TempDir()
	saveImage(t, ds, "cat/a.png", constGray(4, 4, 1))
	saveImage(t, ds, "dog/b.png", constGray(4, 4, 2))
	symlink(t, "a.png", filepath.Join(ds, "cat", "c.png"))
	symlink(t, "dog", filepath.Join(ds, "hound"))
	d, err := openWithin(t, ds, grayOptions(4))
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 {
		t.Errorf("%d samples, want 4", d.Len())
	}
}

// endless is a reader of n bytes (forever when n < 0) that counts what was
// read from it: a "1 GB line" without a gigabyte anywhere.
type endless struct {
	b         byte
	n, served int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n >= 0 && e.served >= e.n {
		return 0, io.EOF
	}
	k := int64(len(p))
	if e.n >= 0 {
		k = min(k, e.n-e.served)
	}
	for i := range k {
		p[i] = e.b
	}
	e.served += k
	return int(k), nil
}

func TestCSVLimits(t *testing.T) {
	// A 1 GB line: the limit trips after about MaxCSVLine bytes.
	src := &endless{b: 'a', n: 1 << 30}
	start := time.Now()
	_, err := parseCSV(io.MultiReader(strings.NewReader("path,label\nx.png,"), src), "data.csv")
	if err == nil || !strings.Contains(err.Error(), "data.csv row 1:") || !strings.Contains(err.Error(), "longer than 65536 bytes") {
		t.Errorf("1 GB line: %v", err)
	}
	if src.served > 1<<20 {
		t.Errorf("read %d bytes of the 1 GB line before refusing it", src.served)
	}
	t.Logf("1 GB line refused after %d bytes in %v", src.served, time.Since(start))

	// The same as a sparse 1 GB file on disk, through Open.
	ds := t.TempDir()
	p := filepath.Join(ds, "data.csv")
	writeFile(t, ds, "data.csv", "path,label\n")
	if err := os.Truncate(p, 1<<30); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := Open(ds, grayOptions(4)); err == nil || !strings.Contains(err.Error(), "row 1") || !errors.Is(err, errLimit) {
		t.Errorf("sparse 1 GB data.csv: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the sparse 1 GB data.csv took %v to refuse", d)
	}

	// Total size and row count, with the limits lowered.
	saved := csvLimits
	t.Cleanup(func() { csvLimits = saved })
	csvLimits.bytes, csvLimits.rows = 1000, 5
	rows := "path,label\n" + strings.Repeat("a.png,1\n", 5)
	if _, err := parseCSV(strings.NewReader(rows), "data.csv"); err != nil {
		t.Errorf("5 rows at a limit of 5: %v", err)
	}
	_, err = parseCSV(strings.NewReader(rows+"a.png,1\n"), "data.csv")
	if err == nil || !strings.Contains(err.Error(), "data.csv row 6: more than 5 data rows") {
		t.Errorf("6 rows: %v", err)
	}
	csvLimits.rows = 1 << 30
	_, err = parseCSV(strings.NewReader("path,label\n"+strings.Repeat("a.png,1\n", 200)), "data.csv")
	if err == nil || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Errorf("1600 bytes at a limit of 1000: %v", err)
	}
}

func TestImageSizeLimit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big.png")
	writeFile(t, dir, "big.png", "\x89PNG")
	if err := os.Truncate(p, MaxImageBytes+1); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeFile(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an image over MaxImageBytes: %v", err)
	}
}
