package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dispatcher is the coordinator's side: it queues tasks of one run and
// waits for their results.
type Dispatcher struct {
	c   *Conn
	run string

	mu      sync.Mutex
	waiters map[string]chan *Result // by task id
	bySeq   map[uint64]*Task        // queued tasks by stream sequence, for MaxDeliver advisories

	cons jetstream.ConsumeContext
	adv  *nats.Subscription
}

// maxDeliveriesSubject is where JetStream announces a task that used up
// MaxDeliver without an ack (its worker died every time).
const maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + TasksStream + "." + WorkersConsumer

// NewDispatcher starts following run's results.
func NewDispatcher(ctx context.Context, c *Conn, run string) (*Dispatcher, error) {
	if !token.MatchString(run) {
		return nil, fmt.Errorf("run id %q is not a subject token", run)
	}
	d := &Dispatcher{c: c, run: run, waiters: map[string]chan *Result{}, bySeq: map[uint64]*Task{}}
	cons, err := c.JS.OrderedConsumer(ctx, ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ResultPrefix + run + ".>"}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("following results: %w", err)
	}
	d.cons, err = cons.Consume(func(m jetstream.Msg) {
		var r Result
		if json.Unmarshal(m.Data(), &r) == nil {
			d.deliver(&r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("following results: %w", err)
	}
	d.adv, err = c.NC.Subscribe(maxDeliveriesSubject, d.maxDelivered)
	if err != nil {
		d.cons.Stop()
		return nil, fmt.Errorf("following advisories: %w", err)
	}
	return d, nil
}

// Close stops following results; queued tasks stay queued.
func (d *Dispatcher) Close() {
	d.cons.Stop()
	_ = d.adv.Unsubscribe()
}

func (d *Dispatcher) deliver(r *Result) {
	d.mu.Lock()
	ch := d.waiters[r.ID]
	delete(d.waiters, r.ID)
	d.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// maxDelivered turns a task no worker lived through into a failed result,
// then takes it off the queue (a task leaves the queue only after its
// result is stored).
func (d *Dispatcher) maxDelivered(m *nats.Msg) {
	var a struct {
		Seq        uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &a) != nil {
		return
	}
	d.mu.Lock()
	t := d.bySeq[a.Seq]
	d.mu.Unlock()
	if t == nil {
		return // another run's task
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := ResultSubject(t.Run, t.ID)
	if _, err := d.c.Results.GetLastMsgForSubject(ctx, subj); err == nil {
		return // a worker reported it after all
	}
	r := &Result{Protocol: ProtocolVersion, Run: t.Run, ID: t.ID, Iteration: t.Iteration, Group: t.Group, Deliveries: a.Deliveries,
		Error: fmt.Sprintf("no worker finished the task in %d deliveries (each died or timed out)", a.Deliveries)}
	if storeResult(ctx, d.c, r) == nil {
		_ = d.c.Tasks.DeleteMsg(ctx, a.Seq)
	}
}

// Do queues t (unless its result is already stored: a resumed coordinator
// reuses it) and waits for the result.
func (d *Dispatcher) Do(ctx context.Context, t *Task) (*Result, error) {
	t.Protocol, t.Run = ProtocolVersion, d.run
	ch := make(chan *Result, 1)
	d.mu.Lock()
	d.waiters[t.ID] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiters, t.ID)
		d.mu.Unlock()
	}()
	if r, err := d.stored(ctx, t.ID); err != nil || r != nil {
		if r != nil {
			r.Reused = true
		}
		return r, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	ack, err := d.c.JS.Publish(ctx, TaskSubject(d.run, t.ID), b, jetstream.WithMsgID(d.run+"."+t.ID))
	if err != nil {
		return nil, fmt.Errorf("queueing task %s: %w", t.ID, err)
	}
	d.mu.Lock()
	d.bySeq[ack.Sequence] = t
	d.mu.Unlock()
	// The results consumer delivers nearly always; the poll covers a result
	// stored while the consumer was re-created after a broker restart.
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-poll.C:
			if r, err := d.stored(ctx, t.ID); err == nil && r != nil {
				return r, nil
			}
		}
	}
}

// stored is the result of task id if one is stored, else nil.
func (d *Dispatcher) stored(ctx context.Context, id string) (*Result, error) {
	m, err := d.c.Results.GetLastMsgForSubject(ctx, ResultSubject(d.run, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, nil // the broker is away; the wait retries
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("stored result of task %s is malformed: %w", id, err)
	}
	return &r, nil
}

// storeResult publishes r on its subject, idempotently.
func storeResult(ctx context.Context, c *Conn, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = c.JS.Publish(ctx, ResultSubject(r.Run, r.ID), b, jetstream.WithMsgID(fmt.Sprintf("%s.%s.%d", r.Run, r.ID, r.Deliveries)))
	return err
}
