//go:build cgo

package mypruning

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"iter"
	"maps"
	"slices"
	"sync"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/graph"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/search/oneshot"
	"github.com/gopruner/gopruner/internal/torchengine/criteria"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/prune"
	"github.com/gopruner/gopruner/internal/torchengine/train"
	"github.com/gopruner/gopruner/torch"
)

// evaluator implements netadapt.Evaluator and netadapt.Finisher.
//
// cur and kept change only in Commit, Resize and FineTune, which netadapt
// never runs concurrently with Evaluate, so the workers read them without
// a lock.
type evaluator struct {
	am         *model.Analyzed
	train, val *data.Split
	o          Options
	devs       []torch.Device
	threads    []int
	groups     map[int]*graph.Group // the original groups netadapt may cut
	macs       oneshot.MACsFunc

	cur  []byte        // the current model, a TorchScript archive
	kept map[int][]int // every candidate group's kept channels, original indices

	scoreMu   sync.Mutex
	scoreIter int             // the iteration scores belong to
	scores    criteria.Scores // per group, one score per CURRENT channel
	scoreErr  error

	mu         sync.Mutex
	ran        map[[2]int]ranOn // (iteration, group) → where Evaluate ran it, and its accuracy
	mismatches int
}

type ranOn struct {
	slot int
	acc  float64
}

func newEvaluator(am *model.Analyzed, tr, val *data.Split, o Options, devs []torch.Device, threads []int,
	cands []*graph.Group, orig []byte) *evaluator {
	e := &evaluator{am: am, train: tr, val: val, o: o, devs: devs, threads: threads,
		groups: make(map[int]*graph.Group, len(cands)), macs: prune.MACsFunc(am),
		cur: orig, kept: make(map[int][]int, len(cands)), scoreIter: -1, ran: map[[2]int]ranOn{}}
	for _, g := range cands {
		e.groups[g.ID] = g
		e.kept[g.ID] = plan.All(g.Channels)
	}
	return e
}

// MACs is the ptflops cost model of the original graph under a keep vector.
func (e *evaluator) MACs(keep map[int]int) int64 { return e.macs(keep) }

// Evaluate cuts candidate c from a fresh copy of the current model on the
// slot's device, short-term fine-tunes it and validates it.
func (e *evaluator) Evaluate(ctx context.Context, slot int, c netadapt.Candidate) (float64, error) {
	acc, m, err := e.build(ctx, slot, c, true)
	if err != nil {
		return 0, err
	}
	m.Close()
	e.mu.Lock()
	e.ran[[2]int{c.Iteration, c.Group}] = ranOn{slot: slot, acc: acc}
	e.mu.Unlock()
	return acc, nil
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
	acc, m, err := e.build(ctx, r.slot, c, e.o.VerifyCommit)
	if err != nil {
		return err
	}
	defer m.Close()
	if e.o.VerifyCommit && ok && acc != r.acc {
		e.mismatches++
		e.o.Log.Warn().Int("iteration", c.Iteration).Int("group", c.Group).Float64("candidate_acc", r.acc).
			Float64("commit_acc", acc).Msg("my_pruning: the re-done winner validates differently")
	}
	next, err := e.cut(c.Group, c.To, c.Iteration)
	if err != nil {
		return err
	}
	if err := e.adopt(m, next, "pruned"); err != nil {
		return err
	}
	if afterCommit != nil {
		afterCommit(e)
	}
	return nil
}

// afterCommit, when set by a test, sees the evaluator after every commit.
var afterCommit func(e *evaluator)

// build makes candidate c on the slot: cut, short-term fine-tune, and (for
// Evaluate, or Commit with VerifyCommit) validate. The caller closes the
// module.
func (e *evaluator) build(ctx context.Context, slot int, c netadapt.Candidate, validate bool) (float64, *torch.Module, error) {
	if got := len(e.kept[c.Group]); got != c.From {
		return 0, nil, fmt.Errorf("group %d has %d channels in the current model, the search says %d", c.Group, got, c.From)
	}
	next, err := e.cut(c.Group, c.To, c.Iteration)
	if err != nil {
		return 0, nil, err
	}
	m, err := e.prunedCopy(slot, next)
	if err != nil {
		return 0, nil, err
	}
	if e.o.ShortTermSteps > 0 {
		to := e.o.Train
		to.Steps, to.Epochs = e.o.ShortTermSteps, 0
		to.Seed = deriveSeed(e.o.Seed, "short-term", c.Iteration, c.Group)
		if _, err := train.Fit(ctx, m, e.train, to); err != nil {
			m.Close()
			return 0, nil, fmt.Errorf("short-term fine-tuning: %w", err)
		}
	}
	if !validate {
		return 0, m, nil
	}
	acc, err := e.validate(ctx, m)
	if err != nil {
		m.Close()
		return 0, nil, err
	}
	return acc, m, nil
}

