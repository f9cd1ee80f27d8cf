package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/core/fail"
)

func startTest(t *testing.T, st Settings) (*Server, *Conn) {
	t.Helper()
	tok := NewToken()
	s, err := StartServer(ServerOptions{StoreDir: t.TempDir(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, err := Connect(context.Background(), ConnectOptions{URL: s.URL, Token: tok, Settings: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return s, c
}

func serve(t *testing.T, c *Conn, o WorkerOptions, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = Serve(ctx, c, o, h) }()
	t.Cleanup(func() { cancel(); <-done })
}

func task(id string) *Task {
	return &Task{ID: id, Archive: "abc", Iteration: 1, Group: 2, Request: json.RawMessage(`{"x":1}`)}
}

// TestRoundTrip: a task runs once, its result comes back, and asking again
// (a resumed coordinator) returns the stored result without running it.
func TestRoundTrip(t *testing.T) {
	_, c := startTest(t, Settings{})
	if err := c.PutArchive(context.Background(), "abc", []byte("model")); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	serve(t, c, WorkerOptions{Name: "h/0", Log: zerolog.Nop()}, func(_ context.Context, tk *Task, a []byte) (json.RawMessage, error) {
		runs.Add(1)
		return json.Marshal(map[string]string{"archive": string(a), "req": string(tk.Request)})
	})
	d, err := NewDispatcher(context.Background(), c, "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		r, err := d.Do(ctx, task("t1"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Error != "" || r.Worker != "h/0" || !strings.Contains(string(r.Result), `"archive":"model"`) {
			t.Fatalf("result %+v", r)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("ran %d times, want once", n)
	}
}

// TestFailures: a task that fails every time is reported failed after
// MaxDeliver deliveries; a refused one (another protocol, malformed JSON)
// at once.
func TestFailures(t *testing.T) {
	_, c := startTest(t, Settings{AckWait: time.Second, MaxDeliver: 2, NakDelay: 10 * time.Millisecond})
	if err := c.PutArchive(context.Background(), "abc", []byte("model")); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	serve(t, c, WorkerOptions{Name: "h/0", Version: "v1", Log: zerolog.Nop(), Bridge: &Bridge{AMP: "off"},
		Check: func(tk *Task) error {
			if tk.Dataset.Manifest != "" {
				return errors.New("data set differs")
			}
			return nil
		}},
		func(context.Context, *Task, []byte) (json.RawMessage, error) {
			runs.Add(1)
			return nil, errors.New("CUDA out of memory")
		})
	d, err := NewDispatcher(context.Background(), c, "run2")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := d.Do(ctx, task("oom"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Error, "out of memory") || r.Deliveries != 2 || runs.Load() != 2 || r.Refused {
		t.Errorf("failed task: %+v after %d runs, want the error (not a refusal) after 2 deliveries", r, runs.Load())
	}
	bad := task("ds")
	bad.Dataset.Manifest = "other"
	if r, err = d.Do(ctx, bad); err != nil || !strings.Contains(r.Error, "data set differs") {
		t.Errorf("mismatched data set: %+v, %v", r, err)
	}
	old := task("ver")
	old.Version = "v0"
	if r, err = d.Do(ctx, old); err != nil || !strings.Contains(r.Error, "gopruner v0") || r.Deliveries != 1 || !r.Refused {
		t.Errorf("other build: %+v, %v; want a refusal", r, err)
	}
	// A coordinator that runs models otherwise (here bf16 autocast): refused
	// at once, naming the setting; a task without a bridge (an older
	// coordinator) is not checked.
	amp := task("amp")
	amp.Bridge = &Bridge{AMP: "bf16"}
	if r, err = d.Do(ctx, amp); err != nil || !strings.Contains(r.Error, "amp bf16 (here off)") || r.Deliveries != 1 || !r.Refused {
		t.Errorf("other bridge settings: %+v, %v; want a refusal naming amp", r, err)
	}
	same := task("same")
	same.Bridge = &Bridge{AMP: "off"}
	if r, err = d.Do(ctx, same); err != nil || !strings.Contains(r.Error, "out of memory") || r.Refused {
		t.Errorf("the same bridge settings: %+v, %v; want it run (and fail in the handler)", r, err)
	}
	// A malformed message: answered on its subject, never run.
	if _, err := c.JS.Publish(ctx, TaskSubject("run2", "junk"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := c.Results.GetLastMsgForSubject(ctx, ResultSubject("run2", "junk"))
		if err == nil {
			if !strings.Contains(string(m.Data), "malformed task message") || !strings.Contains(string(m.Data), `"refused":true`) {
				t.Errorf("malformed task answered with %s", m.Data)
			}
			break
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			t.Fatalf("no answer to the malformed task: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := runs.Load(); n != 4 {
		t.Errorf("the handler ran %d times, want 4 (refused tasks never run)", n)
	}
}

func TestBridgeMismatch(t *testing.T) {
	here := Bridge{NCHW: false, Output: "out", AMP: "off"}
	for _, c := range []struct {
		task *Bridge
		want []string
	}{
		{nil, nil},
		{&Bridge{Output: "out", AMP: "off"}, nil},
		{&Bridge{NCHW: true, Output: "out", AMP: "off"}, []string{"nchw true (here false)"}},
		{&Bridge{Output: "aux.0", AMP: "fp16"}, []string{`output "aux.0" (here "out")`, "amp fp16 (here off)"}},
	} {
		got := here.Mismatch(c.task)
		if (got == "") != (c.want == nil) {
			t.Errorf("Mismatch(%+v) = %q", c.task, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("Mismatch(%+v) = %q, want it to name %s", c.task, got, w)
			}
		}
	}
}

// TestDeadWorker: a worker that takes a task and never answers (killed)
// loses it after AckWait to a live one; a task every worker dies on ends
// failed through the MaxDeliver advisory.
func TestDeadWorker(t *testing.T) {
	_, c := startTest(t, Settings{AckWait: 500 * time.Millisecond, MaxDeliver: 3})
	if err := c.PutArchive(context.Background(), "abc", []byte("model")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := NewDispatcher(ctx, c, "run3")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// A "dead" consumer: fetch one task and drop it, like a SIGKILLed worker.
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, TasksStream, jetstream.ConsumerConfig{Durable: WorkersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.Settings.AckWait, MaxDeliver: c.Settings.MaxDeliver, FilterSubject: TaskPrefix + ">", MaxAckPending: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Result, 1)
	go func() {
		r, err := d.Do(ctx, task("k"))
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	serve(t, c, WorkerOptions{Name: "live/0", Log: zerolog.Nop()}, func(context.Context, *Task, []byte) (json.RawMessage, error) {
		return json.RawMessage(`{"ok":true}`), nil
	})
	r := <-got
	if r == nil || r.Error != "" || r.Worker != "live/0" || r.Deliveries != 2 {
		t.Errorf("redelivered task: %+v", r)
	}

}

// TestMaxDeliverAdvisory: a task every worker dies on (fetched, never
// answered) ends failed through JetStream's MaxDeliver advisory and leaves
// the queue only then.
func TestMaxDeliverAdvisory(t *testing.T) {
	_, c := startTest(t, Settings{AckWait: 300 * time.Millisecond, MaxDeliver: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := NewDispatcher(ctx, c, "run4")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, TasksStream, jetstream.ConsumerConfig{Durable: WorkersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.Settings.AckWait, MaxDeliver: c.Settings.MaxDeliver, FilterSubject: TaskPrefix + ">", MaxAckPending: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Keep pulling: JetStream notices the exceeded count when it would
	// deliver again, as it does with live workers always asking.
	dropped := make(chan int, 1)
	dctx, stop := context.WithCancel(ctx)
	go func() {
		n := 0
		for dctx.Err() == nil {
			if _, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond)); err == nil {
				n++
			}
		}
		dropped <- n
	}()
	r, err := d.Do(ctx, task("doomed"))
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Error, "no worker finished the task in 2 deliveries") {
		t.Errorf("result %+v", r)
	}
	if n := <-dropped; n != 2 {
		t.Errorf("delivered %d times, want 2", n)
	}
	time.Sleep(200 * time.Millisecond)
	if info, err := c.Tasks.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("the failed task is still queued: %v, %+v", err, info)
	}
}

// TestConnectRefusals: the connection policy's usage errors.
func TestConnectRefusals(t *testing.T) {
	s, _ := startTest(t, Settings{})
	for _, tc := range []struct {
		name string
		o    ConnectOptions
		want string
	}{
		{"remote plaintext", ConnectOptions{URL: "nats://10.1.2.3:4222", Token: "x"}, "plaintext to a remote host"},
		{"scheme", ConnectOptions{URL: "http://127.0.0.1:4222"}, "want nats:// or tls://"},
		{"unreachable", ConnectOptions{URL: "nats://127.0.0.1:1"}, "unreachable"},
		{"wrong token", ConnectOptions{URL: s.URL, Token: "wrong"}, "wrong or missing --broker-token"},
		{"no token", ConnectOptions{URL: s.URL}, "wrong or missing --broker-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Connect(context.Background(), tc.o)
			if err == nil {
				c.Close()
				t.Fatal("connected")
			}
			if !fail.IsUsage(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q (usage %v), want a usage error with %q", err, fail.IsUsage(err), tc.want)
			}
		})
	}
	if _, err := StartServer(ServerOptions{Listen: "0.0.0.0:0", StoreDir: t.TempDir()}); err == nil || !fail.IsUsage(err) {
		t.Errorf("a token-less broker on all interfaces started: %v", err)
	}
	if err := CheckURL("nats://10.1.2.3:4222", true, false); err != nil {
		t.Errorf("--insecure: %v", err)
	}
}

// TestSetupStreams: connections to a broker whose streams exist reuse them
// as they are (several at once, as workers start), and a stream whose
// configuration differs from what gopruner needs (an older release's) is
// updated to it.
func TestSetupStreams(t *testing.T) {
	tok := NewToken()
	s, err := StartServer(ServerOptions{StoreDir: t.TempDir(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	first, err := Connect(ctx, ConnectOptions{URL: s.URL, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.JS.UpdateStream(ctx, jetstream.StreamConfig{Name: TasksStream, Subjects: []string{TaskPrefix + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			c, err := Connect(ctx, ConnectOptions{URL: s.URL, Token: tok})
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent connect: %v", err)
		}
	}
	info, err := first.Tasks.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != 10*time.Minute {
		t.Errorf("tasks stream keeps duplicates for %v, want the 10m gopruner sets", info.Config.Duplicates)
	}
}
