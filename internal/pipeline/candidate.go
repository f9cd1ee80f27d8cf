package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/engine"
)

// CandidateRequest is one my_pruning candidate as plain data: which model it
// starts from (the archive, named by its digest), the cut in the current
// model's positions, how to fine-tune and validate it, and where. Nothing in
// it refers to memory of the process that made it, so another process (a
// worker) can run it given the archive and the data set.
type CandidateRequest struct {
	BaseDigest string `json:"base_digest"` // sha256 of the archive (Digest)

	Iteration int `json:"iteration"`
	Group     int `json:"group"`
	From      int `json:"from"`
	To        int `json:"to"`

	// Kept and Next are the group's kept channels before and after the
	// cut, relative to the original model (for the record and the commit).
	Kept map[int][]int `json:"kept"`
	Next map[int][]int `json:"next"`
	// Slices and ConvGroups are the surgery, in positions of the archive's
	// tensors.
	Slices     []cut.Slice      `json:"slices"`
	ConvGroups map[string]int64 `json:"conv_groups,omitempty"`

	Device  string `json:"device"`
	Threads int    `json:"threads"`
	// BN, when set, re-estimates the BatchNorm statistics after the cut.
	BN *BNOptions `json:"bn,omitempty"`
	// Train is the short-term fine-tune (its Seed included); nil for none.
	Train *engine.TrainOptions `json:"train,omitempty"`
	// Teacher is the digest of the archive a distilled fine-tune
	// (Train.Distill) learns from: the original model, which the worker
	// fetches like the base. "" without distillation.
	Teacher   string `json:"teacher,omitempty"`
	Validate  bool   `json:"validate"`
	EvalBatch int    `json:"eval_batch"`
}

// BNOptions are a BatchNorm re-estimation: Batches training batches of
// BatchSize, shuffled by Seed.
type BNOptions struct {
	Batches   int   `json:"batches"`
	BatchSize int   `json:"batch_size"`
	Seed      int64 `json:"seed"`
}

// CandidateResult is what running a request gives.
type CandidateResult struct {
	BaseDigest string          `json:"base_digest"`
	Accuracy   float64         `json:"accuracy"` // 0 unless Validate
	TrainLoss  float64         `json:"train_loss"`
	ValLoss    float64         `json:"val_loss,omitempty"`    // 0 unless Validate
	ValLossSE  float64         `json:"val_loss_se,omitempty"` // its standard error
	Seconds    float64         `json:"seconds"`
	Timing     CandidateTiming `json:"timing"`
	// Worker is the broker worker that ran it, as the coordinator saw the
	// result ("" on the direct path).
	Worker string `json:"worker,omitempty"`
}

// CandidateTiming is where a candidate's time went, in seconds: what the
// benchmark's per-candidate breakdown reads. Everything but the two compute
// parts is overhead.
type CandidateTiming struct {
	// Load is getting the base model onto the slot: 0 when the slot
	// already held it.
	Load float64 `json:"load_s"`
	// Surgery is the slot-local copy of the base and the cut.
	Surgery float64 `json:"surgery_s"`
	// BN is re-estimating the BatchNorm statistics after the cut,
	// BNCompute its forward passes.
	BN        float64 `json:"bn_s,omitempty"`
	BNCompute float64 `json:"bn_compute_s,omitempty"`
	// FineTune is the whole short-term fine-tune, FineTuneCompute its
	// forward, backward and optimizer steps.
	FineTune        float64 `json:"fine_tune_s"`
	FineTuneCompute float64 `json:"fine_tune_compute_s"`
	// Eval is the whole validation, EvalCompute its forward passes.
	Eval        float64 `json:"eval_s"`
	EvalCompute float64 `json:"eval_compute_s"`
	// Total is the whole run, as CandidateResult.Seconds.
	Total float64 `json:"total_s"`
	// Broker is what going through the broker added: the coordinator's
	// round trip (queue, archive, result) minus Total; 0 on the direct path.
	Broker float64 `json:"broker_s,omitempty"`
}

// Add accumulates o into t.
func (t *CandidateTiming) Add(o CandidateTiming) {
	t.Load += o.Load
	t.Surgery += o.Surgery
	t.BN += o.BN
	t.BNCompute += o.BNCompute
	t.FineTune += o.FineTune
	t.FineTuneCompute += o.FineTuneCompute
	t.Eval += o.Eval
	t.EvalCompute += o.EvalCompute
	t.Total += o.Total
	t.Broker += o.Broker
}

