package netadapt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/plan"
)

// runner holds one Run's validated inputs.
type runner struct {
	groups []Group // sorted by id
	byID   map[int]Group
	ev     Evaluator
	fin    Finisher       // nil unless ResizeAlf or FineTune
	sc     Screener       // nil unless Shortlist > 0
	jc     JointCommitter // nil unless CommitTop > 1
	ck     Checkpointer
	opt    Options
	hookMu sync.Mutex // serialises the hooks
}

// Run searches from start (a checkpoint's state; nil for a fresh search)
// until the target is reached, no candidate is left, or ctx is cancelled,
// then runs the resize_alf and long-term fine-tuning stages the options ask
// for. Every finished iteration and finished stage is committed and saved
// through ck (nil: no checkpoints) before the next begins.
//
// On resume the caller must have made the evaluator's current model match
// start.Keep; an uninterrupted run and a resumed one then produce the same
// history. When ctx is cancelled Run returns the state of the last finished
// iteration and ctx.Err(); the interrupted iteration is discarded. Other
// errors come back with the last state Run reached.
func Run(ctx context.Context, groups []Group, ev Evaluator, ck Checkpointer, start *State, opt Options) (*State, error) {
	r, err := newRunner(groups, ev, ck, opt)
	if err != nil {
		return nil, err
	}
	st, err := r.initial(ctx, start)
	if err != nil {
		return nil, err
	}
	for !st.Done {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if st.MACs <= st.Target {
			// Only a checkpoint from before the target check can get here;
			// record the end so the next resume does not come back.
			st.Done, st.Reason = true, ReasonTargetReached
			if err := r.save(ctx, st, "after the search"); err != nil {
				return st, err
			}
			break
		}
		cands, budget := r.candidates(st)
		if len(cands) == 0 {
			st.Done, st.Reason = true, ReasonNothingLeft
			if err := r.save(ctx, st, "after the search"); err != nil {
				return st, err
			}
			break
		}
		next, rec, err := r.iterate(ctx, st, cands, budget)
		if err != nil {
			return st, err
		}
		st = next
		if err := r.save(ctx, st, fmt.Sprintf("after iteration %d", st.Iteration)); err != nil {
			return st, err
		}
		r.hook(func() {
			if r.opt.OnIteration != nil {
				r.opt.OnIteration(cloneRecord(rec))
			}
		})
	}
	return r.finish(ctx, st)
}