// cut is the current kept indices with group gid reduced to `to` channels:
// the highest-scoring current channels by the criterion of this iteration.
func (e *evaluator) cut(gid, to, iteration int) (map[int][]int, error) {
	s, err := e.scoresFor(iteration)
	if err != nil {
		return nil, err
	}
	return e.cutBy(s, map[int]int{gid: to})
}

// cutBy reduces every group in counts to its count, keeping the channels
// with the highest scores (per current channel).
func (e *evaluator) cutBy(s criteria.Scores, counts map[int]int) (map[int][]int, error) {
	next := maps.Clone(e.kept)
	for gid, to := range counts {
		k := e.kept[gid]
		if to >= len(k) {
			continue
		}
		sc, ok := s[gid]
		if !ok || len(sc) != len(k) {
			return nil, fmt.Errorf("group %d: %d scores for %d channels", gid, len(sc), len(k))
		}
		pos := plan.TopK(sc, to)
		idx := make([]int, len(pos))
		for i, p := range pos {
			idx[i] = k[p]
		}
		next[gid] = idx
	}
	return next, nil
}

// scoresFor returns the criterion's scores of the current model, computed
// once per iteration and shared by all candidates and the commit, so that
// the same cut always drops the same channels.
func (e *evaluator) scoresFor(iteration int) (criteria.Scores, error) {
	e.scoreMu.Lock()
	defer e.scoreMu.Unlock()
	if e.scoreIter != iteration {
		e.scores, e.scoreErr = e.computeScores(context.Background(), deriveSeed(e.o.Seed, "taylor", iteration, 0))
		e.scoreIter = iteration
	}
	return e.scores, e.scoreErr
}

// computeScores scores every candidate group of the current model on the
// first slot's device. Always the first slot, so the scores (and therefore
// the history) do not depend on which worker asked first.
func (e *evaluator) computeScores(ctx context.Context, seed int64) (criteria.Scores, error) {
	groups, err := e.currentGroups()
	if err != nil {
		return nil, err
	}
	m, err := e.load(0, e.cur)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if e.o.Criterion == kinds.L2Norm {
		s, err := criteria.L2(m, groups)
		if err != nil {
			return nil, fmt.Errorf("L2Norm scores: %w", err)
		}
		return s, nil
	}
	// NNI scores TaylorFOWeight in training mode; the copy is thrown away,
	// so the BatchNorm statistics it updates do not matter.
	if err := m.Train(true); err != nil {
		return nil, err
	}
	s, err := taylor(ctx, m, groups, e.train, e.o.Train.BatchSize, e.o.TaylorBatches, seed)
	if err != nil {
		return nil, fmt.Errorf("TaylorFOWeight scores: %w", err)
	}
	return s, nil
}

// taylor feeds up to n shuffled training batches to criteria.Taylor.
func taylor(ctx context.Context, m *torch.Module, groups []*graph.Group, split *data.Split, bs, n int, seed int64) (criteria.Scores, error) {
	bo := data.BatchOptions{BatchSize: bs, Shuffle: true, Seed: seed, MaxBatches: n, DropLast: split.Len() >= 2*bs}
	next, stop := iter.Pull2(split.Batches(ctx, bo))
	defer stop()
	opts := split.Dataset().Options()
	var held []*torch.Tensor
	defer func() {
		for _, t := range held {
			t.Close()
		}
	}()
	return criteria.Taylor(m, groups, func() (criteria.Batch, bool, error) {
		b, err, ok := next()
		if !ok {
			return criteria.Batch{}, false, nil
		}
		if err != nil {
			return criteria.Batch{}, false, err
		}
		x, err := torch.FromFloat32(b.X, []int64{int64(b.N), int64(opts.Channels), int64(opts.Height), int64(opts.Width)}, m.Device())
		if err != nil {
			return criteria.Batch{}, false, err
		}
		held = append(held, x)
		y, err := torch.FromInt64(b.Y, []int64{int64(b.N)}, m.Device())
		if err != nil {
			return criteria.Batch{}, false, err
		}
		held = append(held, y)
		return criteria.Batch{X: x, Y: y}, true, nil
	})
}