// Summary is t over runs candidate runs, with the iterations' serial
// scoring and commit time, as summary.json records it.
func (t CandidateTiming) Summary(runs int, scoring, commit time.Duration) *summary.CandidateTimings {
	ms := func(s float64) float64 { return math.Round(s*1e6) / 1e3 }
	return &summary.CandidateTimings{Runs: runs, TotalMs: ms(t.Total), LoadMs: ms(t.Load), SurgeryMs: ms(t.Surgery),
		FineTuneMs: ms(t.FineTune), FineTuneComputeMs: ms(t.FineTuneCompute), EvalMs: ms(t.Eval), EvalComputeMs: ms(t.EvalCompute),
		BNMs: ms(t.BN), BNComputeMs: ms(t.BNCompute), BrokerMs: ms(t.Broker), ScoringMs: ms(scoring.Seconds()), CommitMs: ms(commit.Seconds())}
}

// Digest names an archive.
func Digest(archive []byte) string {
	h := sha256.Sum256(archive)
	return hex.EncodeToString(h[:])
}

// Slot runs candidates on one device slot. It keeps the base model it last
// loaded, by digest, so that the candidates of an iteration (which all start
// from the same model) cost an in-memory copy each instead of deserialising
// the archive. A Slot is used by one goroutine at a time; Close frees it.
type Slot struct {
	Eng engine.Engine
	// Archive fetches an archive by digest: the teacher of a distilled
	// fine-tune. Nil refuses requests that name a teacher.
	Archive func(ctx context.Context, digest string) ([]byte, error)

	// mu guards the base: the iteration's scoring copies it while no
	// candidate runs, but a broker may deliver a task late.
	mu          sync.Mutex
	digest, dev string
	threads     int
	base        engine.Module

	// The teacher is loaded once per slot and kept across iterations and
	// candidates: only ever read (a forward without grad), never cut.
	teacherKey string // digest and device
	teacher    engine.Module
}

// Close frees the held base and teacher models.
func (s *Slot) Close() {
	s.mu.Lock()
	s.dropBase()
	s.mu.Unlock()
	if s.teacher != nil {
		s.teacher.Close()
		s.teacher, s.teacherKey = nil, ""
	}
}

// dropBase frees the base; the caller holds mu.
func (s *Slot) dropBase() {
	if s.base != nil {
		s.base.Close()
		s.base, s.digest = nil, ""
	}
}

// Teacher is the model of archive digest on dev, loaded on the first call
// and kept by the slot (the caller does not close it). Its threads do not
// matter: a train step runs at the trained module's thread count.
func (s *Slot) Teacher(ctx context.Context, digest, dev string) (engine.Module, error) {
	key := digest + "\x00" + dev
	if s.teacher != nil && s.teacherKey == key {
		return s.teacher, nil
	}
	if s.Archive == nil {
		return nil, fmt.Errorf("distillation: this worker cannot fetch the teacher model %.12s", digest)
	}
	b, err := s.Archive(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("distillation: the teacher model: %w", err)
	}
	if d := Digest(b); d != digest {
		return nil, fmt.Errorf("distillation: teacher archive digest %.12s, the request names %.12s", d, digest)
	}
	t, err := s.Eng.Load(b, dev, 0)
	if err != nil {
		return nil, fmt.Errorf("distillation: loading the teacher model: %w", err)
	}
	if s.teacher != nil {
		s.teacher.Close()
	}
	s.teacher, s.teacherKey = t, key
	return t, nil
}

// trainOptions are req's fine-tune settings with the teacher they name.
func (s *Slot) trainOptions(ctx context.Context, req CandidateRequest) (*engine.TrainOptions, error) {
	if req.Train == nil || req.Train.Distill == nil {
		return req.Train, nil
	}
	if req.Teacher == "" {
		return nil, errors.New("distillation: the request names no teacher model")
	}
	t, err := s.Teacher(ctx, req.Teacher, req.Device)
	if err != nil {
		return nil, err
	}
	to := *req.Train
	to.Teacher = t
	return &to, nil
}

