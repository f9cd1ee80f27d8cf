package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/search/cut"
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
	// Train is the short-term fine-tune (its Seed included); nil for none.
	Train     *engine.TrainOptions `json:"train,omitempty"`
	Validate  bool                 `json:"validate"`
	EvalBatch int                  `json:"eval_batch"`
}

// CandidateResult is what running a request gives.
type CandidateResult struct {
	BaseDigest string  `json:"base_digest"`
	Accuracy   float64 `json:"accuracy"` // 0 unless Validate
	TrainLoss  float64 `json:"train_loss"`
	Seconds    float64 `json:"seconds"`
}

// Digest names an archive.
func Digest(archive []byte) string {
	h := sha256.Sum256(archive)
	return hex.EncodeToString(h[:])
}

// RunCandidate loads archive (the one req.BaseDigest names: the caller
// looks it up by digest, so it is not hashed again here) on the request's device, cuts it, short-term
// fine-tunes it on train and, when asked, validates it on val. The caller
// closes the returned module.
func RunCandidate(ctx context.Context, eng engine.Engine, archive []byte, req CandidateRequest, train, val *data.Split) (CandidateResult, engine.Module, error) {
	start := time.Now()
	res := CandidateResult{BaseDigest: req.BaseDigest}
	m, err := eng.Load(archive, req.Device, req.Threads)
	if err != nil {
		return res, nil, err
	}
	if err := m.Cut(req.Slices, req.ConvGroups); err != nil {
		m.Close()
		return res, nil, err
	}
	if req.Train != nil {
		fr, err := m.Fit(ctx, train, *req.Train)
		if err != nil {
			m.Close()
			return res, nil, fmt.Errorf("short-term fine-tuning: %w", err)
		}
		res.TrainLoss = fr.Loss
	}
	if req.Validate {
		acc, err := validate(ctx, m, val, req.EvalBatch)
		if err != nil {
			m.Close()
			return res, nil, err
		}
		res.Accuracy = acc
	}
	res.Seconds = time.Since(start).Seconds()
	return res, m, nil
}
