//go:build cgo

package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/fixtures"
	"github.com/gopruner/gopruner/third_party/mnist"
)

// smallMNIST writes 1,000 train and 300 val images of the bundled sample.
func smallMNIST(t *testing.T) string {
	return mnistCSV(t, mnist.FS(), 1000, 300)
}

// goMNIST is the full MNIST of the GoMNIST module; the test skips without it.
func goMNIST(t *testing.T) fs.FS {
	t.Helper()
	dir, err := data.LocateGoMNIST()
	if err != nil {
		fixtures.Missing(t, "GoMNIST: %v", err)
	}
	return os.DirFS(dir)
}

// mnistCSV writes the first nTrain train and nVal test images of the MNIST
// files in src as PNGs with a data.csv (train and val splits) in a new
// directory.
func mnistCSV(t *testing.T, src fs.FS, nTrain, nVal int) string {
	t.Helper()
	ds, err := data.FromMNIST(src, data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mnist")
	if err := data.WriteImageCSV(dir, ds, data.ExportPart{Split: data.Train, N: nTrain},
		data.ExportPart{Split: data.Test, As: data.Val, N: nVal}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func myPruningArgs(model, dataset string, extra ...string) []string {
	return append([]string{"prune", "--algorithm", "my_pruning", "--model", model, "--dataset", dataset,
		"--input-shape", "1,1,28,28", "--P", "0.5", "--alf", "4", "--delta-crop", "0.25", "--step", "channels",
		"--common-batches=false", "--bn-batches", "0", "--tie-break", "none",
		"--criterion", "L2Norm", "--short-steps", "10", "--long-epochs", "0", "--batch-size", "32",
		"--lr", "0.01", "--cart", "cpu", "--threads", "1", "--seed", "3",
		"--exp-save", "exp", "--model-name", "m", "--log-format", "json"}, extra...)
}

type iterRow struct {
	Iteration int      `json:"iteration"`
	Layers    []string `json:"layers"`
	From      int      `json:"channels_before"`
	To        int      `json:"channels_after"`
	MACs      int64    `json:"macs"`
	Accuracy  float64  `json:"accuracy"`
}

func readIterations(t *testing.T, dir string) []iterRow {
	t.Helper()
	var s struct {
		Iterations []iterRow `json:"iterations"`
	}
	readSummary(t, dir, "exp", "m", &s)
	return s.Iterations
}

// interrupt starts a my_pruning run, waits until iteration 1 is
// checkpointed, then sends sig. It reports false when the run finished
// before the signal could land.
func interrupt(t *testing.T, dir string, args []string, sig syscall.Signal) (exitCode int, stderr string, interrupted bool) {
	t.Helper()
	cmd := exec.Command(fixtures.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = fixtures.CleanEnv()
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	marker := filepath.Join(dir, "exp", "m", "iterations", "iter_001.json")
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Logf("run ended before the signal: %v", err)
			return cmd.ProcessState.ExitCode(), errb.String(), false
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no checkpoint of iteration 1 within 5 minutes")
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(marker); err == nil {
			break
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	<-done
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -int(ws.Signal()), errb.String(), true
	}
	return cmd.ProcessState.ExitCode(), errb.String(), true
}

// TestResumeAfterKillAndInterrupt: a my_pruning run killed (SIGKILL) or
// interrupted (SIGINT) after its first iteration resumes with --resume and
// ends exactly where an uninterrupted run with the same seed ends; no
// finished iteration is lost.
func TestResumeAfterKillAndInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("three my_pruning runs")
	}
	model := demoModel(t)
	dataset := smallMNIST(t)

	ref := t.TempDir()
	if r := runIn(t, ref, myPruningArgs(model, dataset)...); r.code != 0 {
		t.Fatalf("uninterrupted run: exit %d: %s", r.code, r.stderr)
	}
	want := readIterations(t, ref)
	if len(want) < 2 {
		t.Fatalf("the reference run has %d iterations; the test needs at least 2", len(want))
	}

	for _, c := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGINT", syscall.SIGINT}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			code, stderr, ok := interrupt(t, dir, myPruningArgs(model, dataset), c.sig)
			if !ok {
				t.Skip("the run finished before it could be interrupted")
			}
			if c.sig == syscall.SIGINT {
				if code != 130 || !strings.Contains(stderr, "--resume") {
					t.Errorf("SIGINT: exit %d, stderr %q; want 130 and a hint to --resume", code, lastLine(stderr))
				}
				if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
					t.Errorf("SIGINT produced a crash trace: %s", stderr)
				}
			}
			ck := filepath.Join(dir, "exp", "m", "checkpoint.json")
			if _, err := os.Stat(ck); err != nil {
				t.Fatalf("no checkpoint after the interruption: %v", err)
			}
			matches, _ := filepath.Glob(filepath.Join(dir, "exp", "m", "*.tmp-*"))
			if len(matches) > 0 {
				t.Errorf("temporary files left: %v", matches)
			}
			r := runIn(t, dir, myPruningArgs(model, dataset, "--resume")...)
			if r.code != 0 {
				t.Fatalf("--resume: exit %d: %s", r.code, lastLine(r.stderr))
			}
			if got := readIterations(t, dir); !reflect.DeepEqual(got, want) {
				t.Errorf("resumed run differs from the uninterrupted one:\n got  %+v\n want %+v", got, want)
			}
		})
	}

	// A changed knob that matters is refused on resume, naming it.
	r := runIn(t, ref, myPruningArgs(model, dataset, "--resume", "--delta-crop", "0.5")...)
	if r.code != 2 || !strings.Contains(r.stderr, "delta_crop") {
		t.Errorf("resume with another delta_crop: exit %d, %q", r.code, lastLine(r.stderr))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestWriteFailureKeepsLastCheckpoint: when a checkpoint cannot be written
// mid-run (here iteration 2's model file is blocked by a directory of that
// name, as a full disk or a lost mount would block it), the run stops with
// a runtime error that says so, checkpoint.json still names iteration 1,
// and --resume finishes once the cause is gone.
func TestWriteFailureKeepsLastCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("my_pruning runs")
	}
	model := demoModel(t)
	dataset := smallMNIST(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "exp", "m")
	blocker := filepath.Join(run, "iter_002.pt", "blocked")
	if err := os.MkdirAll(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, dir, myPruningArgs(model, dataset)...)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "iter_002.pt") {
		t.Fatalf("blocked checkpoint: exit %d, %q; want exit 1 naming iter_002.pt", r.code, lastLine(r.stderr))
	}
	var ck struct {
		State struct {
			Iteration int `json:"iteration"`
		} `json:"state"`
	}
	data, err := os.ReadFile(filepath.Join(run, "checkpoint.json"))
	if err != nil {
		t.Fatalf("the last good checkpoint is gone: %v", err)
	}
	if err := json.Unmarshal(data, &ck); err != nil {
		t.Fatal(err)
	}
	if ck.State.Iteration != 1 {
		t.Errorf("checkpoint.json is at iteration %d, want 1", ck.State.Iteration)
	}
	if err := os.RemoveAll(filepath.Join(run, "iter_002.pt")); err != nil {
		t.Fatal(err)
	}
	r = runIn(t, dir, myPruningArgs(model, dataset, "--resume")...)
	if r.code != 0 {
		t.Fatalf("--resume after the failure: exit %d, %q", r.code, lastLine(r.stderr))
	}
	if its := readIterations(t, dir); len(its) < 2 || its[0].Iteration != 1 {
		t.Errorf("resumed run's iterations: %+v", its)
	}
}
