// my_pruning (NetAdapt). Package netadapt decides keep counts, schedules
// candidates over the cart slots and records history; this file drives the
// engine behind its Evaluator, Finisher and Checkpointer interfaces:
// choosing which channels to drop by the criterion, channel surgery, short-
// and long-term fine-tuning, validation, and the checkpoints in
// exp_save/model_name.
//
// The current model is held as a serialised TorchScript archive plus the
// kept channel indices of every group relative to the ORIGINAL model. Each
// candidate loads its own copy of the archive on its slot's device, so no
// Module is ever shared between goroutines, and cutting the current model
// is expressed through the original analysis (no re-tracing): the original
// tensor keeps of the current and of the next index choice are compared,
// and the next one is translated into positions of the current tensors.
// Because kept indices are always original-relative, the final plan is a
// plain plan of the original model and `gopruner apply` reproduces the
// final model's shapes from it.

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/gopruner/gopruner/internal/core/plan"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/engine"
)

// Defaults for zero Options fields.
const (
	DefaultTaylorBatches = 10
	DefaultEvalBatch     = 256
)

// Hooks are netadapt's progress hooks, passed through unchanged so the CLI
// can print tables and progress. They are called one at a time.
type Hooks struct {
	OnIterationStart func(iteration int, budget int64, cands []netadapt.Candidate)
	OnCandidateStart func(slot int, c netadapt.Candidate)
	OnCandidate      func(o netadapt.Outcome)
	OnIteration      func(rec netadapt.IterationRecord) // after the iteration's checkpoint was saved
	// OnSettings gets the shortlist and commit_top the search runs with
	// (auto resolved for the model), once, before the first iteration.
	OnSettings func(shortlist, commitTop int)
}