// currentGroups describes the candidate groups as they are in the current
// model: the channel count is what is kept, and every producer member is
// moved to where the kept channels' rows now sit in the pruned tensor. The
// criteria then score current channels in kept-index order.
func (e *evaluator) currentGroups() ([]*graph.Group, error) {
	tk := e.am.Analysis.TensorKeeps(e.kept)
	ids := slices.Sorted(maps.Keys(e.groups))
	out := make([]*graph.Group, 0, len(ids))
	for _, id := range ids {
		g := e.groups[id]
		k := e.kept[id]
		cg := &graph.Group{ID: id, Channels: len(k), Layers: g.Layers}
		for _, p := range g.Producers {
			cm, err := e.currentMember(tk, p, k)
			if err != nil {
				return nil, fmt.Errorf("group %d (%s): %w", id, shortLayers(g.Layers), err)
			}
			cg.Producers = append(cg.Producers, cm)
		}
		out = append(out, cg)
	}
	return out, nil
}

// currentMember translates an original member of a group that keeps the
// original channels k into the pruned tensor's layout. Surviving rows keep
// their order, so the layout stays Offset + c·Stride; the check makes a
// layout this cannot express an error instead of wrong scores.
func (e *evaluator) currentMember(tk map[string]map[int][]int, m graph.Member, k []int) (graph.Member, error) {
	pos, err := e.positions(tk, m.Tensor, m.Dim)
	if err != nil {
		return graph.Member{}, err
	}
	stride := max(m.Stride, 1)
	out := graph.Member{Tensor: m.Tensor, Dim: m.Dim, Stride: stride}
	for c, ch := range k {
		for j, r := range m.Indices([]int{ch}) {
			p, ok := pos[r]
			if !ok {
				return graph.Member{}, fmt.Errorf("%s: kept channel %d (row %d) is not in the current tensor", m, ch, r)
			}
			if c == 0 && j == 0 {
				out.Offset = p
			}
			if p != out.Offset+c*stride+j {
				return graph.Member{}, fmt.Errorf("%s: kept rows are not laid out as offset+c·stride", m)
			}
		}
	}
	return out, nil
}

// positions maps original indices of a tensor dim to their positions in the
// current tensor, given the current tensor keeps tk.
func (e *evaluator) positions(tk map[string]map[int][]int, name string, dim int) (map[int]int, error) {
	idx, ok := tk[name][dim]
	if !ok {
		shape, ok := e.am.Params[name]
		if !ok || dim >= len(shape) {
			return nil, fmt.Errorf("the model has no tensor %s with dim %d", name, dim)
		}
		idx = plan.All(int(shape[dim]))
	}
	pos := make(map[int]int, len(idx))
	for i, r := range idx {
		pos[r] = i
	}
	return pos, nil
}

// edits is the surgery that turns the current model (kept e.kept) into the
// one that keeps next, in positions of the current tensors, plus the new
// groups of every depthwise conv it shrinks.
func (e *evaluator) edits(next map[int][]int) ([]torch.Slice, map[string]int64, error) {
	a := e.am.Analysis
	cur := a.TensorKeeps(e.kept)
	nxt := a.TensorKeeps(next)
	for name, dims := range cur {
		for d := range dims {
			if _, ok := nxt[name][d]; !ok {
				return nil, nil, fmt.Errorf("%s dim %d would grow back: pruned channels cannot be restored", name, d)
			}
		}
	}
	var out []torch.Slice
	for _, name := range slices.Sorted(maps.Keys(nxt)) {
		s := torch.Slice{Tensor: name, Keep: map[int][]int{}}
		for d, idx := range nxt[name] {
			pos, err := e.positions(cur, name, d)
			if err != nil {
				return nil, nil, err
			}
			if len(idx) == len(pos) {
				continue // unchanged by this step
			}
			rel := make([]int, len(idx))
			for i, r := range idx {
				p, ok := pos[r]
				if !ok {
					return nil, nil, fmt.Errorf("%s dim %d: index %d was already pruned", name, d, r)
				}
				rel[i] = p
			}
			s.Keep[d] = rel
		}
		if len(s.Keep) > 0 {
			out = append(out, s)
		}
	}
	groups := map[string]int64{}
	for i := range a.Groups {
		for _, w := range a.Groups[i].DepthwiseConvs {
			for _, s := range out {
				if s.Tensor == w {
					if k, ok := s.Keep[0]; ok {
						groups[w] = int64(len(k))
					}
				}
			}
		}
	}
	return out, groups, nil
}

// prunedCopy loads the current model on the slot and cuts it to next.
func (e *evaluator) prunedCopy(slot int, next map[int][]int) (*torch.Module, error) {
	ed, groups, err := e.edits(next)
	if err != nil {
		return nil, err
	}
	m, err := e.load(slot, e.cur)
	if err != nil {
		return nil, err
	}
	if err := m.Prune(ed, groups); err != nil {
		m.Close()
		return nil, fmt.Errorf("channel surgery: %w", err)
	}
	return m, nil
}

