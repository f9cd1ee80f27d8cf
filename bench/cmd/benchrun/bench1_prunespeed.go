package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// 1. Pruning speed.

func (b *bench) pruneSpeed(s *section) error {
	models := []string{"resnet50", "mobilenet_v2", "densenet121"}
	type row struct {
		Prune *pruneRun    `json:"prune"`
		Floor *pythonFloor `json:"python_floor"`
	}
	data := map[string]*row{}
	s.Data = data
	hdr := []string{"model", "IR ops", "wall", "peak RSS"}
	for _, ph := range phaseOrder {
		hdr = append(hdr, ph+" ms")
	}
	hdr = append(hdr, "other ms", "Python floor (import + jit.load)", "floor RSS", "floor + 1 forward", "wall / floor", "wall / (floor + forward)",
		"model file", "(peak RSS − baseline) / model file")
	t := s.addTable("gopruner prune --algorithm L2Norm --P 0.5 --finetune=false --input-shape 1,3,224,224 (phases from the run's summary.json timings; "+
		"\"other\" = process start, libtorch loading, config, exit)", hdr...)
	var gp, ref, rat, rss []string
	var errs []string
	baseKB, err := b.rssBaseline()
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, m := range models {
		pr, err := b.prune(m, b.fixture(m), 1)
		if err != nil {
			errs = append(errs, err.Error())
			t.add(m, "error: "+err.Error())
			continue
		}
		fl, err := b.pythonFloor(b.fixture(m), "1,3,224,224")
		if err != nil {
			errs = append(errs, err.Error())
		}
		data[m] = &row{pr, fl}
		cells := []string{m, fmt.Sprint(pr.IROps), secs(pr.Proc.WallS), mb(pr.Proc.MaxRSSKB)}
		sum := 0.0
		for _, ph := range phaseOrder {
			v, ok := pr.PhaseMs[ph]
			sum += v
			if ok {
				cells = append(cells, ms(v))
			} else {
				cells = append(cells, "")
			}
		}
		cells = append(cells, ms(pr.Proc.WallS*1e3-sum))
		if fl != nil {
			cells = append(cells, fmt.Sprintf("%s (%.2f + %.2f)", secs(fl.WallS), fl.ImportS, fl.LoadS), mb(fl.MaxRSSKB),
				fmt.Sprintf("%s (forward %.2f)", secs(fl.WithForwardS), fl.ForwardS),
				ratio(pr.Proc.WallS/fl.WallS), ratio(pr.Proc.WallS/fl.WithForwardS))
			gp = append(gp, fmt.Sprintf("%s %s, %s", m, secs(pr.Proc.WallS), mb(pr.Proc.MaxRSSKB)))
			ref = append(ref, fmt.Sprintf("%s %s, %s", m, secs(fl.WallS), mb(fl.MaxRSSKB)))
			rat = append(rat, fmt.Sprintf("%s %s", m, ratio(pr.Proc.WallS/fl.WallS)))
		} else {
			cells = append(cells, "", "", "", "", "")
		}
		if st, err := os.Stat(b.fixture(m)); err == nil && baseKB > 0 {
			over := float64(pr.Proc.MaxRSSKB-baseKB) * 1024 / float64(st.Size())
			cells = append(cells, mb(st.Size()/1024), ratio(over))
			rss = append(rss, fmt.Sprintf("%s %s", m, ratio(over)))
		}
		t.add(cells...)
	}
	if len(gp) > 0 {
		s.Summary = &summaryRow{
			Gopruner:  "wall, peak RSS: " + strings.Join(gp, "; "),
			Reference: "Python floor (start + import torch + jit.load): " + strings.Join(ref, "; "),
			Ratio:     strings.Join(rat, "; "),
			Note:      "no Python pruning tool here (no Torch-Pruning): the floor is what any of them pays before pruning",
		}
		if len(rss) > 0 {
			s.Summary.Note += "; peak RSS over a tiny model's, per byte of model file: " + strings.Join(rss, ", ") + " (goal ≤ 1.2×)"
		}
	}
	if baseKB > 0 {
		s.note("baseline = the peak RSS of the same prune of smallcnn (15k parameters) at 1,3,32,32: %s, libtorch and gopruner with a model of next to no size; (peak RSS − baseline) / model file is what the model costs in memory, against its size on disk (goal ≤ 1.2×): %s", mb(baseKB), strings.Join(rss, "; "))
	}
	s.note("Each prune ran %d times: the fastest wall time and each phase's fastest time are shown; the Python floor is the fastest of %d runs.", max(1, b.o.pruneReps), max(1, b.o.pythonFloorReps))
	s.note("prune measures before/after latency only when asked (--latency); these runs do not ask, so the wall time is pruning work alone, as a user runs it. \"other\" = process start (libtorch loading), config, exit.")
	s.note("IR export runs the model once through the C++ tracer, shapes only (libtorch's Meta device: no arithmetic, no activations; the real pass only where an op has no Meta kernel), as does the pruned model's run check, each dropping the plans its run left in the module's methods; from the IR export on, up to 32 MB of the tensors wait in the model file until a step reads them (the scoring reads copies, surgery writes only the kept part of each cut tensor, the save reads back what is left); surgery rewrites the loaded module's parameters in place (no copy: nothing needs the original afterwards) and, for depthwise convs and LayerNorms, its forward graph, with the calls that lead to them inlined.")
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// rssBaseline is the peak RSS (KB) of benchmark 1's prune on a model of
// next to no size: what libtorch and gopruner cost before the model does;
// the lowest of pruneReps runs.
func (b *bench) rssBaseline() (int64, error) {
	dir := filepath.Join(b.o.out, "pruned")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	var best int64
	for range max(1, b.o.pruneReps) {
		p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), b.o.bin, "prune", "--model", b.fixture("smallcnn"), "--algorithm", "L2Norm",
			"--P", "0.5", "--finetune=false", "--input-shape", "1,3,32,32", "--log-format", "json",
			"--exp-save", filepath.Join(b.o.out, "exp"), "--model-name", "prune_rss_baseline", "--out", filepath.Join(dir, "prune_rss_baseline.pt"))
		if err == nil {
			err = p.ok()
		}
		if err != nil {
			return 0, fmt.Errorf("RSS baseline: %w", err)
		}
		if best == 0 || p.MaxRSSKB < best {
			best = p.MaxRSSKB
		}
	}
	return best, nil
}