// MyPruningOptions configure MyPruning.
type MyPruningOptions struct {
	P         float64      // fraction of MACs to remove, in (0,1)
	DeltaCrop float64      // step size, in (0,1)
	Alf       int          // kept counts are multiples of Alf, never below it
	Select    kinds.Select // kinds.SelectAcc (default), kinds.SelectAccPerMAC or kinds.SelectLoss
	Step      kinds.Step   // kinds.StepChannels (default) or kinds.StepMACs
	ResizeAlf bool
	// Schedule and DeltaDecay are netadapt's step schedule (default:
	// constant).
	Schedule   kinds.Schedule
	DeltaDecay float64
	// MaxGroupCut is netadapt's Options.MaxGroupCut (0: no cap).
	MaxGroupCut float64
	// TieBreak is netadapt's rule among candidates within one standard
	// error of the best (default kinds.TieBreakNone).
	TieBreak kinds.TieBreak
	// Shortlist is netadapt's Options.Shortlist: above 0, every candidate
	// is first screened (cut, BatchNorm re-estimated, validated) and only
	// the Shortlist best are short-term fine-tuned. ShortlistAuto picks
	// one from the model (see autoShortlist).
	Shortlist int
	// CommitTop is netadapt's Options.CommitTop: above 1, the best
	// CommitTop candidates of an iteration are committed together.
	// CommitTopAuto picks it from the model (see autoCommitTop).
	CommitTop int
	// BNBatchesAuto says that BNBatches is the default, not a user's
	// choice: an automatic shortlist then re-estimates on 5 batches, as an
	// explicit one does (config's bn_batches rule).
	BNBatchesAuto bool
	// CommonBatches gives every candidate of an iteration the same
	// short-term training seed, hence the same batches in the same order.
	CommonBatches bool
	// Target is the resource P is a share of: kinds.TargetMACs (default)
	// or kinds.TargetLatency, latency on Latency.Device predicted by a
	// per-layer lookup table that replaces the MACs as netadapt's cost
	// model (the history's MACs fields then hold predicted nanoseconds).
	Target  kinds.Target
	Latency LatencyOptions
	// BNBatches, above 0, re-estimates the BatchNorm statistics of every
	// cut model (candidates and resize_alf) on that many training batches,
	// the same batches for every candidate of an iteration, before its
	// short-term fine-tune and validation.
	BNBatches int

	// Slots is the cart: one worker per entry, "cpu" or "cuda:N". Empty
	// means one "cpu" slot.
	Slots []string
	// Criterion is kinds.TaylorFOWeight (default) or kinds.L2Norm.
	Criterion kinds.Criterion
	// TaylorBatches is how many training batches TaylorFOWeight scores on
	// (default DefaultTaylorBatches).
	TaylorBatches int
	// ShortTermSteps is the number of training batches each candidate is
	// fine-tuned for before validation (0: none).
	ShortTermSteps int
	// LongTermEpochs is the fine-tuning after the search (0: none).
	LongTermEpochs int
	// Rewind starts the long-term fine-tune from the original weights cut
	// to the channels the search kept, instead of the search's weights
	// (which carry every short-term fine-tune of the iterations).
	Rewind bool
	// Train holds the optimiser settings and batch size of both fine-tunes;
	// Run sets Steps, Epochs and Seed per phase. With Train.Distill both
	// fine-tunes learn from the original model (base), one copy per slot.
	Train     engine.TrainOptions
	EvalBatch int // validation batch size (default DefaultEvalBatch)
	// EvalSamples, above 0, validates candidates (and every accuracy the
	// search compares) on a fixed subset of that many val samples; the
	// accuracies before and after are always on the whole val split.
	EvalSamples int
	ISKL        []string
	Seed        int64
	// Threads is the total CPU thread count; every cpu slot's modules use
	// max(1, Threads/#cpu slots). 0 keeps the process setting.
	Threads int

	// Dir (exp_save/model_name) receives the checkpoints; "" disables them.
	Dir    string
	Resume bool
	// Fingerprint identifies what the checkpoint was made from (model,
	// data, options). It is saved with the checkpoint; resuming with a
	// different one is a usage error naming the key.
	Fingerprint map[string]string

	Log   zerolog.Logger
	Hooks Hooks

	// Broker says where candidates run: by default through an embedded
	// JetStream broker and in-process workers, one per slot.
	Broker BrokerOptions

	// VerifyCommit validates the re-done winner in Commit and logs a
	// warning when its accuracy differs from the candidate's (the re-run is
	// deterministic on CPU at a fixed thread count; CUDA may differ). It
	// costs one validation per iteration.
	VerifyCommit bool
}

// MyPruningResult is a finished (or interrupted) my_pruning run.
type MyPruningResult struct {
	// State is the search record; on an error it is the last state
	// reached (nil when Run failed before the search began).
	State *netadapt.State
	// Module is the final pruned model on the first slot's device; the
	// caller closes it. Nil when Run returns an error.
	Module engine.Module
	// Plan turns the ORIGINAL model into Module: kept indices per group,
	// MACs and params before and after.
	Plan *plan.Plan
	// Kept is the kept channel indices per pruned-or-prunable group,
	// relative to the original model.
	Kept                map[int][]int
	AccBefore, AccAfter float64
	// Workers is the broker worker ("host/slot") that evaluated each
	// candidate, by (iteration, group); nil on the direct path.
	Workers map[[2]int]string
	// CommitMismatches counts iterations whose re-done winner validated
	// differently from the candidate (only with VerifyCommit).
	CommitMismatches int
	// Timing sums the time of the Runs candidate runs by part; Scoring
	// and Commit are the iterations' serial parts.
	Timing          CandidateTiming
	Runs            int
	Scoring, Commit time.Duration
	// Screens is how many of the Runs were shortlist screens.
	Screens int
	// Latency is target: latency's prediction and measurement (nil for
	// target: macs).
	Latency *LatencyReport
}

// ShortlistAuto is MyPruningOptions.Shortlist's "choose from the model".
const ShortlistAuto = -1

