//go:build unix

package report

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/fixtures"
)

const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on a local file with the given extra
// flags and returns its stdout. Chromium forks helpers that inherit the
// output pipes, so the whole process group is killed on timeout and
// WaitDelay bounds the wait for those pipes; otherwise a wedged browser
// would hang the test binary.
func chromium(t *testing.T, file string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--disable-crash-reporter", "--disable-breakpad",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000",
	}, extra...)
	args = append(args, "file://"+file)
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", extra, err, tail(stderr.String(), 2000))
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// TestBrowserRendersPlots opens written reports in headless Chromium and
// checks the page's own plot check and a screenshot.
func TestBrowserRendersPlots(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		fixtures.Missing(t, "%s not available (make deps): %v", chromiumPath, err)
	}
	many := fullData()
	many.Layers = testLayers(150)
	bare := fullData()
	bare.AccBefore, bare.AccAfter, bare.Latency, bare.Iterations = nil, nil, nil, nil
	oneShot := fullData()
	oneShot.Iterations = nil

	dir := t.TempDir()
	write := func(name string, d Data) string {
		p := filepath.Join(dir, name)
		if err := Write(p, d); err != nil {
			t.Fatalf("Write: %v", err)
		}
		return p
	}
	// A page whose plot failed to draw proves the in-page check can fail.
	broken := buildPage(fullData())
	broken.Figures[1].SVG, broken.Figures[1].Err = "", "plot could not be drawn: test"
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, broken); err != nil {
		t.Fatal(err)
	}
	brokenPath := filepath.Join(dir, "broken.html")
	if err := os.WriteFile(brokenPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	full := write("full.html", fullData())
	pages := []struct {
		name, path, want string
	}{
		{"full", full, `data-plots="ok:3"`},
		{"150 layers", write("many.html", many), `data-plots="ok:3"`},
		{"one-shot", write("oneshot.html", oneShot), `data-plots="ok:3"`},
		{"no accuracy or latency", write("bare.html", bare), `data-plots="ok:1"`},
		{"empty", write("empty.html", Data{}), `data-plots="ok:0"`},
		{"broken plot", brokenPath, `data-plots="fail:plot-channels"`},
	}

	t.Run("dom", func(t *testing.T) {
		for _, pg := range pages {
			t.Run(pg.name, func(t *testing.T) {
				t.Parallel()
				dom := string(chromium(t, pg.path, "--dump-dom"))
				if !strings.Contains(dom, pg.want) {
					i := strings.Index(dom, "<body")
					t.Errorf("dumped DOM lacks %s; body starts %q", pg.want, dom[max(i, 0):min(max(i, 0)+200, len(dom))])
				}
			})
		}
		t.Run("screenshot", func(t *testing.T) {
			t.Parallel()
			shot := filepath.Join(t.TempDir(), "report.png")
			if d := os.Getenv("REPORT_SCREENSHOT_DIR"); d != "" {
				// Lets a developer look at the rendering.
				shot = filepath.Join(d, "report.png")
			}
			chromium(t, full, "--screenshot="+shot, "--window-size=1200,2000")
			checkScreenshot(t, shot)
		})
	})
}

// checkScreenshot fails on a blank or near-blank capture and on one
// without the plots' blue, i.e. a page whose text loaded but plots did not.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 600 || b.Dy() < 600 {
		t.Fatalf("screenshot is only %v", b.Size())
	}
	var ink, blue int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			// The page background is a light grey, so "ink" means clearly dark.
			if min(r, g, bl) < 200 {
				ink++
			}
			if near(r, 0x21) && near(g, 0x66) && near(bl, 0xac) {
				blue++
			}
		}
	}
	total := b.Dx() * b.Dy()
	if ink < total/200 {
		t.Errorf("screenshot looks blank: %d of %d pixels dark", ink, total)
	}
	if blue < 500 {
		t.Errorf("screenshot shows %d plot-blue pixels, want plots drawn", blue)
	}
	t.Logf("screenshot %v: %d dark, %d plot-blue pixels", b.Size(), ink, blue)
}

func near(v, want uint32) bool { return v+12 >= want && v <= want+12 }