func newRunner(groups []Group, ev Evaluator, ck Checkpointer, opt Options) (*runner, error) {
	if ev == nil {
		return nil, errors.New("netadapt: no evaluator")
	}
	if !(opt.P > 0 && opt.P < 1) {
		return nil, fmt.Errorf("netadapt: P %v is outside (0,1)", opt.P)
	}
	if !(opt.DeltaCrop > 0 && opt.DeltaCrop < 1) {
		return nil, fmt.Errorf("netadapt: delta_crop %v is outside (0,1)", opt.DeltaCrop)
	}
	if opt.Alf < 1 {
		return nil, fmt.Errorf("netadapt: alf %d must be >= 1", opt.Alf)
	}
	opt.Select, opt.Step = kinds.Or(opt.Select, kinds.SelectAcc), kinds.Or(opt.Step, kinds.StepChannels)
	if _, err := kinds.Parse("select", string(opt.Select), kinds.Selects); err != nil {
		return nil, fmt.Errorf("netadapt: %w", err)
	}
	if _, err := kinds.Parse("step", string(opt.Step), kinds.Steps); err != nil {
		return nil, fmt.Errorf("netadapt: %w", err)
	}
	opt.Schedule = kinds.Or(opt.Schedule, kinds.ScheduleConstant)
	if _, err := kinds.Parse("delta_schedule", string(opt.Schedule), kinds.Schedules); err != nil {
		return nil, fmt.Errorf("netadapt: %w", err)
	}
	if opt.Schedule == kinds.ScheduleDecay && !(opt.DeltaDecay > 0 && opt.DeltaDecay <= 1) {
		return nil, fmt.Errorf("netadapt: delta_decay %v is outside (0,1]", opt.DeltaDecay)
	}
	if opt.MaxGroupCut == 0 {
		opt.MaxGroupCut = 1
	}
	if !(opt.MaxGroupCut > 0 && opt.MaxGroupCut <= 1) {
		return nil, fmt.Errorf("netadapt: max_group_cut %v is outside (0,1]", opt.MaxGroupCut)
	}
	opt.TieBreak = kinds.Or(opt.TieBreak, kinds.TieBreakNone)
	if _, err := kinds.Parse("tie_break", string(opt.TieBreak), kinds.TieBreaks); err != nil {
		return nil, fmt.Errorf("netadapt: %w", err)
	}
	if len(opt.Slots) == 0 {
		return nil, errors.New("netadapt: no device slots (cart is empty)")
	}
	if !finite(opt.BaseAccuracy) {
		return nil, fmt.Errorf("netadapt: base accuracy %v is not a finite number", opt.BaseAccuracy)
	}
	r := &runner{ev: ev, ck: ck, opt: opt, byID: make(map[int]Group, len(groups))}
	for _, g := range groups {
		if _, dup := r.byID[g.ID]; dup {
			return nil, fmt.Errorf("netadapt: group id %d appears twice", g.ID)
		}
		if g.Channels < 1 {
			return nil, fmt.Errorf("netadapt: group %d (%s) has %d channels", g.ID, layerList(g.Layers), g.Channels)
		}
		r.byID[g.ID] = g
	}
	r.groups = slices.Clone(groups)
	slices.SortFunc(r.groups, func(a, b Group) int { return a.ID - b.ID })
	for _, id := range slices.Sorted(maps.Keys(opt.Exclude)) {
		if _, ok := r.byID[id]; !ok && opt.Exclude[id] {
			return nil, fmt.Errorf("netadapt: excluded group %d does not exist", id)
		}
	}
	if opt.Shortlist < 0 {
		return nil, fmt.Errorf("netadapt: shortlist %d is negative", opt.Shortlist)
	}
	if opt.Shortlist > 0 {
		sc, ok := ev.(Screener)
		if !ok {
			return nil, errors.New("netadapt: a shortlist asked for, but the evaluator is not a Screener")
		}
		r.sc = sc
	}
	if opt.CommitTop < 0 {
		return nil, fmt.Errorf("netadapt: commit_top %d is negative", opt.CommitTop)
	}
	if opt.CommitTop > 1 {
		jc, ok := ev.(JointCommitter)
		if !ok {
			return nil, errors.New("netadapt: commit_top above 1 asked for, but the evaluator cannot commit several cuts at once")
		}
		r.jc = jc
	}
	if opt.ResizeAlf || opt.FineTune {
		fin, ok := ev.(Finisher)
		if !ok {
			return nil, errors.New("netadapt: resize_alf or long-term fine-tuning asked for, but the evaluator is not a Finisher")
		}
		r.fin = fin
	}
	return r, nil
}

// initial is the fresh state, or start checked against the groups and the
// options, so that a checkpoint of another model or another P is refused
// rather than silently continued.
func (r *runner) initial(ctx context.Context, start *State) (*State, error) {
	full := make(map[int]int, len(r.groups))
	for _, g := range r.groups {
		full[g.ID] = g.Channels
	}
	macs0 := r.ev.MACs(full)
	if macs0 <= 0 {
		return nil, fmt.Errorf("netadapt: the unpruned model has %d MACs", macs0)
	}
	// The relative nudge keeps (1−0.9)·100 = 9.999999999999998 at 10.
	target := int64(math.Floor((1 - r.opt.P) * float64(macs0) * (1 + 1e-12)))
	if start == nil {
		return &State{Keep: full, MACs0: macs0, Target: target, MACs: macs0,
			Accuracy0: r.opt.BaseAccuracy, Accuracy: r.opt.BaseAccuracy}, nil
	}
	st := cloneState(start)
	if st.MACs0 != macs0 {
		return nil, fmt.Errorf("netadapt: checkpoint is of a model with %d MACs, this one has %d", st.MACs0, macs0)
	}
	if st.Target != target {
		return nil, fmt.Errorf("netadapt: checkpoint has MACs target %d, P %v gives %d", st.Target, r.opt.P, target)
	}
	if len(st.Keep) != len(r.groups) {
		return nil, fmt.Errorf("netadapt: checkpoint has %d groups, the model %d", len(st.Keep), len(r.groups))
	}
	for _, g := range r.groups {
		k, ok := st.Keep[g.ID]
		if !ok {
			return nil, fmt.Errorf("netadapt: checkpoint lacks group %d (%s)", g.ID, layerList(g.Layers))
		}
		if k < 1 || k > g.Channels {
			return nil, fmt.Errorf("netadapt: checkpoint keeps %d of %d channels of group %d (%s)", k, g.Channels, g.ID, layerList(g.Layers))
		}
	}
	if a, ok := r.ev.(Anchorer); ok {
		moved, err := a.Anchor(ctx, maps.Clone(st.Keep))
		if err != nil {
			return nil, fmt.Errorf("netadapt: measuring the resumed model: %w", err)
		}
		if moved {
			// The checkpoint's cost came from an earlier measurement.
			st.MACs = r.ev.MACs(st.Keep)
			return st, nil
		}
	}
	if m := r.ev.MACs(st.Keep); m != st.MACs {
		return nil, fmt.Errorf("netadapt: checkpoint says %d MACs, its keep counts give %d", st.MACs, m)
	}
	return st, nil
}