const (
	// Above autoShortlistGroups prunable groups, an automatic shortlist
	// screens every candidate and fine-tunes the autoShortlistK best.
	// Measured (docs/benchmarks.md, "Search quality"): MobileNetV2, 25
	// groups and 12-24 candidates an iteration, kept its margins over
	// L2Norm with a shortlist of 4 and halved its search; ResNet-20, 12
	// groups and 5-12 candidates, lost them within noise with 2 or 3 of its
	// 6-7.
	autoShortlistGroups = 16
	autoShortlistK      = 4
	autoShortlistBN     = 5
)

// CommitTopAuto is MyPruningOptions.CommitTop's "choose from the model".
const CommitTopAuto = -1

// Above autoShortlistGroups prunable groups, an automatic commit_top
// commits the autoCommitTopK best candidates of an iteration together.
// Measured (docs/benchmarks.md, "Search quality"): on MobileNetV2 (25
// groups, every cut about 2% of the MACs) 3 kept the margins over L2Norm
// at both P and halved the search's wall again; on ResNet-20 (12 groups, 5-12
// candidates) it was 0.24 and 0.19 points behind the winner alone at P=0.5
// and 0.7, on every seed, so the smaller models keep the winner alone.
const autoCommitTopK = 3

// autoCommitTop is commit_top for a model with groups prunable groups.
func autoCommitTop(groups int) int {
	if groups > autoShortlistGroups {
		return autoCommitTopK
	}
	return 1
}

// autoShortlist is the shortlist for a model with groups prunable groups.
func autoShortlist(groups int) int {
	if groups > autoShortlistGroups {
		return autoShortlistK
	}
	return 0
}

