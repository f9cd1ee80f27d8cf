package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/broker"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/engine"
)

// WorkerOptions configure `gopruner worker`: the slots it serves and the
// data sets it holds.
type WorkerOptions struct {
	Slots   []string // the cart: one worker loop per entry
	Threads int      // total CPU threads, shared by the cpu slots as in a search
	// DataRoot holds the data sets; a task names one directory in it.
	DataRoot string
	Host     string // this host's name in results ("host/slot")
	Version  string
	// Bridge is how this process runs models; tasks of a coordinator that
	// runs them otherwise are refused.
	Bridge broker.Bridge
	Log    zerolog.Logger
}

// ServeWorker serves candidates from conn on every slot until ctx ends.
func ServeWorker(ctx context.Context, conn *broker.Conn, eng engine.Engine, o WorkerOptions) error {
	devs, threads, err := slotDevices(o.Slots, o.Threads)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(o.DataRoot)
	if err != nil {
		return err
	}
	dc := &dataCache{root: root, log: o.Log}
	errs := make([]error, len(devs))
	var wg sync.WaitGroup
	for slot := range devs {
		wg.Go(func() {
			name := fmt.Sprintf("%s/%d", o.Host, slot)
			// The slot keeps the iteration's base model loaded between its
			// candidates, as the coordinator's own slots do.
			// A distilled candidate's teacher (the original model) is an
			// archive the coordinator stored, fetched once per slot.
			sl := &Slot{Eng: eng, Archive: conn.Archive}
			defer sl.Close()
			h := func(ctx context.Context, t *broker.Task, archive []byte) (json.RawMessage, error) {
				d, err := dc.get(ctx, t.Dataset)
				if err != nil {
					return nil, err
				}
				val := d.evalSplit(t.Dataset.EvalSamples, t.Dataset.EvalSeed)
				run := func(ctx context.Context, archive []byte, req CandidateRequest) (CandidateResult, engine.Module, error) {
					return sl.Run(ctx, archive, req, d.train, val)
				}
				out, m, err := runTask(ctx, run, archive, t.Request, devs[slot], threads[slot])
				if m != nil {
					m.Close() // the coordinator re-derives a winner it did not run itself
				}
				return out, err
			}
			check := func(t *broker.Task) error {
				_, err := dc.get(ctx, t.Dataset)
				return err
			}
			errs[slot] = broker.Serve(ctx, conn, broker.WorkerOptions{Name: name, Version: o.Version, Bridge: &o.Bridge, Check: check, Log: o.Log}, h)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dataCache opens the data sets tasks name, once each, and checks that
// this host's copy is the coordinator's.
type dataCache struct {
	root string
	log  zerolog.Logger
	mu   sync.Mutex
	sets map[string]*openData // by name + options + manifest
}

type openData struct {
	train, val *data.Split
	err        error

	mu   sync.Mutex
	subs map[[2]int64]*data.Split // validation subsets by (samples, seed)
}

// evalSplit is val, or its subset of n samples picked by seed; one Split
// per subset, so whatever is cached per split is reused across tasks.
func (d *openData) evalSplit(n int, seed int64) *data.Split {
	if n <= 0 {
		return d.val
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := [2]int64{int64(n), seed}
	if s, ok := d.subs[k]; ok {
		return s
	}
	if d.subs == nil {
		d.subs = map[[2]int64]*data.Split{}
	}
	d.subs[k] = d.val.Subset(n, seed)
	return d.subs[k]
}

func (c *dataCache) get(ctx context.Context, ref broker.DatasetRef) (*openData, error) {
	if err := broker.CheckDatasetName(ref.Name); err != nil {
		return nil, err
	}
	key := ref.Name + "\x00" + string(ref.Options) + "\x00" + ref.Manifest
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.sets[key]; ok {
		return d, d.err
	}
	d := c.open(ctx, ref)
	if d.err != nil {
		c.log.Error().Err(d.err).Str("dataset", ref.Name).Msg("worker: data set refused")
	}
	if c.sets == nil {
		c.sets = map[string]*openData{}
	}
	if ctx.Err() == nil {
		c.sets[key] = d
	}
	return d, d.err
}

func (c *dataCache) open(ctx context.Context, ref broker.DatasetRef) *openData {
	dir := filepath.Join(c.root, ref.Name)
	m, err := Manifest(dir)
	if err != nil {
		return &openData{err: fmt.Errorf("%w: data set %s: %v", broker.ErrRefused, dir, err)}
	}
	if m != ref.Manifest {
		return &openData{err: fmt.Errorf("%w: data set %s differs from the coordinator's (manifest %.12s here, %.12s there): copy the same files to --data-root", broker.ErrRefused, dir, m, ref.Manifest)}
	}
	var opts data.Options
	if err := json.Unmarshal(ref.Options, &opts); err != nil {
		return &openData{err: fmt.Errorf("%w: data set options: %v", broker.ErrRefused, err)}
	}
	// Rows must stay inside the data root whatever the coordinator allows.
	opts.AllowExternalPaths = false
	ds, err := data.Open(dir, opts)
	if err != nil {
		return &openData{err: fmt.Errorf("%w: %v", broker.ErrRefused, err)}
	}
	out := &openData{}
	for _, s := range []struct {
		name string
		to   **data.Split
	}{{data.Train, &out.train}, {data.Val, &out.val}} {
		sp, err := ds.Split(s.name)
		if err == nil {
			err = sp.Preload(ctx)
		}
		if err != nil {
			return &openData{err: fmt.Errorf("data set %s: %w", dir, err)}
		}
		*s.to = sp
	}
	return out
}

// Manifest is the digest of a data set directory's content as far as it
// can be checked cheaply: every regular file's path and size, and the bytes
// of data.csv (labels and splits). Modification times are left out: they
// change when the data are copied to another host.
func Manifest(dir string) (string, error) {
	type entry struct {
		path string
		size int64
	}
	var files []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, entry{filepath.ToSlash(rel), info.Size()})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("data set manifest: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\n", f.path, f.size)
	}
	if f, err := os.Open(filepath.Join(dir, "data.csv")); err == nil {
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("data set manifest: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
