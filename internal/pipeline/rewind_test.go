package pipeline

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// TestRewind: with rewind the search runs as without it (same history,
// same kept channels), and the final model is the original cut to those
// channels with the long-term fine-tune's steps only; without it the final
// model also carries the committed candidates' short-term fine-tunes.
func TestRewind(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	run := func(rewind bool, longEpochs int) (*MyPruningResult, int) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		o := myOptions(t, "cpu")
		o.Rewind, o.LongTermEpochs = rewind, longEpochs
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Module.Close()
		if err := checkShapes(&bm.Base, res.Module, res.Kept); err != nil {
			t.Fatalf("rewind %v: %v", rewind, err)
		}
		return res, fake.Trained(res.Module)
	}
	searchOnly, shortSteps := run(false, 0)
	plain, plainSteps := run(false, 1)
	rewound, rewoundSteps := run(true, 1)
	if shortSteps == 0 || rewoundSteps == 0 {
		t.Fatalf("short-term steps %d, rewound long-term steps %d", shortSteps, rewoundSteps)
	}
	if plainSteps != shortSteps+rewoundSteps {
		t.Errorf("without rewind the final model trained %d steps, want the search's %d + the long-term %d", plainSteps, shortSteps,
			rewoundSteps)
	}
	if !reflect.DeepEqual(rewound.State.History, plain.State.History) || !reflect.DeepEqual(rewound.Kept, searchOnly.Kept) {
		t.Error("rewind changed the search")
	}
	if !rewound.State.FineTuned {
		t.Error("the rewound model was not fine-tuned")
	}
}

// TestRewindSummary: summary.json and the text summary say when the
// long-term fine-tune was rewound, and say nothing otherwise.
func TestRewindSummary(t *testing.T) {
	base := smallCNN(t)
	for _, rewind := range []bool{false, true} {
		cfg := testConfig(t, kinds.AlgorithmMyPruning)
		cfg.Rewind = rewind
		r := newRun(t, cfg, fake.New(base), mnistData(t))
		var out bytes.Buffer
		if err := r.Execute(context.Background(), &out); err != nil {
			t.Fatal(err)
		}
		s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
		if s.Rewound != rewind || strings.Contains(out.String(), "(rewind)") != rewind {
			t.Errorf("rewind %v: summary.json rewound %v, text summary:\n%s", rewind, s.Rewound, out.String())
		}
	}
}