// MyPruning prunes base with NetAdapt on eng. base is the original model
// and is only read (its Module is copied through Bytes, never modified). On
// ctx cancellation it stops between candidates, keeps the last finished
// iteration checkpointed, and returns ctx.Err() with the partial result.
func MyPruning(ctx context.Context, eng engine.Engine, base *engine.Model, trainSplit, valSplit *data.Split, o MyPruningOptions) (*MyPruningResult, error) {
	o, err := normalize(o)
	if err != nil {
		return nil, err
	}
	if trainSplit == nil || valSplit == nil {
		return nil, errors.New("my_pruning: a train and a val split are needed")
	}
	devs, threads, err := slotDevices(o.Slots, o.Threads)
	if err != nil {
		return nil, err
	}
	excl, err := base.Excluded(o.ISKL)
	if err != nil {
		return nil, err
	}
	cands := base.Candidates(excl)
	if len(cands) == 0 {
		return nil, fail.Usagef("my_pruning: the model has no prunable channel group outside iskl")
	}
	orig, err := base.Module.Bytes()
	if err != nil {
		return nil, fmt.Errorf("my_pruning: serialising the model: %w", err)
	}
	if o.Shortlist == ShortlistAuto {
		o.Shortlist = autoShortlist(len(cands))
		if o.Shortlist > 0 && o.BNBatchesAuto {
			o.BNBatches = autoShortlistBN
		}
		o.Log.Info().Int("groups", len(cands)).Int("shortlist", o.Shortlist).Int("bn_batches", o.BNBatches).
			Msg("my_pruning: shortlist auto")
	}
	if o.CommitTop == CommitTopAuto {
		o.CommitTop = autoCommitTop(len(cands))
		o.Log.Info().Int("groups", len(cands)).Int("commit_top", o.CommitTop).Msg("my_pruning: commit_top auto")
	}
	if o.Hooks.OnSettings != nil {
		o.Hooks.OnSettings(o.Shortlist, o.CommitTop)
	}
	ev := newEvaluator(eng, &base.Base, trainSplit, valSplit, o, devs, threads, cands, orig)
	defer ev.Close()
	var lat *LatencyReport
	if o.Target == kinds.TargetLatency {
		if o.Latency.Cache == "" {
			o.Latency.Cache = latencyCache(o.Dir)
		}
		pred, rep, retable, err := latencyModel(eng, base, orig, cands, o.Alf, o.Latency, o.Log)
		if err != nil {
			return nil, err
		}
		ev.anchor = newLatencyAnchor(eng, pred, orig, base.InputShape, o.Latency, rep.PredictedBeforeNs, retable, o.Log)
		ev.macs, lat = ev.anchor.cost, rep
	}

	groups := make([]netadapt.Group, 0, len(cands))
	for _, g := range cands {
		groups = append(groups, netadapt.Group{ID: g.ID, Layers: slices.Clone(g.Layers), Channels: g.Channels, Block: g.Block})
	}

	var ck netadapt.Checkpointer
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("my_pruning: %w", err)
		}
		ck = &checkpointer{ev: ev, dir: o.Dir, fingerprint: o.Fingerprint}
	}

	res := &MyPruningResult{}
	var start *netadapt.State
	var baseAcc float64 // on the candidates' validation subset
	if o.Resume {
		if o.Dir == "" {
			return nil, fail.Usagef("--resume: no exp_save/model_name directory to resume from")
		}
		st, err := resume(ev, o.Dir, o.Fingerprint)
		if err != nil {
			return nil, err
		}
		start = st
		if ev.anchor != nil {
			ev.anchor.resumeAt(st.MACs0)
		}
		res.AccBefore = st.Accuracy0
		if ev.cval != ev.val {
			// Accuracy0 is on the candidates' subset; the report's is on
			// the whole val split.
			if res.AccBefore, _, err = ev.validateArchive(ctx, orig, o.Threads); err != nil {
				return nil, fmt.Errorf("my_pruning: validating the unpruned model: %w", err)
			}
		}
		o.Log.Info().Int("iteration", st.Iteration).Int64("macs", st.MACs).Float64("acc", st.Accuracy).
			Str("dir", o.Dir).Msg("my_pruning: resuming from checkpoint")
	} else {
		full, sub, err := ev.validateArchive(ctx, ev.cur, o.Threads)
		if err != nil {
			return nil, fmt.Errorf("my_pruning: validating the unpruned model: %w", err)
		}
		res.AccBefore, baseAcc = full, sub
		o.Log.Info().Float64("acc", full).Msg("my_pruning: accuracy of the unpruned model")
	}

	if !o.Broker.Direct {
		ds, err := startDispatch(ctx, ev, o)
		if err != nil {
			return nil, err
		}
		defer ds.stop()
		ev.disp = ds
	}

	nopt := netadapt.Options{P: o.P, DeltaCrop: o.DeltaCrop, Alf: o.Alf, Select: o.Select, Step: o.Step,
		Schedule: o.Schedule, DeltaDecay: o.DeltaDecay, MaxGroupCut: o.MaxGroupCut, TieBreak: o.TieBreak,
		Shortlist: o.Shortlist, CommitTop: o.CommitTop, Slots: slices.Clone(o.Slots), BaseAccuracy: baseAcc, ResizeAlf: o.ResizeAlf, FineTune: o.LongTermEpochs > 0,
		OnIterationStart: o.Hooks.OnIterationStart, OnCandidateStart: o.Hooks.OnCandidateStart,
		OnCandidate: o.Hooks.OnCandidate,
		OnIteration: func(rec netadapt.IterationRecord) {
			logIteration(o.Log, rec)
			if o.Hooks.OnIteration != nil {
				o.Hooks.OnIteration(rec)
			}
		}}
	st, err := netadapt.Run(ctx, groups, ev, ck, start, nopt)
	res.State = st
	res.CommitMismatches = ev.mismatches
	res.Timing, res.Runs, res.Scoring, res.Commit = ev.Timing()
	res.Screens = ev.screens
	if ev.disp != nil {
		res.Workers = ev.disp.workers()
	}
	if st != nil {
		res.AccAfter = st.Accuracy
	}
	res.Kept = ev.keptCopy()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("my_pruning: %w", err)
	}
	p, err := base.Plan(res.Kept)
	if err != nil {
		return res, fmt.Errorf("my_pruning: the final plan: %w", err)
	}
	res.Plan = p
	m, err := eng.Load(ev.cur, devs[0], 0)
	if err != nil {
		return res, fmt.Errorf("my_pruning: loading the final model: %w", err)
	}
	if ev.cval != ev.val && !st.FineTuned {
		// The search's accuracies are on the subset; the result's is on
		// the whole val split.
		if res.AccAfter, err = validate(ctx, m, valSplit, o.EvalBatch); err != nil {
			m.Close()
			return res, fmt.Errorf("my_pruning: validating the final model: %w", err)
		}
	}
	res.Module = m
	if lat != nil {
		// st.MACs of the last committed model is its measurement; the
		// prediction is the one made before it.
		ev.anchor.report(st.Keep, lat)
		if err := ev.anchor.measureFinal(ev.cur, st.Keep, lat); err != nil {
			o.Log.Warn().Err(err).Msg("target latency: the final model's latency was not measured")
		}
		// The final check's own retries count too.
		lat.StateRetries = ev.anchor.retries
		res.Latency = lat
	}
	o.Log.Info().Int64("macs_before", p.MACsBefore).Int64("macs_after", p.MACsAfter).
		Float64("acc_before", res.AccBefore).Float64("acc_after", res.AccAfter).
		Int("iterations", st.Iteration).Str("reason", st.Reason).Msg("my_pruning: done")
	return res, nil
}