// load makes a private copy of a model archive on the slot's device, with
// the slot's thread share.
func (e *evaluator) load(slot int, b []byte) (*torch.Module, error) {
	m, err := torch.LoadBytes(b, e.devs[slot])
	if err != nil {
		return nil, fmt.Errorf("loading the model on %s: %w", e.devs[slot], err)
	}
	if err := m.SetThreads(e.threads[slot]); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (e *evaluator) validate(ctx context.Context, m *torch.Module) (float64, error) {
	r, err := train.Evaluate(ctx, m, e.val, e.o.EvalBatch)
	if err != nil {
		return 0, fmt.Errorf("validation: %w", err)
	}
	return r.Accuracy, nil
}

// validateBytes validates an archive on the slot's device with the given
// thread count (0: the slot's share).
func (e *evaluator) validateBytes(ctx context.Context, slot int, b []byte, threads int) (float64, error) {
	m, err := e.load(slot, b)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if threads > 0 && !e.devs[slot].IsCUDA() {
		if err := m.SetThreads(threads); err != nil {
			return 0, err
		}
	}
	return e.validate(ctx, m)
}

// Resize applies the resize_alf counts, dropping the lowest-scoring
// channels of the current model, and validates the result.
func (e *evaluator) Resize(ctx context.Context, keep map[int]int) (float64, error) {
	s, err := e.computeScores(ctx, deriveSeed(e.o.Seed, "resize", 0, 0))
	if err != nil {
		return 0, err
	}
	next, err := e.cutBy(s, keep)
	if err != nil {
		return 0, err
	}
	m, err := e.prunedCopy(0, next)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	acc, err := e.validate(ctx, m)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, next, "resized")
}

// FineTune trains the current model for LongTermEpochs on the first slot
// with all the CPU threads (nothing else runs now) and validates it.
func (e *evaluator) FineTune(ctx context.Context) (float64, error) {
	m, err := e.load(0, e.cur)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if e.o.Threads > 0 && !e.devs[0].IsCUDA() {
		if err := m.SetThreads(e.o.Threads); err != nil {
			return 0, err
		}
	}
	to := e.o.Train
	to.Steps, to.Epochs = 0, e.o.LongTermEpochs
	to.Seed = deriveSeed(e.o.Seed, "long-term", 0, 0)
	if _, err := train.Fit(ctx, m, e.train, to); err != nil {
		return 0, err
	}
	acc, err := e.validate(ctx, m)
	if err != nil {
		return 0, err
	}
	return acc, e.adopt(m, e.kept, "fine-tuned")
}

// adopt makes m, whose channels are kept (original indices), the current
// model. Nothing changes when m cannot be serialised.
func (e *evaluator) adopt(m *torch.Module, kept map[int][]int, what string) error {
	b, err := m.Bytes()
	if err != nil {
		return fmt.Errorf("serialising the %s model: %w", what, err)
	}
	e.cur, e.kept = b, kept
	return nil
}

func (e *evaluator) keptCopy() map[int][]int {
	out := make(map[int][]int, len(e.kept))
	for id, k := range e.kept {
		out[id] = slices.Clone(k)
	}
	return out
}

// expectedShapes is every parameter and buffer shape of the original model
// pruned to kept (original indices).
func expectedShapes(am *model.Analyzed, kept map[int][]int) map[string][]int64 {
	tk := am.Analysis.TensorKeeps(kept)
	out := make(map[string][]int64, len(am.Params))
	for name, s := range am.Params {
		s = slices.Clone(s)
		for d, idx := range tk[name] {
			s[d] = int64(len(idx))
		}
		out[name] = s
	}
	return out
}

// checkShapes reports the first tensor of m whose shape is not what the
// kept indices give.
func checkShapes(am *model.Analyzed, m *torch.Module, kept map[int][]int) error {
	got, err := model.Params(m)
	if err != nil {
		return err
	}
	want := expectedShapes(am, kept)
	names := slices.Sorted(maps.Keys(want))
	for _, n := range names {
		g, ok := got[n]
		if !ok {
			return fmt.Errorf("tensor %s is missing", n)
		}
		if !slices.Equal(g, want[n]) {
			return fmt.Errorf("tensor %s has shape %v, the kept channels give %v", n, g, want[n])
		}
	}
	return nil
}

// deriveSeed mixes the run's seed with what a piece of work is, so that its
// randomness depends on the work and not on the slot or the order it ran in.
func deriveSeed(seed int64, what string, a, b int) int64 {
	h := fnv.New64a()
	var buf [24]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(seed))
	binary.LittleEndian.PutUint64(buf[8:], uint64(int64(a)))
	binary.LittleEndian.PutUint64(buf[16:], uint64(int64(b)))
	h.Write(buf[:])
	h.Write([]byte(what))
	return int64(h.Sum64() >> 1)
}
