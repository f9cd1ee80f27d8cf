package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// ConnectOptions say how to reach a broker.
type ConnectOptions struct {
	URL   string // nats://host:port or tls://host:port
	Token string
	// Insecure allows plaintext to a host that is not loopback.
	Insecure bool
	// TLSCA verifies the server; TLSCert/TLSKey present a client certificate.
	TLSCert, TLSKey, TLSCA string
	Name                   string // the client name the server shows
	Settings               Settings
}

// Conn is a connection with the streams and the archive bucket set up.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Tasks    jetstream.Stream
	Results  jetstream.Stream
	Archives jetstream.ObjectStore
	Settings Settings
	cache    *ArchiveCache
}

// CheckURL refuses a broker URL gopruner will not dial: not nats:// or
// tls://, or plaintext to a remote host without insecure.
func CheckURL(raw string, insecure bool, tlsFiles bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fail.Usagef("--broker %q is not a URL like nats://host:4222", raw)
	}
	switch u.Scheme {
	case "nats", "tls":
	default:
		return fail.Usagef("--broker %q: scheme %q, want nats:// or tls://", raw, u.Scheme)
	}
	host := u.Hostname()
	if u.Scheme == "nats" && !tlsFiles && !insecure && !isLoopback(host) {
		return fail.Usagef("--broker %s: plaintext to a remote host (%s) would carry models and tasks unencrypted; use tls:// with --broker-tls-ca, or give --insecure", raw, host)
	}
	return nil
}

// Connect dials the broker and sets up the streams. A broker that cannot
// be reached or refuses the token is a usage error (exit 2): the user named
// it.
func Connect(ctx context.Context, o ConnectOptions) (*Conn, error) {
	tlsFiles := o.TLSCA != "" || o.TLSCert != ""
	if err := CheckURL(o.URL, o.Insecure, tlsFiles); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name(o.Name), nats.Timeout(5 * time.Second),
		// Reconnect for as long as it takes: a broker restart must not end
		// a search (JetStream keeps the state on disk).
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"):
			return nil, fail.Usagef("--broker %s refused the connection: wrong or missing --broker-token", o.URL)
		case errors.Is(err, nats.ErrNoServers):
			var op *net.OpError
			if errors.As(err, &op) {
				return nil, fail.Usagef("--broker %s is unreachable: %v", o.URL, op)
			}
			return nil, fail.Usagef("--broker %s is unreachable: %v", o.URL, err)
		}
		return nil, fail.Usagef("--broker %s: %v", o.URL, err)
	}
	c, err := setup(ctx, nc, o.Settings.orDefault())
	if err != nil {
		nc.Close()
		return nil, fail.Usagef("--broker %s: setting up the JetStream streams: %v (does the server run with JetStream?)", o.URL, err)
	}
	return c, nil
}

func setup(ctx context.Context, nc *nats.Conn, st Settings) (*Conn, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tasks, err := ensureStream(ctx, js, jetstream.StreamConfig{Name: TasksStream, Subjects: []string{TaskPrefix + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", TasksStream, err)
	}
	results, err := ensureStream(ctx, js, jetstream.StreamConfig{Name: ResultsStream, Subjects: []string{ResultPrefix + ">"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1, Duplicates: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	obs, err := ensureObjectStore(ctx, js, jetstream.ObjectStoreConfig{Bucket: ArchiveBucket, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", ArchiveBucket, err)
	}
	return &Conn{NC: nc, JS: js, Tasks: tasks, Results: results, Archives: obs, Settings: st, cache: NewArchiveCache(4)}, nil
}

// ensureStream returns stream cfg.Name, creating it when it is missing and
// updating it only when it differs from cfg in a field that cfg sets.
// Every connection (coordinator, each worker) runs this at once on start;
// CreateOrUpdateStream would send the server a stream update each time,
// and nats-server 2.15 rewrites the stream's configuration on an update
// without the lock under which another connection's consumer creation
// reads it (the race detector caught it in TestDispatchPaths).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another connection created it first
			s, err = js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, err
	}
	have := s.CachedInfo().Config
	if slices.Equal(have.Subjects, cfg.Subjects) && have.Retention == cfg.Retention && have.Storage == cfg.Storage &&
		have.Duplicates == cfg.Duplicates && (cfg.MaxMsgsPerSubject == 0 || have.MaxMsgsPerSubject == cfg.MaxMsgsPerSubject) {
		return s, nil
	}
	return js.UpdateStream(ctx, cfg)
}

// ensureObjectStore returns bucket cfg.Bucket, creating it when it is
// missing, for the reason ensureStream gives: an object store is a stream,
// and CreateOrUpdateObjectStore updates it on every call.
func ensureObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	obs, err := js.ObjectStore(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = js.ObjectStore(ctx, cfg.Bucket)
		}
	}
	return obs, err
}

// Close drains the connection.
func (c *Conn) Close() { c.NC.Close() }

// PurgeRun drops the tasks and results of run.
func (c *Conn) PurgeRun(ctx context.Context, run string) error {
	if err := c.Results.Purge(ctx, jetstream.WithPurgeSubject(ResultPrefix+run+".>")); err != nil {
		return fmt.Errorf("clearing the results of run %s: %w", run, err)
	}
	if err := c.Tasks.Purge(ctx, jetstream.WithPurgeSubject(TaskPrefix+run+".>")); err != nil {
		return fmt.Errorf("clearing the tasks of run %s: %w", run, err)
	}
	return nil
}

// PutArchive stores an archive under its digest unless it is there. The
// archive is also cached, so workers of this process never download it.
func (c *Conn) PutArchive(ctx context.Context, digest string, b []byte) error {
	c.cache.put(digest, b)
	if _, err := c.Archives.GetInfo(ctx, digest); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("archive %s: %w", short(digest), err)
	}
	if _, err := c.Archives.PutBytes(ctx, digest, b); err != nil {
		return fmt.Errorf("uploading archive %s: %w", short(digest), err)
	}
	return nil
}

// Archive returns the archive of digest, from the cache or the bucket.
func (c *Conn) Archive(ctx context.Context, digest string) ([]byte, error) {
	if b, ok := c.cache.get(digest); ok {
		return b, nil
	}
	b, err := c.Archives.GetBytes(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", short(digest), err)
	}
	c.cache.put(digest, b)
	return b, nil
}

// ArchiveCache keeps the last few archives by digest: a worker runs every
// candidate of an iteration on the same base model.
type ArchiveCache struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string][]byte
}

// NewArchiveCache keeps up to max archives.
func NewArchiveCache(max int) *ArchiveCache { return &ArchiveCache{max: max, m: map[string][]byte{}} }

func (a *ArchiveCache) get(d string) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.m[d]
	return b, ok
}

func (a *ArchiveCache) put(d string, b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[d]; ok {
		return
	}
	a.m[d] = b
	a.order = append(a.order, d)
	for len(a.order) > a.max {
		delete(a.m, a.order[0])
		a.order = a.order[1:]
	}
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
