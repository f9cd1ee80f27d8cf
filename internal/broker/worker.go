package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Handler runs one task on an archive and returns its result JSON. An
// error fails this delivery; the task is delivered again (maybe to another
// worker) until MaxDeliver, then reported failed. An error wrapping
// ErrRefused fails it at once.
type Handler func(ctx context.Context, t *Task, archive []byte) (json.RawMessage, error)

// WorkerOptions configure one worker slot.
type WorkerOptions struct {
	Name    string // "host/slot", recorded in every result
	Version string // this build; tasks of another are refused ("" accepts any)
	// Check refuses a task before its archive is fetched (a data set
	// mismatch). Its error fails this delivery like a Handler error.
	Check func(t *Task) error
	// Bridge is how this process runs models; a task whose coordinator
	// runs them otherwise is refused (nil: not checked).
	Bridge *Bridge
	Log    zerolog.Logger
	// Quiet logs each task's start and end at debug level rather than info:
	// an in-process worker, whose coordinator prints every candidate anyway.
	Quiet bool
}

// Serve runs tasks on this slot until ctx ends. It returns nil then, or
// the error that made the queue unusable.
func Serve(ctx context.Context, c *Conn, o WorkerOptions, h Handler) error {
	st := c.Settings
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, TasksStream, jetstream.ConsumerConfig{Durable: WorkersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: st.AckWait, MaxDeliver: st.MaxDeliver,
		FilterSubject: TaskPrefix + ">", MaxAckPending: -1})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("task consumer: %w", err)
	}
	for ctx.Err() == nil {
		// The pull ends when ctx does, so stopping a worker (and the
		// coordinator's in-process ones) does not wait out a poll.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := cons.Next(jetstream.FetchContext(pctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
				// The broker restarts or the connection is re-established:
				// the client reconnects by itself; ask again shortly.
				o.Log.Debug().Err(err).Str("worker", o.Name).Msg("worker: fetching a task")
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
			continue
		}
		handle(ctx, c, o, h, m)
	}
	return nil
}

func handle(ctx context.Context, c *Conn, o WorkerOptions, h Handler, m jetstream.Msg) {
	start := time.Now()
	deliveries := 1
	if md, err := m.Metadata(); err == nil {
		deliveries = int(md.NumDelivered)
	}
	t, err := DecodeTask(m.Data(), o.Version)
	if err != nil {
		run, id, ok := subjectID(m.Subject())
		o.Log.Error().Str("worker", o.Name).Str("subject", m.Subject()).Err(err).Msg("worker: task refused")
		if ok {
			r := &Result{Protocol: ProtocolVersion, Run: run, ID: id, Worker: o.Name, Deliveries: deliveries, Error: err.Error(), Refused: true}
			if t != nil {
				r.Iteration, r.Group = t.Iteration, t.Group
			}
			if storeResult(ctx, c, r) != nil {
				_ = m.Nak() // the invariant: no result stored, so the task stays
				return
			}
		}
		_ = m.TermWithReason("refused")
		return
	}
	log := o.Log.With().Str("worker", o.Name).Str("task", t.ID).Int("iteration", t.Iteration).Int("group", t.Group).
		Int("delivery", deliveries).Logger()
	taskLevel := zerolog.InfoLevel
	if o.Quiet {
		taskLevel = zerolog.DebugLevel
	}
	log.WithLevel(taskLevel).Msg("worker: task started")
	fail := func(err error) {
		if ctx.Err() != nil {
			// Shutting down: hand the task back at once rather than after AckWait.
			_ = m.Nak()
			return
		}
		if deliveries < c.Settings.MaxDeliver && !errors.Is(err, ErrRefused) {
			log.Warn().Err(err).Msg("worker: task failed, it will be delivered again")
			_ = m.NakWithDelay(c.Settings.NakDelay)
			return
		}
		log.Error().Err(err).Msg("worker: task failed for good")
		r := &Result{Protocol: ProtocolVersion, Run: t.Run, ID: t.ID, Iteration: t.Iteration, Group: t.Group, Worker: o.Name,
			Deliveries: deliveries, Seconds: time.Since(start).Seconds(), Error: err.Error(), Refused: errors.Is(err, ErrRefused)}
		if storeResult(context.WithoutCancel(ctx), c, r) != nil {
			_ = m.Nak()
			return
		}
		_ = m.TermWithReason("failed")
	}
	if o.Bridge != nil {
		if d := o.Bridge.Mismatch(t.Bridge); d != "" {
			fail(fmt.Errorf("%w: %s", ErrRefused, d))
			return
		}
	}
	if o.Check != nil {
		if err := o.Check(t); err != nil {
			fail(err)
			return
		}
	}
	// Heartbeats keep a long candidate from being redelivered while this
	// worker lives; a dead worker stops them and AckWait moves the task on.
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		tick := time.NewTicker(max(c.Settings.AckWait/3, 100*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-tick.C:
				_ = m.InProgress()
			}
		}
	}()
	archive, err := c.Archive(ctx, t.Archive)
	if err != nil {
		fail(err)
		return
	}
	out, err := h(ctx, t, archive)
	stopHB()
	if err != nil {
		fail(err)
		return
	}
	r := &Result{Protocol: ProtocolVersion, Run: t.Run, ID: t.ID, Iteration: t.Iteration, Group: t.Group, Worker: o.Name,
		Deliveries: deliveries, Seconds: time.Since(start).Seconds(), Result: out}
	if err := storeResult(context.WithoutCancel(ctx), c, r); err != nil {
		log.Warn().Err(err).Msg("worker: storing the result failed; the task stays queued")
		_ = m.Nak()
		return
	}
	if err := m.DoubleAck(context.WithoutCancel(ctx)); err != nil {
		// The result is stored; a redelivery finds it and the coordinator
		// already has it, so this costs at most one repeat.
		log.Warn().Err(err).Msg("worker: ack failed after the result was stored")
	}
	log.WithLevel(taskLevel).Float64("seconds", r.Seconds).Msg("worker: task done")
}
