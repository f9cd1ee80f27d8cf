package netadapt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"
)

// fakeNet is a synthetic evaluator: a chain of 3×3 convs over the groups in
// order (input 3 channels, each layer with its own spatial size) and a final
// linear to 10 classes; accuracy = 1 − Σ_g w_g·(1 − keep_g/channels_g)².
// It checks the core's contract: candidates differ from the committed model
// in one group only, and no slot runs two candidates at once.
type fakeNet struct {
	t       *testing.T
	groups  []Group
	spatial []int64
	weights []float64

	// sleep, when set, is how long a candidate takes.
	sleep func(c Candidate) time.Duration
	// samples is the validation size Evaluate reports (0: unknown).
	samples int
	// before, when set, runs at the start of every Evaluate (to cancel, to
	// fail, ...); a non-nil result is returned as Evaluate's error.
	before func(ctx context.Context, c Candidate) error

	mu          sync.Mutex
	current     map[int]int
	commits     []Candidate
	evaluated   int
	inflight    int
	maxInflight int
	perSlot     map[int]int
	violations  []string
	resized     []map[int]int
	calls       []string // finisher calls in order
}

func newFakeNet(t *testing.T, channels ...int) *fakeNet {
	f := &fakeNet{t: t, current: map[int]int{}, perSlot: map[int]int{}}
	for i, c := range channels {
		f.groups = append(f.groups, Group{ID: i, Layers: []string{fmt.Sprintf("blocks.%d.conv", i), fmt.Sprintf("blocks.%d.bn", i)}, Channels: c})
		f.spatial = append(f.spatial, int64(64>>min(i, 4)))
		f.weights = append(f.weights, 0.05+0.1*float64((i*7)%5))
		f.current[i] = c
	}
	return f
}

func (f *fakeNet) MACs(keep map[int]int) int64 {
	prev := int64(3)
	var sum int64
	for i, g := range f.groups {
		k := int64(g.Channels)
		if n, ok := keep[g.ID]; ok {
			k = int64(n)
		}
		sum += prev * k * 9 * f.spatial[i] * f.spatial[i]
		prev = k
	}
	return sum + prev*10
}

func (f *fakeNet) accuracy(keep map[int]int) float64 {
	acc := 1.0
	for i, g := range f.groups {
		d := 1 - float64(keep[g.ID])/float64(g.Channels)
		acc -= f.weights[i] * d * d
	}
	return acc
}

func (f *fakeNet) Evaluate(ctx context.Context, slot int, c Candidate) (Result, error) {
	f.mu.Lock()
	f.evaluated++
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.perSlot[slot]++
	if f.perSlot[slot] > 1 {
		f.violations = append(f.violations, fmt.Sprintf("slot %d runs %d candidates at once", slot, f.perSlot[slot]))
	}
	for id, n := range f.current {
		want := n
		if id == c.Group {
			want = c.To
			if c.From != n {
				f.violations = append(f.violations, fmt.Sprintf("candidate from %d, group %d is at %d", c.From, id, n))
			}
		}
		if c.Keep[id] != want {
			f.violations = append(f.violations, fmt.Sprintf("candidate keep[%d]=%d, want %d", id, c.Keep[id], want))
		}
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.perSlot[slot]--
		f.mu.Unlock()
	}()
	if f.before != nil {
		if err := f.before(ctx, c); err != nil {
			return Result{}, err
		}
	}
	if f.sleep != nil {
		select {
		case <-time.After(f.sleep(c)):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	acc := f.accuracy(c.Keep)
	return Result{Accuracy: acc, Samples: f.samples, TrainLoss: 2 * (1 - acc)}, nil
}

func (f *fakeNet) Commit(_ context.Context, c Candidate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits = append(f.commits, c)
	f.current = maps.Clone(c.Keep)
	return nil
}

func (f *fakeNet) Resize(_ context.Context, keep map[int]int) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "resize")
	f.resized = append(f.resized, maps.Clone(keep))
	f.current = maps.Clone(keep)
	return f.accuracy(keep), nil
}

func (f *fakeNet) FineTune(context.Context) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "finetune")
	return f.accuracy(f.current) + 0.01, nil
}

func (f *fakeNet) checkContract() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		f.t.Error(v)
	}
}

// memCheckpoints keeps every saved state, as JSON would (a deep copy).
type memCheckpoints struct {
	mu     sync.Mutex
	states []State
	fail   error
}

func (m *memCheckpoints) Save(_ context.Context, s State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.states = append(m.states, *cloneState(&s))
	return nil
}

func (m *memCheckpoints) last() *State {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.states) == 0 {
		return nil
	}
	return cloneState(&m.states[len(m.states)-1])
}

var errBoom = errors.New("boom")
