package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// 6. Scaling of cost.

func (b *bench) resnet101() (string, error) {
	path := filepath.Join(b.o.out, "resnet101_scripted.pt")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	p, err := b.r.run(b.ctx, b.timeout(5*time.Minute), b.o.python, filepath.Join(b.o.root, "bench", "mkresnet101.py"), path)
	if err != nil {
		return "", err
	}
	if err := p.ok(); err != nil {
		return "", err
	}
	return path, nil
}

func (b *bench) scaling(s *section) error {
	type model struct{ name, path string }
	models := []model{{"resnet18", b.fixture("resnet18")}, {"resnet50", b.fixture("resnet50")}}
	var errs []string
	if p, err := b.resnet101(); err != nil {
		errs = append(errs, "resnet101: "+err.Error())
	} else {
		models = append(models, model{"resnet101", p})
	}
	t := s.addTable("L2Norm P=0.5 prune of resnet18/50/101 (resnet101: torchvision, random weights, scripted, generated into bench/out/); times in ms",
		"model", "IR ops", "params", "MACs", "load", "IR export", "analysis", "scoring + search", "surgery", "save", "pruning work", "work µs/op", "analysis µs/op")
	type row struct {
		Model string    `json:"model"`
		Prune *pruneRun `json:"prune"`
	}
	var rows []row
	s.Data = &rows
	var ops, work, ana, irx, surg []float64
	for _, m := range models {
		pr, err := b.prune(m.name, m.path, 1)
		if err != nil {
			errs = append(errs, err.Error())
			t.add(m.name, "error: "+err.Error())
			continue
		}
		rows = append(rows, row{m.name, pr})
		ph := pr.PhaseMs
		n := float64(pr.IROps)
		ops, work, ana = append(ops, n), append(work, pr.workMs()), append(ana, ph["analysis"])
		irx, surg = append(irx, ph["ir_export"]), append(surg, ph["surgery"])
		t.add(m.name, fmt.Sprint(pr.IROps), human(float64(pr.Plan.ParamsBefore)), human(float64(pr.Plan.MACsBefore)),
			ms(ph["load"]), ms(ph["ir_export"]), ms(ph["analysis"]), ms(ph["scoring"]+ph["search"]), ms(ph["surgery"]), ms(ph["save"]),
			ms(pr.workMs()), fmt.Sprintf("%.0f", 1e3*pr.workMs()/n), fmt.Sprintf("%.1f", 1e3*ph["analysis"]/n))
	}
	slopes := map[string]float64{
		"pruning_work": logSlope(ops, work), "analysis": logSlope(ops, ana),
		"ir_export": logSlope(ops, irx), "surgery": logSlope(ops, surg),
	}
	s.Data = map[string]any{"rows": rows, "log_log_slope_vs_ops": slopes}
	if len(ops) >= 2 {
		keys := make([]string, 0, len(slopes))
		for k := range slopes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %.2f (%s)", k, slopes[k], linearity(slopes[k])))
		}
		s.note("log-log slope of time against IR op count (1 = linear): %s.", strings.Join(parts, ", "))
		s.Summary = &summaryRow{
			Gopruner: fmt.Sprintf("pruning work %s → %s ms over %s → %s IR ops", ms(work[0]), ms(work[len(work)-1]),
				fmt.Sprint(ops[0]), fmt.Sprint(ops[len(ops)-1])),
			Reference: "linear in ops = slope 1",
			Ratio:     fmt.Sprintf("slope %.2f: %s (analysis %.2f: %s)", slopes["pruning_work"], linearity(slopes["pruning_work"]), slopes["analysis"], linearity(slopes["analysis"])),
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
