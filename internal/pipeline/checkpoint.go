package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
)

// Checkpoint file names inside Options.Dir.
const (
	CheckpointFile = "checkpoint.json"
	IterationsDir  = "iterations"
	// CheckpointFormat names the checkpoint.json schema.
	CheckpointFormat = "gopruner-my_pruning-checkpoint/1"
)

// Checkpoint is checkpoint.json: the search state, the kept channels of
// every group (original indices, which the state's counts cannot give),
// what the run was made from, and the model file of that state.
type Checkpoint struct {
	Format      string            `json:"format"`
	State       netadapt.State    `json:"state"`
	Kept        map[int][]int     `json:"kept"`
	Fingerprint map[string]string `json:"fingerprint"`
	Model       string            `json:"model"` // file name in the same directory
}

// checkpointer implements netadapt.Checkpointer.
type checkpointer struct {
	ev          *evaluator
	dir         string
	fingerprint map[string]string
}

// Save writes the model of the state first and checkpoint.json last, both
// atomically, so checkpoint.json always names a complete model file; then
// the per-iteration records.
func (c *checkpointer) Save(_ context.Context, s netadapt.State) error {
	name := fmt.Sprintf("iter_%03d.pt", s.Iteration)
	switch {
	case s.FineTuned:
		name = fmt.Sprintf("iter_%03d_finetuned.pt", s.Iteration)
	case s.Resized:
		name = fmt.Sprintf("iter_%03d_resized.pt", s.Iteration)
	}
	// The archive is exactly what Module.Save would write; writing the held
	// bytes spares loading the model once more.
	if err := atomicfile.WriteFile(filepath.Join(c.dir, name), c.ev.cur, 0o644); err != nil {
		return fmt.Errorf("writing the model: %w", err)
	}
	ck := Checkpoint{Format: CheckpointFormat, State: s, Kept: c.ev.keptCopy(), Fingerprint: c.fingerprint, Model: name}
	b, err := json.MarshalIndent(ck, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(c.dir, CheckpointFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", CheckpointFile, err)
	}
	if len(s.History) == 0 {
		return nil
	}
	idir := filepath.Join(c.dir, IterationsDir)
	if err := os.MkdirAll(idir, 0o755); err != nil {
		return err
	}
	rec := s.History[len(s.History)-1]
	rb, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(idir, fmt.Sprintf("iter_%03d.json", rec.Iteration)), append(rb, '\n'), 0o644)
}

// ReadCheckpoint reads dir/checkpoint.json. A missing file is a usage
// error saying there is nothing to resume.
func ReadCheckpoint(dir string) (*Checkpoint, error) {
	path := filepath.Join(dir, CheckpointFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail.Usagef("--resume: no checkpoint to resume from (%s does not exist); run without --resume to start afresh", path)
	}
	if err != nil {
		return nil, fmt.Errorf("--resume: %w", err)
	}
	var ck Checkpoint
	if err := json.Unmarshal(b, &ck); err != nil {
		return nil, fail.Usagef("--resume: %s is not a valid checkpoint: %v", path, err)
	}
	if ck.Format != CheckpointFormat {
		return nil, fail.Usagef("--resume: %s has format %q, want %q", path, ck.Format, CheckpointFormat)
	}
	return &ck, nil
}

// checkFingerprint names the first key (in sorted order) whose value
// differs between the checkpoint and this run.
func checkFingerprint(path string, saved, now map[string]string) error {
	keys := slices.Sorted(maps.Keys(saved))
	for k := range now {
		if _, ok := saved[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		s, sok := saved[k]
		n, nok := now[k]
		switch {
		case !sok:
			return fail.Usagef("--resume: %s: %s is %q in this run but absent from the checkpoint; run without --resume or use another exp_save/model_name", path, k, n)
		case !nok:
			return fail.Usagef("--resume: %s: the checkpoint has %s = %q, this run has none; run without --resume or use another exp_save/model_name", path, k, s)
		case s != n:
			return fail.Usagef("--resume: %s: %s differs: the checkpoint was made with %q, this run has %q; run without --resume or use another exp_save/model_name", path, k, s, n)
		}
	}
	return nil
}

// resume restores the evaluator from dir's checkpoint (model archive and
// kept indices, checked against each other) and returns the state to pass
// to netadapt.Run.
func resume(ev *evaluator, dir string, fingerprint map[string]string) (*netadapt.State, error) {
	ck, err := ReadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, CheckpointFile)
	if err := checkFingerprint(path, ck.Fingerprint, fingerprint); err != nil {
		return nil, err
	}
	if ck.Model == "" || filepath.Base(ck.Model) != ck.Model {
		return nil, fail.Usagef("--resume: %s: bad model file name %q", path, ck.Model)
	}
	for _, g := range ev.groups {
		if _, ok := ck.Kept[g.ID]; !ok {
			return nil, fail.Usagef("--resume: %s: no kept channels for group %d", path, g.ID)
		}
	}
	for id, k := range ck.Kept {
		g, ok := ev.group(id)
		if !ok {
			return nil, fail.Usagef("--resume: %s: group %d is not a prunable group of this model", path, id)
		}
		if n, ok := ck.State.Keep[id]; !ok || n != len(k) {
			return nil, fail.Usagef("--resume: %s: group %d keeps %d channels in the state but lists %d", path, id, n, len(k))
		}
		for i, c := range k {
			if c < 0 || c >= g.Channels || (i > 0 && c <= k[i-1]) {
				return nil, fail.Usagef("--resume: %s: group %d: kept channels are not ascending indices below %d", path, id, g.Channels)
			}
		}
	}
	mpath := filepath.Join(dir, ck.Model)
	b, err := os.ReadFile(mpath)
	if err != nil {
		return nil, fail.Usagef("--resume: the checkpoint's model: %v", err)
	}
	m, err := ev.eng.Load(b, "cpu", 0)
	if err != nil {
		return nil, fail.Usagef("--resume: %s: %v", mpath, err)
	}
	defer m.Close()
	if err := checkShapes(ev.base, m, ck.Kept); err != nil {
		return nil, fail.Usagef("--resume: %s does not match the checkpoint's kept channels: %v", mpath, err)
	}
	ev.cur, ev.curDigest, ev.kept = b, Digest(b), ck.Kept
	st := ck.State
	return &st, nil
}
