package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gopruner/gopruner/internal/broker"
	"github.com/gopruner/gopruner/internal/core/data"
	"github.com/gopruner/gopruner/internal/engine"
	"github.com/gopruner/gopruner/internal/engine/fake"
)

// diskMNIST writes a small MNIST data set with a data.csv under root/name.
func diskMNIST(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "mnist")
	if err := data.WriteImageCSV(dir, mnistData(t), data.ExportPart{Split: data.Train, N: 300},
		data.ExportPart{Split: data.Val, N: 100}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDispatchPaths: the embedded broker with in-process workers and an
// external broker with two separate workers (one slot each, their own
// connection, engine and copy of the data) give the direct path's history;
// a worker whose copy of the data differs refuses the tasks, and the
// search fails naming the mismatch.
func TestDispatchPaths(t *testing.T) {
	base := smallCNN(t)
	dsDir := diskMNIST(t, t.TempDir())
	ds, err := data.Open(dsDir, data.Options{Channels: 1, Height: 28, Width: 28})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := ds.Split(data.Train)
	val, _ := ds.Split(data.Val)
	search := func(o MyPruningOptions) (*MyPruningResult, error) {
		t.Helper()
		eng := fake.New(base)
		bm := openSmall(context.Background(), t, eng)
		defer bm.Close()
		res, err := MyPruning(context.Background(), eng, bm, tr, val, o)
		if res != nil && res.Module != nil {
			res.Module.Close()
		}
		return res, err
	}
	o := myOptions(t, "cpu", "cpu")
	o.Broker.Direct = true
	t0 := time.Now()
	direct, err := search(o)
	tDirect := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if direct.State.Iteration < 3 {
		t.Fatalf("want at least 3 iterations, got %d", direct.State.Iteration)
	}

	t0 = time.Now()
	embedded, err := search(myOptions(t, "cpu", "cpu"))
	if err != nil {
		t.Fatal(err)
	}
	// On the fake engine a candidate costs next to nothing: this is the
	// broker's own cost per search.
	t.Logf("fake engine, %d candidates: direct %v, embedded broker %v", len(embedded.Workers), tDirect, time.Since(t0))
	if !reflect.DeepEqual(direct.State.History, embedded.State.History) || !reflect.DeepEqual(direct.Kept, embedded.Kept) {
		t.Errorf("the embedded broker's history differs from the direct path's")
	}

	tok := broker.NewToken()
	srv, err := broker.StartServer(broker.ServerOptions{StoreDir: t.TempDir(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	startWorker := func(host, root string) func() {
		conn, err := broker.Connect(context.Background(), broker.ConnectOptions{URL: srv.URL, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := ServeWorker(ctx, conn, fake.New(base), WorkerOptions{Slots: []string{"cpu"}, Threads: 1, DataRoot: root,
				Host: host, Log: zerolog.Nop()}); err != nil {
				t.Error(err)
			}
		})
		return func() { cancel(); wg.Wait(); conn.Close() }
	}
	root := filepath.Dir(dsDir)
	stop1, stop2 := startWorker("a", root), startWorker("b", root)
	o = myOptions(t, "cpu", "cpu")
	o.Broker = BrokerOptions{URL: srv.URL, Token: tok, Dataset: DatasetRef{Dir: dsDir, Options: ds.Options()}}
	remote, err := search(o)
	stop1()
	stop2()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(direct.State.History, remote.State.History) || !reflect.DeepEqual(direct.Kept, remote.Kept) {
		t.Errorf("two remote workers' history differs from the direct path's")
	}
	ran := map[string]int{}
	for _, w := range remote.Workers {
		ran[w]++
	}
	if len(ran) != 2 || ran["a/0"] == 0 || ran["b/0"] == 0 {
		t.Errorf("candidates ran on %v, want both workers a/0 and b/0", ran)
	}
	if direct.Workers != nil || len(embedded.Workers) == 0 {
		t.Errorf("workers recorded: direct %v, embedded %v", direct.Workers, embedded.Workers)
	}

	// Distilled, the remote workers fetch the teacher (the original
	// model) from the broker's archive store once per slot; a worker that
	// could not would fail every candidate.
	kd := &engine.Distill{Temperature: 4, Weight: 0.5}
	stop1, stop2 = startWorker("a", root), startWorker("b", root)
	o = myOptions(t, "cpu", "cpu")
	o.Broker = BrokerOptions{URL: srv.URL, Token: tok, Dataset: DatasetRef{Dir: dsDir, Options: ds.Options()}}
	o.Train.Distill = kd
	remoteKD, err := search(o)
	stop1()
	stop2()
	if err != nil {
		t.Fatal(err)
	}
	o = myOptions(t, "cpu")
	o.Broker.Direct = true
	o.Train.Distill = kd
	directKD, err := search(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(directKD.State.History, remoteKD.State.History) || len(remoteKD.Workers) == 0 {
		t.Errorf("distilled: two remote workers' history differs from the direct path's (workers %v)", remoteKD.Workers)
	}

	// The same files, one label changed: the manifest differs.
	other := t.TempDir()
	otherDir := diskMNIST(t, other)
	csv, err := os.ReadFile(filepath.Join(otherDir, "data.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(csv), "\n")
	lines[1] = lines[1][:len(lines[1])-1] + "9"
	if err := os.WriteFile(filepath.Join(otherDir, "data.csv"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := startWorker("c", other)
	defer stop()
	o = myOptions(t, "cpu")
	o.Broker = BrokerOptions{URL: srv.URL, Token: tok,
		Dataset: DatasetRef{Dir: dsDir, Options: ds.Options()}}
	_, err = search(o)
	if err == nil || !strings.Contains(err.Error(), "differs from the coordinator's") || !strings.Contains(err.Error(), "c/0") {
		t.Errorf("a worker with other data: %v", err)
	}
}

// TestFreshRunRepeatsTasks: running the same search twice in one directory
// without --resume repeats every task of the first run within JetStream's
// duplicate window. The second run must not lose them (it used to wait
// forever for tasks the stream had dropped as duplicates), and a resume
// after it still finds its results.
func TestFreshRunRepeatsTasks(t *testing.T) {
	base := smallCNN(t)
	tr, val := mnistSplits(t)
	dir := t.TempDir()
	search := func(resume bool) *MyPruningResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		eng := fake.New(base)
		bm := openSmall(ctx, t, eng)
		defer bm.Close()
		o := myOptions(t, "cpu")
		o.Dir, o.Resume = dir, resume
		res, err := MyPruning(ctx, eng, bm, tr, val, o)
		if err != nil {
			t.Fatalf("resume=%v: %v", resume, err)
		}
		if res.Module != nil {
			res.Module.Close()
		}
		return res
	}
	first := search(false)
	id1, err := os.ReadFile(filepath.Join(dir, runIDFile))
	if err != nil {
		t.Fatal(err)
	}
	second := search(false)
	id2, err := os.ReadFile(filepath.Join(dir, runIDFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(id1) == string(id2) {
		t.Errorf("two fresh runs share the run id %s", id1)
	}
	if !reflect.DeepEqual(first.State.History, second.State.History) {
		t.Errorf("the second fresh run's history differs from the first's")
	}
	search(true) // the finished search resumes to its end
	if id3, _ := os.ReadFile(filepath.Join(dir, runIDFile)); string(id3) != string(id2) {
		t.Errorf("--resume changed the run id: %s -> %s", id2, id3)
	}
}