func normalize(o MyPruningOptions) (MyPruningOptions, error) {
	if len(o.Slots) == 0 {
		o.Slots = []string{"cpu"}
	}
	o.Criterion = kinds.Or(o.Criterion, kinds.TaylorFOWeight)
	if _, err := kinds.Parse("criterion", string(o.Criterion), kinds.Criteria); err != nil {
		return o, fail.Usagef("my_pruning: %v", err)
	}
	if o.TaylorBatches <= 0 {
		o.TaylorBatches = DefaultTaylorBatches
	}
	if o.EvalBatch <= 0 {
		o.EvalBatch = DefaultEvalBatch
	}
	if o.ShortTermSteps < 0 || o.LongTermEpochs < 0 {
		return o, fail.Usagef("my_pruning: short-term steps (%d) and long-term epochs (%d) must not be negative", o.ShortTermSteps, o.LongTermEpochs)
	}
	if o.Train.BatchSize <= 0 {
		return o, fail.Usagef("my_pruning: training batch size %d must be positive", o.Train.BatchSize)
	}
	if (o.ShortTermSteps > 0 || o.LongTermEpochs > 0) && !(o.Train.LR > 0) {
		return o, fail.Usagef("my_pruning: learning rate %g must be positive", o.Train.LR)
	}
	if !(o.P > 0 && o.P < 1) {
		return o, fail.Usagef("my_pruning: P %g is outside (0,1)", o.P)
	}
	if !(o.DeltaCrop > 0 && o.DeltaCrop < 1) {
		return o, fail.Usagef("my_pruning: delta_crop %g is outside (0,1)", o.DeltaCrop)
	}
	if o.Alf < 1 {
		return o, fail.Usagef("my_pruning: alf %d must be at least 1", o.Alf)
	}
	o.Schedule = kinds.Or(o.Schedule, kinds.ScheduleConstant)
	if _, err := kinds.Parse("delta_schedule", string(o.Schedule), kinds.Schedules); err != nil {
		return o, fail.Usagef("my_pruning: %v", err)
	}
	if o.CommitTop < CommitTopAuto {
		return o, fail.Usagef("my_pruning: commit_top %d is negative (-1 is auto)", o.CommitTop)
	}
	if o.Shortlist < ShortlistAuto {
		return o, fail.Usagef("my_pruning: shortlist %d is negative (-1 is auto)", o.Shortlist)
	}
	if !(o.MaxGroupCut >= 0 && o.MaxGroupCut <= 1) {
		return o, fail.Usagef("my_pruning: max_group_cut %g is outside (0,1]", o.MaxGroupCut)
	}
	if o.Schedule == kinds.ScheduleDecay && !(o.DeltaDecay > 0 && o.DeltaDecay <= 1) {
		return o, fail.Usagef("my_pruning: delta_decay %g is outside (0,1]", o.DeltaDecay)
	}
	if err := o.Train.Distill.Check(); err != nil {
		return o, fail.Usagef("my_pruning: %v", err)
	}
	o.Target = kinds.Or(o.Target, kinds.TargetMACs)
	if _, err := kinds.Parse("target", string(o.Target), kinds.Targets); err != nil {
		return o, fail.Usagef("my_pruning: %v", err)
	}
	if o.Target == kinds.TargetLatency {
		if o.Latency.Device == "" {
			o.Latency.Device = "cpu"
		}
		if o.Latency.Threads < 1 || o.Latency.Batch < 1 {
			return o, fail.Usagef("my_pruning: latency_threads (%d) and latency_batch (%d) must be at least 1", o.Latency.Threads, o.Latency.Batch)
		}
	}
	o.TieBreak = kinds.Or(o.TieBreak, kinds.TieBreakNone)
	if _, err := kinds.Parse("tie_break", string(o.TieBreak), kinds.TieBreaks); err != nil {
		return o, fail.Usagef("my_pruning: %v", err)
	}
	o.Train.Progress = nil // workers run concurrently; progress comes through the hooks
	o.Train.Teacher = nil  // every fine-tune learns from the original's archive, loaded per slot
	return o, nil
}