// anchor lets an Anchorer correct its cost model by measuring the model
// just committed, and takes st's cost from the corrected model.
func (r *runner) anchor(ctx context.Context, st *State) error {
	a, ok := r.ev.(Anchorer)
	if !ok {
		return nil
	}
	moved, err := a.Anchor(ctx, maps.Clone(st.Keep))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("measuring the committed model: %w", err)
	}
	if moved {
		st.MACs = r.ev.MACs(st.Keep)
	}
	return nil
}

// unit is the step of g's keep count: alf combined with its block.
func (r *runner) unit(g Group) int { return plan.Unit(r.opt.Alf, g.Block) }

// blocks maps every group with blocks to its block.
func (r *runner) blocks() map[int]int {
	out := map[int]int{}
	for _, g := range r.groups {
		if g.Block > 1 {
			out[g.ID] = g.Block
		}
	}
	return out
}

// candidates makes one candidate per group that can still be cut, in group
// id order. A cut that does not lower the MACs is left out: it cannot bring
// the target closer, and acc_per_mac would divide by zero.
func (r *runner) candidates(st *State) ([]Candidate, int64) {
	delta := r.delta(st.Iteration + 1)
	var budget int64
	var reach map[int]int64
	if r.opt.Step == kinds.StepMACs {
		budget = int64(math.Ceil(delta*float64(st.MACs0) - eps))
		budget = max(1, min(budget, st.MACs-st.Target))
		if r.opt.MaxGroupCut < 1 {
			var capped int64
			reach, capped = r.reach(st)
			budget = max(1, min(budget, capped))
		}
	}
	var out []Candidate
	for _, g := range r.groups {
		if r.opt.Exclude[g.ID] {
			continue
		}
		cur := st.Keep[g.ID]
		var to int
		var ok bool
		if reach != nil && reach[g.ID] < budget {
			continue // cannot remove the budget within max_group_cut
		}
		if r.opt.Step == kinds.StepMACs {
			to, ok = macsStep(cur, r.unit(g), st.MACs-budget, func(k int) int64 {
				return r.ev.MACs(withKeep(st.Keep, g.ID, k))
			})
		} else {
			to, ok = channelStep(cur, r.unit(g), delta)
		}
		if !ok {
			continue
		}
		keep := withKeep(st.Keep, g.ID, to)
		m := r.ev.MACs(keep)
		if r.opt.Step != kinds.StepMACs && m < st.Target {
			// A full delta_crop cut that passes the target removes more than
			// the run asks for; as in NetAdapt, the candidate then cuts only as
			// far as the target, keeping the channels it need not lose.
			if k, _ := macsStep(cur, r.unit(g), st.Target, func(k int) int64 {
				return r.ev.MACs(withKeep(st.Keep, g.ID, k))
			}); k > to {
				to, keep = k, withKeep(st.Keep, g.ID, k)
				m = r.ev.MACs(keep)
			}
		}
		if m >= st.MACs {
			continue
		}
		out = append(out, Candidate{Iteration: st.Iteration + 1, Group: g.ID, Layers: slices.Clone(g.Layers),
			From: cur, To: to, MACs: m, Keep: keep})
	}
	return out, budget
}

