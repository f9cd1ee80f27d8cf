//go:build cgo

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// These tests run the built binary, as users do: exit codes and the
// one-line error contract are properties of the process, not of RunE.

// cliResult is one run of the binary.
type cliResult struct {
	stdout, stderr string
	code           int
	wall           time.Duration
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return execCLI(t, t.TempDir(), nil, args...) // a fresh dir: no stray ./Pruning.yaml
}

// execCLI runs the binary in dir with the clean environment plus env, and
// a 10-minute limit.
func execCLI(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fixtures.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(fixtures.CleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), wall: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("gopruner %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func demoModel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(fixtures.RepoRoot(t), "internal", "demo", "democnn.pt")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("demo model missing: %v", err) // committed: no reason to skip
	}
	return p
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// grayDigit is a small gray image whose brightness depends on the class, so
// that the classes are at least distinguishable.
func grayDigit(class, i int) image.Image {
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			v := uint8((x*7 + y*3 + i*11) % 64)
			if class == 1 && x > 8 && x < 20 {
				v += 160
			}
			img.SetGray(x, y, color.Gray{Y: v})
		}
	}
	return img
}

// tinyDataset writes n gray 28×28 images of two classes ("0", "1") with a
// data.csv; the last quarter is the val split.
func tinyDataset(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("path,label,split\n")
	for i := 0; i < n; i++ {
		class := i % 2
		name := fmt.Sprintf("img/%03d.png", i)
		writePNG(t, filepath.Join(dir, name), grayDigit(class, i))
		split := "train"
		if i >= n*3/4 {
			split = "val"
		}
		fmt.Fprintf(&csv, "%s,%d,%s\n", name, class, split)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTrainMNISTMatchesPyTorch is the acceptance test: one epoch on
// 12,000 MNIST training images (as PNG files with a data.csv) against a plain
// PyTorch loop with the same settings.
//
// The two loops cannot shuffle alike, and with lr 0.05, momentum 0.9 and
// BatchNorm the val accuracy after exactly one epoch depends on the order:
// seeds 0, 1, 2 gave 77.7/86.0/92.9% in PyTorch and 88.9/83.3/80.4% here.
// A 2-point bound on one run would be a coin toss, so the test bounds what
// is stable, the last epoch's mean training loss (0.625–0.650 in all six
// runs), tightly, and the val accuracy only loosely (a broken loader or
// label mapping lands near 10%); the gap is logged. Set
// GOPRUNER_STRICT_ACC=1 to enforce the 2-point bound anyway.
func TestTrainMNISTMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two models for an epoch each")
	}
	// The demo CNN is no judge here: after one epoch at a constant lr 0.05 its
	// val accuracy depends on the last few steps (seen 25% to 93% from
	// PyTorch alone, with seeds 0-2). This two-conv MNIST net varies far
	// less with the order (90-96%), and both loops get the same order below,
	// so two points measure the loop rather than the shuffle.
	model, _ := fixtures.Model(t, "mnistnet_scripted")
	dir := mnistCSV(t, goMNIST(t), 12000, 2000)
	out := filepath.Join(t.TempDir(), "mnist_ft.pt")

	r := runCLI(t, "train", "--model", model, "--dataset", dir, "--input-shape", "1,1,28,28",
		"--epochs", "1", "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
		"--weight-decay", "0", "--threads", "2", "--mean", "0.5", "--std", "0.5", "--seed", "0",
		"--out", out, "--json")
	if r.code != 0 {
		t.Fatalf("train: exit %d\n%s", r.code, r.stderr)
	}
	var got trainSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("train --json: %v\n%s", err, r.stdout)
	}
	if got.ValAccuracy == nil || got.ValSamples != 2000 {
		t.Fatalf("train --json: val accuracy %v on %d samples, want 2000 samples\n%s", got.ValAccuracy, got.ValSamples, r.stdout)
	}
	if !strings.Contains(r.stderr, "epoch 1/1 done") {
		t.Errorf("no per-epoch log line on a non-terminal stderr:\n%s", r.stderr)
	}
	for _, p := range []string{out, strings.TrimSuffix(out, ".pt") + ".classes.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("output missing: %v", err)
		}
	}

	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		fixtures.Missing(t, "no %s for the PyTorch reference (make deps)", py)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Both loops see the same images in the same order: gopruner's shuffle
	// for seed 0, epoch 0, without the short tail batch, so that their mean
	// train losses are comparable step for step, not only their accuracy.
	orderFile := writeTrainOrder(t, dir, 64, 0)
	ref := exec.CommandContext(ctx, py, filepath.Join(fixtures.RepoRoot(t), "scripts", "ref_train.py"),
		"--dataset", dir, "--model", model, "--input-shape", "1,1,28,28", "--epochs", "1",
		"--batch-size", "64", "--lr", "0.05", "--momentum", "0.9", "--threads", "2",
		"--mean", "0.5", "--std", "0.5", "--seed", "0", "--order", orderFile, "--json")
	var refErr bytes.Buffer
	ref.Stderr = &refErr
	refStart := time.Now()
	refOut, err := ref.Output()
	refWall := time.Since(refStart)
	if err != nil {
		if strings.Contains(refErr.String(), "No module named") {
			fixtures.Missing(t, "PyTorch reference unavailable (make deps): %s", refErr.String())
		}
		t.Fatalf("ref_train.py: %v\n%s", err, refErr.String())
	}
	var want struct {
		ValAccuracy     float64 `json:"val_accuracy"`
		LastEpochLoss   float64 `json:"last_epoch_loss"`
		WallS           float64 `json:"wall_s"`
		TrainImagesPerS float64 `json:"train_images_per_s"`
	}
	if err := json.Unmarshal(refOut, &want); err != nil {
		t.Fatalf("ref_train.py output: %v\n%s", err, refOut)
	}
	t.Logf("gopruner: val accuracy %.2f%%, %.0f train images/s, wall %.1fs (process %.1fs)",
		100**got.ValAccuracy, got.ImagesPerSec, got.WallSeconds, r.wall.Seconds())
	t.Logf("PyTorch:  val accuracy %.2f%%, %.0f train images/s, wall %.1fs (process %.1fs)",
		100*want.ValAccuracy, want.TrainImagesPerS, want.WallS, refWall.Seconds())
	t.Logf("train loss (last epoch mean) %.4f vs PyTorch %.4f", got.TrainLoss, want.LastEpochLoss)
	if d := math.Abs(got.TrainLoss - want.LastEpochLoss); d > 0.03 {
		t.Errorf("mean train loss %.4f vs PyTorch %.4f: %.3f apart, want ≤ 0.03", got.TrainLoss, want.LastEpochLoss, d)
	}
	// The same order and initial weights give the same mean train loss
	// (checked above); the acceptance is val accuracy within 2 points.
	const limit = 0.02
	if d := math.Abs(*got.ValAccuracy - want.ValAccuracy); d > limit {
		t.Errorf("val accuracy %.2f%% vs PyTorch %.2f%%: %.2f points apart, want ≤ %.0f",
			100**got.ValAccuracy, 100*want.ValAccuracy, 100*d, 100*limit)
	}
	if *got.ValAccuracy < 0.9 {
		t.Errorf("val accuracy %.2f%% after one epoch, want ≥ 90%%", 100**got.ValAccuracy)
	}
}