// slotDevices normalises the cart ("cpu", "cuda:N"; the CLI has checked
// that each device exists) and gives every cpu slot its share of the CPU
// threads (CUDA slots keep the process setting).
func slotDevices(slots []string, total int) ([]string, []int, error) {
	devs := make([]string, len(slots))
	ncpu := 0
	for i, s := range slots {
		d, err := config.ParseSlot(s)
		if err != nil {
			return nil, nil, fail.Usagef("cart slot %d: %v", i, err)
		}
		devs[i] = string(d)
		if !d.Device().IsCUDA() {
			ncpu++
		}
	}
	threads := make([]int, len(slots))
	if total > 0 && ncpu > 0 {
		for i, d := range devs {
			if !config.Slot(d).Device().IsCUDA() {
				threads[i] = max(1, total/ncpu)
			}
		}
	}
	return devs, threads, nil
}

// logIteration logs one iteration: every candidate, then the winner.
func logIteration(log zerolog.Logger, rec netadapt.IterationRecord) {
	for _, c := range rec.Candidates {
		log.Debug().Int("iteration", rec.Iteration).Int("group", c.Group).Str("layers", cut.ShortLayers(c.Layers)).
			Int("from", c.From).Int("to", c.To).Int64("macs", c.MACs).Float64("acc", c.Accuracy).
			Bool("winner", c.Group == rec.Group).Msg("my_pruning: candidate")
	}
	// Debug like the candidates: the console shows the CLI's iteration
	// table, and log.jsonl (which records debug) keeps the machine copy.
	var joined []int
	for _, c := range rec.Joined {
		joined = append(joined, c.Group)
	}
	log.Debug().Int("iteration", rec.Iteration).Int("group", rec.Group).Str("layers", cut.ShortLayers(rec.Layers)).
		Ints("joined", joined).Int("from", rec.From).Int("to", rec.To).Int64("macs_before", rec.MACsBefore).Int64("macs", rec.MACs).
		Float64("acc_before", rec.AccuracyBefore).Float64("acc", rec.Accuracy).Msg("my_pruning: iteration done")
}