// reach returns, for every group that may be cut, the MACs it removes when
// it loses the largest share of its channels that MaxGroupCut allows, and
// the upper median of those: a budget at most half of the groups cannot
// remove within the limit. Groups that cannot lose a channel within it have
// reach 0.
func (r *runner) reach(st *State) (map[int]int64, int64) {
	out := map[int]int64{}
	var all []int64
	for _, g := range r.groups {
		if r.opt.Exclude[g.ID] {
			continue
		}
		cur, unit := st.Keep[g.ID], r.unit(g)
		floor := capKeep(cur, unit, r.opt.MaxGroupCut)
		var m int64
		if floor < cur {
			m = st.MACs - r.ev.MACs(withKeep(st.Keep, g.ID, floor))
		}
		out[g.ID] = m
		if m > 0 {
			all = append(all, m)
		}
	}
	if len(all) == 0 {
		return out, 0
	}
	slices.Sort(all)
	return out, all[len(all)/2]
}

// capKeep is the smallest keep count a group of cur channels may reach in one
// step when it may lose at most share of them: the least multiple of unit
// (at least unit) that keeps ceil((1−share)·cur) channels, or one unit below
// cur when the share is less than a unit. It is cur when the group cannot be
// cut at all.
func capKeep(cur, unit int, share float64) int {
	if unit < 1 {
		unit = 1
	}
	need := max(1, int(math.Ceil((1-share)*float64(cur)-eps)))
	k := max(unit, (need+unit-1)/unit*unit)
	if k >= cur {
		// A share smaller than one unit of the group still allows a one-unit
		// cut, or coarse alf would freeze the group for good.
		if k = (cur - 1) / unit * unit; k < unit {
			return cur
		}
	}
	return k
}

// delta is the step share of iteration (1-based) under the schedule. The
// constant schedule returns DeltaCrop itself, so its arithmetic is exactly
// what it was before schedules existed.
func (r *runner) delta(iteration int) float64 {
	if r.opt.Schedule != kinds.ScheduleDecay {
		return r.opt.DeltaCrop
	}
	return r.opt.DeltaCrop * math.Pow(r.opt.DeltaDecay, float64(iteration-1))
}

// iterate evaluates the candidates, picks the winner, commits it and returns
// the next state. On any failure st is untouched.
func (r *runner) iterate(ctx context.Context, st *State, cands []Candidate, budget int64) (*State, IterationRecord, error) {
	r.hook(func() {
		if r.opt.OnIterationStart != nil {
			cs := make([]Candidate, len(cands))
			for i, c := range cands {
				cs[i] = cloneCandidate(c)
			}
			r.opt.OnIterationStart(st.Iteration+1, budget, cs)
		}
	})
	results, failed, screens, out, err := r.evaluateAll(ctx, st, cands)
	if err != nil {
		if ctx.Err() != nil {
			return nil, IterationRecord{}, ctx.Err() // the caller's own error, unwrapped
		}
		return nil, IterationRecord{}, fmt.Errorf("iteration %d: %w", st.Iteration+1, err)
	}
	// Failed and screened-out candidates take no part in the choice: the
	// rest are chosen from as if they were all there were.
	var okIdx []int
	for i := range cands {
		if failed[i] == "" && !out[i] {
			okIdx = append(okIdx, i)
		}
	}
	if len(okIdx) == 0 {
		return nil, IterationRecord{}, fmt.Errorf("iteration %d: every candidate failed (group %d: %s)", st.Iteration+1, cands[0].Group, failed[0])
	}
	okCands, okResults, accs := make([]Candidate, len(okIdx)), make([]Result, len(okIdx)), make([]float64, len(results))
	okScores := make([]float64, len(okIdx))
	for i, res := range results {
		accs[i] = res.Accuracy
	}
	for j, i := range okIdx {
		okCands[j], okResults[j], okScores[j] = cands[i], results[i], measure(r.opt.Select, results[i])
	}
	topOK := choose(r.opt.Select, okCands, okScores, st.Accuracy, st.MACs)
	top, best := okIdx[topOK], okIdx[breakTie(r.opt.TieBreak, r.opt.Select, okCands, okResults, st.Accuracy, st.MACs, st.Target, topOK)]
	// Everything was evaluated, but a cancellation that arrives now still
	// discards the iteration: the caller asked to stop, and nothing of this
	// iteration has reached the model yet.
	if err := ctx.Err(); err != nil {
		return nil, IterationRecord{}, err
	}
	w := cands[best]
	joint, keep, macs := r.joint(st, cands, results, okIdx, best)
	acc := accs[best]
	if len(joint) > 1 {
		acc, err = r.commitJoint(ctx, joint)
	} else {
		err = r.ev.Commit(ctx, cloneCandidate(w))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, IterationRecord{}, ctx.Err()
		}
		return nil, IterationRecord{}, fmt.Errorf("iteration %d: committing group %d (%s) %d→%d channels%s: %w",
			w.Iteration, w.Group, layerList(w.Layers), w.From, w.To, joinedText(joint), err)
	}
	rec := IterationRecord{Iteration: w.Iteration, Group: w.Group, Layers: slices.Clone(w.Layers), From: w.From, To: w.To,
		MACsBefore: st.MACs, MACs: macs, AccuracyBefore: st.Accuracy, Accuracy: acc, Budget: budget}
	for _, c := range joint[1:] {
		rec.Joined = append(rec.Joined, Cut{Group: c.Group, Layers: slices.Clone(c.Layers), From: c.From, To: c.To})
	}
	if r.opt.Schedule == kinds.ScheduleDecay {
		rec.Delta = r.delta(w.Iteration)
	}
	rec.TieBroken = best != top
	for i, c := range cands {
		cr := CandidateRecord{Group: c.Group, Layers: slices.Clone(c.Layers),
			From: c.From, To: c.To, MACs: c.MACs, Accuracy: accs[i], Failed: failed[i]}
		if screens != nil {
			cr.ScreenAccuracy, cr.ScreenedOut = screens[i].Accuracy, out[i]
			if out[i] {
				cr.Accuracy = screens[i].Accuracy
			}
		}
		rec.Candidates = append(rec.Candidates, cr)
	}
	next := cloneState(st)
	next.Iteration = w.Iteration
	next.Keep = keep
	next.MACs = macs
	if err := r.anchor(ctx, next); err != nil {
		if ctx.Err() != nil {
			return nil, IterationRecord{}, ctx.Err()
		}
		return nil, IterationRecord{}, fmt.Errorf("iteration %d: %w", w.Iteration, err)
	}
	next.Accuracy = acc
	next.History = append(next.History, rec)
	if next.MACs <= next.Target {
		next.Done, next.Reason = true, ReasonTargetReached
	}
	return next, rec, nil
}

