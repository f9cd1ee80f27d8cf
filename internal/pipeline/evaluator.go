package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/search/oneshot"
	"github.com/gopruner/gopruner/internal/engine"
)

// evaluator implements netadapt.Evaluator and netadapt.Finisher over an
// engine.
//
// cur and kept change only in Commit, Resize and FineTune, which netadapt
// never runs concurrently with Evaluate, so the workers read them without
// a lock.
type evaluator struct {
	eng        engine.Engine
	base       *cut.Base
	train, val *data.Split
	o          MyPruningOptions
	devs       []string
	threads    []int
	groups     []*graph.Group // the original groups netadapt may cut, by id
	macs       oneshot.MACsFunc

	cur       []byte        // the current model, an engine archive
	curDigest string        // Digest(cur)
	kept      map[int][]int // every candidate group's kept channels, original indices

	scoreMu   sync.Mutex
	scoreIter int               // the iteration scores belong to
	scores    map[int][]float64 // per group, one score per CURRENT channel
	scoreErr  error

	mu         sync.Mutex
	ran        map[[2]int]ranOn // (iteration, group) → where Evaluate ran it, and its accuracy
	mismatches int
}

type ranOn struct {
	slot int
	acc  float64
}

func newEvaluator(eng engine.Engine, base *cut.Base, tr, val *data.Split, o MyPruningOptions, devs []string, threads []int,
	cands []*graph.Group, orig []byte) *evaluator {
	groups := slices.Clone(cands)
	slices.SortFunc(groups, func(x, y *graph.Group) int { return x.ID - y.ID })
	return &evaluator{eng: eng, base: base, train: tr, val: val, o: o, devs: devs, threads: threads,
		groups: groups, macs: base.MACsFunc(), cur: orig, curDigest: Digest(orig), kept: cut.All(cands), scoreIter: -1, ran: map[[2]int]ranOn{}}
}

func (e *evaluator) group(id int) (*graph.Group, bool) {
	i, ok := slices.BinarySearchFunc(e.groups, id, func(g *graph.Group, id int) int { return g.ID - id })
	if !ok {
		return nil, false
	}
	return e.groups[i], true
}

// MACs is the ptflops cost model of the original graph under a keep vector.
func (e *evaluator) MACs(keep map[int]int) int64 { return e.macs(keep) }

// Evaluate cuts candidate c from a fresh copy of the current model on the
// slot's device, short-term fine-tunes it and validates it on the whole
// validation split.
func (e *evaluator) Evaluate(ctx context.Context, slot int, c netadapt.Candidate) (netadapt.Result, error) {
	req, err := e.request(slot, c, true)
	if err != nil {
		return netadapt.Result{}, err
	}
	res, m, err := RunCandidate(ctx, e.eng, e.cur, req, e.train, e.val)
	if err != nil {
		return netadapt.Result{}, err
	}
	m.Close()
	e.mu.Lock()
	e.ran[[2]int{c.Iteration, c.Group}] = ranOn{slot: slot, acc: res.Accuracy}
	e.mu.Unlock()
	return netadapt.Result{Accuracy: res.Accuracy, Samples: e.val.Len(), TrainLoss: res.TrainLoss}, nil
}

// Commit re-does the winner exactly as Evaluate did (same scores, same
// seed, same slot device and thread count) and makes it current. Re-running
// costs one short-term fine-tune but keeps only one model per slot in
// memory instead of one per candidate.
func (e *evaluator) Commit(ctx context.Context, c netadapt.Candidate) error {
	e.mu.Lock()
	r, ok := e.ran[[2]int{c.Iteration, c.Group}]
	clear(e.ran) // only this iteration's winner is needed, and only now
	e.mu.Unlock()
	req, err := e.request(r.slot, c, e.o.VerifyCommit)
	if err != nil {
		return err
	}
	res, m, err := RunCandidate(ctx, e.eng, e.cur, req, e.train, e.val)
	if err != nil {
		return err
	}
	defer m.Close()
	if e.o.VerifyCommit && ok && res.Accuracy != r.acc {
		e.mismatches++
		e.o.Log.Warn().Int("iteration", c.Iteration).Int("group", c.Group).Float64("candidate_acc", r.acc).
			Float64("commit_acc", res.Accuracy).Msg("my_pruning: the re-done winner validates differently")
	}
	if err := e.adopt(m, req.Next, "pruned"); err != nil {
		return err
	}
	if afterCommit != nil {
		afterCommit(e)
	}
	return nil
}

// afterCommit, when set by a test, sees the evaluator after every commit.
var afterCommit func(e *evaluator)

// request is candidate c on slot as a self-contained piece of work.
func (e *evaluator) request(slot int, c netadapt.Candidate, validate bool) (CandidateRequest, error) {
	if got := len(e.kept[c.Group]); got != c.From {
		return CandidateRequest{}, fmt.Errorf("group %d has %d channels in the current model, the search says %d", c.Group, got, c.From)
	}
	next, err := e.cut(c.Group, c.To, c.Iteration)
	if err != nil {
		return CandidateRequest{}, err
	}
	ed, groups, err := e.base.Edits(e.kept, next)
	if err != nil {
		return CandidateRequest{}, err
	}
	req := CandidateRequest{BaseDigest: e.curDigest, Iteration: c.Iteration, Group: c.Group, From: c.From, To: c.To,
		Kept: e.kept, Next: next, Slices: ed, ConvGroups: groups,
		Device: e.devs[slot], Threads: e.threads[slot], Validate: validate, EvalBatch: e.o.EvalBatch}
	if e.o.ShortTermSteps > 0 {
		to := e.o.Train
		to.Steps, to.Epochs = e.o.ShortTermSteps, 0
		to.Seed = cut.DeriveSeed(e.o.Seed, "short-term", c.Iteration, e.shortTermStream(c.Group))
		req.Train = &to
	}
	return req, nil
}

