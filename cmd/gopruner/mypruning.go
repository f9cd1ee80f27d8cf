package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/core/summary"
	"github.com/gopruner/gopruner/internal/report"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/gopruner/gopruner/internal/torchengine/mypruning"
)

// myPruning runs the NetAdapt-style search over the configured cart slots.
func (r *pruneRun) myPruning(ctx context.Context, am *model.Analyzed) (*outcome, error) {
	cfg := r.cfg
	trainSplit, err := r.split(data.Train)
	if err != nil {
		return nil, err
	}
	val, err := r.split(data.Val)
	if err != nil {
		return nil, err
	}
	slots := make([]string, len(cfg.Cart))
	for i, s := range cfg.Cart {
		slots[i] = string(s)
	}
	to := r.trainOptions()
	res, err := mypruning.Run(ctx, am, trainSplit, val, mypruning.Options{
		P: cfg.P, DeltaCrop: cfg.DeltaCrop, Alf: cfg.Alf, Select: cfg.Select, Step: cfg.Step, ResizeAlf: cfg.ResizeAlf,
		Slots: slots, Criterion: cfg.Criterion, TaylorBatches: cfg.TaylorBatches,
		ShortTermSteps: cfg.ShortTermSteps, LongTermEpochs: cfg.LongTermEpochs, Train: to, EvalBatch: cfg.Train.BatchSize,
		ISKL: cfg.Iskl, Seed: cfg.Seed, Threads: cfg.Threads, Dir: r.runDir, Resume: cfg.Resume,
		Fingerprint: cfg.Fingerprint(), Log: r.log, Hooks: r.progressHooks(),
	})
	if err != nil {
		return nil, err
	}
	out := &outcome{pruned: res.Module, plan: res.Plan, kept: res.Kept, target: res.State.Target,
		reached: res.State.MACs <= res.State.Target}
	ab, aa := res.AccBefore, res.AccAfter
	out.accBefore, out.accAfter = &ab, &aa
	out.points = append(out.points, report.Point{Iteration: 0, MACs: res.State.MACs0, Accuracy: res.AccBefore, Label: "original"})
	for _, it := range res.State.History {
		out.iterations = append(out.iterations, iterationOf(it))
		out.points = append(out.points, report.Point{Iteration: it.Iteration, MACs: it.MACs, Accuracy: it.Accuracy,
			Label: fmt.Sprintf("%s %d→%d", strings.Join(it.Layers, ","), it.From, it.To)})
	}
	return out, nil
}

func iterationOf(it netadapt.IterationRecord) summary.Iteration {
	return summary.Iteration{Iteration: it.Iteration, Layers: it.Layers, Group: it.Group, From: it.From, To: it.To,
		MACs: it.MACs, Accuracy: it.Accuracy, Candidates: len(it.Candidates)}
}