// joint returns the cuts to commit (the winner cands[best] first, then,
// under CommitTop, the runners-up among okIdx in the selection rule's
// order on their results), with the keep counts and MACs of all of them
// applied. Runners-up join while the joint cut is above the target; one
// whose whole cut would pass the target cuts only as far as the target
// (fewer of the same channels, as a single candidate does under step:
// channels), so the last iteration stops there instead of overshooting it
// by a whole extra cut.
func (r *runner) joint(st *State, cands []Candidate, results []Result, okIdx []int, best int) ([]Candidate, map[int]int, int64) {
	w := cands[best]
	joint, keep, macs := []Candidate{w}, maps.Clone(w.Keep), w.MACs
	if r.opt.CommitTop <= 1 || macs <= st.Target {
		return joint, keep, macs
	}
	var rest []int
	for _, i := range okIdx {
		if i != best {
			rest = append(rest, i)
		}
	}
	rank(r.opt.Select, cands, results, st.Accuracy, st.MACs, rest)
	for _, i := range rest {
		if len(joint) == r.opt.CommitTop || macs <= st.Target {
			break
		}
		c := cloneCandidate(cands[i])
		k := withKeep(keep, c.Group, c.To)
		m := r.ev.MACs(k)
		if m < st.Target {
			to, _ := macsStep(c.From, r.unit(r.byID[c.Group]), st.Target, func(n int) int64 {
				return r.ev.MACs(withKeep(keep, c.Group, n))
			})
			to = max(to, c.To)
			c.To, c.Keep[c.Group] = to, to
			c.MACs = r.ev.MACs(c.Keep)
			k = withKeep(keep, c.Group, to)
			m = r.ev.MACs(k)
		}
		if m >= macs {
			continue
		}
		joint, keep, macs = append(joint, c), k, m
	}
	return joint, keep, macs
}

// commitJoint commits the joint cut and returns its validated accuracy.
func (r *runner) commitJoint(ctx context.Context, joint []Candidate) (float64, error) {
	cs := make([]Candidate, len(joint))
	for i, c := range joint {
		cs[i] = cloneCandidate(c)
	}
	res, err := r.jc.CommitJoint(ctx, cs)
	if err == nil && !finite(res.Accuracy) {
		err = fmt.Errorf("accuracy %v is not a finite number", res.Accuracy)
	}
	return res.Accuracy, err
}

