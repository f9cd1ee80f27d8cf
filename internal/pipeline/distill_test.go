package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// trained reads a saved fake model's training counters.
func trained(t *testing.T, path string) (steps, distilled int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Trained   int `json:"trained"`
		Distilled int `json:"distilled"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Trained, st.Distilled
}

// TestDistillRuns: with distill on, every fine-tune step of the final model
// (the winners' short-term fine-tunes and the long-term one for my_pruning,
// the fine-tune for L2Norm) learnt from the original model (the fake
// refuses any other teacher), through the broker's in-process workers and
// directly; summary.json records the settings. With it off nothing is
// distilled and summary.json has no distill field.
func TestDistillRuns(t *testing.T) {
	base := smallCNN(t)
	for _, tc := range []struct {
		name    string
		alg     kinds.Algorithm
		distill bool
		direct  bool
	}{
		{"my_pruning", kinds.AlgorithmMyPruning, true, false},
		{"my_pruning direct", kinds.AlgorithmMyPruning, true, true},
		{"my_pruning off", kinds.AlgorithmMyPruning, false, false},
		{"L2Norm", kinds.AlgorithmL2Norm, true, false},
		{"L2Norm off", kinds.AlgorithmL2Norm, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := fake.New(base)
			cfg := testConfig(t, tc.alg)
			cfg.Distill, cfg.DistillTemperature, cfg.DistillWeight = tc.distill, 3, 0.25
			r := newRun(t, cfg, eng, mnistData(t))
			r.Broker.Direct = tc.direct
			var out bytes.Buffer
			if err := r.Execute(context.Background(), &out); err != nil {
				t.Fatal(err)
			}
			if eng.Live() != 0 {
				t.Errorf("%d modules left open (the slots' teachers?)", eng.Live())
			}
			steps, distilled := trained(t, r.Out)
			want := 0
			if tc.distill {
				want = steps
			}
			if steps == 0 || distilled != want {
				t.Errorf("%d of %d training steps distilled, want %d", distilled, steps, want)
			}
			s := readSummary(t, filepath.Join(r.RunDir, "summary.json"))
			var wantS *summary.Distill
			if tc.distill {
				wantS = &summary.Distill{Temperature: 3, Weight: 0.25}
			}
			if (s.Distill == nil) != (wantS == nil) || (wantS != nil && *s.Distill != *wantS) {
				t.Errorf("summary.json distill %+v, want %+v", s.Distill, wantS)
			}
			raw, err := os.ReadFile(filepath.Join(r.RunDir, "summary.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.distill && bytes.Contains(raw, []byte(`"distill"`)) {
				t.Errorf("summary.json of a run without distillation mentions it")
			}
			if got := strings.Contains(out.String(), "distillation from the original model (temperature 3, weight 0.25)"); got != tc.distill {
				t.Errorf("the text summary says distillation: %v, want %v", got, tc.distill)
			}
		})
	}
}

// TestDistillSameHistoryAcrossPaths: a distilled search picks the same
// candidates with one slot, with two, and with the broker or without it,
// as an undistilled one does.
func TestDistillSameHistoryAcrossPaths(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	history := func(direct bool, slots ...string) []int {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		o := myOptions(t, slots...)
		o.Broker.Direct = direct
		o.Train.Distill = &engine.Distill{Temperature: 4, Weight: 0.5}
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Module.Close()
		if fake.Distilled(res.Module) == 0 {
			t.Errorf("slots %v direct %v: the final model was never distilled", slots, direct)
		}
		var h []int
		for _, it := range res.State.History {
			h = append(h, it.Group, it.To)
		}
		return h
	}
	one := history(true, "cpu")
	for _, tc := range []struct {
		direct bool
		slots  []string
	}{{false, []string{"cpu"}}, {true, []string{"cpu", "cpu"}}, {false, []string{"cpu", "cpu"}}} {
		if got := history(tc.direct, tc.slots...); !equalInts(got, one) {
			t.Errorf("direct %v slots %v: history %v, one direct slot %v", tc.direct, tc.slots, got, one)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDistillRequest: a distilled request carries its settings and names
// the teacher by digest; an undistilled one marshals exactly as before
// distillation existed (its task id, hence a resumed run's stored results,
// are unchanged); a slot that cannot fetch the teacher, a teacher archive of
// another digest and RunCandidate refuse it.
func TestDistillRequest(t *testing.T) {
	base := smallCNN(t)
	eng := fake.New(base)
	bm := openSmall(context.Background(), t, eng)
	defer bm.Close()
	orig, err := bm.Module.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	plain := CandidateRequest{BaseDigest: Digest(orig), Device: "cpu", Validate: true,
		Train: &engine.TrainOptions{Steps: 2, BatchSize: 32, LR: 0.01, Seed: 1}}
	b, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("distill")) || bytes.Contains(b, []byte("teacher")) {
		t.Errorf("an undistilled request mentions distillation: %s", b)
	}
	tr, val := mnistSplits(t)
	dist := plain
	to := *plain.Train
	to.Distill = &engine.Distill{Temperature: 2, Weight: 1}
	dist.Train, dist.Teacher = &to, Digest(orig)
	if taskID(dist, "") == taskID(plain, "") {
		t.Errorf("distillation does not change the task id")
	}
	var back CandidateRequest
	if b, err = json.Marshal(dist); err == nil {
		err = json.Unmarshal(b, &back)
	}
	if err != nil || back.Teacher != dist.Teacher || back.Train.Distill == nil || *back.Train.Distill != *to.Distill {
		t.Fatalf("round trip: %+v, %v", back, err)
	}

	for _, tc := range []struct {
		name    string
		archive func(context.Context, string) ([]byte, error)
		want    string
	}{
		{"no archive source", nil, "cannot fetch the teacher"},
		{"fetch fails", func(context.Context, string) ([]byte, error) { return nil, errors.New("gone") }, "gone"},
		{"another model", func(context.Context, string) ([]byte, error) { return []byte("{}"), nil }, "teacher archive digest"},
		{"the original", func(context.Context, string) ([]byte, error) { return orig, nil }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sl := &Slot{Eng: eng, Archive: tc.archive}
			defer sl.Close()
			_, m, err := sl.Run(context.Background(), orig, back, tr, val)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if fake.Distilled(m) != 2 {
					t.Errorf("%d steps distilled, want 2", fake.Distilled(m))
				}
				// The slot keeps its teacher for the next candidate.
				_, m2, err := sl.Run(context.Background(), orig, back, tr, val)
				if err != nil {
					t.Fatal(err)
				}
				m2.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, _, err := RunCandidate(context.Background(), eng, orig, back, tr, val); err == nil || !strings.Contains(err.Error(), "no teacher") {
		t.Errorf("RunCandidate: err = %v", err)
	}
	noName := back
	noName.Teacher = ""
	sl := &Slot{Eng: eng, Archive: func(context.Context, string) ([]byte, error) { return orig, nil }}
	defer sl.Close()
	if _, _, err := sl.Run(context.Background(), orig, noName, tr, val); err == nil || !strings.Contains(err.Error(), "names no teacher") {
		t.Errorf("no teacher digest: err = %v", err)
	}
}

// TestDistillOptionsChecked: MyPruning refuses a temperature or weight out
// of range as a usage error naming the key.
func TestDistillOptionsChecked(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	for _, tc := range []struct {
		d    engine.Distill
		want string
	}{
		{engine.Distill{Temperature: 0, Weight: 0.5}, "distill_temperature 0 must be > 0"},
		{engine.Distill{Temperature: 4, Weight: 1.5}, "distill_weight 1.5 is outside [0,1]"},
		{engine.Distill{Temperature: 4, Weight: -0.5}, "distill_weight -0.5 is outside [0,1]"},
	} {
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		o := myOptions(t, "cpu")
		d := tc.d
		o.Train.Distill = &d
		_, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		bm.Close()
		if !fail.IsUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want a usage error saying %q", tc.d, err, tc.want)
		}
	}
}
