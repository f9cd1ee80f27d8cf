package pipeline

// my_pruning's candidates travel through a NATS JetStream broker (package
// broker): the evaluator queues each candidate as a task and waits for its
// result; workers, in this process (one per cart slot, the default) or in
// `gopruner worker` processes on other hosts, run them. One code path for
// one host and many. The design is in docs/broker.md.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/broker"
	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/core/search/cut"
	"github.com/gopruner/gopruner/internal/core/search/netadapt"
	"github.com/gopruner/gopruner/internal/engine"
)

// BrokerOptions say where my_pruning's candidates run.
type BrokerOptions struct {
	// Direct runs candidates in this process without a broker (the path
	// before the broker existed; kept to measure the broker's overhead).
	Direct bool
	// URL is an external broker (nats:// or tls://); "" starts an embedded
	// one on loopback with its store under the run directory and serves the
	// candidates with in-process workers, one per cart slot.
	URL                    string
	Token                  string
	Insecure               bool
	TLSCert, TLSKey, TLSCA string
	Settings               broker.Settings
	// Version is this build's version; workers of another refuse its tasks.
	Version string
	// Bridge is how this process runs models; it travels in each task and
	// a worker that runs them otherwise refuses it.
	Bridge broker.Bridge
	// Dataset is what remote workers open under their --data-root.
	Dataset DatasetRef
}

// DatasetRef is the coordinator's data set as a task names it.
type DatasetRef struct {
	Dir     string // the coordinator's copy (its manifest is computed from it)
	Options data.Options
}

// dispatch is the evaluator's side of the broker.
type dispatch struct {
	conn    *broker.Conn
	d       *broker.Dispatcher
	dataset broker.DatasetRef
	version string
	bridge  broker.Bridge
	log     zerolog.Logger

	upMu     sync.Mutex
	uploaded string // digest of the archive last stored

	mu     sync.Mutex
	worker map[[2]int]string        // (iteration, group) → the worker that ran it
	parked map[string]engine.Module // in-process workers' fine-tuned modules by task id

	// salt is what besides the request decides a result: the data set's
	// manifest and validation subset.
	salt string

	stop func() // ends the in-process workers and the embedded server
}

// startDispatch connects the evaluator to its broker. Without an external
// broker it starts an embedded one and one worker per slot in this
// process.
func startDispatch(ctx context.Context, e *evaluator, o MyPruningOptions) (*dispatch, error) {
	t0 := time.Now()
	b := o.Broker
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	url, token := b.URL, b.Token
	if url == "" {
		store, cleanup, err := storeDir(o.Dir)
		if err != nil {
			return nil, err
		}
		stops = append(stops, cleanup)
		token = broker.NewToken()
		srv, err := broker.StartServer(broker.ServerOptions{StoreDir: store, Token: token})
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("my_pruning: %w", err)
		}
		stops = append(stops, srv.Close)
		url = srv.URL
	}
	conn, err := broker.Connect(ctx, broker.ConnectOptions{URL: url, Token: token, Insecure: b.Insecure,
		TLSCert: b.TLSCert, TLSKey: b.TLSKey, TLSCA: b.TLSCA, Name: "gopruner coordinator", Settings: b.Settings})
	if err != nil {
		stopAll()
		return nil, err
	}
	stops = append(stops, conn.Close)
	run, old, err := runID(o.Dir, o.Resume)
	if err != nil {
		stopAll()
		return nil, err
	}
	if old != "" {
		// A fresh run does not inherit the tasks and results of an earlier
		// one in the same directory; a resumed one reuses them.
		if err := conn.PurgeRun(ctx, old); err != nil {
			stopAll()
			return nil, fmt.Errorf("my_pruning: %w", err)
		}
	}
	d, err := broker.NewDispatcher(ctx, conn, run)
	if err != nil {
		stopAll()
		return nil, fmt.Errorf("my_pruning: %w", err)
	}
	stops = append(stops, d.Close)
	ds := &dispatch{conn: conn, d: d, version: b.Version, bridge: b.Bridge, log: o.Log, worker: map[[2]int]string{}, parked: map[string]engine.Module{}}
	if b.URL != "" {
		// Remote workers open their own copy: name it and pin its content.
		ref, err := datasetRef(b.Dataset)
		if err != nil {
			stopAll()
			return nil, err
		}
		if e.cval != e.val {
			ref.EvalSamples, ref.EvalSeed = o.EvalSamples, evalSeed(o.Seed)
		}
		ds.dataset = ref
		if o.Train.Distill != nil {
			// Remote workers fetch the teacher by digest, as they fetch
			// each iteration's base model.
			if err := conn.PutArchive(ctx, e.origDigest, e.orig); err != nil {
				stopAll()
				return nil, fmt.Errorf("my_pruning: the distillation teacher: %w", err)
			}
		}
	} else {
		wctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		host, _ := os.Hostname()
		for slot := range e.devs {
			wg.Go(func() {
				// Worker i runs on the evaluator's slot i (netadapt never
				// commits while tasks run) and parks the fine-tuned module
				// for Evaluate, which may hold it for Commit.
				run := func(ctx context.Context, archive []byte, req CandidateRequest) (CandidateResult, engine.Module, error) {
					return e.slots[slot].Run(ctx, archive, req, e.train, e.cval)
				}
				h := func(ctx context.Context, t *broker.Task, archive []byte) (json.RawMessage, error) {
					out, m, err := runTask(ctx, run, archive, t.Request, e.devs[slot], e.threads[slot])
					if m != nil {
						ds.park(t.ID, m)
					}
					return out, err
				}
				name := fmt.Sprintf("%s/%d", host, slot)
				if err := broker.Serve(wctx, conn, broker.WorkerOptions{Name: name, Version: b.Version, Log: o.Log, Quiet: true}, h); err != nil {
					o.Log.Error().Err(err).Str("worker", name).Msg("my_pruning: in-process worker stopped")
				}
			})
		}
		stops = append(stops, func() { cancel(); wg.Wait(); ds.dropParked() })
	}
	ds.salt = fmt.Sprintf("%s/%d/%d", ds.dataset.Manifest, ds.dataset.EvalSamples, ds.dataset.EvalSeed)
	ds.stop = stopAll
	o.Log.Debug().Str("broker", orNone(b.URL)).Float64("seconds", time.Since(t0).Seconds()).Msg("my_pruning: broker ready")
	return ds, nil
}