// joinedText names the runners-up of a joint commit, for errors.
func joinedText(joint []Candidate) string {
	if len(joint) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" with")
	for i, c := range joint[1:] {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " group %d %d→%d", c.Group, c.From, c.To)
	}
	return b.String()
}

// evaluateAll evaluates an iteration's candidates: all of them, or under
// a shortlist, screens them all and fully evaluates the Shortlist best.
// results and failed are in candidate order; screens (nil without a
// screen) holds the screens, and out[i] marks a candidate screened out
// (its results[i] is zero).
func (r *runner) evaluateAll(ctx context.Context, st *State, cands []Candidate) (results []Result, failed []string, screens []Result, out []bool, err error) {
	out = make([]bool, len(cands))
	if r.sc == nil || len(cands) <= r.opt.Shortlist {
		results, failed, err = r.evaluate(ctx, cands, false)
		return results, failed, nil, out, err
	}
	screens, failed, err = r.evaluate(ctx, cands, true)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("screening: %w", err)
	}
	keep := shortlist(r.opt.Select, cands, screens, failed, st.Accuracy, st.MACs, r.opt.Shortlist)
	sub := make([]Candidate, len(keep))
	for j, i := range keep {
		sub[j] = cands[i]
	}
	for i := range cands {
		out[i] = failed[i] == ""
	}
	subRes, subFailed, err := r.evaluate(ctx, sub, false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	results = make([]Result, len(cands))
	for j, i := range keep {
		results[i], failed[i], out[i] = subRes[j], subFailed[j], false
	}
	return results, failed, screens, out, nil
}

// shortlist returns the indices of the k best candidates that did not
// fail, ranked by choose's order on their screens, in candidate order.
func shortlist(mode kinds.Select, cands []Candidate, screens []Result, failed []string, accPrev float64, macsPrev int64, k int) []int {
	var idx []int
	for i := range cands {
		if failed[i] == "" {
			idx = append(idx, i)
		}
	}
	rank(mode, cands, screens, accPrev, macsPrev, idx)
	idx = idx[:min(k, len(idx))]
	slices.Sort(idx)
	return idx
}

// rank sorts the candidate indices idx best first by choose's order on
// their results (results[i] is candidate i's).
func rank(mode kinds.Select, cands []Candidate, results []Result, accPrev float64, macsPrev int64, idx []int) {
	// choose over a pair is 1 when the second beats the first; the order
	// it defines is total (group ids differ), so the sort is deterministic.
	beats := func(a, b int) bool {
		return choose(mode, []Candidate{cands[b], cands[a]}, []float64{measure(mode, results[b]), measure(mode, results[a])}, accPrev, macsPrev) == 1
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case beats(a, b):
			return -1
		case beats(b, a):
			return 1
		}
		return 0
	})
}

