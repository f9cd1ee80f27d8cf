package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// 8. my_pruning through NATS JetStream: one iteration of the demo search
// with the candidates run in-process without a broker (--broker direct),
// through the embedded broker (the default), and by 1 and 2 `gopruner
// worker` processes (one slot, one thread each) behind a `gopruner broker`.

func (b *bench) broker(s *section) error {
	ds, err := b.mnistData()
	if err != nil {
		return err
	}
	start := b.searchStart()
	p := b.o.searchDelta / 2 // one iteration, as in benchmark 7
	one := func(name string, extra ...string) (*searchRun, error) {
		args := append([]string{"--cart", "cpu,cpu"}, extra...) // searchArgs gives --threads 2
		return b.myPruningArgs(name, start, ds, p, args...)
	}
	t := s.addTable(fmt.Sprintf("one NetAdapt iteration of the demo CNN (delta_crop %.2f, %d short-term steps per candidate), coordinator --cart cpu,cpu --threads 2; summary.json iteration seconds and timings.candidates.broker_ms",
		b.o.searchDelta, b.o.searchShort),
		"candidates run by", "iteration wall", "broker cost (round trips − runs)", "broker cost / search", "vs direct")
	data := map[string]any{}
	s.Data = data
	direct, err := one("broker_direct", "--broker", "direct")
	if err != nil {
		return err
	}
	data["direct"] = direct
	d := first(direct.IterationS)
	t.add("2 in-process slots, --broker direct", secStr(d), "0", "0", "1.00×")
	emb, err := one("broker_embedded")
	if err != nil {
		return err
	}
	data["embedded"] = emb
	share := func(r *searchRun) (float64, float64) {
		c := r.Summary.Timings.Candidates
		mp := r.Summary.Timings.PhaseMs["my_pruning"]
		if c == nil || mp <= 0 {
			return 0, 0
		}
		return c.BrokerMs, c.BrokerMs / mp
	}
	ems, eshare := share(emb)
	t.add("2 in-process workers, embedded broker (default)", secStr(first(emb.IterationS)), fmt.Sprintf("%.0f ms", ems), pct(eshare), ratio(d/first(emb.IterationS)))

	// A broker process and worker processes on loopback.
	port, err := freeTCPPort()
	if err != nil {
		return err
	}
	tok := "bench-token"
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	store := filepath.Join(b.o.out, "broker_store")
	_ = os.RemoveAll(store)
	brk, err := b.background("broker", "--store", store, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--broker-token", tok)
	if err != nil {
		return err
	}
	defer stopProc(brk)
	if err := waitPort(port, time.Minute); err != nil {
		return fmt.Errorf("gopruner broker: %w", err)
	}
	var workers []*bgProc
	defer func() {
		for _, w := range workers {
			stopProc(w)
		}
	}()
	for n := 1; n <= 2; n++ {
		w, err := b.background("worker", "--broker", url, "--broker-token", tok, "--cart", "cpu", "--threads", "1",
			"--data-root", filepath.Dir(ds))
		if err != nil {
			return err
		}
		workers = append(workers, w)
		r, err := one(fmt.Sprintf("broker_%dworkers", n), "--broker", url, "--broker-token", tok)
		if err != nil {
			return fmt.Errorf("%d worker process(es): %w", n, err)
		}
		data[fmt.Sprintf("workers_%d", n)] = r
		ms, sh := share(r)
		t.add(fmt.Sprintf("%d `gopruner worker` process(es), 1 thread each, behind `gopruner broker`", n), secStr(first(r.IterationS)),
			fmt.Sprintf("%.0f ms", ms), pct(sh), ratio(d/first(r.IterationS)))
	}
	s.note("broker cost = Σ over candidates of (the coordinator's round trip: queueing, archive upload and fetch, the result) − the run's own time, from summary.json timings.candidates.broker_ms; it is what the broker adds on top of the work, and the share is of the search's wall time (phase my_pruning).")
	s.note("With one worker process the two cart slots queue behind one worker, so that row runs the iteration's candidates one at a time on one thread.")
	s.Summary = &summaryRow{
		Gopruner:  fmt.Sprintf("embedded broker: iteration %s, broker cost %s of the search", secStr(first(emb.IterationS)), pct(eshare)),
		Reference: fmt.Sprintf("--broker direct: iteration %s", secStr(d)),
		Ratio:     fmt.Sprintf("direct / embedded %s", ratio(d/first(emb.IterationS))),
		Note:      "goal: broker cost < 5% of the search",
	}
	return nil
}

// searchStart is the model the search benchmarks prune: the demo CNN
// benchmark 3 fine-tuned, else the untrained one.
func (b *bench) searchStart() string {
	if b.trained != "" {
		return b.trained
	}
	return filepath.Join(b.o.root, demoModel)
}

// myPruningArgs is myPruning with the cart and broker arguments given.
func (b *bench) myPruningArgs(name, model, ds string, p float64, extra ...string) (*searchRun, error) {
	return b.myPruningWith(name, model, ds, p, 0, extra...)
}

// bgProc is a long-running child (broker, worker); done closes when it
// has exited.
type bgProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// background starts a long-running gopruner command (broker, worker) with
// the benchmark's environment, its output in bench/out/NAME-*.log.
func (b *bench) background(args ...string) (*bgProc, error) {
	c := exec.Command(b.o.bin, args...)
	c.Env = b.r.env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	f, err := os.CreateTemp(b.o.out, args[0]+"-*.log")
	if err != nil {
		return nil, err
	}
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("gopruner %s: %w", strings.Join(args, " "), err)
	}
	p := &bgProc{cmd: c, done: make(chan struct{})}
	go func() {
		_ = c.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stopProc asks p to stop (SIGTERM) and kills it after 10 s.
func stopProc(p *bgProc) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(port int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("port %d not listening after %s", port, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
