// Package broker carries my_pruning candidates between a coordinator and
// workers over NATS JetStream. It owns the transport only: the embedded
// server, the connection policy (token, TLS, no plaintext to a remote host),
// the streams and the object store, the versioned task and result envelopes,
// and the worker's fetch / heartbeat / ack loop. What a candidate is and how
// it runs stays in internal/pipeline, which hands this package opaque JSON.
//
// The design (streams, subjects, messages, failure rules) is written up in
// docs/broker.md.
package broker

import (
	"time"
)

// ProtocolVersion is the version of Task and Result. A worker refuses a
// task of another version instead of guessing what its fields mean.
const ProtocolVersion = 1

// Stream, subject and bucket names. Subjects carry the run id, so runs that
// share a broker never see each other's results.
const (
	TasksStream     = "GOPRUNER_TASKS"
	TaskPrefix      = "gopruner.task."
	ResultsStream   = "GOPRUNER_RESULTS"
	ResultPrefix    = "gopruner.result."
	ArchiveBucket   = "gopruner_archives"
	WorkersConsumer = "workers"
)

// Settings are the redelivery rules of the task queue.
type Settings struct {
	// AckWait is how long a delivered task may go without an ack or a
	// heartbeat before JetStream hands it to another worker.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one task; the last failing one
	// reports the candidate failed instead of retrying it forever.
	MaxDeliver int
	// NakDelay is how long a task a worker could not run waits before its
	// next delivery.
	NakDelay time.Duration
}

// DefaultSettings suit candidates of seconds to hours: a worker heartbeats
// every AckWait/3, so a long fine-tune never times out while it lives, and
// a dead worker's task moves on after at most AckWait.
var DefaultSettings = Settings{AckWait: 30 * time.Second, MaxDeliver: 3, NakDelay: time.Second}

func (s Settings) orDefault() Settings {
	if s.AckWait <= 0 {
		s.AckWait = DefaultSettings.AckWait
	}
	if s.MaxDeliver <= 0 {
		s.MaxDeliver = DefaultSettings.MaxDeliver
	}
	if s.NakDelay <= 0 {
		s.NakDelay = DefaultSettings.NakDelay
	}
	return s
}

// TaskSubject is where the task id of run is queued; ResultSubject where its
// result is kept (one message per subject: results are idempotent).
func TaskSubject(run, id string) string   { return TaskPrefix + run + "." + id }
func ResultSubject(run, id string) string { return ResultPrefix + run + "." + id }