// Run loads archive (the one req.BaseDigest names: the caller looks it up
// by digest, so it is not hashed again here) on the request's device unless
// the slot holds it already, copies and cuts it, short-term fine-tunes the
// copy on train and, when asked, validates it on val. The caller closes the
// returned module.
func (s *Slot) Run(ctx context.Context, archive []byte, req CandidateRequest, train, val *data.Split) (CandidateResult, engine.Module, error) {
	start := time.Now()
	res := CandidateResult{BaseDigest: req.BaseDigest}
	to, err := s.trainOptions(ctx, req)
	if err != nil {
		return res, nil, err
	}
	req.Train = to
	m, loaded, t, err := s.copyBase(archive, req.BaseDigest, req.Device, req.Threads)
	if err != nil {
		return res, nil, err
	}
	if loaded {
		res.Timing.Load = t.Sub(start).Seconds()
	}
	return finish(ctx, m, t, start, res, req, train, val)
}

// Copy is a private copy of archive (digest) on dev with threads, made
// from the slot's base, which it loads first unless the slot holds it: the
// iteration's scores are computed on such copies, and the slot's first
// candidate then finds its base loaded. The caller closes the copy.
func (s *Slot) Copy(archive []byte, digest, dev string, threads int) (engine.Module, error) {
	m, _, _, err := s.copyBase(archive, digest, dev, threads)
	return m, err
}

// copyBase makes archive (digest) on dev with threads the slot's base,
// loading it unless the slot holds it already (loaded), and returns a copy
// of it and when the copy began.
func (s *Slot) copyBase(archive []byte, digest, dev string, threads int) (m engine.Module, loaded bool, copied time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil || s.digest != digest || s.dev != dev || s.threads != threads {
		s.dropBase()
		b, err := s.Eng.Load(archive, dev, threads)
		if err != nil {
			return nil, false, time.Time{}, err
		}
		s.base, s.digest, s.dev, s.threads = b, digest, dev, threads
		loaded = true
	}
	copied = time.Now()
	m, err = s.base.Clone()
	return m, loaded, copied, err
}

// finish cuts m (owned: closed on an error), fine-tunes and validates it as
// req asks. Surgery is timed from t, the whole candidate from start.
func finish(ctx context.Context, m engine.Module, t, start time.Time, res CandidateResult, req CandidateRequest, train, val *data.Split) (CandidateResult, engine.Module, error) {
	if err := m.Cut(req.Slices, req.ConvGroups); err != nil {
		m.Close()
		return res, nil, err
	}
	res.Timing.Surgery = time.Since(t).Seconds()
	if req.BN != nil {
		t = time.Now()
		br, err := m.RecalibrateBN(ctx, train, req.BN.Batches, req.BN.BatchSize, req.BN.Seed)
		if err != nil {
			m.Close()
			return res, nil, err
		}
		res.Timing.BN, res.Timing.BNCompute = time.Since(t).Seconds(), br.Compute.Seconds()
	}
	if req.Train != nil {
		t = time.Now()
		fr, err := m.Fit(ctx, train, *req.Train)
		if err != nil {
			m.Close()
			return res, nil, fmt.Errorf("short-term fine-tuning: %w", err)
		}
		res.TrainLoss = fr.Loss
		res.Timing.FineTune, res.Timing.FineTuneCompute = time.Since(t).Seconds(), fr.Compute.Seconds()
	}
	if req.Validate {
		t = time.Now()
		r, err := m.Evaluate(ctx, val, req.EvalBatch)
		if err != nil {
			m.Close()
			return res, nil, fmt.Errorf("validation: %w", err)
		}
		res.Accuracy, res.ValLoss, res.ValLossSE = r.Accuracy, r.Loss, r.LossSE
		res.Timing.Eval, res.Timing.EvalCompute = time.Since(t).Seconds(), r.Compute.Seconds()
	}
	res.Seconds = time.Since(start).Seconds()
	res.Timing.Total = res.Seconds
	return res, m, nil
}

// RunCandidate runs req once, on a model loaded for it alone (no slot to
// keep it in, so no copy either). A request that distils is refused: it
// has no teacher to learn from.
func RunCandidate(ctx context.Context, eng engine.Engine, archive []byte, req CandidateRequest, train, val *data.Split) (CandidateResult, engine.Module, error) {
	start := time.Now()
	res := CandidateResult{BaseDigest: req.BaseDigest}
	if req.Train != nil && req.Train.Distill != nil {
		return res, nil, errors.New("distillation: RunCandidate has no teacher model; run the request on a Slot")
	}
	m, err := eng.Load(archive, req.Device, req.Threads)
	if err != nil {
		return res, nil, err
	}
	t := time.Now()
	res.Timing.Load = t.Sub(start).Seconds()
	return finish(ctx, m, t, start, res, req, train, val)
}
