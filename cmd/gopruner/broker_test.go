//go:build cgo

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopruner/gopruner/internal/broker"
	"github.com/gopruner/gopruner/internal/fixtures"
)

// proc is a gopruner process the test started (a broker or a worker).
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	seen   map[string]chan struct{} // closed when a line containing the key appears
	done   chan struct{}
}

func startProc(t *testing.T, dir string, waitFor []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(fixtures.Binary(t), args...), seen: map[string]chan struct{}{}, done: make(chan struct{})}
	for _, k := range waitFor {
		p.seen[k] = make(chan struct{})
	}
	p.cmd.Dir = dir
	p.cmd.Env = fixtures.CleanEnv()
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			for k, ch := range p.seen {
				if containsAll(line, k) {
					close(ch)
					delete(p.seen, k)
				}
			}
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

// containsAll reports whether line has every part of key ("a&&b").
func containsAll(line, key string) bool {
	for _, part := range strings.Split(key, "&&") {
		if !strings.Contains(line, part) {
			return false
		}
	}
	return true
}

// await waits for the line key (one of startProc's waitFor).
func (p *proc) await(t *testing.T, key string, d time.Duration) {
	t.Helper()
	p.mu.Lock()
	ch, ok := p.seen[key]
	p.mu.Unlock()
	if !ok {
		return // seen already
	}
	select {
	case <-ch:
	case <-p.done:
		t.Fatalf("process ended before %q: %s", key, p.log())
	case <-time.After(d):
		t.Fatalf("no %q within %v: %s", key, d, p.log())
	}
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBroker runs `gopruner broker` on a free loopback port with token tok.
func startBroker(t *testing.T, tok string) string {
	t.Helper()
	url, _ := restartBroker(t, tok, "", 0)
	return url
}

// restartBroker runs `gopruner broker` on port (0: a free one) with its
// store in store ("": a new one).
func restartBroker(t *testing.T, tok, store string, port int) (string, *proc) {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	if store == "" {
		store = t.TempDir()
	}
	b := startProc(t, t.TempDir(), []string{"broker: listening"}, "broker", "--store", store,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--broker-token", tok)
	b.await(t, "broker: listening", time.Minute)
	return fmt.Sprintf("nats://127.0.0.1:%d", port), b
}

// TestBrokerWorkers is issue 15's acceptance with real processes on
// loopback: the embedded broker's history is the direct path's; a `gopruner
// broker` with two `gopruner worker` processes (one cpu slot, one thread
// each) gives the single-process history of `--cart cpu,cpu --threads 2`;
// and so does a search during which one worker is SIGKILLed in the middle
// of a candidate (its task is redelivered after AckWait).
func TestBrokerWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("four my_pruning runs")
	}
	model, dataset := demoModel(t), smallMNIST(t)
	args := func(extra ...string) []string {
		return myPruningArgs(model, dataset, append([]string{"--cart", "cpu,cpu", "--threads", "2"}, extra...)...)
	}
	ref := t.TempDir()
	r := runIn(t, ref, args("--broker", "direct")...)
	if r.code != 0 {
		t.Fatalf("direct: exit %d: %s", r.code, lastLine(r.stderr))
	}
	want, direct := readIterations(t, ref), r.wall
	if len(want) < 2 {
		t.Fatalf("the reference run has %d iterations; the test needs at least 2", len(want))
	}
	emb := t.TempDir()
	r = runIn(t, emb, args()...)
	if r.code != 0 {
		t.Fatalf("embedded broker: exit %d: %s", r.code, lastLine(r.stderr))
	}
	if got := readIterations(t, emb); !reflect.DeepEqual(got, want) {
		t.Errorf("embedded broker's history differs from the direct path's:\n got  %+v\n want %+v", got, want)
	}
	t.Logf("wall: direct %.2f s, embedded broker %.2f s (%+.1f%%)", direct.Seconds(), r.wall.Seconds(),
		100*(r.wall.Seconds()/direct.Seconds()-1))

	tok, store, port := "test-token", t.TempDir(), freePort(t)
	url, brk := restartBroker(t, tok, store, port)
	worker := func(name string) *proc {
		return startProc(t, t.TempDir(), []string{"worker: serving", "worker: task started", it2Started, it2Done}, "worker", "--broker", url,
			"--broker-token", tok, "--cart", "cpu", "--threads", "1", "--data-root", filepath.Dir(dataset),
			"--broker-ack-wait", "2", "--log-format", "json")
	}
	w1, w2 := worker("w1"), worker("w2")
	w1.await(t, "worker: serving", time.Minute)
	w2.await(t, "worker: serving", time.Minute)
	remote := t.TempDir()
	r = runIn(t, remote, args("--broker", url, "--broker-token", tok)...)
	if r.code != 0 {
		t.Fatalf("two workers: exit %d: %s", r.code, lastLine(r.stderr))
	}
	if got := readIterations(t, remote); !reflect.DeepEqual(got, want) {
		t.Errorf("two worker processes' history differs from the single process's:\n got  %+v\n want %+v", got, want)
	}
	t.Logf("wall: two worker processes %.2f s", r.wall.Seconds())
	for _, w := range []*proc{w1, w2} {
		if !strings.Contains(w.log(), "worker: task done") {
			t.Errorf("a worker ran no task: %s", w.log())
		}
	}

	// A new search; the new worker w1b is SIGKILLed in the middle of its
	// first candidate, and w2 gets that task after AckWait.
	w1.stop(syscall.SIGINT)
	w1 = worker("w1b")
	w1.await(t, "worker: serving", time.Minute)
	killed := t.TempDir()
	coord := exec.Command(fixtures.Binary(t), args("--broker", url, "--broker-token", tok)...)
	coord.Dir, coord.Env = killed, fixtures.CleanEnv()
	var cerr strings.Builder
	coord.Stderr = &cerr
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	w1.await(t, "worker: task started", 5*time.Minute)
	w1.stop(syscall.SIGKILL)
	if err := coord.Wait(); err != nil {
		t.Fatalf("search with a killed worker: %v: %s", err, lastLine(cerr.String()))
	}
	if got := readIterations(t, killed); !reflect.DeepEqual(got, want) {
		t.Errorf("the history with a killed worker differs:\n got  %+v\n want %+v", got, want)
	}
	logb, err := os.ReadFile(filepath.Join(killed, "exp", "m", "log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logb), `"deliveries":2`) {
		t.Errorf("no candidate was delivered twice; the kill did not land on a running candidate")
	}

	// The coordinator SIGKILLed while a worker runs an iteration-2 candidate
	// for it: --resume gives the history and reuses that candidate's result.
	w2.stop(syscall.SIGINT)
	w1 = worker("w4")
	w1.await(t, "worker: serving", time.Minute)
	resumed := t.TempDir()
	coord = exec.Command(fixtures.Binary(t), args("--broker", url, "--broker-token", tok)...)
	coord.Dir, coord.Env = resumed, fixtures.CleanEnv()
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	w1.await(t, it2Started, 5*time.Minute)
	_ = coord.Process.Kill()
	_ = coord.Wait()
	w1.await(t, it2Done, 5*time.Minute)
	r = runIn(t, resumed, args("--broker", url, "--broker-token", tok, "--resume")...)
	if r.code != 0 {
		t.Fatalf("--resume after killing the coordinator: exit %d: %s", r.code, lastLine(r.stderr))
	}
	if got := readIterations(t, resumed); !reflect.DeepEqual(got, want) {
		t.Errorf("the resumed history differs:\n got  %+v\n want %+v", got, want)
	}
	if logb, _ := os.ReadFile(filepath.Join(resumed, "exp", "m", "log.jsonl")); !strings.Contains(string(logb), `"reused":true`) {
		t.Errorf("the resumed coordinator reused no result the worker stored while it was down")
	}

	// The broker restarted (same store and port) during iteration 2: the
	// worker and the coordinator reconnect and nothing is lost.
	w1.stop(syscall.SIGINT)
	w1 = worker("w5")
	w1.await(t, "worker: serving", time.Minute)
	restarted := t.TempDir()
	coord = exec.Command(fixtures.Binary(t), args("--broker", url, "--broker-token", tok)...)
	coord.Dir, coord.Env = restarted, fixtures.CleanEnv()
	cerr.Reset()
	coord.Stderr = &cerr
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	w1.await(t, it2Started, 5*time.Minute)
	brk.stop(syscall.SIGTERM)
	restartBroker(t, tok, store, port)
	if err := coord.Wait(); err != nil {
		t.Fatalf("search across a broker restart: %v: %s", err, lastLine(cerr.String()))
	}
	if got := readIterations(t, restarted); !reflect.DeepEqual(got, want) {
		t.Errorf("the history across a broker restart differs:\n got  %+v\n want %+v", got, want)
	}
	w1.stop(syscall.SIGINT)

	// A worker that runs models otherwise (NCHW batches, the coordinator
	// channels-last) refuses the tasks: the search stops at once, naming
	// the setting, instead of mixing candidates fine-tuned two ways.
	other := startProc(t, t.TempDir(), []string{"worker: serving"}, "worker", "--broker", url,
		"--broker-token", tok, "--cart", "cpu", "--threads", "1", "--data-root", filepath.Dir(dataset), "--nchw", "--log-format", "json")
	other.await(t, "worker: serving", time.Minute)
	r = runIn(t, t.TempDir(), args("--broker", url, "--broker-token", tok)...)
	if r.code != 1 || !strings.Contains(r.stderr, "nchw false (here true)") {
		t.Errorf("a worker with other bridge settings: exit %d: %s, want 1 and a line naming nchw", r.code, lastLine(r.stderr))
	}
	other.stop(syscall.SIGINT)
}

// The worker's JSON log lines of an iteration-2 candidate.
const (
	it2Started = `"iteration":2,&&worker: task started`
	it2Done    = `"iteration":2,&&worker: task done`
)

// TestBrokerBadInput: an unreachable broker, a wrong token and a plaintext
// remote broker without --insecure are one `gopruner: ` line, exit 2, and
// nothing written.
func TestBrokerBadInput(t *testing.T) {
	model, dataset := demoModel(t), smallMNIST(t)
	url := startBroker(t, "right")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"--broker", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))}, "unreachable"},
		{"wrong token", []string{"--broker", url, "--broker-token", "wrong"}, "wrong or missing --broker-token"},
		{"no token", []string{"--broker", url}, "wrong or missing --broker-token"},
		{"plaintext remote", []string{"--broker", "nats://192.0.2.1:4222"}, "--insecure"},
		{"not a URL", []string{"--broker", "http://x"}, "broker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			r := runIn(t, dir, myPruningArgs(model, dataset, c.args...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "gopruner: ") || !strings.Contains(lines[0], c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q", r.code, r.stderr, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("wrote %v", ents)
			}
		})
	}
	t.Run("worker refusals", func(t *testing.T) {
		// A worker whose copy of the data set has one label changed.
		other := t.TempDir()
		if err := os.CopyFS(filepath.Join(other, "mnist"), os.DirFS(dataset)); err != nil {
			t.Fatal(err)
		}
		csvPath := filepath.Join(other, "mnist", "data.csv")
		b, err := os.ReadFile(csvPath)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		lines[1] = lines[1][:len(lines[1])-1] + "9"
		if err := os.WriteFile(csvPath, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		w := startProc(t, t.TempDir(), []string{"worker: serving", "data set refused", "malformed task message"}, "worker",
			"--broker", url, "--broker-token", "right", "--cart", "cpu", "--threads", "1", "--data-root", other)
		w.await(t, "worker: serving", time.Minute)
		// A message no coordinator would send: refused, never run.
		conn, err := broker.Connect(context.Background(), broker.ConnectOptions{URL: url, Token: "right"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.JS.Publish(context.Background(), broker.TaskSubject("junk", "junk"), []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		w.await(t, "malformed task message", time.Minute)
		dir := t.TempDir()
		r := runIn(t, dir, myPruningArgs(model, dataset, "--broker", url, "--broker-token", "right")...)
		if r.code != 1 || !strings.Contains(lastLine(r.stderr), "differs from the coordinator's") {
			t.Errorf("search with a mismatched worker: exit %d, %q; want 1 naming the mismatch", r.code, lastLine(r.stderr))
		}
		w.await(t, "data set refused", time.Minute)
	})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"worker without broker", []string{"worker", "--data-root", "."}, "--broker"},
		{"broker beyond loopback without token", []string{"broker", "--store", t.TempDir(), "--listen", "0.0.0.0:0"}, "--broker-token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runIn(t, t.TempDir(), c.args...)
			if r.code != 2 || !strings.HasPrefix(r.stderr, "gopruner: ") || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %s", r.code, r.stderr, c.want)
			}
		})
	}
}