// writeTrainOrder writes, as JSON, the train images in the order gopruner's
// training uses for one epoch (full batches only), for ref_train.py --order.
func writeTrainOrder(t *testing.T, dir string, batch int, seed int64) string {
	t.Helper()
	ds, err := data.Open(dir, data.Options{Channels: 1, Height: 28, Width: 28, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ds.Split(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	order := tr.Order(data.BatchOptions{BatchSize: batch, Shuffle: true, Seed: seed, Epoch: 0})
	order = order[:len(order)/batch*batch]
	paths := make([]string, len(order))
	for i, k := range order {
		p := tr.Source(k)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		paths[i] = p
	}
	js, err := json.Marshal([][]string{paths})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(f, js, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEvalOutput checks eval's JSON schema (exactly accuracy, loss, samples)
// and that the text form lists every class's accuracy.
func TestEvalOutput(t *testing.T) {
	model := demoModel(t)
	dir := tinyDataset(t, 24)
	args := []string{"eval", "--model", model, "--dataset", dir, "--input-shape", "1,1,28,28", "--threads", "1"}

	r := runCLI(t, append(args, "--json")...)
	if r.code != 0 {
		t.Fatalf("eval --json: exit %d\n%s", r.code, r.stderr)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, r.stdout)
	}
	if len(raw) != 3 {
		t.Errorf("eval --json keys: %s, want exactly accuracy, loss, samples", r.stdout)
	}
	var got struct {
		Accuracy *float64 `json:"accuracy"`
		Loss     *float64 `json:"loss"`
		Samples  *int     `json:"samples"`
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, r.stdout)
	}
	if got.Accuracy == nil || got.Loss == nil || got.Samples == nil {
		t.Fatalf("eval --json lacks a field: %s", r.stdout)
	}
	if *got.Samples != 6 || *got.Accuracy < 0 || *got.Accuracy > 1 || !(*got.Loss >= 0) {
		t.Errorf("eval --json = %s, want 6 val samples, accuracy in [0,1], loss ≥ 0", r.stdout)
	}

	r = runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("eval: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"accuracy", "loss", "samples 6", "class", "\n0 ", "\n1 "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval text output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestTrainBadData: every problem with the data is the user's input (exit
// 2) and is one line naming data.csv and, where there is one, the row.
func TestTrainBadData(t *testing.T) {
	model := demoModel(t)
	cases := []struct {
		name  string
		edit  func(t *testing.T, dir string) []string // breaks the dataset; returns extra flags
		wants []string                                // in the error line
	}{
		{"corrupt image", func(t *testing.T, dir string) []string {
			if err := os.WriteFile(filepath.Join(dir, "img", "005.png"), []byte("not a png at all"), 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"data.csv row 6", "img/005.png"}},
		{"missing image", func(t *testing.T, dir string) []string {
			if err := os.Remove(filepath.Join(dir, "img", "003.png")); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"data.csv row 4", "img/003.png", "not found"}},
		{"label outside the class list", func(t *testing.T, dir string) []string {
			rewriteCSV(t, dir, func(s string) string { return strings.Replace(s, "img/007.png,1,", "img/007.png,7,", 1) })
			cls := filepath.Join(dir, "classes.json")
			if err := os.WriteFile(cls, []byte(`{"classes": ["0", "1"]}`), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--classes", cls}
		}, []string{"data.csv row 8", "img/007.png", `label "7"`}},
		{"empty train split", func(t *testing.T, dir string) []string {
			rewriteCSV(t, dir, func(s string) string { return strings.ReplaceAll(s, ",train\n", ",val\n") })
			return nil
		}, []string{"data.csv", `split "train" is empty`}},
		{"no path column", func(t *testing.T, dir string) []string {
			rewriteCSV(t, dir, func(s string) string { return strings.Replace(s, "path,label,split", "picture,label,split", 1) })
			return nil
		}, []string{"data.csv", "no path column"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tinyDataset(t, 16)
			extra := tc.edit(t, dir)
			out := filepath.Join(t.TempDir(), "out.pt")
			args := append([]string{"train", "--model", model, "--dataset", dir, "--input-shape", "1,1,28,28",
				"--batch-size", "4", "--threads", "1", "--out", out}, extra...)
			r := runCLI(t, args...)
			checkUsageLine(t, r, tc.wants...)
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s written despite the error", out)
			}
		})
	}
}

func rewriteCSV(t *testing.T, dir string, f func(string) string) {
	t.Helper()
	p := filepath.Join(dir, "data.csv")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(f(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkUsageLine asserts exit code 2 and a single "gopruner: " line on
// stderr containing every want (and no crash trace).
func checkUsageLine(t *testing.T, r cliResult, wants ...string) {
	t.Helper()
	checkErrLine(t, r, 2, wants...)
}

// TestTrainImageFolderRGB224 trains a 3×224×224 model for one short epoch on
// an ImageFolder directory (small RGB PNGs, resized by the loader), then
// evaluates the result with the class list train saved.
func TestTrainImageFolderRGB224(t *testing.T) {
	model := fixtures.Path(t, "resnet18_scripted.pt")
	dir := catsAndDogs(t, 8)
	out := filepath.Join(t.TempDir(), "r18.pt")
	r := runCLI(t, "train", "--model", model, "--dataset", dir, "--input-shape", "1,3,224,224",
		"--epochs", "1", "--batch-size", "4", "--val-fraction", "0", "--lr", "0.001",
		"--threads", "2", "--out", out, "--json")
	if r.code != 0 {
		t.Fatalf("train: exit %d\n%s", r.code, r.stderr)
	}
	var got trainSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("train --json: %v\n%s", err, r.stdout)
	}
	if got.Steps != 2 || got.Images != 8 || got.ValAccuracy != nil {
		t.Errorf("train: %d steps over %d images, val %v; want 2 steps, 8 images, no val", got.Steps, got.Images, got.ValAccuracy)
	}
	t.Logf("resnet18 3×224×224: %.1f images/s, wall %.1fs", got.ImagesPerSec, got.WallSeconds)
	if strings.Contains(r.stderr, "traced in eval mode") {
		t.Errorf("a scripted model got the traced-BatchNorm warning:\n%s", r.stderr)
	}
	classes, err := data.ReadClasses(strings.TrimSuffix(out, ".pt") + ".classes.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(classes, ",") != "cat,dog" {
		t.Errorf("saved classes %q, want cat, dog", classes)
	}
	r = runCLI(t, "eval", "--model", out, "--dataset", dir, "--input-shape", "1,3,224,224",
		"--split", "train", "--val-fraction", "0", "--threads", "2", "--json")
	if r.code != 0 {
		t.Fatalf("eval of the trained model: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"samples": 8`) {
		t.Errorf("eval: %s, want 8 samples", r.stdout)
	}
}

// catsAndDogs writes an ImageFolder of n small RGB PNGs in two classes.
func catsAndDogs(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		class := []string{"cat", "dog"}[i%2]
		img := image.NewRGBA(image.Rect(0, 0, 40, 30))
		for y := 0; y < 30; y++ {
			for x := 0; x < 40; x++ {
				c := color.RGBA{uint8(x * 6), uint8(y * 8), uint8(i * 30), 255}
				if class == "dog" {
					c.R = 255 - c.R
				}
				img.SetRGBA(x, y, c)
			}
		}
		writePNG(t, filepath.Join(dir, class, fmt.Sprintf("%d.png", i)), img)
	}
	return dir
}

// TestTrainWarnsTracedBatchNorm: a model traced in eval mode has its
// BatchNorm training flags baked in, so fine-tuning cannot update their
// statistics; train says so, naming the model, and still trains.
func TestTrainWarnsTracedBatchNorm(t *testing.T) {
	model := fixtures.Path(t, "smallcnn_traced.pt")
	r := runCLI(t, "train", "--model", model, "--dataset", catsAndDogs(t, 8), "--input-shape", "1,3,32,32",
		"--epochs", "1", "--batch-size", "4", "--val-fraction", "0", "--threads", "2",
		"--out", filepath.Join(t.TempDir(), "s.pt"))
	if r.code != 0 {
		t.Fatalf("train: exit %d\n%s", r.code, r.stderr)
	}
	want := "gopruner: warning: model " + model + ": 3 of 3 BatchNorm layers were traced in eval mode"
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}

// TestTrainRefusesOutputs: --out over the input model, or in a missing
// directory, is refused before any work and leaves the model untouched.
func TestTrainRefusesOutputs(t *testing.T) {
	src := demoModel(t)
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "net.pt")
	if err := os.WriteFile(model, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	before := sha256.Sum256(orig)
	dir := tinyDataset(t, 8)
	base := []string{"train", "--model", model, "--dataset", dir, "--input-shape", "1,1,28,28", "--batch-size", "2", "--threads", "1"}

	r := runCLI(t, append(base, "--out", model)...)
	checkUsageLine(t, r, "--out", "input model")
	after, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(after) != before {
		t.Error("the input model changed")
	}

	r = runCLI(t, append(base, "--out", filepath.Join(t.TempDir(), "no", "such", "dir", "x.pt"))...)
	checkUsageLine(t, r, "does not exist")

	r = runCLI(t, "train", "--dataset", dir, "--input-shape", "1,1,28,28", "--out", filepath.Join(t.TempDir(), "x.pt"))
	checkUsageLine(t, r, "--model")
	r = runCLI(t, "train", "--model", model, "--input-shape", "1,1,28,28", "--out", filepath.Join(t.TempDir(), "x.pt"))
	checkUsageLine(t, r, "--dataset")
	r = runCLI(t, "eval", "--model", model, "--dataset", dir)
	checkUsageLine(t, r, "--input-shape")
}
