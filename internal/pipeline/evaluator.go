package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/kinds"
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
	// cval is what candidates (and everything the search compares) are
	// validated on: val, or its fixed eval_samples subset.
	cval    *data.Split
	o       MyPruningOptions
	devs    []string
	threads []int
	groups  []*graph.Group // the original groups netadapt may cut, by id
	macs    oneshot.MACsFunc
	// anchor, under target: latency, corrects the table's prediction by
	// measuring each committed model (Anchor); nil otherwise.
	anchor *latencyAnchor

	cur       []byte // the current model, an engine archive
	curDigest string // Digest(cur)
	// orig is the original model's archive: the teacher of distilled
	// fine-tunes (o.Train.Distill).
	orig       []byte
	origDigest string
	kept       map[int][]int // every candidate group's kept channels, original indices

	scoreMu   sync.Mutex
	scoreIter int               // the iteration scores belong to
	scores    map[int][]float64 // per group, one score per CURRENT channel
	scoreErr  error

	// slots hold each cart slot's copy of the current model, so that a
	// candidate costs a copy in memory rather than an archive load. Slot i
	// is used by Evaluate's worker i, or by Commit while no worker runs.
	slots []*Slot

	disp *dispatch // the broker; nil runs candidates directly

	mu  sync.Mutex
	ran map[[2]int]ranOn // (iteration, group) → where Evaluate ran it, and its accuracy
	// held keeps the iteration's fine-tuned candidates (within
	// heldBudget), so that Commit adopts the winner instead of re-doing its
	// short-term fine-tune: with cart slots in parallel that re-run is the
	// iteration's serial tail.
	held       map[[2]int]engine.Module
	heldBytes  int
	mismatches int
	timing     CandidateTiming // summed over every candidate run (commits included)
	runs       int             // how many candidate runs timing sums
	screens    int             // how many of them were screens (Screen)
	scoring    time.Duration   // computing the criterion's scores (serial: every slot waits)
	commit     time.Duration   // Commit (serial), re-runs included
}

type ranOn struct {
	slot int
	acc  float64
}

func newEvaluator(eng engine.Engine, base *cut.Base, tr, val *data.Split, o MyPruningOptions, devs []string, threads []int,
	cands []*graph.Group, orig []byte) *evaluator {
	groups := slices.Clone(cands)
	slices.SortFunc(groups, func(x, y *graph.Group) int { return x.ID - y.ID })
	digest := Digest(orig)
	// The slots' only archive by digest is the teacher: bases come with
	// each request.
	archive := func(_ context.Context, d string) ([]byte, error) {
		if d != digest {
			return nil, fmt.Errorf("no archive %.12s here (the original model is %.12s)", d, digest)
		}
		return orig, nil
	}
	slots := make([]*Slot, len(devs))
	for i := range slots {
		slots[i] = &Slot{Eng: eng, Archive: archive}
	}
	return &evaluator{eng: eng, base: base, train: tr, val: val, cval: val.Subset(o.EvalSamples, evalSeed(o.Seed)), o: o, devs: devs, threads: threads,
		groups: groups, macs: base.MACsFunc(), cur: orig, curDigest: digest, orig: orig, origDigest: digest, kept: cut.All(cands), scoreIter: -1,
		slots: slots, ran: map[[2]int]ranOn{}, held: map[[2]int]engine.Module{}}
}

// heldBudget bounds the bytes of archive (a proxy for the parameters) that
// held candidates may take: beyond it, Commit re-runs the winner.
var heldBudget = 1 << 30 // a variable for the tests

// Close frees the slots' models and any held candidate.
func (e *evaluator) Close() {
	for _, s := range e.slots {
		s.Close()
	}
	e.dropHeld()
	if e.anchor != nil {
		e.anchor.close()
	}
}

// Anchor implements netadapt.Anchorer: under target: latency it measures
// the current model (just committed, or resumed) against the original and
// re-anchors the cost model on it; otherwise it does nothing.
func (e *evaluator) Anchor(_ context.Context, keep map[int]int) (bool, error) {
	if e.anchor == nil {
		return false, nil
	}
	for id, idx := range e.kept {
		if keep[id] != len(idx) {
			return false, fmt.Errorf("anchoring the latency: group %d keeps %d channels, the current model %d", id, keep[id], len(idx))
		}
	}
	return e.anchor.measure(e.cur, keep)
}

// dropHeld frees every held candidate.
func (e *evaluator) dropHeld() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, m := range e.held {
		m.Close()
		delete(e.held, k)
	}
	e.heldBytes = 0
}

// runOn runs req on slot and adds its timing to the run's.
func (e *evaluator) runOn(ctx context.Context, slot int, req CandidateRequest) (CandidateResult, engine.Module, error) {
	res, m, err := e.slots[slot].Run(ctx, e.cur, req, e.train, e.cval)
	if err == nil {
		e.mu.Lock()
		e.timing.Add(res.Timing)
		e.runs++
		e.mu.Unlock()
	}
	return res, m, err
}

