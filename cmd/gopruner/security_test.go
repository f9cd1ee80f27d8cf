//go:build cgo

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/fixtures"
)

// Issue 17: no input steers a read or a write outside its place, untrusted
// files are bounded, and signals end the process. Escaping targets are
// named pipes: opening one blocks until a writer comes, so a run that
// opened one would hang and hit the test's timeout instead of exiting 2.

// secModel is the bundled demo model (1×28×28 in, 10 classes).
func secModel(t *testing.T) string {
	t.Helper()
	for _, rel := range []string{"internal/demo/democnn.pt", "pruning/demo/democnn.pt"} {
		p := filepath.Join(fixtures.RepoRoot(t), rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	fixtures.Missing(t, "demo model democnn.pt not found")
	return ""
}

func secFIFO(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// runLimited runs the binary in dir and fails the test when it is still
// running after limit: that is what a run blocked on a pipe looks like.
func runLimited(t *testing.T, dir string, limit time.Duration, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, fixtures.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(fixtures.CleanEnv(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), wall: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("gopruner %s still running after %v (blocked on a named pipe?)", strings.Join(args, " "), limit)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return r
}

// TestRunNameConfined: a model_name that is not one path component is
// refused with exit 2 naming the key, from the flag, the environment or the
// file, and the run writes nothing at all (not ../escaped/, not
// exp/tmp/abs/...).
func TestRunNameConfined(t *testing.T) {
	t.Parallel()
	model := fixtures.Path(t, "smallcnn_scripted.pt")
	for _, name := range []string{"../x", "../../escaped", "a/b", "/abs", "/tmp/abs", "..", ".", "run\nname"} {
		hows := []string{"flag"}
		if name == "../x" || name == "run\nname" {
			hows = append(hows, "env", "file") // every source reaches the same check
		}
		for _, how := range hows {
			t.Run(fmt.Sprintf("%s/%q", how, name), func(t *testing.T) {
				base := t.TempDir()
				work := filepath.Join(base, "a", "b", "work")
				if err := os.MkdirAll(work, 0o755); err != nil {
					t.Fatal(err)
				}
				args := []string{"prune", "--model", model, "--algorithm", "L2Norm", "--finetune=false",
					"--input-shape", "1,3,32,32", "--exp-save", "exp"}
				var env []string
				switch how {
				case "flag":
					args = append(args, "--model-name", name)
				case "env":
					env = []string{"GOPRUNER_PATH_MODEL_NAME=" + name}
				case "file":
					y := fmt.Sprintf("path:\n  model_name: %q\n", name)
					if err := os.WriteFile(filepath.Join(work, "Pruning.yaml"), []byte(y), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				before := listFiles(t, base)
				r := runLimited(t, work, 2*time.Minute, env, args...)
				checkErrLine(t, r, 2, "path.model_name")
				for f := range listFiles(t, base) {
					if !before[f] {
						t.Errorf("the refused run wrote %s", f)
					}
				}
			})
		}
	}
}

// secDataset is a data set of 16 images next to a directory "outside"
// holding a named pipe.
func secDataset(t *testing.T) (ds, outside, fifo string) {
	t.Helper()
	ds = tinyDataset(t, 16)
	outside = filepath.Join(t.TempDir(), "outside")
	fifo = secFIFO(t, filepath.Join(outside, "fifo.png"))
	return ds, outside, fifo
}

func trainArgs(model, ds string, extra ...string) []string {
	return append([]string{"train", "--model", model, "--dataset", ds, "--input-shape", "1,1,28,28",
		"--threads", "1", "--epochs", "1", "--out", "out.pt"}, extra...)
}

// TestDatasetPathsConfined: data.csv rows that climb out by "..", are
// absolute, or go through a symlink that leads out, and an ImageFolder
// symlink out of the tree, are refused with exit 2 naming the row or entry;
// the pipe they point at is never opened (the run would hang) and nothing
// is written.
func TestDatasetPathsConfined(t *testing.T) {
	t.Parallel()
	model := secModel(t)
	cases := []struct {
		name  string
		edit  func(t *testing.T, ds, outside, fifo string)
		wants []string
	}{
		{"dot-dot row", func(t *testing.T, ds, outside, fifo string) {
			rel, _ := filepath.Rel(ds, fifo)
			rewriteCSV(t, ds, func(s string) string { return strings.Replace(s, "img/002.png", rel, 1) })
		}, []string{"data.csv row 3", "leaves its directory", "allow_external_paths"}},
		{"deep dot-dot row", func(t *testing.T, ds, outside, fifo string) {
			rewriteCSV(t, ds, func(s string) string {
				return strings.Replace(s, "img/002.png", "../../../../../../../etc/hostname", 1)
			})
		}, []string{"data.csv row 3", "../../../../../../../etc/hostname", "leaves its directory"}},
		{"absolute row", func(t *testing.T, ds, outside, fifo string) {
			rewriteCSV(t, ds, func(s string) string { return strings.Replace(s, "img/002.png", fifo, 1) })
		}, []string{"data.csv row 3", "absolute path"}},
		{"symlink row", func(t *testing.T, ds, outside, fifo string) {
			p := filepath.Join(ds, "img", "002.png")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(fifo, p); err != nil {
				t.Fatal(err)
			}
		}, []string{"data.csv row 3", "img/002.png", "through a symlink"}},
		{"ImageFolder symlink", func(t *testing.T, ds, outside, fifo string) {
			if err := os.Remove(filepath.Join(ds, "data.csv")); err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"0", "1"} {
				if err := os.MkdirAll(filepath.Join(ds, c), 0o755); err != nil {
					t.Fatal(err)
				}
				copyTestFile(t, filepath.Join(ds, "img", "000.png"), filepath.Join(ds, c, "a.png"))
			}
			if err := os.RemoveAll(filepath.Join(ds, "img")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(fifo, filepath.Join(ds, "1", "b.png")); err != nil {
				t.Fatal(err)
			}
		}, []string{`entry "1/b.png"`, "through a symlink"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, outside, fifo := secDataset(t)
			c.edit(t, ds, outside, fifo)
			work := t.TempDir()
			r := runLimited(t, work, 2*time.Minute, nil, trainArgs(model, ds)...)
			checkErrLine(t, r, 2, c.wants...)
			checkNoOutputs(t, work, nil)
		})
	}
}

// TestTrainNamedPipeImageExits: `timeout 10 gopruner train` on a data set
// whose first image is a named pipe exits by itself well within 15 s,
// inside the data set or, with allow_external_paths, outside it: the pipe
// is refused before it is opened.
func TestTrainNamedPipeImageExits(t *testing.T) {
	t.Parallel()
	model := secModel(t)
	for _, c := range []struct {
		name  string
		allow bool
	}{{"inside", false}, {"outside, allowed", true}} {
		t.Run(c.name, func(t *testing.T) {
			ds, _, fifo := secDataset(t)
			row := filepath.Join("img", "pipe.png")
			if c.allow {
				row, _ = filepath.Rel(ds, fifo)
			} else {
				secFIFO(t, filepath.Join(ds, row))
			}
			rewriteCSV(t, ds, func(s string) string { return strings.Replace(s, "img/000.png", row, 1) })
			args := trainArgs(model, ds)
			if c.allow {
				args = append(args, "--allow-external-paths")
			}
			name := fixtures.Binary(t)
			if tp, err := exec.LookPath("timeout"); err == nil {
				args, name = append([]string{"10", name}, args...), tp
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.Dir, cmd.Env = t.TempDir(), fixtures.CleanEnv()
			var errb strings.Builder
			cmd.Stderr = &errb
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			t.Logf("exit after %v: %v: %s", wall, err, strings.TrimSpace(errb.String()))
			if ctx.Err() != nil || wall >= 15*time.Second {
				t.Fatalf("still running after %v", wall)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit %v, want 2", err)
			}
			if !strings.Contains(errb.String(), "data.csv row 1") || !strings.Contains(errb.String(), "named pipe") {
				t.Errorf("stderr %q does not name row 1 as a named pipe", errb.String())
			}
		})
	}
}

// blockedRun starts gopruner reading its configuration from a named pipe
// that nobody writes, which blocks it in open(2), where no context is
// looked at, and returns once the process is in that call.
func blockedRun(t *testing.T) (*exec.Cmd, *strings.Builder, chan error) {
	t.Helper()
	dir := t.TempDir()
	fifo := secFIFO(t, filepath.Join(dir, "Pruning.yaml"))
	cmd := exec.Command(fixtures.Binary(t), "train", "--config", fifo)
	cmd.Dir, cmd.Env = dir, fixtures.CleanEnv()
	errb := &strings.Builder{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	// The process is blocked on the pipe once the kernel says it waits for
	// a writer; before that it may still be loading libtorch, with no
	// signal handler yet.
	deadline := time.Now().Add(time.Minute)
	for !waitsOnPipe(cmd.Process.Pid) {
		if _, err := os.Stat("/proc/self/task"); err != nil {
			time.Sleep(10 * time.Second) // no /proc: give it time
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not blocked on the pipe after a minute")
		}
		select {
		case err := <-done:
			t.Fatalf("exited before blocking: %v: %s", err, errb)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return cmd, errb, done
}

// waitsOnPipe reports whether one of pid's threads sleeps in the kernel
// waiting for the other end of a named pipe.
func waitsOnPipe(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, w := range tasks {
		if b, err := os.ReadFile(w); err == nil && (strings.Contains(string(b), "partner") || strings.Contains(string(b), "fifo")) {
			return true
		}
	}
	return false
}

// TestSignalEndsBlockedRun: SIGTERM (143) and SIGINT (130) end a process
// that is blocked in I/O within the grace period, a second signal at once,
// with one "gopruner: " line.
func TestSignalEndsBlockedRun(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		sigs   []syscall.Signal
		code   int
		within time.Duration
		word   string
	}{
		{"SIGTERM", []syscall.Signal{syscall.SIGTERM}, 143, signalGrace + 3*time.Second, "terminated (SIGTERM)"},
		{"SIGINT", []syscall.Signal{syscall.SIGINT}, 130, signalGrace + 3*time.Second, "interrupted (SIGINT)"},
		{"SIGTERM twice", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}, 143, 2 * time.Second, "a second signal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd, errb, done := blockedRun(t)
			start := time.Now()
			for _, s := range c.sigs {
				if err := cmd.Process.Signal(s); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: still running 30 s after the signal", c.name)
			}
			wall := time.Since(start)
			t.Logf("%s: exit %d after %v: %s", c.name, cmd.ProcessState.ExitCode(), wall, strings.TrimSpace(errb.String()))
			if wall > c.within {
				t.Errorf("took %v, want at most %v", wall, c.within)
			}
			checkErrLine(t, cliResult{stderr: errb.String(), code: cmd.ProcessState.ExitCode()}, c.code, c.word, "--resume")
		})
	}
}

// TestSIGTERMKeepsCheckpoint: SIGTERM after my_pruning's first iteration
// exits 143 with the checkpoint valid, and --resume finishes from it.
func TestSIGTERMKeepsCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("my_pruning runs")
	}
	t.Parallel()
	model := secModel(t)
	dataset := smallMNIST(t)
	dir := t.TempDir()
	start := time.Now()
	code, stderr, ok := interrupt(t, dir, myPruningArgs(model, dataset), syscall.SIGTERM)
	if !ok {
		t.Skip("the run finished before it could be interrupted")
	}
	t.Logf("SIGTERM: exit %d (%v after start): %s", code, time.Since(start), lastLine(stderr))
	if code != 143 || !strings.Contains(lastLine(stderr), "SIGTERM") {
		t.Errorf("exit %d, last line %q; want 143 naming SIGTERM", code, lastLine(stderr))
	}
	b, err := os.ReadFile(filepath.Join(dir, "exp", "m", "checkpoint.json"))
	if err != nil {
		t.Fatalf("no checkpoint after SIGTERM: %v", err)
	}
	var ck map[string]any
	if err := json.Unmarshal(b, &ck); err != nil {
		t.Fatalf("checkpoint.json is not valid JSON after SIGTERM: %v", err)
	}
	if r := runIn(t, dir, myPruningArgs(model, dataset, "--resume")...); r.code != 0 {
		t.Fatalf("--resume after SIGTERM: exit %d: %s", r.code, lastLine(r.stderr))
	}
}

// TestUntrustedFileLimits: a YAML alias bomb, a data.csv whose first row
// is 1 GB long and a plan.json with 10⁶ tensors fail fast with exit 2 and
// one line naming the file and the key or row.
func TestUntrustedFileLimits(t *testing.T) {
	t.Parallel()
	model := fixtures.Path(t, "smallcnn_scripted.pt")
	var bomb strings.Builder
	bomb.WriteString(`a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for c := 'b'; c <= 'i'; c++ {
		p := string(c - 1)
		bomb.WriteString(string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+p+",", 8) + "*" + p + "]\n")
	}
	bomb.WriteString("iskl: *i\n")
	var plan strings.Builder
	plan.WriteString(`{"format": "gopruner-plan/1", "input_shape": [1,3,32,32], "groups": [], "tensors": {`)
	for i := range 1_000_000 {
		if i > 0 {
			plan.WriteByte(',')
		}
		fmt.Fprintf(&plan, `"t%d":{}`, i)
	}
	plan.WriteString("}}")
	setup := func(t *testing.T, dir string) {
		for name, s := range map[string]string{"bomb.yaml": bomb.String(), "plan.json": plan.String(),
			"ds/data.csv": "path,label\n"} {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// A 1 GB first row, as a sparse file: nothing is allocated, on disk
		// or in memory, unless the reader reads it all.
		if err := os.Truncate(filepath.Join(dir, "ds", "data.csv"), 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	runBadCases(t, setup, []badCase{
		{name: "YAML alias bomb", code: 2, wants: []string{"bomb.yaml:5", "e:", "alias bomb"},
			args: []string{"prune", "--config", "bomb.yaml", "--model", model, "--input-shape", "1,3,32,32"}},
		{name: "1 GB data.csv line", code: 2, wants: []string{"data.csv row 1", "longer than 65536 bytes"},
			args: trainArgs(secModel(t), "ds")},
		{name: "plan with a million tensors", code: 2, wants: []string{"plan.json", "tensors", "more than 100000"},
			args: []string{"apply", "--model", model, "--plan", "plan.json", "--out", "out.pt"}},
	})
}