// cut is the current kept indices with group gid reduced to `to` channels:
// the highest-scoring current channels by the criterion of this iteration.
func (e *evaluator) cut(gid, to, iteration int) (map[int][]int, error) {
	s, err := e.scoresFor(iteration)
	if err != nil {
		return nil, err
	}
	return e.base.CutBy(e.kept, s, map[int]int{gid: to})
}

// scoresFor returns the criterion's scores of the current model, computed
// once per iteration and shared by all candidates and the commit, so that
// the same cut always drops the same channels.
func (e *evaluator) scoresFor(iteration int) (map[int][]float64, error) {
	e.scoreMu.Lock()
	defer e.scoreMu.Unlock()
	if e.scoreIter != iteration {
		e.scores, e.scoreErr = e.computeScores(context.Background(), cut.DeriveSeed(e.o.Seed, "taylor", iteration, 0))
		e.scoreIter = iteration
	}
	return e.scores, e.scoreErr
}

// computeScores scores every candidate group of the current model on the
// first slot's device. Always the first slot, so the scores (and therefore
// the history) do not depend on which worker asked first. The scored copy
// is thrown away, so the BatchNorm statistics a Taylor pass updates do not
// matter.
func (e *evaluator) computeScores(ctx context.Context, seed int64) (map[int][]float64, error) {
	groups, err := e.base.CurrentGroups(e.groups, e.kept)
	if err != nil {
		return nil, err
	}
	m, err := e.eng.Load(e.cur, e.devs[0], e.threads[0])
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return m.Scores(ctx, e.o.Criterion, groups, e.train,
		engine.ScoreOptions{Batches: e.o.TaylorBatches, BatchSize: e.o.Train.BatchSize, Seed: seed})
}

// validateArchive validates an archive on the first slot with threads CPU
// threads (0: the slot's share).
func (e *evaluator) validateArchive(ctx context.Context, b []byte, threads int) (float64, error) {
	m, err := e.eng.Load(b, e.devs[0], e.allThreads(threads))
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return validate(ctx, m, e.val, e.o.EvalBatch)
}

// allThreads is threads for a cpu first slot when threads > 0, else the
// first slot's share.
func (e *evaluator) allThreads(threads int) int {
	if threads > 0 && e.devs[0] == "cpu" {
		return threads
	}
	return e.threads[0]
}

func validate(ctx context.Context, m engine.Module, val *data.Split, batch int) (float64, error) {
	r, err := m.Evaluate(ctx, val, batch)
	if err != nil {
		return 0, fmt.Errorf("validation: %w", err)
	}
	return r.Accuracy, nil
}

// Resize applies the resize_alf counts, dropping the lowest-scoring
// channels of the current model, and validates the result.
func (e *evaluator) Resize(ctx context.Context, keep map[int]int) (float64, error) {
	s, err := e.computeScores(ctx, cut.DeriveSeed(e.o.Seed, "resize", 0, 0))
	if err != nil {
		return 0, err
	}
	next, err := e.base.CutBy(e.kept, s, keep)
	if err != nil {
		return 0, err
	}
	ed, groups, err := e.base.Edits(e.kept, next)
	if err != nil {
		return 0, err
	}
	m, err := e.eng.Load(e.cur, e.devs[0], e.threads[0])
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if err := m.Cut(ed, groups); err != nil {
		return 0, err
	}
	acc, err := validate(ctx, m, e.val, e.o.EvalBatch)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, next, "resized")
}

// FineTune trains the current model for LongTermEpochs on the first slot
// with all the CPU threads (nothing else runs now) and validates it.
func (e *evaluator) FineTune(ctx context.Context) (float64, error) {
	m, err := e.eng.Load(e.cur, e.devs[0], e.allThreads(e.o.Threads))
	if err != nil {
		return 0, err
	}
	defer m.Close()
	to := e.o.Train
	to.Steps, to.Epochs = 0, e.o.LongTermEpochs
	to.Seed = cut.DeriveSeed(e.o.Seed, "long-term", 0, 0)
	if _, err := m.Fit(ctx, e.train, to); err != nil {
		return 0, err
	}
	acc, err := validate(ctx, m, e.val, e.o.EvalBatch)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, e.kept, "fine-tuned")
}

// adopt makes m, whose channels are kept (original indices), the current
// model. Nothing changes when m cannot be serialised.
func (e *evaluator) adopt(m engine.Module, kept map[int][]int, what string) error {
	b, err := m.Bytes()
	if err != nil {
		return fmt.Errorf("serialising the %s model: %w", what, err)
	}
	e.cur, e.curDigest, e.kept = b, Digest(b), kept
	return nil
}

func (e *evaluator) keptCopy() map[int][]int {
	out := make(map[int][]int, len(e.kept))
	for id, k := range e.kept {
		out[id] = slices.Clone(k)
	}
	return out
}

// checkShapes reports the first tensor of m whose shape is not what the
// kept indices give.
func checkShapes(base *cut.Base, m engine.Module, kept map[int][]int) error {
	got, err := m.Shapes()
	if err != nil {
		return err
	}
	return base.CheckShapes(got, kept)
}