// evaluate runs the candidates over one worker per slot, fed from a queue so
// that a free slot takes the next candidate: Evaluate, or Screen when screen
// is set. The first failure cancels the rest. Results come back in
// candidate order whatever order they finish in.
func (r *runner) evaluate(ctx context.Context, cands []Candidate, screen bool) ([]Result, []string, error) {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan int, len(cands))
	for i := range cands {
		queue <- i
	}
	close(queue)

	results := make([]Result, len(cands))
	failed := make([]string, len(cands)) // why, for a candidate that failed for good
	var (
		mu       sync.Mutex
		firstErr error
		failedAt = -1
		failSlot int
		wg       sync.WaitGroup
	)
	for slot := range r.opt.Slots {
		wg.Go(func() {
			for i := range queue {
				if ictx.Err() != nil {
					return
				}
				c := cloneCandidate(cands[i])
				r.hook(func() {
					if r.opt.OnCandidateStart != nil {
						r.opt.OnCandidateStart(slot, cloneCandidate(c))
					}
				})
				t0 := time.Now()
				var res Result
				var err error
				if screen {
					res, err = r.sc.Screen(ictx, slot, c)
				} else {
					res, err = r.ev.Evaluate(ictx, slot, c)
				}
				switch {
				case err != nil:
				case !finite(res.Accuracy):
					err = fmt.Errorf("accuracy %v is not a finite number", res.Accuracy)
				case res.Samples < 0 || !finite(res.TrainLoss):
					err = fmt.Errorf("%d validation samples, training loss %v", res.Samples, res.TrainLoss)
				case !finite(res.ValLoss) || !finite(res.ValLossSE):
					err = fmt.Errorf("validation loss %v ± %v is not a finite number", res.ValLoss, res.ValLossSE)
				}
				o := Outcome{Candidate: c, Slot: slot, SlotName: r.opt.Slots[slot], Accuracy: res.Accuracy,
					Samples: res.Samples, TrainLoss: res.TrainLoss, ValLoss: res.ValLoss, ValLossSE: res.ValLossSE,
					Worker: res.Worker, Screen: screen, Duration: time.Since(t0), Err: err}
				r.hook(func() {
					if r.opt.OnCandidate != nil {
						r.opt.OnCandidate(o)
					}
				})
				if err != nil && errors.Is(err, ErrCandidateFailed) && ictx.Err() == nil {
					failed[i] = err.Error() // distinct index per worker, as results
					continue
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr, failedAt, failSlot = err, i, slot
					}
					mu.Unlock()
					cancel()
					return
				}
				results[i] = res // distinct index per worker; wg.Wait orders it before the read
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if firstErr != nil {
		c := cands[failedAt]
		return nil, nil, fmt.Errorf("candidate for group %d (%s) %d→%d channels on slot %d (%s): %w",
			c.Group, layerList(c.Layers), c.From, c.To, failSlot, r.opt.Slots[failSlot], firstErr)
	}
	return results, failed, nil
}

// measure is what the selection rule compares of a result, higher being
// better: the accuracy, or minus the validation loss for kinds.SelectLoss.
func measure(mode kinds.Select, r Result) float64 {
	if mode == kinds.SelectLoss {
		return -r.ValLoss
	}
	return r.Accuracy
}

// choose returns the index of the winning candidate; accs[i] is
// measure(mode, ·) of candidate i. cands is in group-id order, and the
// comparison is total, so the choice does not depend on the order results
// arrived in.
func choose(mode kinds.Select, cands []Candidate, accs []float64, accPrev float64, macsPrev int64) int {
	score := func(i int) float64 {
		if mode == kinds.SelectAccPerMAC {
			// candidates() guarantees macsPrev > MACs, so no division by 0.
			return (accs[i] - accPrev) / float64(macsPrev-cands[i].MACs)
		}
		return accs[i]
	}
	best := 0
	for i := 1; i < len(cands); i++ {
		si, sb := score(i), score(best)
		switch {
		case si > sb:
			best = i
		case si < sb:
		case cands[i].MACs < cands[best].MACs:
			best = i
		case cands[i].MACs == cands[best].MACs && cands[i].Group < cands[best].Group:
			best = i
		}
	}
	return best
}

// breakTie applies the tie-break rule to the plain winner top. A candidate
// is within noise of top when its score is no more than one standard error
// of top's score below it: top's binomial standard error of accuracy,
// that divided by top's removed MACs for acc_per_mac (the previous
// accuracy is a constant of the iteration), or top's Result.ValLossSE for
// loss. Among those, kinds.TieBreakMACs
// prefers the most MACs removed, counted only down to target (a cut past
// the target ends the search with MACs it did not need to lose, so in the
// last iteration every candidate ties on it and the score decides), and
// kinds.TieBreakLoss the lowest
// short-term training loss; what remains tied goes to the better score,
// then to choose's order. With kinds.TieBreakNone, or no sample counts, top
// wins.
func breakTie(rule kinds.TieBreak, mode kinds.Select, cands []Candidate, results []Result, accPrev float64, macsPrev, target int64, top int) int {
	if rule != kinds.TieBreakMACs && rule != kinds.TieBreakLoss {
		return top
	}
	score := func(i int) float64 {
		if mode == kinds.SelectAccPerMAC {
			return (results[i].Accuracy - accPrev) / float64(macsPrev-cands[i].MACs)
		}
		return measure(mode, results[i])
	}
	se := results[top].StdErr()
	switch mode {
	case kinds.SelectAccPerMAC:
		se /= float64(macsPrev - cands[top].MACs)
	case kinds.SelectLoss:
		se = results[top].ValLossSE
	}
	if !(se > 0) {
		return top
	}
	// The relative slack keeps a score exactly one SE below from dropping
	// out by rounding.
	floor := score(top) - se*(1+1e-9)
	accs := make([]float64, len(results))
	for i, r := range results {
		accs[i] = measure(mode, r)
	}
	best := top
	for i := range cands {
		if i == best || score(i) < floor {
			continue
		}
		var better, worse bool
		switch rule {
		case kinds.TieBreakMACs:
			mi, mb := max(cands[i].MACs, target), max(cands[best].MACs, target)
			better, worse = mi < mb, mi > mb
		case kinds.TieBreakLoss:
			better, worse = results[i].TrainLoss < results[best].TrainLoss, results[i].TrainLoss > results[best].TrainLoss
		}
		if better || (!worse && choose(mode, []Candidate{cands[best], cands[i]}, []float64{accs[best], accs[i]}, accPrev, macsPrev) == 1) {
			best = i
		}
	}
	return best
}

// finish runs the resize_alf and long-term fine-tuning stages that the
// options ask for and the state has not recorded yet, saving after each.
func (r *runner) finish(ctx context.Context, st *State) (*State, error) {
	if r.opt.ResizeAlf && !st.Resized {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		next := cloneState(st)
		keep := ResizeAlf(st.Keep, r.opt.Alf, r.opt.Exclude, r.blocks())
		if !maps.Equal(keep, st.Keep) {
			acc, err := r.fin.Resize(ctx, maps.Clone(keep))
			if err == nil && !finite(acc) {
				err = fmt.Errorf("accuracy %v is not a finite number", acc)
			}
			if err != nil {
				if ctx.Err() != nil {
					return st, ctx.Err()
				}
				return st, fmt.Errorf("resize_alf: %w", err)
			}
			next.Keep, next.MACs, next.Accuracy = keep, r.ev.MACs(keep), acc
		}
		next.Resized = true
		if err := r.save(ctx, next, "after resize_alf"); err != nil {
			return next, err
		}
		st = next
	}
	if r.opt.FineTune && !st.FineTuned {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		acc, err := r.fin.FineTune(ctx)
		if err == nil && !finite(acc) {
			err = fmt.Errorf("accuracy %v is not a finite number", acc)
		}
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			return st, fmt.Errorf("long-term fine-tuning: %w", err)
		}
		next := cloneState(st)
		next.Accuracy, next.FineTuned = acc, true
		if err := r.save(ctx, next, "after long-term fine-tuning"); err != nil {
			return next, err
		}
		st = next
	}
	return st, nil
}

// save checkpoints st. The work it records is already done and committed, so
// a cancellation arriving now must not lose it: Save gets a context that
// keeps ctx's values but not its cancellation.
func (r *runner) save(ctx context.Context, st *State, when string) error {
	if r.ck == nil {
		return nil
	}
	if err := r.ck.Save(context.WithoutCancel(ctx), *cloneState(st)); err != nil {
		return fmt.Errorf("saving the checkpoint %s: %w", when, err)
	}
	return nil
}

// hook runs f under the hook lock so the caller's callbacks never overlap.
func (r *runner) hook(f func()) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	f()
}

func withKeep(keep map[int]int, id, n int) map[int]int {
	out := maps.Clone(keep)
	out[id] = n
	return out
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func layerList(layers []string) string {
	if len(layers) == 0 {
		return "no layers"
	}
	const show = 3
	if len(layers) <= show {
		return strings.Join(layers, ", ")
	}
	return fmt.Sprintf("%s, … %d more", strings.Join(layers[:show], ", "), len(layers)-show)
}

func cloneCandidate(c Candidate) Candidate {
	c.Layers = slices.Clone(c.Layers)
	c.Keep = maps.Clone(c.Keep)
	return c
}

func cloneRecord(rec IterationRecord) IterationRecord {
	rec.Layers = slices.Clone(rec.Layers)
	rec.Candidates = slices.Clone(rec.Candidates)
	for i := range rec.Candidates {
		rec.Candidates[i].Layers = slices.Clone(rec.Candidates[i].Layers)
	}
	return rec
}

func cloneState(s *State) *State {
	out := *s
	out.Keep = maps.Clone(s.Keep)
	out.History = make([]IterationRecord, len(s.History))
	for i, rec := range s.History {
		out.History[i] = cloneRecord(rec)
	}
	if s.History == nil {
		out.History = nil
	}
	return &out
}