// evalSeed picks the validation subset of eval_samples; remote workers
// pick the same one from it.
func evalSeed(seed int64) int64 { return cut.DeriveSeed(seed, "eval", 0, 0) }

// runFunc is a worker slot's candidate executor (a Slot's Run).
type runFunc func(ctx context.Context, archive []byte, req CandidateRequest) (CandidateResult, engine.Module, error)

// runTask is the one place a task's candidate runs, for in-process and
// remote workers alike: the request runs on this worker's slot. It returns
// the result JSON and the fine-tuned module, which the caller owns.
func runTask(ctx context.Context, run runFunc, archive []byte, raw json.RawMessage, dev string, threads int) (json.RawMessage, engine.Module, error) {
	var req CandidateRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, nil, fmt.Errorf("%w: malformed candidate request: %v", broker.ErrRefused, err)
	}
	if d := Digest(archive); d != req.BaseDigest {
		return nil, nil, fmt.Errorf("archive digest %s, the request names %s", d[:12], req.BaseDigest)
	}
	req.Device, req.Threads = dev, threads
	res, m, err := run(ctx, archive, req)
	if err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return out, m, nil
}

// park keeps an in-process worker's fine-tuned module of task id for
// Evaluate.
func (ds *dispatch) park(id string, m engine.Module) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if old := ds.parked[id]; old != nil {
		old.Close()
	}
	ds.parked[id] = m
}

// takeParked hands over the parked module of task id, nil if there is none
// (a remote worker ran it, or the result was stored before).
func (ds *dispatch) takeParked(id string) engine.Module {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	m := ds.parked[id]
	delete(ds.parked, id)
	return m
}

func (ds *dispatch) dropParked() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for id, m := range ds.parked {
		m.Close()
		delete(ds.parked, id)
	}
}

// evaluate runs req through the broker (or directly on slot without one).
// The module is the fine-tuned candidate when it ran in this process, else
// nil (Commit then re-derives the winner).
func (e *evaluator) evaluate(ctx context.Context, slot int, req CandidateRequest) (CandidateResult, engine.Module, error) {
	if e.disp == nil {
		return e.runOn(ctx, slot, req)
	}
	res, err := e.dispatched(ctx, req)
	if err != nil {
		return res, nil, err
	}
	m := e.disp.takeParked(taskID(req, e.disp.salt))
	e.mu.Lock()
	e.timing.Add(res.Timing)
	e.runs++
	e.mu.Unlock()
	return res, m, nil
}

