package pipeline

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/engine/fake"
	"github.com/gopruner/gopruner/third_party/mnist"
)

// mnistNoTest is the bundled MNIST sample without its t10k files: a data
// set with train and val but no test split.
func mnistNoTest(t *testing.T) *data.Dataset {
	t.Helper()
	src := mnist.FS()
	m := fstest.MapFS{}
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), "t10k") {
			return err
		}
		b, err := fs.ReadFile(src, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.FromMNIST(m, data.Options{Channels: 1, Height: 28, Width: 28})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ds.Split(data.Test); err == nil {
		t.Fatal("the data set still has a test split")
	}
	return ds
}

// Both algorithms report the original's and the pruned model's accuracy
// on the test split when the data set has one (summary.json, the text
// summary and the report), and nothing when it has none.
func TestTestSplitAccuracy(t *testing.T) {
	base := smallCNN(t)
	for _, alg := range []kinds.Algorithm{kinds.AlgorithmL2Norm, kinds.AlgorithmMyPruning} {
		for _, withTest := range []bool{true, false} {
			name := string(alg) + "/no test"
			ds := mnistNoTest(t)
			if withTest {
				name, ds = string(alg)+"/test", mnistData(t)
			}
			t.Run(name, func(t *testing.T) {
				cfg := testConfig(t, alg)
				r := newRun(t, cfg, fake.New(base), ds)
				var out bytes.Buffer
				if err := r.Execute(context.Background(), &out); err != nil {
					t.Fatal(err)
				}
				js, err := os.ReadFile(filepath.Join(r.RunDir, "summary.json"))
				if err != nil {
					t.Fatal(err)
				}
				page, err := os.ReadFile(filepath.Join(r.RunDir, "report.html"))
				if err != nil {
					t.Fatal(err)
				}
				s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
				if !withTest {
					if s.TestAccBefore != nil || s.TestAccAfter != nil || bytes.Contains(js, []byte("test_acc")) ||
						strings.Contains(out.String(), "test accuracy") || bytes.Contains(page, []byte("Test accuracy")) {
						t.Errorf("test accuracy reported without a test split: %v %v", s.TestAccBefore, s.TestAccAfter)
					}
					return
				}
				if s.TestAccBefore == nil || s.TestAccAfter == nil || !(*s.TestAccBefore > 0) || !(*s.TestAccAfter > 0) {
					t.Fatalf("test accuracy %v / %v", s.TestAccBefore, s.TestAccAfter)
				}
				if *s.TestAccAfter >= *s.TestAccBefore {
					t.Errorf("the fake engine's pruned model should lose test accuracy: %v -> %v", *s.TestAccBefore, *s.TestAccAfter)
				}
				if !strings.Contains(out.String(), "test accuracy") || !bytes.Contains(page, []byte("<td>Test accuracy</td>")) {
					t.Errorf("the text summary or the report lacks the test accuracy:\n%s", out.String())
				}
				if _, ok := s.Timings.PhaseMs["test_eval"]; !ok {
					t.Errorf("no test_eval phase in %v", s.Timings.PhaseMs)
				}
			})
		}
	}
}