// Timing is the summed time breakdown of every candidate run so far, how
// many runs it sums, and the iterations' serial parts: scoring and commits.
func (e *evaluator) Timing() (t CandidateTiming, runs int, scoring, commit time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.timing, e.runs, e.scoring, e.commit
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
// slot's device, short-term fine-tunes it and validates it on the
// candidates' validation set (val, or its eval_samples subset).
func (e *evaluator) Evaluate(ctx context.Context, slot int, c netadapt.Candidate) (netadapt.Result, error) {
	req, err := e.request(slot, c, true)
	if err != nil {
		return netadapt.Result{}, err
	}
	res, m, err := e.evaluate(ctx, slot, req)
	if err != nil {
		return netadapt.Result{}, err
	}
	key := [2]int{c.Iteration, c.Group}
	e.mu.Lock()
	e.ran[key] = ranOn{slot: slot, acc: res.Accuracy}
	if old := e.held[key]; old != nil {
		old.Close()
		e.heldBytes -= len(e.cur)
	}
	if m != nil && e.heldBytes+len(e.cur) <= heldBudget { // nil: run by a remote worker
		e.held[key], m = m, nil
		e.heldBytes += len(e.cur)
	}
	e.mu.Unlock()
	if m != nil {
		m.Close()
	}
	return e.result(res), nil
}

// result is what netadapt sees of a candidate run validated on cval.
func (e *evaluator) result(res CandidateResult) netadapt.Result {
	return netadapt.Result{Accuracy: res.Accuracy, Samples: e.cval.Len(), TrainLoss: res.TrainLoss,
		ValLoss: res.ValLoss, ValLossSE: res.ValLossSE, Worker: res.Worker}
}

// Screen implements netadapt.Screener: candidate c cut from the current
// model on the slot, its BatchNorm statistics re-estimated when bn_batches
// asks, and validated like Evaluate's, without the short-term fine-tune.
// Nothing of it is held for Commit: a screened candidate that wins has
// been evaluated fully since.
func (e *evaluator) Screen(ctx context.Context, slot int, c netadapt.Candidate) (netadapt.Result, error) {
	req, err := e.cutRequest(slot, c, true)
	if err != nil {
		return netadapt.Result{}, err
	}
	res, m, err := e.evaluate(ctx, slot, req)
	if m != nil {
		m.Close()
	}
	if err != nil {
		return netadapt.Result{}, err
	}
	e.mu.Lock()
	e.screens++
	e.mu.Unlock()
	return e.result(res), nil // no training loss: a screen does not train
}

// Commit makes the winner current: the fine-tuned candidate itself when
// Evaluate could hold it, else the winner re-done exactly as Evaluate did
// (same scores, same seed, same slot device and thread count), which gives
// the same tensors on CPU. VerifyCommit always re-does it and compares.
func (e *evaluator) Commit(ctx context.Context, c netadapt.Candidate) error {
	defer func(t time.Time) {
		e.mu.Lock()
		e.commit += time.Since(t)
		e.mu.Unlock()
	}(time.Now())
	key := [2]int{c.Iteration, c.Group}
	e.mu.Lock()
	r, ok := e.ran[key]
	clear(e.ran) // only this iteration's winner is needed, and only now
	won := e.held[key]
	delete(e.held, key)
	e.mu.Unlock()
	e.dropHeld()
	req, err := e.request(r.slot, c, e.o.VerifyCommit)
	if err != nil {
		if won != nil {
			won.Close()
		}
		return err
	}
	if won != nil && !e.o.VerifyCommit {
		defer won.Close()
		if err := e.adopt(won, req.Next, "pruned"); err != nil {
			return err
		}
		if afterCommit != nil {
			afterCommit(e)
		}
		return nil
	}
	if won != nil {
		won.Close()
	}
	res, m, err := e.runOn(ctx, r.slot, req)
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

// CommitJoint implements netadapt.JointCommitter: every cut of cs applied
// at once to the current model (each group's channels chosen by this
// iteration's scores, as its candidate's were), BatchNorm re-estimated
// and short-term fine-tuned as a candidate (on the winner's training
// stream) and validated, on the first slot; the result becomes current.
// The held candidates are dropped: none of them is the joint model.
func (e *evaluator) CommitJoint(ctx context.Context, cs []netadapt.Candidate) (netadapt.Result, error) {
	defer func(t time.Time) {
		e.mu.Lock()
		e.commit += time.Since(t)
		e.mu.Unlock()
	}(time.Now())
	e.mu.Lock()
	clear(e.ran)
	e.mu.Unlock()
	e.dropHeld()
	if len(cs) == 0 {
		return netadapt.Result{}, errors.New("a joint commit of no cuts")
	}
	req, err := e.request(0, cs[0], true, cs[1:]...)
	if err != nil {
		return netadapt.Result{}, err
	}
	res, m, err := e.runOn(ctx, 0, req)
	if err != nil {
		return netadapt.Result{}, err
	}
	defer m.Close()
	if err := e.adopt(m, req.Next, "pruned"); err != nil {
		return netadapt.Result{}, err
	}
	if afterCommit != nil {
		afterCommit(e)
	}
	return e.result(res), nil
}

// afterCommit, when set by a test, sees the evaluator after every commit.
var afterCommit func(e *evaluator)

// request is candidate c on slot as a self-contained piece of work: cut,
// BatchNorm re-estimated, short-term fine-tuned, validated when asked.
// The cuts of also (other groups of the same current model: a joint
// commit's runners-up) are applied with c's; c names the request and
// its seeds.
func (e *evaluator) request(slot int, c netadapt.Candidate, validate bool, also ...netadapt.Candidate) (CandidateRequest, error) {
	req, err := e.cutRequest(slot, c, validate, also...)
	if err != nil || e.o.ShortTermSteps <= 0 {
		return req, err
	}
	to := e.o.Train
	to.Steps, to.Epochs = e.o.ShortTermSteps, 0
	to.Seed = cut.DeriveSeed(e.o.Seed, "short-term", c.Iteration, e.shortTermStream(c.Group))
	req.Train = &to
	if to.Distill != nil {
		req.Teacher = e.origDigest
	}
	return req, nil
}

// cutRequest is request without the short-term fine-tune: what a screen
// runs.
func (e *evaluator) cutRequest(slot int, c netadapt.Candidate, validate bool, also ...netadapt.Candidate) (CandidateRequest, error) {
	to := make(map[int]int, 1+len(also))
	for _, k := range append([]netadapt.Candidate{c}, also...) {
		if got := len(e.kept[k.Group]); got != k.From {
			return CandidateRequest{}, fmt.Errorf("group %d has %d channels in the current model, the search says %d", k.Group, got, k.From)
		}
		if _, dup := to[k.Group]; dup {
			return CandidateRequest{}, fmt.Errorf("a joint commit cuts group %d twice", k.Group)
		}
		to[k.Group] = k.To
	}
	next, err := e.cut(to, c.Iteration)
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
	req.BN = e.bnOptions("bn", c.Iteration)
	return req, nil
}

// bnOptions is the BatchNorm re-estimation after a cut in iteration (nil
// when bn_batches is off). Its batches depend on the iteration only, so
// every candidate of an iteration is measured on the same ones.
func (e *evaluator) bnOptions(stream string, iteration int) *BNOptions {
	if e.o.BNBatches <= 0 {
		return nil
	}
	return &BNOptions{Batches: e.o.BNBatches, BatchSize: e.o.Train.BatchSize, Seed: cut.DeriveSeed(e.o.Seed, stream, iteration, 0)}
}

// cut is the current kept indices with every group of `to` reduced to its
// count there: the highest-scoring current channels by the criterion of
// this iteration.
func (e *evaluator) cut(to map[int]int, iteration int) (map[int][]int, error) {
	s, err := e.scoresFor(iteration)
	if err != nil {
		return nil, err
	}
	return e.base.CutBy(e.kept, s, to)
}

// scoresFor returns the criterion's scores of the current model, computed
// once per iteration and shared by all candidates and the commit, so that
// the same cut always drops the same channels.
func (e *evaluator) scoresFor(iteration int) (map[int][]float64, error) {
	e.scoreMu.Lock()
	defer e.scoreMu.Unlock()
	if e.scoreIter != iteration {
		t := time.Now()
		e.scores, e.scoreErr = e.computeScores(context.Background(), cut.DeriveSeed(e.o.Seed, "taylor", iteration, 0))
		e.scoreIter = iteration
		e.mu.Lock()
		e.scoring += time.Since(t)
		e.mu.Unlock()
	}
	return e.scores, e.scoreErr
}

// computeScores scores every candidate group of the current model. With
// one slot, on it with all the threads; with several and a data-driven
// criterion, every slot scores its share of the batches (slot k the
// batches k mod #slots) on its own device and thread count, and the parts
// are added in slot order: all the slots work on the scores that every
// candidate waits for. Either way the result depends only on the cart, not
// on which worker asked first. The scored copies are thrown away, so the
// BatchNorm statistics a Taylor pass updates do not matter. A copy comes
// from the slot's base where the slot runs with the same threads (loading
// it there, where the slot's candidates will find it): the candidates all
// wait for the scores.
func (e *evaluator) computeScores(ctx context.Context, seed int64) (map[int][]float64, error) {
	groups, err := e.base.CurrentGroups(e.groups, e.kept)
	if err != nil {
		return nil, err
	}
	so := engine.ScoreOptions{Batches: e.o.TaylorBatches, BatchSize: e.o.Train.BatchSize, Seed: seed}
	parts := len(e.devs)
	if e.o.Criterion == kinds.L2Norm || parts == 1 || e.o.TaylorBatches < parts {
		m, err := e.scoreCopy(0, e.allThreads(e.o.Threads))
		if err != nil {
			return nil, err
		}
		defer m.Close()
		return m.Scores(ctx, e.o.Criterion, groups, e.train, so)
	}
	got := make([]map[int][]float64, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() {
			m, err := e.scoreCopy(k, e.threads[k])
			if err != nil {
				errs[k] = err
				return
			}
			defer m.Close()
			o := so
			o.Part, o.Parts = k, parts
			got[k], errs[k] = m.Scores(ctx, e.o.Criterion, groups, e.train, o)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := got[0]
	for _, part := range got[1:] {
		for id, s := range part {
			for c, v := range s {
				out[id][c] += v
			}
		}
	}
	return out, nil
}

// validateArchive validates an archive on the first slot with threads CPU
// threads (0: the slot's share), on the whole val split and on the
// candidates' subset of it (the same number when there is none).
func (e *evaluator) validateArchive(ctx context.Context, b []byte, threads int) (full, sub float64, err error) {
	m, err := e.eng.Load(b, e.devs[0], e.allThreads(threads))
	if err != nil {
		return 0, 0, err
	}
	defer m.Close()
	if full, err = validate(ctx, m, e.val, e.o.EvalBatch); err != nil || e.cval == e.val {
		return full, full, err
	}
	sub, err = validate(ctx, m, e.cval, e.o.EvalBatch)
	return full, sub, err
}

// scoreCopy is a copy of the current model on slot k's device with
// threads, for scoring: from the slot's base when the slot runs with those
// threads, else loaded apart.
func (e *evaluator) scoreCopy(k, threads int) (engine.Module, error) {
	if threads == e.threads[k] {
		return e.slots[k].Copy(e.cur, e.curDigest, e.devs[k], threads)
	}
	return e.eng.Load(e.cur, e.devs[k], threads)
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
	m, err := e.loadCut(e.cur, e.threads[0], e.kept, next)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if bn := e.bnOptions("bn-resize", 0); bn != nil {
		if _, err := m.RecalibrateBN(ctx, e.train, bn.Batches, bn.BatchSize, bn.Seed); err != nil {
			return 0, err
		}
	}
	acc, err := validate(ctx, m, e.cval, e.o.EvalBatch)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, next, "resized")
}

// FineTune trains the current model (with rewind, the original cut to the
// current model's channels) for LongTermEpochs on the first slot with all
// the CPU threads (nothing else runs now) and validates it on the whole val
// split (the search is over: nothing compares this accuracy).
func (e *evaluator) FineTune(ctx context.Context) (float64, error) {
	threads := e.allThreads(e.o.Threads)
	var m engine.Module
	var err error
	if e.o.Rewind {
		// The same channels, at the weights they had before the search.
		if m, err = e.loadCut(e.orig, threads, cut.All(e.groups), e.kept); err == nil {
			if err = checkShapes(e.base, m, e.kept); err != nil {
				m.Close()
			}
		}
		if err != nil {
			return 0, fmt.Errorf("rewind: %w", err)
		}
	} else if m, err = e.eng.Load(e.cur, e.devs[0], threads); err != nil {
		return 0, err
	}
	defer m.Close()
	to := e.o.Train
	to.Steps, to.Epochs = 0, e.o.LongTermEpochs
	to.Seed = cut.DeriveSeed(e.o.Seed, "long-term", 0, 0)
	if to.Distill != nil {
		// Slot 0 is idle now and on this device: its teacher serves.
		if to.Teacher, err = e.slots[0].Teacher(ctx, e.origDigest, e.devs[0]); err != nil {
			return 0, err
		}
	}
	if _, err := m.Fit(ctx, e.train, to); err != nil {
		return 0, err
	}
	acc, err := validate(ctx, m, e.val, e.o.EvalBatch)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, e.kept, "fine-tuned")
}

// loadCut loads archive src, whose channels are from (original indices),
// on the first slot's device and cuts it to to.
func (e *evaluator) loadCut(src []byte, threads int, from, to map[int][]int) (engine.Module, error) {
	ed, groups, err := e.base.Edits(from, to)
	if err != nil {
		return nil, err
	}
	m, err := e.eng.Load(src, e.devs[0], threads)
	if err != nil {
		return nil, err
	}
	if err := m.Cut(ed, groups); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
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