// dispatched queues req and waits for its result.
func (e *evaluator) dispatched(ctx context.Context, req CandidateRequest) (CandidateResult, error) {
	ds := e.disp
	start := time.Now()
	if err := ds.upload(ctx, e.curDigest, e.cur); err != nil {
		return CandidateResult{}, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return CandidateResult{}, err
	}
	bridge := ds.bridge
	t := &broker.Task{Version: ds.version, ID: taskID(req, ds.salt), Iteration: req.Iteration, Group: req.Group,
		Archive: req.BaseDigest, Dataset: ds.dataset, Request: b, Bridge: &bridge}
	r, err := ds.d.Do(ctx, t)
	if err != nil {
		return CandidateResult{}, err
	}
	if r.Error != "" {
		err := fmt.Errorf("candidate of group %d failed on worker %s after %d deliveries: %s", req.Group, orNone(r.Worker), r.Deliveries, r.Error)
		if !r.Refused {
			// A task that failed on every delivery: the iteration goes on
			// without this candidate.
			err = fmt.Errorf("%w: %w", netadapt.ErrCandidateFailed, err)
		}
		return CandidateResult{}, err
	}
	var res CandidateResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return res, fmt.Errorf("result of task %s from worker %s is malformed: %w", t.ID, r.Worker, err)
	}
	if res.BaseDigest != req.BaseDigest {
		return res, fmt.Errorf("worker %s answered task %s for model %.12s, it was for %.12s", r.Worker, t.ID, res.BaseDigest, req.BaseDigest)
	}
	res.Worker = r.Worker
	res.Timing.Broker = max(0, time.Since(start).Seconds()-res.Seconds)
	ds.mu.Lock()
	ds.worker[[2]int{req.Iteration, req.Group}] = r.Worker
	ds.mu.Unlock()
	ds.log.Debug().Int("iteration", req.Iteration).Int("group", req.Group).Str("worker", r.Worker).
		Int("deliveries", r.Deliveries).Float64("seconds", r.Seconds).Bool("reused", r.Reused).
		// round_trip - run_seconds is what the broker cost this candidate.
		Float64("round_trip", time.Since(start).Seconds()).Float64("run_seconds", res.Seconds).Msg("my_pruning: candidate ran")
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// upload stores the current model once per digest: every candidate of an
// iteration starts from it.
func (ds *dispatch) upload(ctx context.Context, digest string, b []byte) error {
	ds.upMu.Lock()
	defer ds.upMu.Unlock()
	if ds.uploaded == digest {
		return nil
	}
	if err := ds.conn.PutArchive(ctx, digest, b); err != nil {
		return fmt.Errorf("my_pruning: %w", err)
	}
	ds.uploaded = digest
	return nil
}

// workers is a copy of which worker ran each candidate.
func (ds *dispatch) workers() map[[2]int]string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return maps.Clone(ds.worker)
}

// taskID names a request by its content, without where it runs: the same
// candidate of the same model with the same data is the same task, so a
// resumed coordinator finds the results of the tasks it queued before.
func taskID(req CandidateRequest, manifest string) string {
	req.Device, req.Threads = "", 0
	b, _ := json.Marshal(req) // plain data: Marshal cannot fail
	h := sha256.New()
	h.Write(b)
	h.Write([]byte(manifest))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// runID names a run. A fresh run gets a new id, which it records in
// DIR/broker_run so that --resume in the same directory finds the results
// its tasks left; old is the id an earlier run in DIR recorded, whose tasks
// and results the caller purges. Why not the directory's hash every time:
// a task's message id is the run id and its content, and JetStream drops a
// message whose id it has seen within the duplicate window even after a
// purge, so a fresh run repeating an earlier run's candidates within
// minutes had its tasks silently dropped and waited for them forever. A
// run without a directory gets a random id and records nothing.
func runID(dir string, resume bool) (run, old string, err error) {
	fresh := func() string {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	if dir == "" {
		return fresh(), "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("my_pruning: %w", err)
	}
	file := filepath.Join(abs, runIDFile)
	raw, err := os.ReadFile(file)
	switch {
	case err == nil:
		old = strings.TrimSpace(string(raw))
		if !broker.ValidToken(old) {
			return "", "", fmt.Errorf("my_pruning: %s: %q is not a run id", file, old)
		}
	case errors.Is(err, fs.ErrNotExist):
		// Checkpoints written before the file existed named their run
		// by the directory.
		h := sha256.Sum256([]byte(abs))
		old = hex.EncodeToString(h[:8])
	default:
		return "", "", fmt.Errorf("my_pruning: %w", err)
	}
	if resume {
		return old, "", nil
	}
	run = fresh()
	if err := atomicfile.WriteFile(file, []byte(run+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("my_pruning: %w", err)
	}
	return run, old, nil
}

// runIDFile, in the run directory, holds the broker run id of the last
// fresh run there.
const runIDFile = "broker_run"

// storeDir is the embedded broker's file store: exp_save/model_name/broker,
// or a temporary directory (removed by cleanup) for a run without one.
func storeDir(dir string) (string, func(), error) {
	if dir != "" {
		return filepath.Join(dir, "broker"), func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "gopruner-broker-")
	if err != nil {
		return "", nil, fmt.Errorf("my_pruning: broker store: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// datasetRef names the coordinator's data set for remote workers.
func datasetRef(d DatasetRef) (broker.DatasetRef, error) {
	if d.Dir == "" {
		return broker.DatasetRef{}, errors.New("my_pruning: remote workers need the data set's directory")
	}
	m, err := Manifest(d.Dir)
	if err != nil {
		return broker.DatasetRef{}, fmt.Errorf("my_pruning: %w", err)
	}
	opts, err := json.Marshal(d.Options)
	if err != nil {
		return broker.DatasetRef{}, err
	}
	abs, err := filepath.Abs(d.Dir)
	if err != nil {
		return broker.DatasetRef{}, err
	}
	return broker.DatasetRef{Name: filepath.Base(abs), Manifest: m, Options: opts}, nil
}
